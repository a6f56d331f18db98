"""Located, user-facing spec errors.

Every problem found while loading specs becomes a `SpecError` that says where (file:line:column
and the key path), what is wrong, and what to do. `load_specs` collects them all and raises one
`SpecErrors`, so a user fixes every file in one round instead of one error per run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceRef:
    """A position in a spec file; `line` and `column` are 1-based like editors show them."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class SpecError:
    """One problem in the spec input, rendered as `file:line:col: key.path: message (hint)`."""

    source: SourceRef | None
    key_path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        parts = [str(part) for part in (self.source, self.key_path) if part]
        text = self.message if self.hint is None else f"{self.message} ({self.hint})"
        return ": ".join([*parts, text])


class SpecErrors(Exception):  # noqa: N818 - the public name other packages catch
    """All the problems found in one `load_specs` call; `str()` gives one error per line."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__(errors)  # as the only argument, so that the exception can be pickled

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)

"""`load_specs`: from the `-f` inputs to the set of desired agents, or every error at once.

Files are read and validated one document at a time, then checked against each other (projects
named by agents exist, nothing is declared twice), then merged. Nothing here touches Docker or
the network; the only I/O is reading the inputs and looking at workspace directories.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from specs.documents import SpecText
from specs.errors import SpecError, SpecErrors
from specs.resolved import DesiredAgent, WorkspaceMode
from specs.setcache import Resolution, SetCache
from specs.workspace_policy import looked_once

STDIN_NAME = "<stdin>"
_SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SpecSet:
    """Everything the inputs declare, valid and resolved."""

    agents: tuple[DesiredAgent, ...]  # sorted by (project, name)
    projects: tuple[str, ...]  # the declared project names, sorted
    files: tuple[str, ...]  # absolute paths of the spec files read, in reading order
    warnings: tuple[str, ...]
    # Per project: the Project's spec alone as an agent named `default`; what `clawker run`
    # starts from for an agent the project does not declare.
    defaults: Mapping[str, DesiredAgent] = field(default_factory=dict)


def load_specs(
    inputs: Sequence[str],
    *,
    stdin: TextIO | None = None,
    protected: Sequence[str] = (),
    cache_dir: str | None = None,
) -> SpecSet:
    """Load, validate and merge the spec files named by `inputs`.

    Each input is a file, a directory (its *.yaml and *.yml files, sorted by name, not recursive)
    or "-" for `stdin` (default: sys.stdin). Every input is validated before anything is returned;
    all problems are raised together as `SpecErrors`. No agents at all is not an error.
    `protected`: paths no workspace may be, be inside of or contain, besides the built-in ones
    (clawker's state directory and sockets: see specs.workspace_policy). `cache_dir`: where
    parsed texts and resolved sets are kept (specs.documents, specs.setcache): a set of texts
    resolved before, whose workspaces look as they did, is not validated again.
    """
    return _load_specs(inputs, stdin, protected, cache_dir)


def _load_specs(
    inputs: Sequence[str],
    stdin: TextIO | None,
    protected: Sequence[str],
    cache_dir: str | None,
) -> SpecSet:
    errors: list[SpecError] = []
    warnings: list[str] = []
    texts = _read_inputs(inputs, stdin, errors, warnings)

    # An input that could not be read is an error to report, never a set to look up.
    set_cache = SetCache(cache_dir, texts, protected) if cache_dir and not errors else None
    if set_cache is not None and (hit := set_cache.read()) is not None:
        return _specset(hit, texts, warnings)
    from specs.resolving import resolve  # noqa: PLC0415  # pydantic: only when not cached

    with looked_once() as looked:
        resolution = resolve(texts, protected, cache_dir, errors)
    if set_cache is not None and not errors:
        set_cache.write(resolution, looked)
    if errors:
        raise SpecErrors(_in_reading_order(errors, [text.name for text in texts]))
    return _specset(resolution, texts, warnings)


def _specset(resolution: Resolution, texts: Sequence[SpecText], warnings: list[str]) -> SpecSet:
    files = tuple(text.path for text in texts if text.path is not None)
    warnings.extend(_self_editing_warnings(files, resolution.agents))
    return SpecSet(
        agents=resolution.agents,
        projects=resolution.projects,
        files=files,
        warnings=tuple(warnings),
        defaults=resolution.defaults,
    )


def _read_inputs(
    inputs: Sequence[str], stdin: TextIO | None, errors: list[SpecError], warnings: list[str]
) -> list[SpecText]:
    texts: list[SpecText] = []
    seen: set[str] = set()  # an input named twice (a file and its directory) is read once

    def add(name: str) -> None:
        key = os.path.realpath(name)
        if key in seen:
            return
        seen.add(key)
        text = _read_file(name, errors)
        if text is not None:
            texts.append(text)

    for item in inputs:
        if item == "-":
            if item not in seen:
                seen.add(item)
                stream = stdin if stdin is not None else sys.stdin
                text = _read_stdin(stream, errors)
                if text is not None:
                    texts.append(SpecText(STDIN_NAME, None, os.getcwd(), text))
        elif os.path.isdir(item):
            names = sorted(
                name
                for name in os.listdir(item)
                # Like the shell's *.yaml: hidden files (often editor leftovers) are not included.
                if name.endswith(_SPEC_SUFFIXES)
                and not name.startswith(".")
                and os.path.isfile(os.path.join(item, name))
            )
            if not names:
                warnings.append(f"{item}: directory holds no *.yaml or *.yml files")
            for name in names:
                add(os.path.join(item, name))
        elif os.path.exists(item):
            add(item)
        else:
            errors.append(
                SpecError(None, "", f"{item}: no such file or directory", "check the -f path")
            )
    return texts


MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec is a few KiB; this bounds memory and parse time
_TOO_BIG_HINT = "a spec file is a few KiB: split it, or check that -f names the right file"


def _too_big(name: str) -> SpecError:
    return SpecError(
        None, "", f"{name}: larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB", _TOO_BIG_HINT
    )


def _read_stdin(stream: TextIO | None, errors: list[SpecError]) -> str | None:
    """Standard input, at most MAX_SPEC_BYTES of it (characters, for a text stream)."""
    if stream is None or stream.closed:
        errors.append(
            SpecError(None, "", "-f -: standard input is closed", "pipe a spec in, or pass -f FILE")
        )
        return None
    try:
        content = stream.read(MAX_SPEC_BYTES + 1)
    except UnicodeDecodeError:
        errors.append(SpecError(None, "", f"{STDIN_NAME}: not UTF-8 text", "send UTF-8 text"))
        return None
    except OSError as error:
        errors.append(SpecError(None, "", f"{STDIN_NAME}: cannot read: {error.strerror}", ""))
        return None
    if len(content) > MAX_SPEC_BYTES:
        errors.append(_too_big(STDIN_NAME))
        return None
    return content.removeprefix("\ufeff")


def _read_file(name: str, errors: list[SpecError]) -> SpecText | None:
    path = os.path.abspath(name)
    try:
        # Only regular files: a device (/dev/zero, /dev/urandom) never ends and a FIFO blocks
        # the open itself, so neither is opened.
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            errors.append(
                SpecError(
                    None,
                    "",
                    f"{name}: not a regular file (a device, FIFO or socket)",
                    "name a spec file, or pass -f - to read standard input",
                )
            )
            return None
        if info.st_size > MAX_SPEC_BYTES:
            errors.append(_too_big(name))
            return None
        with open(path, "rb") as stream:
            raw = stream.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:  # it grew since the stat
            errors.append(_too_big(name))
            return None
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        errors.append(SpecError(None, "", f"{name}: not UTF-8 text", "save the spec file as UTF-8"))
        return None
    except OSError as error:
        errors.append(
            SpecError(
                None, "", f"{name}: cannot read: {error.strerror}", "check the file's permissions"
            )
        )
        return None
    return SpecText(name, path, os.path.dirname(path), content)


def _self_editing_warnings(files: tuple[str, ...], agents: Sequence[DesiredAgent]) -> list[str]:
    """A spec file inside a bind-mounted workspace can be edited by the agent it configures, which
    could widen its own allowlist; in watch mode that edit would be applied."""
    warnings = []
    for file in files:
        real = os.path.realpath(file)
        writers = [
            agent.key
            for agent in agents
            if agent.workspace.mode is WorkspaceMode.BIND and _inside(real, agent.workspace.path)
        ]
        if writers:
            warnings.append(
                f"{file} lies inside the bind-mounted workspace of {', '.join(writers)}:"
                " the agent could edit its own spec (e.g. widen its firewall allowlist) and"
                " watch mode would apply it; keep spec files outside the workspace or use"
                " workspace mode snapshot"
            )
    return warnings


def _inside(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def _in_reading_order(errors: list[SpecError], names: list[str]) -> list[SpecError]:
    """Errors sorted by file (in the order the files were read), then line and column; errors
    without a position (unreadable inputs) first. Repeats, e.g. one project's missing workspace
    reported for each of its agents, are shown once."""
    order = {name: index for index, name in enumerate(names)}

    def position(error: SpecError) -> tuple[int, int, int]:
        if error.source is None:
            return (-1, 0, 0)
        source = error.source
        return (order.get(source.file, len(order)), source.line, source.column)

    unique = list(dict.fromkeys(errors))
    return sorted(unique, key=position)

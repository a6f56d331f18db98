"""Reading spec files into YAML documents that remember where each key and value was written.

ruamel.yaml's round-trip loader keeps the line and column of every mapping key, mapping value
and sequence item (`.lc`); we keep those positions (a small tree of plain tuples) next to a
plain-Python copy of the content, so validation works on ordinary dicts and lists while every
error can still point at `file:line:column`.

Both are plain data, so a text read before can be read from a cache (`cache_dir`, keyed by the
text's SHA-256): a no-op `clawker diff` of 100 agents spent ~60 % of its spec loading in
ruamel's pure-Python scanner, re-reading a file that had not changed. Only texts that parse,
and whose content marshal can hold exactly, are cached; ruamel is imported on a miss only.
"""

# ruamel loads only when a text is parsed: a cached text never needs it.
# ruff: noqa: PLC0415

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from specs.errors import SourceRef, SpecError, SpecErrors
from specs.store import MarshalStore, file_identity, package_origin

_DUPLICATE_KEY = re.compile(r'found duplicate key "(?P<key>.*?)"')


@dataclass(frozen=True)
class SpecText:
    """The text of one spec input, as read from a file or stdin."""

    name: str  # how errors name it: the path as the user gave it, or "<stdin>"
    path: str | None  # absolute path of the file; None for stdin
    base_dir: str  # relative workspace paths written in this text resolve against it
    text: str


@dataclass(frozen=True)
class Document:
    """One non-empty YAML document of a spec file, with the positions of what it holds."""

    name: str
    base_dir: str
    node: Any  # where each entry was written: see `_positions`
    data: Any  # the content as plain dicts, lists, str, int, float, bool, None, dates
    start: SourceRef

    def locate(self, path: Sequence[Any], *, key: bool = False) -> SourceRef:
        """Where the entry at `path` was written: its key (`key=True`) or its value.

        A path that goes beyond what the file holds (a missing key) stops at the deepest entry
        that exists, so the position is still close to the problem.
        """
        node = self.node
        line, column = self.start.line, self.start.column
        for part in path:
            found = _child(node, part, key=key)
            if found is None:
                break
            (line, column), node = found
        return SourceRef(self.name, line, column)

    def has(self, path: Sequence[Any]) -> bool:
        """Whether this document writes the entry at `path` (a chain of mapping keys)."""
        data = self.data
        for part in path:
            if not isinstance(data, dict) or part not in data:
                return False
            data = data[part]
        return True


def read_documents(source: SpecText, cache_dir: str | None = None) -> list[Document]:
    """Parse every document of `source`, skipping empty ones.

    Raises `SpecErrors` with the located problem when the text is not valid YAML. With
    `cache_dir`, a text read before (same bytes, same parser) comes from there instead.
    """
    cache = _Cache(cache_dir, source.text) if cache_dir else None
    cached = cache.read() if cache else None
    if cached is None:
        cached = _parse(source)
        if cache:
            cache.write(cached)
    return [
        Document(source.name, source.base_dir, node, data, SourceRef(source.name, line, column))
        for line, column, data, node in cached
    ]


# One document as plain data: (line, column) where it starts, its content, its positions.
_Parsed = list[tuple[int, int, Any, Any]]


def _parse(source: SpecText) -> _Parsed:
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.reader import ReaderError

    try:
        parsed = _compose_and_construct(source.text)
    except MarkedYAMLError as error:
        raise SpecErrors([_yaml_error(source.name, error)]) from error
    except ReaderError as error:  # a character YAML does not allow: point at it
        raise SpecErrors([_character_error(source, error)]) from error
    except Exception as error:  # a constructor failure such as a malformed tagged scalar
        raise SpecErrors(
            [
                SpecError(
                    SourceRef(source.name, 1, 1),
                    "",
                    f"cannot read YAML: {error}",
                    "fix the value or remove its explicit tag",
                )
            ]
        ) from error
    documents: _Parsed = []
    for node, root in parsed:
        if root is None:
            continue  # an empty document between two '---' lines
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        start = SourceRef(source.name, line, column)
        budget = _Budget(MAX_VALUES)
        try:
            data = _plain(root, budget)
            positions = _positions(root, _Budget(MAX_VALUES))
        except _TooManyValuesError:
            raise SpecErrors(
                [
                    SpecError(
                        start,
                        "",
                        f"this document expands to more than {MAX_VALUES} values"
                        " (each YAML alias repeats everything its anchor holds)",
                        "write the values out, or use fewer, less nested aliases",
                    )
                ]
            ) from None
        documents.append((line, column, data, positions))
    return documents


@functools.cache
def _round_trip_collections() -> tuple[Any, Any]:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    return CommentedMap, CommentedSeq


def _positions(value: Any, budget: _Budget) -> Any:
    """Where each entry of a round-trip tree was written, as plain tuples `_child` reads:
    a mapping is (0, line, column, {key: (key line, key column, value line, value column) or
    None when merged in with '<<', whether the value is empty, the value's positions}); a
    sequence (1, {index: ((line, column), the item's positions)}); anything else None."""
    commented_map, commented_seq = _round_trip_collections()
    budget.spend()
    if isinstance(value, commented_map):
        recorded = value.lc.data or {}
        entries = {}
        for key in value:
            at = recorded.get(key)
            entries[_plain_key(key, _Budget(MAX_VALUES))] = (
                None if at is None else (at[0], at[1], at[2], at[3]),
                value[key] is None,
                _positions(value[key], budget),
            )
        return (0, value.lc.line, value.lc.col, entries)
    if isinstance(value, commented_seq):
        recorded = value.lc.data or {}
        return (
            1,
            {
                index: ((recorded[index][0], recorded[index][1]), _positions(item, budget))
                for index, item in enumerate(value)
                if index in recorded
            },
        )
    return None


@functools.cache
def _ruamel_origin() -> str | None:
    return package_origin("ruamel.yaml")


class _Cache:
    """One spec text's parse, stored under `directory` by its SHA-256 (and the parser's files:
    a changed ruamel or this module never reads an old entry)."""

    FORMAT = b"clawker-spec-cache-1"

    def __init__(self, directory: str, text: str) -> None:
        digest = hashlib.sha256(self.FORMAT)
        for origin in (__file__, _ruamel_origin()):
            digest.update(b"\0" + file_identity(origin).encode())
        digest.update(b"\0" + text.encode("utf-8", "surrogatepass"))
        self.store = MarshalStore(directory, digest.hexdigest())

    def read(self) -> _Parsed | None:
        loaded = self.store.read()
        return loaded if isinstance(loaded, list) else None

    def write(self, parsed: _Parsed) -> None:
        self.store.write(parsed)


def _character_error(source: SpecText, error: Any) -> SpecError:
    before = source.text[: max(0, error.position)]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    code = error.character if isinstance(error.character, int) else ord(str(error.character))
    return SpecError(
        SourceRef(source.name, line, column),
        "",
        f"control character U+{code:04X} is not allowed in YAML text",
        'remove it, or write it as an escape inside double quotes (e.g. "\\x07")',
    )


MAX_VALUES = 100_000  # values (after alias expansion) in one document; specs hold hundreds


class _TooManyValuesError(Exception):
    pass


class _Budget:
    """How many more values `_plain` may make: an alias bomb (anchors of anchors) stops here
    instead of growing to gigabytes."""

    def __init__(self, left: int) -> None:
        self.left = left

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TooManyValuesError


def _compose_and_construct(text: str) -> list[tuple[Any, Any]]:
    """Every document's node (it knows where the document starts, even a bare scalar) and the
    round-trip tree built from it, parsing the text once.

    Each node is constructed as soon as it is composed, as `load_all` does. A construction error
    (a duplicate key, a malformed tagged scalar) is raised only once the whole text has composed,
    so a syntax error anywhere in the file is still the one reported.
    """
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    parsed: list[tuple[Any, Any]] = []
    failure: Exception | None = None
    for node in yaml.compose_all(text):
        if failure is not None:
            continue
        try:
            parsed.append((node, yaml.constructor.construct_document(node)))
        except Exception as error:  # raised below, once the rest has composed
            failure = error
    if failure is not None:
        raise failure
    return parsed


def _child(node: Any, part: Any, *, key: bool) -> tuple[tuple[int, int], Any] | None:
    """The 1-based position of `node[part]` (its key or its value) and the child's positions;
    `node` is what `_positions` made."""
    if node is None:
        return None
    if node[0] == 0:
        _, map_line, map_column, entries = node
        if isinstance(part, list | dict) or part not in entries:
            return None
        recorded, empty, child = entries[part]
        if recorded is None:  # merged in with '<<': it has no position of its own here
            return (map_line + 1, map_column + 1), child
        # An empty value has no text of its own; ruamel places it where the next line begins.
        on_key = key or (empty and recorded[2] > recorded[0])
        line, column = (recorded[0], recorded[1]) if on_key else (recorded[2], recorded[3])
        return (line + 1, column + 1), child
    items = node[1]
    if type(part) is int and part in items:
        (line, column), child = items[part]
        return (line + 1, column + 1), child
    return None


_STANDARD_TAGS: dict[str, Any] = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
}


@functools.cache
def _round_trip_scalars() -> tuple[Any, Any]:
    from ruamel.yaml.comments import TaggedScalar
    from ruamel.yaml.scalarbool import ScalarBoolean

    return TaggedScalar, ScalarBoolean


def _plain(value: Any, budget: _Budget) -> Any:
    """Turn ruamel's round-trip types into the builtin types that validation expects."""
    tagged_scalar, scalar_boolean = _round_trip_scalars()
    budget.spend()
    if isinstance(value, dict):
        return {_plain_key(k, budget): _plain(v, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(item, budget) for item in value]
    if isinstance(value, tagged_scalar):
        # `!!str 12` is YAML for the string "12"; another tag stays a TaggedScalar, which
        # validation reports as the wrong type.
        convert = _STANDARD_TAGS.get(str(value.tag.value))
        if convert is not None:
            try:
                return convert(value.value)
            except ValueError:
                return value
        return value
    if isinstance(value, bool | scalar_boolean):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value  # None, or a date, which validation reports as not a string


def _plain_key(key: Any, budget: _Budget) -> Any:
    plain = _plain(key, budget)
    return tuple(plain) if isinstance(plain, list) else plain


def _yaml_error(name: str, error: Any) -> SpecError:
    from ruamel.yaml.constructor import DuplicateKeyError

    mark = error.problem_mark or error.context_mark
    source = SourceRef(name, mark.line + 1, mark.column + 1) if mark else SourceRef(name, 1, 1)
    problem = (error.problem or str(error)).strip()
    if isinstance(error, DuplicateKeyError):
        match = _DUPLICATE_KEY.search(problem)
        duplicate = match.group("key") if match else "?"
        return SpecError(source, "", f"duplicate key '{duplicate}'", "keep only one of them")
    hint = "check indentation, quoting and brackets"
    if "\\t" in problem or "\t" in problem:
        hint = "indent with spaces, not tabs"
    elif error.context and error.context_mark is not None and error.problem_mark is not None:
        opened = error.context_mark
        hint = f"{error.context} that starts at line {opened.line + 1}, column {opened.column + 1}"
    return SpecError(source, "", f"invalid YAML: {problem}", hint)

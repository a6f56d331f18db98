"""Checking one document: its envelope first, then the model of its kind.

Pydantic reports a problem by `loc`, a path of keys and indices into the document. Each one
becomes a `SpecError` located at the YAML key or value that path names, worded for a user:
pydantic's own text never reaches them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from specs import values
from specs.documents import Document
from specs.errors import SourceRef, SpecError
from specs.models import DOCUMENT_MODELS, AgentDocument, ProjectDocument
from specs.resolved import API_VERSION

_M = TypeVar("_M", bound=BaseModel)
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

# What a pydantic type error expected, in the words of a YAML user.
_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "a whole number",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_MISSING_HINTS = {
    "metadata": "add metadata: {name: <name>}",
    "metadata.name": "add name: <name> under metadata",
}


@dataclass(frozen=True)
class ProjectDeclaration:
    """A `kind: Project` document; `model` is None when the document has errors."""

    document: Document
    name: str | None  # a valid metadata.name, kept even when other parts of the document fail
    model: ProjectDocument | None


@dataclass(frozen=True)
class AgentDeclaration:
    """A `kind: Agent` document; `model` is None when the document has errors."""

    document: Document
    name: str | None
    project: str | None  # a valid metadata.project
    project_written: bool  # False means "default to the only declared project"
    model: AgentDocument | None

    @property
    def source(self) -> SourceRef:
        """Where the document begins: its `kind` key."""
        return self.document.locate(("kind",), key=True)


Declaration = ProjectDeclaration | AgentDeclaration


def validate_document(document: Document) -> tuple[Declaration | None, list[SpecError]]:
    """Validate one document and say what it declares, as far as that can be told.

    The declaration is None when not even the kind is known; the errors are all the problems found.
    """
    data = document.data
    if not isinstance(data, dict):
        return None, [
            SpecError(
                document.start,
                "",
                "expected a mapping with apiVersion, kind, metadata and spec;"
                f" got {values.describe(data)}",
                "each document between '---' lines declares one Project or Agent",
            )
        ]
    errors = _envelope_errors(document, data) + list(_nul_errors(document, data, ()))
    errors += _size_errors(document, data)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in DOCUMENT_MODELS:
        return None, errors
    if kind == "Project":
        project = _validated(ProjectDocument, document, errors)
        name = project.metadata.name if project else _written(data, "name", values.project_name)
        return ProjectDeclaration(document, name, project), errors
    agent = _validated(AgentDocument, document, errors)
    metadata = data.get("metadata")
    return AgentDeclaration(
        document,
        agent.metadata.name if agent else _written(data, "name", values.agent_name),
        agent.metadata.project if agent else _written(data, "project", values.project_name),
        isinstance(metadata, dict) and metadata.get("project") is not None,
        agent,
    ), errors


def _nul_errors(document: Document, value: Any, path: tuple[Any, ...]) -> Iterator[SpecError]:
    """A NUL character (written as an escape, "\\0") ends a C string: Docker and the kernel
    refuse it in every name, path, label, environment value and argument, so no value may hold
    one. Refused here, before anything touches Docker."""
    if isinstance(value, str):
        if "\x00" in value:
            yield SpecError(
                document.locate(path),
                render_key_path(path),
                "a NUL character (\\0) is not allowed in a value",
                "remove the \\0 or \\x00 escape",
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                yield SpecError(
                    document.locate((*path, key), key=True),
                    render_key_path(path),
                    "a NUL character (\\0) is not allowed in a key",
                    "remove the \\0 or \\x00 escape",
                )
            yield from _nul_errors(document, item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_errors(document, item, (*path, index))


# Linux refuses an argument or an environment entry ("NAME=value") longer than MAX_ARG_STRLEN
# (32 pages: 131072 bytes with its NUL), and an exec whose arguments and environment together
# pass ARG_MAX (a quarter of the stack limit: 2 MiB by default) with E2BIG. A document may use
# half of that, leaving the rest to the other documents merged in and to clawker's own variables.
MAX_ENTRY_BYTES = 131071
MAX_EXEC_BYTES = 1024 * 1024


def _size_errors(document: Document, data: dict[Any, Any]) -> list[SpecError]:
    """Values the kernel would refuse when clawkerd runs a step or the agent's command: found
    here, at their line, rather than as E2BIG inside a started container."""
    errors: list[SpecError] = []
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return errors
    entries: list[tuple[tuple[Any, ...], int]] = []
    agent = spec.get("agent")
    if isinstance(agent, dict):
        env = agent.get("env")
        if isinstance(env, dict):
            for name, value in env.items():
                if isinstance(name, str) and isinstance(value, str):
                    size = len(name.encode()) + 1 + len(value.encode())
                    entries.append((("spec", "agent", "env", name), size))
        for script in ("post_init", "pre_run"):
            if isinstance(agent.get(script), str):
                entries.append((("spec", "agent", script), len(agent[script].encode())))
    command = spec.get("command")
    if isinstance(command, list):
        for index, arg in enumerate(command):
            if isinstance(arg, str):
                entries.append((("spec", "command", index), len(arg.encode())))
    for path, size in entries:
        if size > MAX_ENTRY_BYTES:
            errors.append(
                SpecError(
                    document.locate(path),
                    render_key_path(path),
                    f"{size} bytes is longer than Linux allows for one argument or environment "
                    f"entry ({MAX_ENTRY_BYTES} bytes)",
                    "put the text in a file in the workspace and read it from there",
                )
            )
    total = sum(size + 8 for _, size in entries)  # each string and its pointer
    if not errors and total > MAX_EXEC_BYTES:
        errors.append(
            SpecError(
                document.locate(("spec",)),
                "spec",
                f"the environment, scripts and command of this document take {total} bytes; "
                f"an exec allows about 2 MiB in all, and a document may use {MAX_EXEC_BYTES}",
                "move large values into files in the workspace",
            )
        )
    return errors


def _validated(model: type[_M], document: Document, errors: list[SpecError]) -> _M | None:
    """The document as `model`, or None after adding each of its problems to `errors`."""
    try:
        return model.model_validate(document.data)
    except ValidationError as error:
        errors.extend(_located(item, model, document) for item in error.errors())
        return None


def _envelope_errors(document: Document, data: dict[Any, Any]) -> list[SpecError]:
    errors = []
    if "apiVersion" not in data:
        errors.append(
            SpecError(
                document.start, "apiVersion", "missing apiVersion", f"add apiVersion: {API_VERSION}"
            )
        )
    elif data["apiVersion"] != API_VERSION:
        errors.append(
            SpecError(
                document.locate(("apiVersion",)),
                "apiVersion",
                f"unsupported apiVersion {values.shown(data['apiVersion'])}",
                f"use apiVersion: {API_VERSION}",
            )
        )
    kinds = ", ".join(sorted(DOCUMENT_MODELS))
    if "kind" not in data:
        errors.append(
            SpecError(document.start, "kind", "missing kind", "add kind: Project or kind: Agent")
        )
    elif not isinstance(data["kind"], str) or data["kind"] not in DOCUMENT_MODELS:
        kind = data["kind"]
        guess = values.closest(kind, DOCUMENT_MODELS) if isinstance(kind, str) else None
        errors.append(
            SpecError(
                document.locate(("kind",)),
                "kind",
                f"unknown kind {values.shown(kind)}; supported kinds: {kinds}",
                f"did you mean '{guess}'?" if guess else None,
            )
        )
    return errors


def _written(data: dict[Any, Any], key: str, rule: Callable[[str], str]) -> str | None:
    """metadata.<key> as written, if it is a valid name, from a document that failed validation."""
    metadata = data.get("metadata")
    value = metadata.get(key) if isinstance(metadata, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return rule(value)
    except PydanticCustomError:
        return None


def _located(item: ErrorDetails, model: type[BaseModel], document: Document) -> SpecError:
    loc = tuple(item["loc"])
    on_key = bool(loc) and loc[-1] == "[key]"  # the key of a mapping entry is wrong, not its value
    path = loc[:-1] if on_key else loc
    key_path = render_key_path(path)
    kind, value = item["type"], item["input"]
    if kind == values.ERROR_TYPE:
        context = item.get("ctx") or {}
        return SpecError(
            document.locate(path, key=on_key), key_path, context["message"], context.get("hint")
        )
    if kind in ("extra_forbidden", "invalid_key"):
        known = _known_keys(model, path[:-1])
        guess = values.closest(str(path[-1]), known)
        hint = f"did you mean '{guess}'?" if guess else f"known keys: {', '.join(known)}"
        return SpecError(
            document.locate(path, key=True), key_path, f"unknown key '{path[-1]}'", hint
        )
    if kind == "missing":
        return SpecError(
            document.locate(path[:-1], key=True),
            key_path,
            f"missing required key '{path[-1]}'",
            _MISSING_HINTS.get(key_path, f"add {path[-1]}: <value>"),
        )
    expected = _EXPECTED.get(kind)
    if expected is None:  # a safety net: every error our models raise is handled above
        return SpecError(document.locate(path), key_path, f"invalid value {values.describe(value)}")
    return SpecError(
        document.locate(path),
        key_path,
        f"expected {expected}, got {values.describe(value)}",
        _type_hint(expected, value),
    )


def _type_hint(expected: str, value: Any) -> str | None:
    if expected == "a string" and isinstance(value, bool):
        return f"quote it: '{'true' if value else 'false'}'"
    if expected == "a string" and isinstance(value, int | float):
        return f"quote it: '{value}'"
    if expected == "a list" and isinstance(value, str):
        return f"write a list: {values.flow_list([value])}"
    if expected == "true or false" and isinstance(value, str):
        return "write true or false, without quotes"
    if value is None:
        empty = {"a list": "[]", "a mapping": "{}", "a string": "''"}.get(expected)
        return f"write {empty} or remove the key" if empty else "give it a value or remove the key"
    return None


def _known_keys(model: type[BaseModel], path: Sequence[Any]) -> list[str]:
    """The keys the model accepts at `path`, as they are written in YAML."""
    current = model
    for part in path:
        field = _field(current, part)
        nested = field.annotation if field else None
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return []
        current = nested
    return [field.alias or name for name, field in current.model_fields.items()]


def _field(model: type[BaseModel], key: Any) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def render_key_path(path: Sequence[Any]) -> str:
    """`spec.command[0]`-style path; keys that are not plain words are quoted: `labels["a.b"]`."""
    rendered = ""
    for part in path:
        if type(part) is int:
            rendered += f"[{part}]"
        elif isinstance(part, str) and _SIMPLE_KEY.match(part):
            rendered += f".{part}" if rendered else part
        else:
            rendered += f"[{json.dumps(str(part))}]"
    return rendered

"""The resolved agent: what merging produces and what the rest of clawker plans from.

Plain frozen dataclasses, so the commands that only read specs (`diff`, `apply` with nothing to
do, `get agents -f`) never import pydantic: the document models (specs.models) validate what a
file says, and merging turns a valid result into these. Each section mirrors its document
model's fields and defaults (tests/unit/test_specs_resolved.py holds the two together).

`to_plain` and `from_plain` turn a tree of them into marshal-able data and back: the resolved
cache (specs.setcache) keeps a SpecSet that way, and merging builds one from pydantic's dump.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Literal, TypeVar

from specs.errors import SourceRef

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_IMAGE",
    "AgentRuntime",
    "ApiKeySource",
    "BuildSpec",
    "ClaudeCodeConfig",
    "ClaudeCodeSpec",
    "DesiredAgent",
    "FirewallSpec",
    "GitCredentials",
    "ResolvedWorkspace",
    "SecuritySpec",
    "WorkspaceMode",
    "from_plain",
    "to_plain",
]

API_VERSION = "clawker.dev/v1alpha1"
DEFAULT_BASE_IMAGE = "buildpack-deps:bookworm-scm"


class WorkspaceMode(StrEnum):
    """How the agent sees the workspace: the host directory itself, or a copy in a volume."""

    BIND = "bind"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class BuildSpec:
    """`spec.build`: what goes into the project's image."""

    base_image: str = DEFAULT_BASE_IMAGE
    packages: tuple[str, ...] = ()
    harness: str = "claude"  # "claude" or "none" (the document model allows no other)


@dataclass(frozen=True)
class ClaudeCodeConfig:
    """`spec.agent.claude_code.config`: what a new config volume starts with."""

    strategy: Literal["copy", "fresh"] = "copy"


@dataclass(frozen=True)
class ApiKeySource:
    """`spec.agent.claude_code.api_key`: where the control plane reads the API key on the host
    (exactly one of the two is set); the key itself never enters the agent."""

    from_env: str | None = None
    from_file: str | None = None

    def describe(self) -> str:
        """The source as a user reads it, never the key: `env ANTHROPIC_API_KEY`, `file ~/k`."""
        return f"env {self.from_env}" if self.from_env is not None else f"file {self.from_file}"


@dataclass(frozen=True)
class ClaudeCodeSpec:
    """`spec.agent.claude_code`: how the config volume is seeded, and the API key's source."""

    config: ClaudeCodeConfig = field(default_factory=ClaudeCodeConfig)
    use_host_auth: bool = False
    api_key: ApiKeySource | None = None


@dataclass(frozen=True)
class AgentRuntime:
    """`spec.agent`: the agent's environment and the scripts clawkerd runs for it."""

    env: dict[str, str] = field(default_factory=dict)
    post_init: str = ""
    pre_run: str = ""
    enable_shared_dir: bool = False
    claude_code: ClaudeCodeSpec = field(default_factory=ClaudeCodeSpec)


@dataclass(frozen=True)
class FirewallSpec:
    """`spec.security.firewall`: domains added to the harness's built-in allowlist (sorted)."""

    add_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class GitCredentials:
    """`spec.security.git_credentials`: which host credentials the agent may use (never hold)."""

    forward_https: bool = True
    forward_ssh: bool = True
    forward_gpg: bool = True
    copy_git_config: bool = True


@dataclass(frozen=True)
class SecuritySpec:
    """`spec.security`: the firewall allowlist, extra capabilities and git credentials."""

    firewall: FirewallSpec = field(default_factory=FirewallSpec)
    cap_add: tuple[str, ...] = ()
    git_credentials: GitCredentials = field(default_factory=GitCredentials)


@dataclass(frozen=True)
class ResolvedWorkspace:
    """The workspace an agent mounts: an absolute, symlink-free path that exists."""

    path: str
    mode: WorkspaceMode = WorkspaceMode.BIND


@dataclass(frozen=True)
class DesiredAgent:
    """One agent as the user wants it: its Agent document merged over its Project's, resolved."""

    project: str
    name: str
    source: SourceRef  # where the Agent document begins
    workspace: ResolvedWorkspace
    labels: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ("claude",)
    build: BuildSpec = field(default_factory=BuildSpec)
    agent: AgentRuntime = field(default_factory=AgentRuntime)
    security: SecuritySpec = field(default_factory=SecuritySpec)

    @property
    def key(self) -> str:
        """The agent's identity across specs and Docker: `project/name`."""
        return f"{self.project}/{self.name}"

    @property
    def container_name(self) -> str:
        """The name of the agent's container."""
        return f"clawker.{self.project}.{self.name}"


# -- plain data ----------------------------------------------------------------------------------
# Exact types, not isinstance: a StrEnum is a str, and is written as its value below.
_LEAVES = frozenset({str, int, float, bool, type(None)})


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's field names in order; None for any other type. Once per class: asking
    `dataclasses.fields` per value was most of the time a diff spent hashing specs."""
    if kind not in _FIELD_NAMES:
        is_dataclass = dataclasses.is_dataclass(kind)
        _FIELD_NAMES[kind] = (
            tuple(f.name for f in dataclasses.fields(kind)) if is_dataclass else None
        )
    return _FIELD_NAMES[kind]


def to_plain(value: Any) -> Any:
    """A dataclass tree as JSON values: dicts, lists, enums as their values. What marshal holds
    exactly, what `from_plain` reads back, and what the spec hash is computed over."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    names = _field_names(kind)
    if names is not None:
        return {name: to_plain(getattr(value, name)) for name in names}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    return value


T = TypeVar("T")


def from_plain(cls: type[T], data: Any) -> T:
    """The `cls` that `data` describes (the output of `to_plain`, or pydantic's dump of the
    document model of the same shape). Keys `cls` does not have are an error."""
    return typing.cast(T, _build(cls, data))


def _build(kind: Any, data: Any) -> Any:
    return _builder(kind)(data)


def _same(data: Any) -> Any:
    return data  # str, int, bool, a Literal's value


@functools.cache
def _builder(kind: Any) -> Callable[[Any], Any]:
    """How to build a value of annotation `kind`, worked out once per annotation: asking
    `typing` about every field of every agent was most of reading the resolved cache."""
    origin = typing.get_origin(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        cls: type = kind
        fields = {name: _builder(hint) for name, hint in _hints(cls).items()}
        # A key the class does not have is a KeyError, as it always was.
        return lambda data: cls(**{name: fields[name](item) for name, item in data.items()})
    if isinstance(kind, type) and issubclass(kind, Enum):
        enum: type[Enum] = kind
        return enum
    if origin is tuple:
        (item_kind, _) = typing.get_args(kind)
        item = _builder(item_kind)
        return lambda data: tuple(item(value) for value in data)
    if origin is dict:
        _, item_kind = typing.get_args(kind)
        value = _builder(item_kind)
        return lambda data: {key: value(item) for key, item in data.items()}
    if origin in (typing.Union, types.UnionType):
        (inner_kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        inner = _builder(inner_kind)
        return lambda data: None if data is None else inner(data)
    return _same


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)

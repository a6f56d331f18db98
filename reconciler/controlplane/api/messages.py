"""The typed CLI ↔ control plane API: one dataclass per request and reply, one enum per state.

Both processes import this module and nothing else to speak to each other: the client
(`api/client.py`) has one method per call, the daemon one handler per call, and the JSON lines
on the socket are these dataclasses, field for field (`to_wire` / `from_wire`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

__all__ = [
    "AgentRuntimeSpec",
    "AgentRuntimeState",
    "Bootstrap",
    "Hello",
    "Phase",
    "StartReport",
    "StartStatus",
    "StepRecord",
    "from_wire",
    "to_wire",
]


class Phase(StrEnum):
    """Where one container start is: pending → initializing → ready | failed."""

    PENDING = "pending"
    INITIALIZING = "initializing"
    READY = "ready"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (Phase.READY, Phase.FAILED)


@dataclass(frozen=True)
class AgentRuntimeSpec:
    """What the CP needs to drive an agent's starts: written only by apply's UpdateRuntime step
    (a plan step `diff` shows) and kept across restarts. The live allowlist is the firewall's
    own state (UpdateFirewall), not part of this."""

    agent_key: str
    post_init: str = ""
    pre_run: str = ""
    workspace: str = ""
    snapshot: bool = False  # the workspace volume's root must be handed to the agent user
    # security.git_credentials, and the host user whose credentials and agents are forwarded
    # (captured by the CLI that applied: the CP itself runs as root).
    forward_https: bool = False
    forward_ssh: bool = False
    forward_gpg: bool = False
    copy_git_config: bool = False
    host_uid: int = -1
    host_gid: int = -1
    host_home: str = ""
    ssh_auth_sock: str = ""
    gpg_extra_socket: str = ""
    # agent.claude_code.api_key: where the API relay reads the key (a name or a path, never
    # the key itself, which is read on the host when it is needed and kept nowhere).
    api_key_env: str = ""
    api_key_file: str = ""

    @property
    def api_relay(self) -> bool:
        return bool(self.api_key_env or self.api_key_file)


@dataclass(frozen=True)
class AgentRuntimeState:
    """One agent's runtime as the control plane holds it (`runtime_state`): what `diff`
    compares with the specs, like Docker's observed state."""

    agent_key: str
    spec: AgentRuntimeSpec | None = None  # None: apply never wrote one
    allowlist: tuple[str, ...] | None = None  # the enforced one; None: the firewall has none
    post_init_done: bool = False  # post_init succeeded on the agent's current config volume


@dataclass(frozen=True)
class StepRecord:
    name: str
    ok: bool
    exit_code: int
    output_tail: str = ""
    seconds: float = 0.0  # how long the step ran in the container


@dataclass(frozen=True)
class StartStatus:
    """One container start as the CP saw it: pending → steps → ready | failed."""

    container_id: str
    agent_key: str
    started_at: str
    phase: Phase
    detail: str = ""
    steps: tuple[StepRecord, ...] = field(default_factory=tuple)
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds: enrol, dial, session
    initialized: bool = False  # this start's init steps and post_init are done
    # The runtime spec this start was driven with: `get agents` compares it with the current
    # one to show what takes effect at the next start. None: not known (an older record).
    runtime: AgentRuntimeSpec | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [asdict(s) for s in self.steps]
        data["timings"] = dict(self.timings)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StartStatus:
        return cls(
            container_id=data["container_id"],
            agent_key=data["agent_key"],
            started_at=data["started_at"],
            phase=Phase(data["phase"]),
            detail=data.get("detail", ""),
            steps=tuple(StepRecord(**s) for s in data.get("steps", ())),
            timings=dict(data.get("timings", {})),
            initialized=bool(data.get("initialized", False)),
            runtime=from_wire(AgentRuntimeSpec, data["runtime"]) if data.get("runtime") else None,
        )


@dataclass(frozen=True)
class StartReport:
    """The CP's verdict on one running container, as `get agents` and readiness need it.

    `firewall_enrolled`: the kernel's policy map holds the cgroup the CP read from /proc for
    this container's current start. `initialized`: the once-per-container steps and post_init
    of this start are done (false while post_init runs)."""

    container_id: str
    status: StartStatus | None
    firewall_enrolled: bool = False
    initialized: bool = False


@dataclass(frozen=True)
class Bootstrap:
    """A new container's bootstrap material, issued by the CP's PKI for `container_id`: written
    by the CP into the container's host directory (`archive_b64` empty: the CLI never sees the
    key), or, for a container made without one, a tar archive for `put_archive` at / (base64)."""

    container_id: str
    archive_b64: str = ""


@dataclass(frozen=True)
class Hello:
    """`ping`'s answer: who this control plane is, so a CLI can refuse to drive another."""

    pid: int
    uptime: float
    # clawker's version and where its code lives (one checkout vs another); a control plane
    # older than this field sends none, and is restarted like any other version
    version: str = ""
    settings: Mapping[str, str] = field(default_factory=dict)  # Settings.agreement()
    busy: int = 0  # starts in flight: a restart for a new version waits for 0


T = TypeVar("T")


# Exact types, not isinstance: a StrEnum is a str, and is sent as its value below.
_LEAVES = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's field names in order, once per class; None for any other type."""
    if kind not in _FIELD_NAMES:
        is_dataclass = dataclasses.is_dataclass(kind)
        _FIELD_NAMES[kind] = (
            tuple(f.name for f in dataclasses.fields(kind)) if is_dataclass else None
        )
    return _FIELD_NAMES[kind]


def to_wire(value: Any) -> Any:
    """Dataclasses as dicts, enums as their values, tuples as lists: what json.dumps takes."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    names = _field_names(kind)
    if names is not None:
        return {name: to_wire(getattr(value, name)) for name in names}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def from_wire(cls: type[T], data: Any) -> T:
    """The dataclass `cls` from its wire form (recursively, by the field annotations)."""
    return typing.cast(T, _decode(cls, data))


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """A dataclass's fields and their resolved annotations, worked out once per class
    (`get_type_hints` evaluates every annotation string: it was most of decoding 100 agents)."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _decode(tp: Any, data: Any) -> Any:
    return _decoder(tp)(data)


def _identity(data: Any) -> Any:
    return data


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    """How to decode a value of annotation `tp`, worked out once per annotation: asking
    `typing` what each field's annotation is, per value, was most of decoding 100 agents."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _decoder(options[0])
        return lambda data: None if data is None else inner(data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        cls: type = tp
        fields = tuple((name, _decoder(hint)) for name, hint in _fields(cls))
        return lambda data: cls(**{n: decode(data[n]) for n, decode in fields if n in data})
    if origin is tuple:
        item = _decoder(typing.get_args(tp)[0])
        return lambda data: tuple(item(v) for v in data)
    if origin is list:
        element = _decoder(typing.get_args(tp)[0])
        return lambda data: [element(v) for v in data]
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        kv = typing.get_args(tp)
        value = _decoder(kv[1]) if kv else _identity
        return lambda data: {k: value(v) for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        enum: type[StrEnum] = tp
        return enum
    return _identity

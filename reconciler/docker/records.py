"""What some of the Docker port's calls answer and take that `diff` never needs: a container's
mounts, its runtime state, its terminal, an exec, an event. reconciler.docker.engine names
them too; they load on first use (a diff's start-up makes a dataclass in ~1 ms each).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.docker.engine import MountSpec

__all__ = ["ContainerEvent", "ContainerMounts", "ExecRequest", "RuntimeInfo", "TerminalConfig"]


@dataclass(frozen=True)
class ContainerMounts:
    """A container's id, labels, state and mounts, as Docker reports them (inspect)."""

    id: str
    labels: Mapping[str, str]
    state: str
    mounts: tuple[MountSpec, ...]


@dataclass(frozen=True)
class RuntimeInfo:
    """What the runtime controller needs of one container: is it up, since when, where."""

    id: str
    name: str
    labels: Mapping[str, str]
    running: bool
    started_at: str
    ip: str  # on the agent network; "" when not attached
    exit_code: int
    pid: int = 0  # the container's first process on the host (0 when not running)
    gateway: str = ""  # the agent network's gateway: where the firewall's resolver listens


@dataclass(frozen=True)
class TerminalConfig:
    """How a container's stdio is wired: a TTY (one raw stream) or not (multiplexed frames)."""

    tty: bool
    stdin_open: bool
    running: bool
    auto_remove: bool = False


@dataclass(frozen=True)
class ExecRequest:
    """One `exec`: the process, who runs it, where, and how its stdio is wired."""

    argv: tuple[str, ...]
    user: str = ""
    workdir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin: bool = False


@dataclass(frozen=True)
class ContainerEvent:
    id: str
    action: str  # start | die | destroy | ...
    labels: Mapping[str, str]
    time_nano: int = 0  # when Docker says it happened (ns since the epoch; 0: unknown)

"""What the control plane needs to drive an agent's starts, and when a change to it takes effect.

Pure data: the planner compares the spec the control plane holds (observed, like Docker's state)
with the one the agent's spec asks for, and classifies each difference by when it takes effect,
so `diff` can say it and `get agents` can show what the running start has not taken yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from reconciler.host.host_state import HostContext
from specs import DesiredAgent, WorkspaceMode

__all__ = [
    "AgentRuntimeSpec",
    "AgentRuntimeState",
    "Effect",
    "RuntimeDifference",
    "desired_runtime",
    "runtime_differences",
]


@dataclass(frozen=True)
class AgentRuntimeSpec:
    """What the CP needs to drive an agent's starts: written by `apply`'s UpdateRuntime step and
    kept across CP restarts. The live allowlist is the firewall's own state, not part of this."""

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentRuntimeSpec:
        """Lenient: a record written by another clawker version may lack fields (defaults) or
        carry others (ignored, like the allowlist older versions kept here)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class AgentRuntimeState:
    """One agent's runtime as the control plane holds it (the `runtime_state` API call)."""

    agent_key: str
    spec: AgentRuntimeSpec | None = None  # None: apply never wrote one
    allowlist: tuple[str, ...] | None = None  # the enforced one; None: the firewall has none
    post_init_done: bool = False  # post_init succeeded on the agent's current config volume

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent_key": self.agent_key,
            "spec": self.spec.as_dict() if self.spec else None,
            "allowlist": list(self.allowlist) if self.allowlist is not None else None,
            "post_init_done": self.post_init_done,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentRuntimeState:
        spec, allowlist = data.get("spec"), data.get("allowlist")
        return cls(
            agent_key=str(data["agent_key"]),
            spec=AgentRuntimeSpec.from_dict(spec) if spec else None,
            allowlist=tuple(allowlist) if allowlist is not None else None,
            post_init_done=bool(data.get("post_init_done")),
        )


class Effect(StrEnum):
    """When a change to a field takes effect; `diff` groups an agent's fields by it."""

    LIVE = "live"
    NEXT_START = "next start"
    POST_INIT_PENDING = "post_init pending"
    POST_INIT_DONE = "post_init done"
    REPLACE = "replace"

    @property
    def heading(self) -> str:
        """The group's line in a plan."""
        return _HEADINGS[self]

    @property
    def when(self) -> str:
        """The same, as a step's or a reason's tail."""
        return _WHEN[self]


_HEADINGS = {
    Effect.LIVE: "update in place (live)",
    Effect.NEXT_START: "update (takes effect at next start)",
    Effect.POST_INIT_PENDING: "update (post_init: not yet run — runs once at next start)",
    Effect.POST_INIT_DONE: "update (post_init: already ran — not re-run)",
    Effect.REPLACE: "forces replacement",
}
_WHEN = {
    Effect.LIVE: "live",
    Effect.NEXT_START: "takes effect at next start",
    Effect.POST_INIT_PENDING: "runs once at next start",
    Effect.POST_INIT_DONE: "already ran — not re-run",
    Effect.REPLACE: "forces replacement",
}


# Every field but the key, with what a change to it waits for. post_init is classified by the
# planner (whether it already ran on this agent's config volume).
_NEXT_START_FIELDS = {
    "pre_run": "pre_run",
    "workspace": "env wiring: workspace",
    "snapshot": "env wiring: workspace mode",
    "host_uid": "env wiring: host user",
    "host_gid": "env wiring: host group",
    "host_home": "env wiring: host home",
    "ssh_auth_sock": "env wiring: ssh agent socket",
    "gpg_extra_socket": "env wiring: gpg agent socket",
    "forward_https": "credentials: forward_https",
    "forward_ssh": "credentials: forward_ssh",
    "forward_gpg": "credentials: forward_gpg",
    "copy_git_config": "credentials: copy_git_config",
}


@dataclass(frozen=True)
class RuntimeDifference:
    field: str  # the AgentRuntimeSpec field
    label: str  # how a plan names it: `pre_run`, `env wiring: ssh agent socket`
    old: Any
    new: Any


def runtime_differences(
    old: AgentRuntimeSpec | None, new: AgentRuntimeSpec
) -> tuple[RuntimeDifference, ...]:
    """The fields that differ, in declaration order; `old` None (never written) compares with
    the defaults."""
    base = old if old is not None else AgentRuntimeSpec(new.agent_key)
    diffs = []
    for f in fields(AgentRuntimeSpec):
        if f.name == "agent_key":
            continue
        before, after = getattr(base, f.name), getattr(new, f.name)
        if before != after:
            label = "post_init" if f.name == "post_init" else _NEXT_START_FIELDS[f.name]
            diffs.append(RuntimeDifference(f.name, label, getattr(old, f.name, None), after))
    return tuple(diffs)


def desired_runtime(agent: DesiredAgent, host: HostContext) -> AgentRuntimeSpec:
    """The runtime spec `agent` asks for, with the host user clawker acts for."""
    creds = agent.security.git_credentials
    return AgentRuntimeSpec(
        agent_key=agent.key,
        post_init=agent.agent.post_init,
        pre_run=agent.agent.pre_run,
        workspace=agent.workspace.path,
        snapshot=agent.workspace.mode is WorkspaceMode.SNAPSHOT,
        forward_https=creds.forward_https,
        forward_ssh=creds.forward_ssh,
        forward_gpg=creds.forward_gpg,
        copy_git_config=creds.copy_git_config,
        host_uid=host.uid,
        host_gid=host.gid,
        host_home=host.home,
        ssh_auth_sock=host.ssh_auth_sock,
        gpg_extra_socket=host.gpg_extra_socket,
    )

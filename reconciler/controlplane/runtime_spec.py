"""The runtime spec an agent asks for, and when a change to it takes effect.

Pure: the planner compares the `AgentRuntimeSpec` (api/messages.py) the control plane holds,
observed like Docker's state, with `desired_runtime()`, and classifies each difference by when
it takes effect, so `diff` can say it and `get agents` can show what the running start has not
taken yet.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from reconciler.controlplane.api.messages import AgentRuntimeSpec
from reconciler.host.host_state import HostContext
from specs import DesiredAgent, WorkspaceMode

__all__ = [
    "Effect",
    "RuntimeDifference",
    "desired_runtime",
    "runtime_differences",
]


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


# How a plan names each field that waits for the next start. post_init is classified by the
# planner (whether it already ran on this agent's config volume); the key is not compared.
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
    "api_key_env": "api key source: environment variable",
    "api_key_file": "api key source: file",
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
    if old == new:  # the usual answer, for every agent of a no-op diff: one comparison
        return ()
    base = old if old is not None else AgentRuntimeSpec(new.agent_key)
    diffs = []
    for name in _COMPARED:
        before, after = getattr(base, name), getattr(new, name)
        if before != after:
            label = "post_init" if name == "post_init" else _NEXT_START_FIELDS[name]
            diffs.append(RuntimeDifference(name, label, getattr(old, name, None), after))
    return tuple(diffs)


# The fields `runtime_differences` compares, in declaration order: all but the key.
_COMPARED = tuple(f.name for f in fields(AgentRuntimeSpec) if f.name != "agent_key")


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
        api_key_env=_api_key_source(agent)[0],
        api_key_file=_api_key_source(agent)[1],
    )


def _api_key_source(agent: DesiredAgent) -> tuple[str, str]:
    """(variable, file) the API relay reads the agent's key from; ("", "") without a relay."""
    source = agent.agent.claude_code.api_key
    if source is None:
        return "", ""
    return source.from_env or "", source.from_file or ""

"""The CLI's side of the control plane API: one typed method per call.

Errors are distinct, because a person acts on each differently: the CP is not running (start it),
the socket is refused (run as root or join the clawker group), or the CP that answers runs other
settings or another version of clawker (stop it, or let the CLI restart it).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.controlplane.api.channel import (
    ApiError,
    ControlPlaneNotRunningError,
    ControlPlanePermissionError,
    call,
)
from reconciler.controlplane.api.messages import (
    AgentRuntimeSpec,
    AgentRuntimeState,
    Bootstrap,
    Hello,
    StartReport,
    from_wire,
    to_wire,
)
from reconciler.settings import code_identity

__all__ = [
    "ApiError",
    "ControlPlaneClient",
    "ControlPlaneMismatchError",
    "ControlPlaneNotRunningError",
    "ControlPlanePermissionError",
]


class ControlPlaneMismatchError(ApiError):
    """The control plane that answers runs with other settings (or another clawker)."""


class ControlPlaneClient:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def _call(self, method: str, **params: Any) -> Any:
        return call(self.path, method, to_wire(params), timeout=self.timeout)

    # -- the control plane itself ------------------------------------------------------------
    def ping(self) -> Hello:
        return from_wire(Hello, self._call("ping"))

    def alive(self) -> bool:
        try:
            self.ping()
        except ApiError:
            return False
        return True

    def check_agreement(self, settings: Mapping[str, str], hello: Hello | None = None) -> Hello:
        """Refuse a CP whose settings differ from this CLI's (`Settings.agreement()`); `hello`:
        its answer to a ping the caller already made (else one is made here)."""
        hello = hello or self.ping()
        if hello.version != code_identity():
            raise ControlPlaneMismatchError(
                f"the control plane (pid {hello.pid}) runs clawker {hello.version or '(older)'}, "
                f"this is {code_identity()}: `sudo clawker controlplane up` restarts it when no "
                "start is in flight (the firewall stays enforced meanwhile)"
            )
        differ = sorted(k for k in settings if hello.settings.get(k) != settings[k])
        if differ:
            lines = ", ".join(
                f"{k}: CP {hello.settings.get(k, '?')!r} vs here {settings[k]!r}" for k in differ
            )
            raise ControlPlaneMismatchError(
                f"the control plane (pid {hello.pid}) runs with other settings ({lines}); "
                "stop it with `clawker controlplane down` (it keeps the firewall enforced) and "
                "run again with the environment you mean"
            )
        return hello

    # -- agents ------------------------------------------------------------------------------
    def runtime_state(self) -> dict[str, AgentRuntimeState]:
        """Every agent's runtime as the CP holds it: what the planner compares with the specs."""
        raw: Mapping[str, Any] = self._call("runtime_state")
        return {key: from_wire(AgentRuntimeState, data) for key, data in raw.items()}

    def runtime_put(self, spec: AgentRuntimeSpec, *, fresh_config: bool = False) -> None:
        """apply's UpdateRuntime step; `fresh_config`: a new config volume (post_init not run)."""
        self._call("runtime_put", spec=spec, fresh_config=fresh_config)

    def forget_agents(self, keys: Iterable[str]) -> None:
        """Drop the runtime spec and firewall state of agents that no longer exist."""
        self._call("forget_agents", agents=list(keys))

    def issue_bootstrap(self, agent_key: str, container: str) -> tuple[str, bytes | None]:
        """A new container's bootstrap material (leaf, key, CA, single-use token), bound to the
        id of the container `container` names now (its name passes to a recreate's successor).
        The CP writes it into the container's host directory and answers (id, None); for a
        container made without one, (id, the archive to copy in at /)."""
        reply = from_wire(
            Bootstrap, self._call("issue_bootstrap", agent=agent_key, container=container)
        )
        archive = base64.b64decode(reply.archive_b64) if reply.archive_b64 else None
        return reply.container_id, archive

    def start_reports(
        self, container_ids: Sequence[str], *, firewall: bool = True
    ) -> dict[str, StartReport]:
        """The CP's verdict on each container's latest start (asking is also a trigger, unless
        the CP is driving that start already). `firewall=False` (the readiness wait, which
        polls) leaves `firewall_enrolled` False rather than inspect each container for it."""
        raw: Mapping[str, Any] = self._call(
            "status", containers=list(container_ids), firewall=firewall
        )
        return {cid: from_wire(StartReport, data) for cid, data in raw.items()}

    # -- firewall ----------------------------------------------------------------------------
    def firewall_allowlists(self) -> dict[str, tuple[str, ...]]:
        raw: Mapping[str, Sequence[str]] = self._call("firewall_allowlists")
        return {key: tuple(domains) for key, domains in raw.items()}

    def firewall_set(self, agent_key: str, domains: Sequence[str]) -> tuple[str, ...]:
        return tuple(self._call("firewall_set", agent=agent_key, domains=list(domains)))

    def firewall_status(self, agent: str = "") -> dict[str, Any]:
        """The firewall's state as data (`clawker firewall status -o json` prints it as is)."""
        result: dict[str, Any] = self._call("firewall_status", agent=agent)
        return result

    def firewall_list(self, agent: str = "") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("firewall_list", agent=agent)
        return result

    def firewall_change(self, verb: str, agent: str, **params: Any) -> dict[str, Any]:
        """add/remove (domains=), enable, disable, bypass (seconds=): the agent's new policy."""
        if verb not in {"add", "remove", "enable", "disable", "bypass"}:
            raise ValueError(f"no firewall verb {verb!r}")
        result: dict[str, Any] = self._call(f"firewall_{verb}", agent=agent, **params)
        return result

    def firewall_log(self, agent: str, after: int = 0) -> dict[str, Any]:
        """The agent's refusals with a sequence number above `after`, oldest first:
        `{"agent": key, "entries": [JournalEntry as data, ...]}`."""
        result: dict[str, Any] = self._call("firewall_log", agent=agent, after=after)
        return result

    def firewall_suggest(self, agent: str) -> dict[str, Any]:
        """The add_domains change that would allow what the agent was refused (a Suggestion)."""
        result: dict[str, Any] = self._call("firewall_suggest", agent=agent)
        return result

    # -- verify ------------------------------------------------------------------------------
    def verify(self, agent: str = "") -> list[dict[str, Any]]:
        """Run `clawker verify`'s probes in every live agent (or `agent`'s): one ProbeResult as
        data per probe. Takes seconds per agent: use a client with a long timeout."""
        result: list[dict[str, Any]] = self._call("verify", agent=agent)
        return result

"""What the control plane remembers of each agent's firewall across its own restarts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["AgentFirewall", "FirewallStore"]


@dataclass(frozen=True)
class AgentFirewall:
    """One agent's firewall policy: its allowlist, and whether it is disabled or bypassed."""

    agent_key: str
    domains: tuple[str, ...] = ()
    disabled: bool = False
    bypass_until: float = 0.0  # wall-clock seconds; 0: no bypass

    def bypass_left(self, now: float) -> float:
        return max(0.0, self.bypass_until - now)


class FirewallStore(Protocol):
    """Where agent policies persist (the control plane's registry)."""

    def firewall(self, agent_key: str) -> AgentFirewall | None: ...
    def put_firewall(self, state: AgentFirewall) -> None: ...
    def firewalls(self) -> list[AgentFirewall]: ...
    def forget_firewall(self, agent_key: str) -> None: ...

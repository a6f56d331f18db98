"""What the control plane remembers of each agent's firewall across its own restarts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["AgentFirewall", "BootInstant", "FirewallStore", "boot_now"]


@dataclass(frozen=True)
class AgentFirewall:
    """One agent's firewall policy: its allowlist, and whether it is disabled or bypassed."""

    agent_key: str
    domains: tuple[str, ...] = ()
    disabled: bool = False
    # A bypass deadline is on CLOCK_BOOTTIME (seconds) of one boot: no agent can set that clock
    # (SYS_TIME sets the wall clock), and a deadline from an earlier boot is over.
    bypass_until: float = 0.0  # 0: no bypass
    bypass_boot: str = ""  # the kernel's boot id when the bypass was set

    def bypass_left(self, now: BootInstant) -> float:
        if now.boot_id != self.bypass_boot:
            return 0.0
        return max(0.0, self.bypass_until - now.seconds)


@dataclass(frozen=True)
class BootInstant:
    """A moment on CLOCK_BOOTTIME, with the boot it belongs to."""

    boot_id: str
    seconds: float


def boot_now() -> BootInstant:
    """Now on CLOCK_BOOTTIME, the clock bpf_ktime_get_boot_ns() reads."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return BootInstant(boot_id, time.clock_gettime(time.CLOCK_BOOTTIME))


class FirewallStore(Protocol):
    """Where agent policies persist (the control plane's registry)."""

    def firewall(self, agent_key: str) -> AgentFirewall | None: ...
    def put_firewall(self, state: AgentFirewall) -> None: ...
    def firewalls(self) -> list[AgentFirewall]: ...

"""What the control plane remembers of each agent's firewall across its own restarts."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "MAX_BYPASS_SECONDS",
    "AgentFirewall",
    "BootInstant",
    "FirewallStore",
    "boot_now",
    "bypass_seconds",
]

# The longest bypass: long enough for any real job, short enough that the kernel's deadline
# (CLOCK_BOOTTIME ns in a u64) never comes near wrapping, and a forgotten bypass still ends.
MAX_BYPASS_SECONDS = 30 * 24 * 3600


def bypass_seconds(seconds: float) -> float:
    """`seconds` checked as a bypass length (0 ends a bypass); ValueError naming the limit."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a bypass lasts 0 (ends it) to 30 days; {seconds!r} is not a length")
    if seconds > MAX_BYPASS_SECONDS:
        raise ValueError(
            f"a bypass lasts at most 30 days (720h, {MAX_BYPASS_SECONDS} s); "
            f"{seconds:.0f} s is longer: ask for 720h or less, and again when it ends"
        )
    return float(seconds)


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
    def forget_firewall(self, agent_key: str) -> None: ...

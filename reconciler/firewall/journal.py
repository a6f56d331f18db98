"""What the firewall refused, per agent: the record behind `clawker firewall log` and `suggest`.

Three sources write here: the kernel's deny events (a connect, a datagram or a socket the BPF
programs refused, read from their ring buffer), and the resolver (a name off the allowlist
answered NXDOMAIN, and a query refused by the subdomain throttle). Each agent keeps its newest
`capacity` entries in memory; the sequence number is global and only grows, so a follower asks
for "everything after N" and never sees an entry twice or misses one that is still kept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DENIED", "NXDOMAIN", "THROTTLED", "FirewallJournal", "JournalEntry"]

DENIED = "denied"  # the kernel refused a connect, a datagram or a socket
NXDOMAIN = "nxdomain"  # the resolver answered a name off the allowlist NXDOMAIN
THROTTLED = "throttled"  # the resolver refused a query over the subdomain cap


@dataclass(frozen=True)
class JournalEntry:
    """One refusal. Fields that do not apply to its kind are empty."""

    seq: int
    at: float  # wall-clock seconds
    agent: str
    kind: str  # DENIED | NXDOMAIN | THROTTLED
    name: str = ""  # the queried name (resolver entries)
    qtype: str = ""
    address: str = ""  # the refused destination (kernel entries)
    port: int = 0
    protocol: str = ""  # tcp | udp | socket:<family>/<type>/<proto> ...
    hook: str = ""  # connect4, sendmsg4, connect6, sendmsg6, sock_create, setsockopt, wall, veth
    uid: int = -1  # -1 for a packet (wall, veth): no task is known where packets are seen
    command: str = ""  # the kernel's comm of the calling task

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FirewallJournal:
    """Per-agent ring of refusals, newest last."""

    def __init__(self, capacity: int = 1000, clock: Callable[[], float] = time.time) -> None:
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._entries: dict[str, deque[JournalEntry]] = {}

    def add(self, agent: str, kind: str, **fields: Any) -> JournalEntry:
        with self._lock:
            self._seq += 1
            entry = JournalEntry(self._seq, self._clock(), agent, kind, **fields)
            ring = self._entries.setdefault(agent, deque(maxlen=self._capacity))
            ring.append(entry)
            return entry

    def entries(self, agent: str, after: int = 0) -> list[JournalEntry]:
        """The agent's kept entries with a sequence number above `after`, oldest first."""
        with self._lock:
            return [e for e in self._entries.get(agent, ()) if e.seq > after]

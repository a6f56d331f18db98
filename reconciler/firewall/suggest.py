"""`clawker firewall suggest`: the `add_domains` change that would allow what an agent was
refused, for a person to review (pure: from the journal and the live allowlist).

Only names can be suggested: the allowlist holds names, and a refused address carries none (it
was never resolved through an allowed name, which is why it was refused). Such addresses are
listed apart, so the reviewer can find the name the program used. Throttled names are already
allowed; they are listed too, as a sign of a tunnel or of a client that needs an exact entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.firewall.allowlist import HARNESS_FLOOR, domain_allowed, normalise_domain
from reconciler.firewall.journal import DENIED, NXDOMAIN, THROTTLED, JournalEntry

__all__ = ["Refusal", "Suggestion", "suggest"]


@dataclass(frozen=True)
class Refusal:
    """One refused thing (a name, or an address and port) and how often."""

    what: str
    count: int
    last: float
    detail: str = ""  # e.g. the commands that tried


@dataclass(frozen=True)
class Suggestion:
    agent: str
    spec_domains: tuple[str, ...]  # the live allowlist without the harness floor
    add: tuple[Refusal, ...] = ()  # names to add to add_domains
    addresses: tuple[Refusal, ...] = ()  # refused destinations no allowed name gave
    throttled: tuple[Refusal, ...] = ()
    sockets: tuple[Refusal, ...] = field(default=())  # refused socket types (not allowable)


def _tally(entries: Iterable[tuple[str, JournalEntry]]) -> tuple[Refusal, ...]:
    seen: dict[str, list[JournalEntry]] = {}
    for key, entry in entries:
        seen.setdefault(key, []).append(entry)
    result = []
    for key, group in seen.items():
        commands = sorted({e.command for e in group if e.command})
        result.append(Refusal(key, len(group), max(e.at for e in group), ", ".join(commands)))
    return tuple(sorted(result, key=lambda r: r.last))


def suggest(agent: str, allowlist: Iterable[str], entries: Iterable[JournalEntry]) -> Suggestion:
    """What would allow the refusals in `entries`, given the agent's live `allowlist`."""
    live = tuple(normalise_domain(d) for d in allowlist)
    floor = {d for names in HARNESS_FLOOR.values() for d in names}
    entries = list(entries)
    names = [
        (e.name, e) for e in entries if e.kind == NXDOMAIN and not domain_allowed(e.name, live)
    ]
    refused = [
        (f"{e.address}:{e.port} {e.protocol}", e) for e in entries if e.kind == DENIED and e.address
    ]
    sockets = [(e.protocol, e) for e in entries if e.kind == DENIED and not e.address]
    throttled = [(e.name, e) for e in entries if e.kind == THROTTLED]
    return Suggestion(
        agent,
        tuple(d for d in live if d not in floor),
        _tally(names),
        _tally(refused),
        _tally(throttled),
        _tally(sockets),
    )

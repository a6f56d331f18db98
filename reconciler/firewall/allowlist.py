"""Allowlists: the harness's built-in floor, the spec's additions, and matching names (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from specs import DesiredAgent

__all__ = [
    "HARNESS_FLOOR",
    "agent_id",
    "allowlist_change",
    "domain_allowed",
    "effective_allowlist",
    "matching_entry",
    "normalise_domain",
]

# What the harness itself needs to work: Claude Code talks to the Anthropic API, signs in
# through claude.ai / console.anthropic.com, and sends feature-flag and error telemetry to
# Statsig and Sentry. Exact names only: a leading-dot entry lets an agent put data in the
# subdomain of every query it sends upstream, and Claude Code works without its error reports
# (its per-project Sentry ingest hosts are under .sentry.io; a spec may add that entry).
HARNESS_FLOOR: dict[str, tuple[str, ...]] = {
    "claude": (
        "api.anthropic.com",
        "claude.ai",
        "console.anthropic.com",
        "statsig.anthropic.com",
        "statsig.com",
        "sentry.io",
    ),
    "none": (),
}


def normalise_domain(domain: str) -> str:
    """Lowercase, no trailing dot; a leading dot (apex and subdomains) is kept."""
    return domain.strip().lower().rstrip(".")


def effective_allowlist(agent: DesiredAgent) -> tuple[str, ...]:
    """The harness's floor ∪ the spec's `add_domains`, sorted and without duplicates."""
    floor = HARNESS_FLOOR.get(agent.build.harness, ())
    return tuple(
        sorted({normalise_domain(d) for d in (*floor, *agent.security.firewall.add_domains)})
    )


def domain_allowed(name: str, allowlist: Iterable[str]) -> bool:
    """Whether a queried name is on the allowlist: `x.com` matches itself, `.x.com` matches
    x.com and every name under it."""
    return matching_entry(name, allowlist) is not None


def matching_entry(name: str, allowlist: Iterable[str]) -> str | None:
    """The entry that allows `name`: an exact one (or a leading-dot entry's apex) first, else
    the leading-dot entry it is a subdomain of; None when nothing allows it."""
    name = normalise_domain(name)
    wildcard: str | None = None
    for entry in allowlist:
        if entry in (name, f".{name}"):
            return entry
        if entry.startswith(".") and name.endswith(entry):
            wildcard = wildcard or entry
    return wildcard


def allowlist_change(old: Iterable[str], new: Iterable[str]) -> str:
    """`+ a, - b` for a plan line; "" when the two lists are the same."""
    before, after = set(old), set(new)
    parts = [f"+ {d}" for d in sorted(after - before)]
    parts += [f"- {d}" for d in sorted(before - after)]
    return ", ".join(parts)


def agent_id(agent_key: str) -> int:
    """The agent's namespace in the allow map: 64 bits of sha256("project/agent"), stable
    across restarts of the container and of the control plane."""
    return int.from_bytes(hashlib.sha256(agent_key.encode()).digest()[:8], "little")

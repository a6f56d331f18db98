"""The canonical view of an agent that decides whether its container must be recreated.

A container carries `dev.clawker.spec-hash` (= `spec_hash(agent)`) and `dev.clawker.hash-version`.
Only the fields a running container cannot take on are hashed: a change to any of them means a new
container, and a change to anything else is applied live. The lists below are explicit and
versioned so that a clawker upgrade never recreates every agent by accident: changing
`RECREATE_FIELDS` (or how a field is rendered) changes every hash, so it must come with a new
`HASH_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from specs.resolved import DesiredAgent, to_plain

HASH_VERSION = "1"

RECREATE_FIELDS: tuple[str, ...] = (
    # Identity: the container's name and labels are fixed when it is created.
    "project",
    "name",
    "labels",
    # The process clawkerd starts and its environment are part of the container's config.
    "command",
    "agent.env",
    # Mounts: the workspace (and how it is shared) and the shared directory.
    "workspace.path",
    "workspace.mode",
    "agent.enable_shared_dir",
    # The image: a different base, package list or harness is a different image.
    "build.base_image",
    "build.packages",
    "build.harness",
    # Capabilities are fixed at create time; credential forwarding adds mounts and config.
    "security.cap_add",
    "security.git_credentials",
)

# Recreate fields added after hash version 1: in the view only when set, so an agent that does
# not use them keeps the hash it had (and its container) across the clawker upgrade.
RECREATE_WHEN_SET_FIELDS: tuple[str, ...] = (
    # Where the API relay finds the key (never the key): it sets the agent's ANTHROPIC_* env.
    "agent.claude_code.api_key",
)

LIVE_FIELDS: tuple[str, ...] = (
    # The allowlist lives in BPF maps that the control plane rewrites in place.
    "security.firewall.add_domains",
    # post_init runs once per agent (a marker on the config volume), so a new container would
    # not run it again anyway; pre_run runs on every start and is read from the spec then.
    "agent.post_init",
    "agent.pre_run",
    # Read only when a config volume is created (the SeedConfig step); an existing volume is
    # never seeded again, so a new container would not see a change either.
    "agent.claude_code.config",
    "agent.claude_code.use_host_auth",
)

UNHASHED_FIELDS: tuple[str, ...] = (
    # Where the spec was written, not what it asks for: moving a document changes nothing.
    "source",
)


def recreate_view(agent: DesiredAgent) -> dict[str, object]:
    """The JSON-able values of `RECREATE_FIELDS` (and of the `RECREATE_WHEN_SET_FIELDS` that are
    set), keyed by their dotted names, plus the version."""
    view: dict[str, object] = {"hash_version": HASH_VERSION}
    for field, path in _RECREATE_PATHS:
        value: Any = agent
        for part in path:
            value = getattr(value, part)
        view[field] = to_plain(value)  # pydantic's JSON dump gave the same: hash version 1
    for field, path in _RECREATE_WHEN_SET_PATHS:
        value = agent
        for part in path:
            value = getattr(value, part)
        if value is not None:  # only what is written: `{from_env: NAME}`
            view[field] = {k: v for k, v in to_plain(value).items() if v is not None}
    return view


# Each field with its attribute path, split once (a diff hashes every agent).
_RECREATE_PATHS = tuple((f, tuple(f.split("."))) for f in RECREATE_FIELDS)
_RECREATE_WHEN_SET_PATHS = tuple((f, tuple(f.split("."))) for f in RECREATE_WHEN_SET_FIELDS)


def spec_hash(agent: DesiredAgent) -> str:
    """sha256 (hex) of the compact, key-sorted JSON of `recreate_view(agent)`."""
    text = json.dumps(recreate_view(agent), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

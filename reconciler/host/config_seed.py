"""What a new config volume (`~/.claude` inside the agent) starts with: the SeedConfig step.

The planner adds the step only when it creates the config volume, so an existing volume is never
seeded again: the agent's sessions, logins and settings are its own from then on. The archive is
built here, on the host, and streamed into the new container before its first start.

- Always: `.claude.json` (the agent's CLAUDE_CONFIG_DIR is the volume, so Claude Code keeps its
  state there) saying onboarding is complete and the workspace is trusted, so the first start
  does not stop at Claude Code's first-run wizard.
- `claude_code.config.strategy: copy` (the default): the host's `settings.json`, `agents/`,
  `skills/`, `commands/` and `plugins/`; absolute paths to the host's `~/.claude` inside their
  JSON files are rewritten to the container's. `fresh` copies none of it.
- `claude_code.use_host_auth: true`: the host's `.credentials.json` and the account entry of its
  `~/.claude.json`.
- `claude_code.api_key`: the API relay's placeholder key marked as approved, so an interactive
  Claude Code does not ask whether to use "the custom API key" it finds in its environment.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from reconciler import naming
from reconciler.host.progress import marker_member

__all__ = [
    "COPIED_ENTRIES",
    "ConfigSeed",
    "onboarding_state",
    "rewrite_paths",
    "rewrite_text",
    "seed_archive",
]

COPIED_ENTRIES = ("settings.json", "agents", "skills", "commands", "plugins")
CREDENTIALS_FILE = ".credentials.json"
STATE_FILE = ".claude.json"
# Keys of the host's ~/.claude.json that belong to the login, copied only with use_host_auth.
ACCOUNT_KEYS = ("oauthAccount",)
MAX_REWRITTEN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ConfigSeed:
    """What one SeedConfig step copies: plain data, carried by the plan."""

    strategy: str  # copy | fresh
    use_host_auth: bool
    workspace: str  # trusted in the seeded state
    host_claude_dir: str = ""  # the host's ~/.claude; "" when there is no host to copy from
    host_claude_json: str = ""  # the host's ~/.claude.json
    user: naming.AgentUser = naming.DEFAULT_AGENT_USER  # who owns what is seeded
    api_relay: bool = False  # the agent holds the relay's placeholder key (docs/credentials.md)


def rewrite_text(text: str, old: str, new: str) -> str:
    """`text` with the path `old` (and anything under it) moved to `new`; `/a/b` does not touch
    `/a/bc`."""
    if not old:
        return text
    return re.sub(re.escape(old.rstrip("/")) + r"(?=/|$|[^\w.-])", new.rstrip("/"), text)


def rewrite_paths(value: Any, old: str, new: str) -> Any:
    """A JSON value with every string rewritten by `rewrite_text` (keys too: plugin registries
    key entries by path)."""
    if isinstance(value, str):
        return rewrite_text(value, old, new)
    if isinstance(value, list):
        return [rewrite_paths(item, old, new) for item in value]
    if isinstance(value, dict):
        return {
            rewrite_text(str(key), old, new): rewrite_paths(item, old, new)
            for key, item in value.items()
        }
    return value


def onboarding_state(
    workspace: str,
    host_state: Mapping[str, Any] | None,
    *,
    use_host_auth: bool,
    api_relay: bool = False,
) -> dict[str, Any]:
    """The seeded `.claude.json`: first-run wizard done, the workspace trusted, with
    `use_host_auth` the host's account entry, and with `api_relay` the placeholder key approved
    (Claude Code records an approved key by its last 20 characters)."""
    state: dict[str, Any] = {
        "hasCompletedOnboarding": True,
        "projects": {workspace: {"hasTrustDialogAccepted": True}},
    }
    if api_relay:
        approved = [naming.API_KEY_PLACEHOLDER[-20:]]
        state["customApiKeyResponses"] = {"approved": approved, "rejected": []}
    if use_host_auth and host_state:
        for key in ACCOUNT_KEYS:
            if key in host_state:
                state[key] = host_state[key]
    return state


def seed_archive(seed: ConfigSeed) -> IO[bytes]:
    """A tar (in a temporary file, rewound) to unpack at the config volume's mount point."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    container_dir = naming.CONFIG_MOUNT
    with tarfile.open(fileobj=out, mode="w") as tar:
        host_state = _read_json(seed.host_claude_json) if seed.use_host_auth else None
        state = onboarding_state(
            seed.workspace,
            host_state if isinstance(host_state, dict) else None,
            use_host_auth=seed.use_host_auth,
            api_relay=seed.api_relay,
        )
        state_bytes = json.dumps(state, indent=2).encode() + b"\n"
        _add_bytes(tar, STATE_FILE, state_bytes, 0o600, seed.user)
        host_dir = seed.host_claude_dir
        if host_dir and os.path.isdir(host_dir):
            if seed.strategy == "copy":
                olds = {os.path.abspath(host_dir), os.path.realpath(host_dir)}
                for entry in COPIED_ENTRIES:
                    _add_tree(
                        tar, os.path.join(host_dir, entry), entry, olds, container_dir, seed.user
                    )
            credentials = os.path.join(host_dir, CREDENTIALS_FILE)
            if seed.use_host_auth and os.path.isfile(credentials):
                with open(credentials, "rb") as handle:
                    _add_bytes(tar, CREDENTIALS_FILE, handle.read(), 0o600, seed.user)
        marker_member(tar, "config", seed.user)  # last: the seed is complete only once it is there
    out.seek(0)
    return out


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _owned(info: tarfile.TarInfo, user: naming.AgentUser) -> tarfile.TarInfo:
    info.uid, info.gid = user.uid, user.gid
    info.uname = info.gname = ""
    return info


def _add_bytes(
    tar: tarfile.TarFile, arcname: str, data: bytes, mode: int, user: naming.AgentUser
) -> None:
    info = _owned(tarfile.TarInfo(arcname), user)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_tree(
    tar: tarfile.TarFile,
    source: str,
    arcname: str,
    olds: set[str],
    new: str,
    user: naming.AgentUser,
) -> None:
    """Copy `source` (a file or a directory) following symlinks: settings are often links into
    a dotfiles repository, which would dangle inside. Each real directory is copied once, so a
    symlink loop ends."""
    visited: set[str] = set()
    stack = [(source, arcname)]
    while stack:
        path, arc = stack.pop()
        try:
            info = os.stat(path)  # follows symlinks
        except OSError:
            continue  # a dangling link or a file that went away
        if stat.S_ISDIR(info.st_mode):
            real = os.path.realpath(path)
            if real in visited:
                continue
            visited.add(real)
            entry = _owned(tarfile.TarInfo(arc), user)
            entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o755, int(info.st_mtime)
            tar.addfile(entry)
            try:
                names = sorted(os.listdir(path), reverse=True)
            except OSError:
                continue
            stack.extend((os.path.join(path, name), f"{arc}/{name}") for name in names)
        elif stat.S_ISREG(info.st_mode):
            data = _file_bytes(path, info.st_size, olds, new)
            if data is None:
                continue
            entry = _owned(tarfile.TarInfo(arc), user)
            entry.size, entry.mode, entry.mtime = (
                len(data),
                info.st_mode & 0o755 | 0o600,
                int(info.st_mtime),
            )
            tar.addfile(entry, io.BytesIO(data))


def _file_bytes(path: str, size: int, olds: set[str], new: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if not path.endswith(".json") or size > MAX_REWRITTEN_BYTES:
        return data
    try:
        value = json.loads(data)
    except ValueError:
        return data
    rewritten = value
    for old in sorted(olds):
        rewritten = rewrite_paths(rewritten, old, new)
    if rewritten == value:
        return data
    return json.dumps(rewritten, indent=2).encode() + b"\n"

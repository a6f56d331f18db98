"""Which directories may be an agent's workspace.

The agent has sudo inside its container, so whatever its workspace holds, it holds as root: a
workspace of `/run` reaches the host's Docker socket (host root), `/etc` the host's accounts,
a home directory every key and token its person has. These are refused by rule, each with the
rule's name and how to point at a project instead.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["WorkspaceRefusal", "workspace_refusal"]

# The host's own system: neither these nor anything inside them.
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lock",
)
# Container engines' and clawker's own state: neither these, anything inside, nor anything
# that contains them.
ENGINE_STATE = (
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/clawker",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd",
)
# Directories that are a whole shared area, not a project: refused themselves (a project
# inside them is fine).
SHARED_ROOTS = ("/", "/home", "/opt", "/srv", "/mnt", "/media", "/tmp", "/var", "/var/tmp")


@dataclass(frozen=True)
class WorkspaceRefusal:
    message: str
    hint: str


_HINT = "point workspace.path at a project directory instead, e.g. {example}"


def workspace_refusal(
    path: str, protected: Sequence[str] = (), homes: Iterable[str] | None = None
) -> WorkspaceRefusal | None:
    """Why `path` (absolute) may not be a workspace, or None when it may.

    `protected` names more paths no workspace may be, be inside of, or contain (clawker's state
    directory and control plane socket, the Docker socket the CLI talks to). `homes`
    defaults to every home directory of the host's accounts and the caller's `~`.
    """
    candidates = {os.path.normpath(path), os.path.realpath(path)}
    state = {os.path.normpath(p) for p in (*ENGINE_STATE, *protected) if p}
    state |= {os.path.realpath(p) for p in state}
    home_dirs = set(_homes() if homes is None else homes)
    for candidate in sorted(candidates):
        if candidate in SHARED_ROOTS:
            what = "the whole filesystem" if candidate == "/" else "a shared system directory"
            return WorkspaceRefusal(
                f"workspace {path} is {what}: an agent (root inside its container) would hold"
                " everything in it",
                _HINT.format(example="/home/you/src/myapp"),
            )
        for tree in SYSTEM_TREES:
            if _within(candidate, tree):
                return WorkspaceRefusal(
                    f"workspace {path} is inside the system directory {tree}: an agent would get"
                    " the host's system files (and, under /run, the Docker socket: host root)",
                    _HINT.format(example="/home/you/src/myapp"),
                )
        for kept in sorted(state):
            if _within(candidate, kept) or _within(kept, candidate):
                return WorkspaceRefusal(
                    f"workspace {path} {'is inside' if _within(candidate, kept) else 'contains'}"
                    f" {kept}, the state or socket of Docker or clawker: an agent could take"
                    " over the host through it",
                    _HINT.format(example="/home/you/src/myapp"),
                )
        if candidate in home_dirs:
            return WorkspaceRefusal(
                f"workspace {path} is a whole home directory: an agent would hold every key,"
                " token and file of its owner",
                _HINT.format(example=os.path.join(candidate, "src", "myapp")),
            )
    return None


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


_PASSWD = "/etc/passwd"
_homes_seen: tuple[object, frozenset[str]] | None = None


def _homes() -> frozenset[str]:
    """The accounts' home directories and `~`. Read again only when /etc/passwd or `~` changed:
    `getpwall` read the whole account database once per agent, ~0.2 ms each."""
    global _homes_seen  # noqa: PLW0603 (a cache of one entry)
    mine = os.path.expanduser("~")
    try:
        info = os.stat(_PASSWD)
        key: object = (info.st_mtime_ns, info.st_size, info.st_ino, mine)
    except OSError:
        key = None
    if key is not None and _homes_seen is not None and _homes_seen[0] == key:
        return _homes_seen[1]
    homes = {"/root", mine}
    homes |= {entry.pw_dir for entry in pwd.getpwall()}
    found = frozenset(os.path.normpath(h) for h in homes if h and h.startswith("/")) - {"/"}
    if key is not None:
        _homes_seen = (key, found)
    return found

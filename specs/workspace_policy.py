"""Which directories may be an agent's workspace.

The agent has sudo inside its container, so whatever its workspace holds, it holds as root: a
workspace of `/run` reaches the host's Docker socket (host root), `/etc` the host's accounts,
a home directory every key and token its person has. These are refused by rule, each with the
rule's name and how to point at a project instead.
"""

from __future__ import annotations

import os
import pwd
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Looked",
    "WorkspaceFacts",
    "WorkspaceRefusal",
    "look_at",
    "looked_once",
    "policy_inputs",
    "real_path",
    "workspace_facts",
    "workspace_refusal",
]

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


def policy_inputs() -> str:
    """What a refusal depends on besides the path and the protected paths: `~` and the account
    database (a cached resolution is only good while these stay as they were)."""
    mine = os.path.expanduser("~")
    try:
        info = os.stat(_PASSWD)
    except OSError:
        return f"{os.geteuid()}:{mine}:-"
    return f"{os.geteuid()}:{mine}:{info.st_mtime_ns}:{info.st_size}:{info.st_ino}"


class WorkspaceFacts(NamedTuple):
    """What the file system says about a workspace path."""

    exists: bool
    is_dir: bool
    worktree: bool  # its .git is a file
    real: str  # its real path when it is a directory, else the path itself


def look_at(path: str) -> WorkspaceFacts:
    is_dir = os.path.isdir(path)
    return WorkspaceFacts(
        os.path.exists(path),
        is_dir,
        is_dir and os.path.isfile(os.path.join(path, ".git")),
        os.path.realpath(path) if is_dir else path,
    )


@dataclass
class Looked:
    """Everything one load asked the file system, so that each question is asked once, and a
    cached resolution can ask them all again to see that it still holds (specs.setcache)."""

    workspaces: dict[tuple[str, tuple[str, ...]], tuple[WorkspaceFacts, WorkspaceRefusal | None]]
    real_paths: dict[str, str] = field(default_factory=dict)


_memo = threading.local()


@contextmanager
def looked_once() -> Iterator[Looked]:
    """Within: what the file system says about a workspace path is looked up once. One load
    of 100 agents of a project asked the same questions (exists, a directory, refused, a git
    worktree, its real path) 101 times: ~70 % of a load whose YAML was cached."""
    _memo.looked = Looked({})
    try:
        yield _memo.looked
    finally:
        _memo.looked = None


def workspace_facts(
    path: str, protected: tuple[str, ...]
) -> tuple[WorkspaceFacts, WorkspaceRefusal | None]:
    looked: Looked | None = getattr(_memo, "looked", None)
    if looked is not None and (path, protected) in looked.workspaces:
        return looked.workspaces[(path, protected)]
    facts = look_at(path)
    found = (facts, workspace_refusal(path, protected) if facts.is_dir else None)
    if looked is not None:
        looked.workspaces[(path, protected)] = found
    return found


def real_path(path: str) -> str:
    """`os.path.realpath`, noted in the load's `Looked`."""
    real = os.path.realpath(path)
    looked: Looked | None = getattr(_memo, "looked", None)
    if looked is not None:
        looked.real_paths[path] = real
    return real

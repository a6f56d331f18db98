"""The host side of an agent: the user who runs clawker, and what clawker forwards from their
machine (Claude Code settings, `~/.gitconfig`, the shared directory, the ssh and gpg agents),
plus what each bind-mode workspace looks like (ignored directories, where its git data lives).

`observe_host()` reads all of it once per command, so the planner stays pure: it gets this as
plain data, like the observed Docker state. Every host path can be pointed elsewhere through the
environment, which is how tests keep away from the real user's files:

| variable | default |
|---|---|
| `CLAWKER_HOST_HOME` | the invoking user's home (`SUDO_USER`'s under sudo, else `$HOME`) |
| `CLAWKER_SHARE_DIR` | `<home>/.clawker-share` |
| `CLAWKER_HOST_SSH_AUTH_SOCK` | `$SSH_AUTH_SOCK` |
| `CLAWKER_HOST_GPG_SOCKET` | gpg-agent's extra socket, under `/run/user/<uid>/gnupg`, |
| | `$GNUPGHOME` or `<home>/.gnupg` (only the last with `CLAWKER_HOST_HOME`) |
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler import naming
from reconciler.docker.engine import ContainerSpec
from reconciler.host.git_layout import GitLayout, GitLayoutError, git_layout
from reconciler.host.workspace import ignored_directories
from specs import DesiredAgent, WorkspaceMode

__all__ = [
    "HOME_ENV",
    "HostContext",
    "HostState",
    "WorkspaceFacts",
    "ensure_share_dir",
    "host_context",
    "observe_host",
]

HOME_ENV = "CLAWKER_HOST_HOME"
SHARE_ENV = "CLAWKER_SHARE_DIR"
SSH_ENV = "CLAWKER_HOST_SSH_AUTH_SOCK"
GPG_ENV = "CLAWKER_HOST_GPG_SOCKET"
GPG_EXTRA_SOCKET = "S.gpg-agent.extra"


@dataclass(frozen=True)
class HostContext:
    """The host user clawker acts for: whose files are copied and whose credentials are used."""

    uid: int
    gid: int
    home: str
    share_dir: str
    ssh_auth_sock: str = ""  # "" when the host has no ssh agent
    gpg_extra_socket: str = ""  # "" when no gpg agent socket was found

    @property
    def claude_dir(self) -> str:
        """The host's Claude Code settings directory."""
        return os.path.join(self.home, ".claude")

    @property
    def claude_json(self) -> str:
        """The host's Claude Code state file (onboarding, account)."""
        return os.path.join(self.home, ".claude.json")

    @property
    def gitconfig(self) -> str:
        return os.path.join(self.home, ".gitconfig")


@dataclass(frozen=True)
class WorkspaceFacts:
    """A bind-mode workspace as the host has it when the container is created."""

    masked_dirs: tuple[str, ...] = ()  # absolute paths of directories .clawkerignore hides
    git: GitLayout | None = None


@dataclass(frozen=True)
class HostState:
    """Everything the planner may know about the host."""

    context: HostContext
    gitconfig: str = ""  # the host's ~/.gitconfig when it is a file, else ""
    workspaces: Mapping[str, WorkspaceFacts] = field(default_factory=dict)  # by workspace path


def host_context(environ: Mapping[str, str]) -> HostContext:
    """The invoking user and their forwarded paths, from the environment (see the module doc).

    The user is the owner of the home directory: under sudo that is the user who ran sudo, and
    with CLAWKER_HOST_HOME it is whoever owns that directory.
    """
    env = environ
    override = env.get(HOME_ENV, "").strip()
    home = os.path.abspath(override) if override else _invoking_home(env)
    try:
        info = os.stat(home)
        uid, gid = info.st_uid, info.st_gid
    except OSError:
        uid, gid = os.getuid(), os.getgid()
    return HostContext(
        uid=uid,
        gid=gid,
        home=home,
        share_dir=os.path.abspath(
            env.get(SHARE_ENV, "").strip() or os.path.join(home, ".clawker-share")
        ),
        ssh_auth_sock=(env.get(SSH_ENV) or env.get("SSH_AUTH_SOCK") or "").strip(),
        gpg_extra_socket=_gpg_extra_socket(env, home, uid, home_overridden=bool(override)),
    )


def _invoking_home(env: Mapping[str, str]) -> str:
    sudo_user = env.get("SUDO_USER", "")
    if os.geteuid() == 0 and sudo_user and sudo_user != "root":
        try:
            return pwd.getpwnam(sudo_user).pw_dir
        except KeyError:
            pass
    if env.get("HOME"):
        return env["HOME"]
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


def _gpg_extra_socket(env: Mapping[str, str], home: str, uid: int, *, home_overridden: bool) -> str:
    """gpg-agent's restricted 'extra' socket: made for forwarding to machines one trusts less."""
    named = env.get(GPG_ENV, "").strip()
    if named:
        return named
    candidates = [os.path.join(home, ".gnupg", GPG_EXTRA_SOCKET)]
    if not home_overridden:
        if env.get("GNUPGHOME"):
            candidates.insert(0, os.path.join(env["GNUPGHOME"], GPG_EXTRA_SOCKET))
        candidates.insert(0, f"/run/user/{uid}/gnupg/{GPG_EXTRA_SOCKET}")
    return next((path for path in candidates if os.path.exists(path)), "")


def observe_host(agents: Iterable[DesiredAgent], environ: Mapping[str, str]) -> HostState:
    """Read the host facts the given agents' containers depend on (`environ`: the host user's
    variables, Settings.host_environment)."""
    context = host_context(environ)
    workspaces: dict[str, WorkspaceFacts] = {}
    for agent in agents:
        path = agent.workspace.path
        if agent.workspace.mode is not WorkspaceMode.BIND or path in workspaces:
            continue
        try:
            layout = git_layout(path)
        except GitLayoutError:
            layout = None  # git inside says what is wrong with the .git file, as it would here
        workspaces[path] = WorkspaceFacts(ignored_directories(path), layout)
    gitconfig = context.gitconfig if os.path.isfile(context.gitconfig) else ""
    return HostState(context, gitconfig, workspaces)


def ensure_share_dir(container: ContainerSpec, environ: Mapping[str, str]) -> None:
    """Create the shared directory `container` mounts, if it does not exist yet, owned by the
    host user (Docker refuses to bind-mount a missing path)."""
    for mount in container.mounts:
        if mount.kind != "bind" or mount.target != naming.SHARE_MOUNT:
            continue
        if os.path.isdir(mount.source):
            return
        os.makedirs(mount.source, mode=0o755, exist_ok=True)
        context = host_context(environ)
        if os.geteuid() == 0 and context.uid != 0:
            os.chown(mount.source, context.uid, context.gid)

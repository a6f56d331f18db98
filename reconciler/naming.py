"""Names and labels of every Docker object clawker makes (DESIGN §3).

Names and labels *are* the state: nothing is remembered between runs except what these
labels record on the objects themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MANAGED: Final = "dev.clawker.managed"
OBJECT: Final = "dev.clawker.object"  # container | volume | network | image
SCOPE: Final = "dev.clawker.scope"  # "default", or the scope labels of a test run / 2nd install
PROJECT: Final = "dev.clawker.project"
AGENT: Final = "dev.clawker.agent"
PURPOSE: Final = "dev.clawker.purpose"
SPEC_HASH: Final = "dev.clawker.spec-hash"
HASH_VERSION: Final = "dev.clawker.hash-version"
APPLY_SET: Final = "dev.clawker.apply-set"
VOLUME_ROLE: Final = "dev.clawker.volume"
WORKSPACE_PATH: Final = "dev.clawker.workspace"
MADE_BY: Final = "dev.clawker.made-by"  # "run": made by `clawker run`/`create`, in no apply set
# The container's own directory on the host (its bootstrap material): see controlplane/host_dirs
HOST_DIR: Final = "dev.clawker.host-dir"
AGENT_USER: Final = "dev.clawker.agent-user"  # `uid:gid` of the agent user in the container's image

NETWORK_NAME_DEFAULT: Final = "clawker-net"
BASE_IMAGE_DEFAULT: Final = "clawker-base:bookworm"
CGROUP_PARENT_DEFAULT: Final = "/clawker"

# Paths inside the agent container.
AGENT_HOME: Final = "/home/claude"
CONFIG_MOUNT: Final = f"{AGENT_HOME}/.claude"
HISTORY_MOUNT: Final = "/commandhistory"
# The agent user's ids when the workspace owner's cannot be used (root, or unknown).
AGENT_UID: Final = 1001
AGENT_GID: Final = 1001
SHARE_MOUNT: Final = f"{AGENT_HOME}/.clawker-share"  # the host's shared directory, read-only
BOOTSTRAP_MOUNT: Final = "/run/clawker/bootstrap"  # the container's host dir, read-only
HOST_GITCONFIG_MOUNT: Final = "/run/clawker/host/gitconfig"  # the host's ~/.gitconfig, read-only
# Sockets clawkerd listens on inside for the CP's bridge (docs/credentials.md).
CREDENTIAL_SOCKET: Final = "/run/clawker/git-credential.sock"
SSH_AGENT_SOCKET: Final = "/run/clawker/ssh-agent.sock"
GPG_AGENT_SOCKET: Final = f"{AGENT_HOME}/.gnupg/S.gpg-agent"  # where gpg looks for its agent
# The API relay (docs/credentials.md): Claude Code's ANTHROPIC_BASE_URL inside, and the key it
# holds instead of the real one, which the control plane adds on the host.
API_RELAY_PORT: Final = 7711
API_RELAY_URL: Final = f"http://127.0.0.1:{API_RELAY_PORT}"
API_KEY_PLACEHOLDER: Final = "sk-ant-clawker-placeholder-the-real-key-stays-on-the-host"

VOLUME_ROLES: Final = ("config", "history", "workspace")


@dataclass(frozen=True)
class AgentUser:
    """The uid and gid of the user `claude` in a project's image (docs/workspace.md)."""

    uid: int = AGENT_UID
    gid: int = AGENT_GID

    def label(self) -> str:
        """`uid:gid`, as the AGENT_USER label records it."""
        return f"{self.uid}:{self.gid}"

    @classmethod
    def from_label(cls, value: str | None) -> AgentUser:
        """The user a label names; the fixed 1001:1001 of older clawker when absent or bad."""
        uid, _, gid = (value or "").partition(":")
        if uid.isdigit() and gid.isdigit() and int(uid) > 0:
            return cls(int(uid), int(gid))
        return cls()


def container_name(project: str, agent: str) -> str:
    """`clawker.<project>.<agent>`: the one container of an agent."""
    return f"clawker.{project}.{agent}"


def replacement_name(project: str, agent: str) -> str:
    """The temporary name a replacement container carries until the old one is gone.

    Its third dot puts it outside every name an agent can have (agent and project names
    cannot contain a dot), so no agent's container can ever take it.
    """
    return f"clawker.{project}.{agent}.next"


def retired_name(project: str, agent: str) -> str:
    """The name a replaced container carries from the moment its replacement takes the
    agent's name until it is removed (outside every agent's name, as `replacement_name`)."""
    return f"clawker.{project}.{agent}.old"


def probe_name(volume: str) -> str:
    """A short-lived container that only looks into `volume` (see reconciler.host.progress)."""
    return f"clawker-probe.{volume}"


def volume_name(project: str, agent: str, role: str) -> str:
    """`clawker.<project>.<agent>-<role>` for role in config, history, workspace."""
    return f"clawker.{project}.{agent}-{role}"


def agent_key(project: str, agent: str) -> str:
    return f"{project}/{agent}"


DEFAULT_AGENT_USER: Final = AgentUser()  # 1001:1001

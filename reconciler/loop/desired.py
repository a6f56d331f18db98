"""From a resolved agent spec to the exact Docker objects it needs (pure, no I/O)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from reconciler import naming
from reconciler.docker.engine import ContainerSpec, MountSpec
from reconciler.docker.seccomp import agent_seccomp_profile
from reconciler.host.git_layout import GitLayout
from reconciler.host.host_state import HostState
from reconciler.host.progress import PROGRESS_LABEL, PROGRESS_MARKER, STEP_MARKERS
from specs import HASH_VERSION, DesiredAgent, WorkspaceMode, recreate_view, spec_hash
from specs.capabilities import AGENT_BASE_CAPABILITIES

__all__ = [
    "SPEC_VIEW_LABEL",
    "DesiredVolume",
    "Placement",
    "RunOptions",
    "desired_container",
    "desired_volumes",
]


@dataclass(frozen=True)
class Placement:
    """Where agent containers go: the agent network and the parent cgroup the firewall is
    attached to (Settings.network, Settings.cgroup_parent; tests use their own)."""

    network: str = naming.NETWORK_NAME_DEFAULT
    cgroup_parent: str = naming.CGROUP_PARENT_DEFAULT


# The recreate view is recorded on the container so a later diff can say *which* field changed.
SPEC_VIEW_LABEL = "dev.clawker.spec-view"


@dataclass(frozen=True)
class RunOptions:
    """How `clawker run`/`create` wire a new container's stdio; none of it is hashed (a later
    apply does not recreate an agent for it). `apply` makes a TTY with stdin open, always."""

    tty: bool = True
    stdin_open: bool = True
    auto_remove: bool = False


@dataclass(frozen=True)
class DesiredVolume:
    name: str
    role: str
    labels: dict[str, str]


def desired_volumes(agent: DesiredAgent) -> list[DesiredVolume]:
    """Config and history always; the workspace volume only in snapshot mode."""
    roles = ["config", "history"]
    if agent.workspace.mode is WorkspaceMode.SNAPSHOT:
        roles.append("workspace")
    return [
        DesiredVolume(
            name=naming.volume_name(agent.project, agent.name, role),
            role=role,
            labels={
                naming.PROJECT: agent.project,
                naming.AGENT: agent.name,
                naming.PURPOSE: "agent",
                naming.VOLUME_ROLE: role,
                # filled by a step: complete only once that step's marker is written
                **({PROGRESS_LABEL: PROGRESS_MARKER} if role in STEP_MARKERS else {}),
            },
        )
        for role in roles
    ]


def desired_container(
    agent: DesiredAgent,
    *,
    image: str,
    name: str | None = None,
    apply_set: str | None = None,
    host: HostState | None = None,
    user: naming.AgentUser | None = None,
    placement: Placement = Placement(),
    run: RunOptions | None = None,
) -> ContainerSpec:
    """The container of an agent: workspace at its host path, volumes, env, capabilities.

    `host` adds what comes from the host's files (docs/workspace.md): tmpfs masks over ignored
    directories and the git layout of a bind-mode workspace, the host's ~/.gitconfig and the
    shared directory. Without it the container gets none of them (the planner's unit tests).
    `user` is the image's agent user, recorded as a label for the control plane's steps.
    """
    ws = agent.workspace
    if ws.mode is WorkspaceMode.SNAPSHOT:
        workspace_mount = MountSpec(
            "volume", ws.path, naming.volume_name(agent.project, agent.name, "workspace")
        )
    else:
        workspace_mount = MountSpec("bind", ws.path, ws.path)
    mounts = (
        workspace_mount,
        MountSpec(
            "volume", naming.CONFIG_MOUNT, naming.volume_name(agent.project, agent.name, "config")
        ),
        MountSpec(
            "volume",
            naming.HISTORY_MOUNT,
            naming.volume_name(agent.project, agent.name, "history"),
        ),
        *(_host_mounts(agent, host) if host is not None else ()),
    )
    git = agent.security.git_credentials
    # Defaults first, so that the spec's env may override them; CLAWKER_* is reserved.
    env = {
        "CLAUDE_CONFIG_DIR": naming.CONFIG_MOUNT,  # .claude.json lives in the config volume too
        "PROMPT_COMMAND": "history -a",  # each command reaches /commandhistory at once
    }
    if git.forward_ssh:
        env["SSH_AUTH_SOCK"] = naming.SSH_AGENT_SOCKET
    env.update(agent.agent.env)
    env.update(
        CLAWKER_PROJECT=agent.project,
        CLAWKER_AGENT=agent.name,
        CLAWKER_WORKSPACE_MODE=ws.mode.value,
        CLAWKER_WORKSPACE=ws.path,
        # Egress is always filtered from outside (a host-side `firewall disable` is live and
        # temporary; this says what the agent should expect).
        CLAWKER_FIREWALL_ENABLED="true",
    )
    if git.forward_https:
        env["CLAWKER_CREDENTIAL_PROXY"] = naming.CREDENTIAL_SOCKET
    if agent.agent.claude_code.api_key is not None:
        # The relay adds the real key on the host; Claude Code starts with a placeholder.
        env.update(
            ANTHROPIC_BASE_URL=naming.API_RELAY_URL,
            ANTHROPIC_API_KEY=naming.API_KEY_PLACEHOLDER,
            CLAWKER_API_RELAY=naming.API_RELAY_URL,
        )
    labels = {k: v for k, v in agent.labels.items() if not k.startswith("dev.clawker.")}
    labels.update(
        {
            naming.PROJECT: agent.project,
            naming.AGENT: agent.name,
            naming.PURPOSE: "agent",
            naming.SPEC_HASH: spec_hash(agent),
            naming.HASH_VERSION: HASH_VERSION,
            naming.WORKSPACE_PATH: ws.path,
            naming.AGENT_USER: (user or naming.DEFAULT_AGENT_USER).label(),
            SPEC_VIEW_LABEL: json.dumps(
                recreate_view(agent), sort_keys=True, separators=(",", ":")
            ),
        }
    )
    if apply_set and run is None:
        labels[naming.APPLY_SET] = apply_set
    if run is not None:  # made by `clawker run`/`create`: in no apply set, never pruned
        labels[naming.MADE_BY] = "run"
    return ContainerSpec(
        name=name or naming.container_name(agent.project, agent.name),
        image=image,
        command=tuple(agent.command),
        labels=labels,
        env=env,
        working_dir=ws.path,
        mounts=mounts,
        # The one capability policy (specs.capabilities): the base set and the spec's adds only.
        cap_add=tuple(sorted(AGENT_BASE_CAPABILITIES | set(agent.security.cap_add))),
        cap_drop=("ALL",),
        security_opt=(f"seccomp={agent_seccomp_profile()}",),
        # No ICMP "ping" sockets for any group (Docker's default opens them to everyone).
        sysctls={"net.ipv4.ping_group_range": "1 0"},
        cgroup_parent=placement.cgroup_parent,
        network=placement.network,
        hostname=agent.name,
        tty=run.tty if run else True,
        stdin_open=run.stdin_open if run else True,
        auto_remove=run.auto_remove if run else False,
    )


def _host_mounts(agent: DesiredAgent, host: HostState) -> list[MountSpec]:
    mounts: list[MountSpec] = []
    ws = agent.workspace
    facts = host.workspaces.get(ws.path)
    if ws.mode is WorkspaceMode.BIND and facts is not None:
        mounts += [MountSpec("tmpfs", path) for path in facts.masked_dirs]
        masked_git = os.path.join(ws.path, ".git") in facts.masked_dirs
        if facts.git is not None and not masked_git:
            mounts += git_mounts(ws.path, facts.git)
    if agent.security.git_credentials.copy_git_config and host.gitconfig:
        mounts.append(
            MountSpec("bind", naming.HOST_GITCONFIG_MOUNT, host.gitconfig, read_only=True)
        )
    if agent.agent.enable_shared_dir:
        mounts.append(MountSpec("bind", naming.SHARE_MOUNT, host.context.share_dir, read_only=True))
    return mounts


def git_mounts(workspace: str, layout: GitLayout) -> list[MountSpec]:
    """A bind-mode workspace's git data: a worktree's main `.git` at its own path, and the
    repository's `config` and `hooks` read-only, because git on the host would run what an agent
    wrote there (a hook, or a `core.fsmonitor`/`core.hooksPath` setting)."""
    mounts: list[MountSpec] = []
    if not _inside(layout.common_dir, workspace):
        mounts.append(MountSpec("bind", layout.common_dir, layout.common_dir))
    if not _inside(layout.git_dir, workspace) and not _inside(layout.git_dir, layout.common_dir):
        mounts.append(MountSpec("bind", layout.git_dir, layout.git_dir))
    config = os.path.join(layout.common_dir, "config")
    hooks = os.path.join(layout.common_dir, "hooks")
    mounts.append(MountSpec("bind", config, config, read_only=True))
    if layout.has_hooks:
        mounts.append(MountSpec("bind", hooks, hooks, read_only=True))
    else:  # an empty, read-only directory where git would look for hooks
        mounts.append(MountSpec("tmpfs", hooks, read_only=True))
    return mounts


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")

"""From a resolved agent spec to the exact Docker objects it needs (pure, no I/O)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from reconciler import naming
from reconciler.docker_port import ContainerSpec, MountSpec
from specs import HASH_VERSION, DesiredAgent, WorkspaceMode, recreate_view, spec_hash

__all__ = ["SPEC_VIEW_LABEL", "DesiredVolume", "desired_container", "desired_volumes"]

# The recreate view is recorded on the container so a later diff can say *which* field changed.
SPEC_VIEW_LABEL = "dev.clawker.spec-view"


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
            },
        )
        for role in roles
    ]


def desired_container(
    agent: DesiredAgent, *, image: str, name: str | None = None, apply_set: str | None = None
) -> ContainerSpec:
    """The container of an agent: workspace at its host path, volumes, env, capabilities."""
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
    )
    env = dict(agent.agent.env)
    env.update(
        CLAWKER_PROJECT=agent.project,
        CLAWKER_AGENT=agent.name,
        CLAWKER_WORKSPACE_MODE=ws.mode.value,
        CLAWKER_WORKSPACE=ws.path,
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
            SPEC_VIEW_LABEL: json.dumps(
                recreate_view(agent), sort_keys=True, separators=(",", ":")
            ),
        }
    )
    if apply_set:
        labels[naming.APPLY_SET] = apply_set
    return ContainerSpec(
        name=name or naming.container_name(agent.project, agent.name),
        image=image,
        command=tuple(agent.command),
        labels=labels,
        env=env,
        working_dir=ws.path,
        mounts=mounts,
        cap_add=tuple(agent.security.cap_add),
        cap_drop=("NET_RAW",),
        cgroup_parent=naming.cgroup_parent(),
        network=naming.network_name(),
        hostname=agent.name,
    )

"""N equivalent agents of one project, written three ways: a clawker spec, a compose file and
the object list the docker-py loop walks.

All three describe the same objects under the same names (`clawker.<project>.<agent>`, its
`-config` and `-history` volumes, the scope's network), so only one contender's objects may
exist at a time: the scenarios remove everything between contenders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from bench.dockerpy_loop import ContainerPlan, FleetObjects, MountPlan, NamedObject
from bench.isolation import IMAGE, BenchScope

__all__ = ["COMMAND", "Fleet", "container_shape"]

COMMAND = ("sleep", "infinity")
PROJECT_ENV = {"GREETING": "hello"}
CONFIG_MOUNT = "/home/claude/.claude"
HISTORY_MOUNT = "/commandhistory"


@dataclass(frozen=True)
class Fleet:
    project: str
    size: int
    workspace: Path  # absolute and existing: bind-mounted at the same path
    scope: BenchScope

    @property
    def agents(self) -> list[str]:
        width = max(2, len(str(self.size)))
        return [f"agent-{i:0{width}d}" for i in range(1, self.size + 1)]

    def container_name(self, agent: str) -> str:
        return f"clawker.{self.project}.{agent}"

    def clawker_spec(self) -> str:
        """One Project (bind workspace, no harness) and one Agent document per agent."""
        env = ", ".join(f"{k}: {v}" for k, v in PROJECT_ENV.items())
        docs = [
            "apiVersion: clawker.dev/v1alpha1\n"
            "kind: Project\n"
            f"metadata: {{name: {self.project}}}\n"
            "spec:\n"
            f"  workspace: {{path: {self.workspace}, mode: bind}}\n"
            "  build: {harness: none}\n"
            f"  agent: {{env: {{{env}}}}}\n"
        ]
        docs += [
            "apiVersion: clawker.dev/v1alpha1\n"
            "kind: Agent\n"
            f"metadata: {{name: {agent}, project: {self.project}}}\n"
            f"spec: {{command: [{', '.join(COMMAND)}]}}\n"
            for agent in self.agents
        ]
        return "---\n".join(docs)

    def objects(self) -> FleetObjects:
        """What clawker makes for the spec, as plain data.

        Labels: only the scope's. Without clawker's `purpose=agent` no control plane mistakes
        a baseline container for an agent and spends CPU dialling it during the measurement.
        """
        ws = str(self.workspace)
        volumes: list[NamedObject] = []
        containers: list[ContainerPlan] = []
        for agent in self.agents:
            name = self.container_name(agent)
            config, history = f"{name}-config", f"{name}-history"
            volumes += [
                NamedObject(name=v, labels=self.scope.labels("volume")) for v in (config, history)
            ]
            containers.append(
                ContainerPlan(
                    name=name,
                    hostname=agent,
                    image=IMAGE,
                    command=list(COMMAND),
                    working_dir=ws,
                    env={
                        **PROJECT_ENV,
                        "CLAWKER_PROJECT": self.project,
                        "CLAWKER_AGENT": agent,
                        "CLAWKER_WORKSPACE_MODE": "bind",
                        "CLAWKER_WORKSPACE": ws,
                    },
                    labels=self.scope.labels("container"),
                    mounts=[
                        MountPlan(type="bind", source=ws, target=ws),
                        MountPlan(type="volume", source=config, target=CONFIG_MOUNT),
                        MountPlan(type="volume", source=history, target=HISTORY_MOUNT),
                    ],
                    cap_drop=["NET_RAW"],
                    # the scope's own parent, removed with it (not the user's /clawker)
                    cgroup_parent=self.scope.cgroup_parent,
                    network=self.scope.network,
                )
            )
        network = NamedObject(name=self.scope.network, labels=self.scope.labels("network"))
        return FleetObjects(network=network, volumes=volumes, containers=containers)

    def compose_file(self) -> dict[str, Any]:
        """The same objects as a compose file (format 2.4: cgroup_parent, labels on volumes)."""
        fleet = self.objects()
        services = {
            c["hostname"]: {
                "container_name": c["name"],
                "image": c["image"],
                "command": c["command"],
                "hostname": c["hostname"],
                "working_dir": c["working_dir"],
                "environment": c["env"],
                "labels": c["labels"],
                "cap_drop": c["cap_drop"],
                "cgroup_parent": c["cgroup_parent"],
                "tty": True,
                "stdin_open": True,
                "networks": ["agents"],
                "volumes": [dict(m) for m in c["mounts"]],
            }
            for c in fleet["containers"]
        }
        return {
            "version": "2.4",
            "services": services,
            "networks": {"agents": dict(fleet["network"])},
            "volumes": {v["name"]: dict(v) for v in fleet["volumes"]},
        }


def container_shape(api: docker.APIClient, name: str) -> dict[str, Any]:
    """The parts of a container that must match across contenders: what was asked of Docker,
    not what the image adds (clawker runs its project image; labels differ by design)."""
    info: dict[str, Any] = api.inspect_container(name)
    config, host = info["Config"], info["HostConfig"]
    inspect_image: Callable[[str], dict[str, Any]] = api.inspect_image  # untyped in types-docker
    from_image = set(inspect_image(info["Image"])["Config"].get("Env") or [])
    return {
        "cmd": config["Cmd"],
        "hostname": config["Hostname"],
        "working_dir": config["WorkingDir"],
        "env": sorted(set(config["Env"] or []) - from_image),
        "tty": config["Tty"],
        "open_stdin": config["OpenStdin"],
        "cap_add": host["CapAdd"] or [],
        "cap_drop": host["CapDrop"] or [],
        "cgroup_parent": host["CgroupParent"],
        "mounts": sorted(
            (m["Type"], m["Destination"], m.get("Name") or m["Source"]) for m in info["Mounts"]
        ),
        "networks": sorted(info["NetworkSettings"]["Networks"]),
        "running": info["State"]["Running"],
    }

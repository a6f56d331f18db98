"""The plain docker-py baseline: what a short script would do to make the same agents.

`python -m bench.dockerpy_loop FLEET.json`: create the network, two volumes per agent, then
create and start each container in turn (low-level APIClient, one call at a time, no checks).
It imports docker and nothing of clawker's, so its start-up is the floor for a Python tool.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict

import docker
from docker.types import Mount

__all__ = ["ContainerPlan", "FleetObjects", "MountPlan", "NamedObject", "create_fleet"]


class NamedObject(TypedDict):
    name: str
    labels: dict[str, str]


class MountPlan(TypedDict):
    type: Literal["bind", "volume"]
    source: str
    target: str


class ContainerPlan(TypedDict):
    name: str
    hostname: str
    image: str
    command: list[str]
    working_dir: str
    env: dict[str, str]
    labels: dict[str, str]
    mounts: list[MountPlan]
    cap_drop: list[str]
    cgroup_parent: str
    network: str


class FleetObjects(TypedDict):
    network: NamedObject
    volumes: list[NamedObject]
    containers: list[ContainerPlan]


def create_fleet(api: docker.APIClient, fleet: FleetObjects) -> None:
    """One Docker call per object, in order; the first error ends the script."""
    api.create_network(fleet["network"]["name"], driver="bridge", labels=fleet["network"]["labels"])
    for volume in fleet["volumes"]:
        api.create_volume(volume["name"], driver="local", labels=volume["labels"])
    for c in fleet["containers"]:
        host_config = api.create_host_config(
            mounts=[Mount(m["target"], m["source"], type=m["type"]) for m in c["mounts"]],
            cap_drop=c["cap_drop"],
            cgroup_parent=c["cgroup_parent"],
            network_mode=c["network"],
        )
        created = api.create_container(
            image=c["image"],
            command=c["command"],
            name=c["name"],
            hostname=c["hostname"],
            environment=c["env"],
            labels=c["labels"],
            working_dir=c["working_dir"],
            host_config=host_config,
            tty=True,
            stdin_open=True,
        )
        api.start(created["Id"])


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.dockerpy_loop FLEET.json", file=sys.stderr)
        return 2
    fleet: FleetObjects = json.loads(Path(argv[0]).read_text())
    create_fleet(docker.APIClient(version="auto"), fleet)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

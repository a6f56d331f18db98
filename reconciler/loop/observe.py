"""Observed state: everything the planner may know about Docker, collected in one place.

`observe()` is the only function here that does I/O; the dataclasses are plain data so the
planner can be tested with hand-written observations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler import naming
from reconciler.docker.engine import ContainerInfo, ListingPort

__all__ = ["ObservedAgent", "ObservedImage", "ObservedState", "observe"]


@dataclass(frozen=True)
class ObservedAgent:
    """The containers Docker has for one agent: the canonical one and any leftovers."""

    project: str
    name: str
    container: ContainerInfo | None
    leftovers: tuple[ContainerInfo, ...] = ()

    @property
    def key(self) -> str:
        return naming.agent_key(self.project, self.name)


@dataclass(frozen=True)
class ObservedImage:
    id: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ObservedState:
    agents: Mapping[str, ObservedAgent] = field(default_factory=dict)
    volumes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    networks: frozenset[str] = frozenset()
    images: Mapping[str, ObservedImage] = field(default_factory=dict)  # managed images by ref

    def agent(self, project: str, name: str) -> ObservedAgent:
        return self.agents.get(
            naming.agent_key(project, name), ObservedAgent(project, name, container=None)
        )


def group_containers(containers: Iterable[ContainerInfo]) -> dict[str, ObservedAgent]:
    """Group agent containers by their project/agent labels; pick the canonically named one."""
    grouped: dict[str, list[ContainerInfo]] = {}
    for c in containers:
        if c.labels.get(naming.PURPOSE) != "agent":
            continue
        project, agent = c.labels.get(naming.PROJECT), c.labels.get(naming.AGENT)
        if not project or not agent:
            continue
        grouped.setdefault(naming.agent_key(project, agent), []).append(c)
    result: dict[str, ObservedAgent] = {}
    for key, members in grouped.items():
        project, agent = key.split("/", 1)
        canonical = naming.container_name(project, agent)
        main = next((c for c in members if c.name == canonical), None)
        rest = tuple(sorted((c for c in members if c is not main), key=lambda c: c.name))
        result[key] = ObservedAgent(project, agent, main, rest)
    return result


def observe(port: ListingPort) -> ObservedState:
    """List managed containers, volumes, networks and images: four calls, filtered by label."""
    return ObservedState(
        agents=group_containers(port.list_containers()),
        volumes={v.name: v.labels for v in port.list_volumes()},
        networks=frozenset(n.name for n in port.list_networks()),
        images={
            ref: ObservedImage(image.id, image.labels)
            for image in port.list_images()
            for ref in image.refs
        },
    )

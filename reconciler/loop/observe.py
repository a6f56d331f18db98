"""Observed state: everything the planner may know about Docker, collected in one place.

`observe()` is the only function here that does I/O; the dataclasses are plain data so the
planner can be tested with hand-written observations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from reconciler import naming
from reconciler.docker.engine import ContainerInfo, ListingPort
from reconciler.host.progress import MARKER_DIR, PROGRESS_LABEL, PROGRESS_MARKER, STEP_MARKERS
from reconciler.loop.beside import Beside

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
    # agent key -> volume roles (config, workspace) whose fill is known not to be complete
    unfinished: Mapping[str, frozenset[str]] = field(default_factory=dict)

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


def observe(port: ListingPort, settle: Callable[[], None] | None = None) -> ObservedState:
    """List managed containers, volumes, networks and images: four calls, filtered by label,
    made at once; then read the progress markers of the agents whose fills may be unfinished.

    `settle` is called before the first list: watch mode waits there for Docker to finish
    recording an exit it has announced. (Not just before the container list: while Docker
    tears the container down, its volume and image lists are slow too.)"""
    if settle is not None:
        settle()
    # The other three lists run beside the container list, the slow one (dockerd answers
    # each on its own); an error is the one of the first list that failed, in this order.
    listed_volumes = Beside(port.list_volumes)
    listed_images = Beside(port.list_images)
    listed_networks = Beside(port.list_networks)
    agents = group_containers(port.list_containers())
    volumes = {v.name: v.labels for v in listed_volumes.result()}
    images = {
        ref: ObservedImage(image.id, image.labels)
        for image in listed_images.result()
        for ref in image.refs
    }
    return ObservedState(
        agents=agents,
        volumes=volumes,
        networks=frozenset(n.name for n in listed_networks.result()),
        images=images,
        unfinished=_unfinished_fills(port, agents, volumes, images),
    )


def _unfinished_fills(
    port: ListingPort,
    agents: Mapping[str, ObservedAgent],
    volumes: Mapping[str, Mapping[str, str]],
    images: Mapping[str, ObservedImage],
) -> dict[str, frozenset[str]]:
    """Which marker-tracked fills of each agent's volumes are missing.

    A container is started only after its fills, so an agent with a container that has ever
    started (any state but `created`) is complete and costs no look: only a pass killed
    mid-way, or volumes kept by `delete`, are read."""
    tracked: dict[str, dict[str, str]] = {}  # agent key -> role -> volume name
    for name, labels in volumes.items():
        role = labels.get(naming.VOLUME_ROLE, "")
        if labels.get(PROGRESS_LABEL) != PROGRESS_MARKER or role not in STEP_MARKERS:
            continue
        project, agent = labels.get(naming.PROJECT), labels.get(naming.AGENT)
        if project and agent:
            tracked.setdefault(naming.agent_key(project, agent), {})[role] = name
    result: dict[str, frozenset[str]] = {}
    for key, roles in sorted(tracked.items()):
        obs = agents.get(key)
        members = [c for c in ((obs.container, *obs.leftovers) if obs else ()) if c is not None]
        if any(c.state != "created" for c in members):
            continue
        path = f"{naming.CONFIG_MOUNT}/{MARKER_DIR}"
        if members:
            done = port.archive_names(members[0].id, path)
        elif "config" in roles and images:
            # No container mounts the volume: look through one made for the look, from any
            # image clawker has (volumes are created only after their project's image).
            project = key.split("/", 1)[0]
            ref = next((r for r in images if r.startswith(f"clawker-{project}:")), min(images))
            done = port.probe_volume(roles["config"], MARKER_DIR, ref)
        else:
            continue  # nothing to look through: never refill what may hold user data
        finished = {role for role, marker in STEP_MARKERS.items() if marker in (done or ())}
        missing = frozenset(roles) - finished
        if missing:
            result[key] = missing
    return result

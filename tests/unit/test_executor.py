"""The executor over a recording port with injected failures (a fake only at the port's edge)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import IO, Any

from reconciler.docker.engine import (
    ContainerInfo,
    ContainerSpec,
    DockerError,
    NetworkInfo,
    VolumeInfo,
)
from reconciler.loop.execute import StepStatus, execute
from reconciler.loop.plan import Action, AgentChange, ChangeKind, Plan, Step


class RecordingPort:
    """Records calls; raises DockerError for the (method, target) pairs in `fail`."""

    def __init__(self, fail: set[tuple[str, str]] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[tuple[str, str]] = []
        self.renames: list[tuple[str, str]] = []
        self.fail = fail

    def _record(self, method: str, target: str) -> None:
        self.calls.append((method, target))
        if (method, target) in self.fail:
            raise DockerError(f"{method} {target}: injected failure", 500)

    def list_containers(self) -> list[ContainerInfo]:
        return []

    def list_volumes(self) -> list[VolumeInfo]:
        return []

    def list_networks(self) -> list[NetworkInfo]:
        return []

    def image_id(self, ref: str) -> str | None:
        return None

    def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        self._record("create_network", name)
        return name

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        self._record("create_volume", name)

    def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)

    def create_container(self, spec: ContainerSpec) -> str:
        self._record("create_container", spec.name)
        return spec.name

    def start_container(self, container_id: str) -> None:
        self._record("start_container", container_id)

    def stop_container(self, container_id: str, timeout: int = 10) -> None:
        self._record("stop_container", container_id)

    def remove_container(self, container_id: str) -> None:
        self._record("remove_container", container_id)

    def rename_container(self, container_id: str, new_name: str) -> None:
        self._record("rename_container", container_id)
        self.renames.append((container_id, new_name))

    def put_archive(self, container_id: str, path: str, data: bytes | IO[bytes]) -> None:
        self._record("put_archive", container_id)

    def container_id(self, name: str) -> str:
        return name

    def inspect_state(self, container_id: str) -> Mapping[str, Any]:
        return {}

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        return ""

    def import_image(
        self, tar_path: str, ref: str, labels: Mapping[str, str], cmd: Sequence[str]
    ) -> str:
        return ref


def _spec(name: str) -> ContainerSpec:
    return ContainerSpec(name=name, image="img", command=("true",), labels={})


def create_plan(agent: str, existing_volume: bool = False) -> Plan:
    c = f"clawker.p.{agent}"
    key = f"p/{agent}"
    steps = [Step(1, Action.CREATE_NETWORK, "network", "net", "not found")]
    deps = [1]
    if not existing_volume:
        steps.append(Step(2, Action.CREATE_VOLUME, "volume", f"{c}-config", "not found", agent=key))
        deps.append(2)
    n = len(steps)
    steps += [
        Step(
            n + 1,
            Action.CREATE_CONTAINER,
            "container",
            c,
            "not found",
            tuple(deps),
            agent=key,
            container=_spec(c),
        ),
        Step(n + 2, Action.START_CONTAINER, "container", c, "created", (n + 1,), agent=key),
    ]
    return Plan(tuple(steps), (AgentChange(key, ChangeKind.CREATE),))


def swap_plan() -> Plan:
    """A replace as the planner makes it (docs/reconciler.md, the swap)."""
    key, final, temp, old = "p/a", "clawker.p.a", "clawker.p.a.next", "0123456789ab"
    c = "container"
    steps = (
        Step(1, Action.CREATE_CONTAINER, c, temp, "env", agent=key, container=_spec(temp)),
        Step(2, Action.RENAME_CONTAINER, c, old, "", (1,), agent=key, new_name=f"{final}.old"),
        Step(3, Action.RENAME_CONTAINER, c, temp, "", (2,), agent=key, new_name=final),
        Step(4, Action.START_CONTAINER, c, final, "created", (3,), agent=key),
        Step(5, Action.STOP_CONTAINER, c, old, "replaced", (3,), agent=key),
        Step(6, Action.REMOVE_CONTAINER, c, old, "replaced", (5,), agent=key),
    )
    return Plan(steps, (AgentChange(key, ChangeKind.REPLACE),))


def test_a_swap_starts_the_new_container_and_stops_the_old_one_after_both_renames() -> None:
    port = RecordingPort()
    assert execute(port, swap_plan()).ok
    assert port.renames == [
        ("0123456789ab", "clawker.p.a.old"),
        ("clawker.p.a.next", "clawker.p.a"),
    ]
    renamed = port.calls.index(("rename_container", "clawker.p.a.next"))
    assert port.calls.index(("start_container", "clawker.p.a")) > renamed
    assert port.calls.index(("stop_container", "0123456789ab")) > renamed
    assert port.calls[-1] == ("remove_container", "0123456789ab")


def test_a_swap_whose_new_container_cannot_start_gives_the_old_one_its_name_back() -> None:
    port = RecordingPort(fail={("start_container", "clawker.p.a")})
    result = execute(port, swap_plan())
    assert not result.ok
    assert ("remove_container", "clawker.p.a") in port.calls  # the new one, under the name
    assert ("remove_container", "0123456789ab") not in port.calls  # never the old one
    assert port.renames[-1] == ("0123456789ab", "clawker.p.a")  # after the new one went
    removed_new = port.calls.index(("remove_container", "clawker.p.a"))
    assert port.calls.index(("rename_container", "0123456789ab"), removed_new) > removed_new
    assert result.rolled_back == ["container:clawker.p.a", "container:0123456789ab"]


def test_runs_every_step_in_dependency_order() -> None:
    port = RecordingPort()
    result = execute(port, create_plan("a"))
    assert result.ok
    assert port.calls.index(("create_container", "clawker.p.a")) > port.calls.index(
        ("create_volume", "clawker.p.a-config")
    )
    assert port.calls[-1] == ("start_container", "clawker.p.a")


def test_a_failed_start_removes_the_container_this_run_created_never_a_volume() -> None:
    """A volume this run created may already be another pass's (a watch and an apply at
    once): removing it is how Docker came to auto-create an unlabelled one in its place."""
    port = RecordingPort(fail={("start_container", "clawker.p.a")})
    events: list[tuple[StepStatus, str]] = []
    result = execute(
        port, create_plan("a"), on_event=lambda e: events.append((e.status, e.step.target))
    )
    assert not result.ok
    assert port.calls[-1] == ("remove_container", "clawker.p.a")
    assert not [c for c in port.calls if c[0] == "remove_volume"]
    assert result.rolled_back == ["container:clawker.p.a"]
    assert (StepStatus.FAILED, "clawker.p.a") in events
    # The shared network is never undone.
    assert ("remove_network", "net") not in port.calls


def test_a_volume_that_existed_before_is_never_removed() -> None:
    port = RecordingPort(fail={("start_container", "clawker.p.a")})
    execute(port, create_plan("a", existing_volume=True))
    assert not [c for c in port.calls if c[0] == "remove_volume"]


def test_a_failure_skips_dependents_and_leaves_other_agents_alone() -> None:
    a, b = create_plan("a"), create_plan("b")
    shifted = tuple(
        Step(
            s.id + 10,
            s.action,
            s.kind,
            s.target,
            s.cause,
            tuple(d + 10 if d != 1 else 1 for d in s.depends_on),
            s.agent,
            s.container,
        )
        for s in b.steps[1:]
    )
    plan = Plan(a.steps + shifted, a.changes + b.changes)
    port = RecordingPort(fail={("create_container", "clawker.p.a")})
    result = execute(port, plan)
    assert ("start_container", "clawker.p.a") not in port.calls
    assert ("start_container", "clawker.p.b") in port.calls
    assert result.agent_errors(plan) == {"p/a": "create_container clawker.p.a: injected failure"}


def fleet_plan(agents: Sequence[str]) -> Plan:
    """One network, then per agent: volume → container → start (ids in plan order)."""
    steps = [Step(1, Action.CREATE_NETWORK, "network", "net", "not found")]
    for agent in agents:
        c, key, n = f"clawker.p.{agent}", f"p/{agent}", len(steps)
        steps += [
            Step(n + 1, Action.CREATE_VOLUME, "volume", f"{c}-config", "not found", agent=key),
            Step(
                n + 2,
                Action.CREATE_CONTAINER,
                "container",
                c,
                "not found",
                (1, n + 1),
                agent=key,
                container=_spec(c),
            ),
            Step(n + 3, Action.START_CONTAINER, "container", c, "created", (n + 2,), agent=key),
        ]
    return Plan(tuple(steps), tuple(AgentChange(f"p/{a}", ChangeKind.CREATE) for a in agents))


def test_a_free_slot_goes_to_the_first_agent_so_starts_begin_before_the_last_create() -> None:
    port = RecordingPort()
    result = execute(port, fleet_plan(["a0", "a1", "a2"]), parallelism=1)
    assert result.ok
    # Depth first: each agent from volume to start before the next. (Queueing every ready step
    # at once ran all the volumes, then all the creates, and every start came last.)
    assert port.calls == [
        ("create_network", "net"),
        *(
            call
            for a in ("a0", "a1", "a2")
            for call in (
                ("create_volume", f"clawker.p.{a}-config"),
                ("create_container", f"clawker.p.{a}"),
                ("start_container", f"clawker.p.{a}"),
            )
        ),
    ]

"""One path for every verb: observe → plan → (render, confirm: the CLI's part) → execute → wait.

These functions hold the sequencing so that the CLI, watch mode and the control plane share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler import naming
from reconciler.controlplane.api.channel import (
    ApiError,
    ControlPlaneClient,
    ControlPlaneNotRunningError,
)
from reconciler.controlplane.paths import StatePaths, state_paths
from reconciler.controlplane.registry import StartStatus, StepRecord
from reconciler.controlplane.runtime_spec import (
    AgentRuntimeSpec,
    AgentRuntimeState,
    runtime_differences,
)
from reconciler.docker.engine import DockerPort
from reconciler.host.host_state import ensure_share_dir, observe_host
from reconciler.images import project_image_inputs
from reconciler.loop.execute import ExecutionResult, StepEvent, StepTools, execute
from reconciler.loop.observe import ObservedState, observe
from reconciler.loop.plan import Action, ChangeKind, Plan, RuntimeObservation, plan, plan_delete
from reconciler.loop.ready import Readiness, wait_ready
from specs import DesiredAgent, SpecSet, spec_hash

__all__ = [
    "AgentOutcome",
    "AgentStatus",
    "Prepared",
    "agent_statuses",
    "apply_plan",
    "observe_runtime",
    "pending_at_next_start",
    "prepare_apply",
    "prepare_delete",
]


@dataclass(frozen=True)
class Prepared:
    observed: ObservedState
    plan: Plan


@dataclass(frozen=True)
class AgentOutcome:
    key: str
    outcome: str  # created | configured | unchanged | recreated | deleted | failed
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


_OUTCOME = {
    ChangeKind.CREATE: "created",
    ChangeKind.UPDATE: "configured",
    ChangeKind.REPLACE: "recreated",
    ChangeKind.DELETE: "deleted",
    ChangeKind.NOOP: "unchanged",
}


def prepare_apply(
    port: DockerPort,
    specset: SpecSet,
    *,
    prune: bool = False,
    keys: Collection[str] | None = None,
    restart_if_needed: bool = False,
    controlplane: StatePaths | None = None,
) -> Prepared:
    """Observe Docker and the control plane, and plan; raises ImageError when a project's
    agents disagree on `build`, ApiError when the control plane refuses to answer (a running
    one that does not is planned as unknown).

    With `keys` (agent keys), plan only those agents: the others are left out of both the
    desired and the observed side, so nothing else is created, changed or pruned (watch mode's
    per-agent passes).
    """
    images = {i.project: i for i in project_image_inputs(specset.agents)}
    observed = observe(port)
    desired: Sequence[DesiredAgent] = specset.agents
    scoped = observed
    if keys is not None:
        desired = [a for a in specset.agents if a.key in keys]
        scoped = replace(observed, agents={k: a for k, a in observed.agents.items() if k in keys})
    host = observe_host(desired)
    return Prepared(
        observed,
        plan(
            desired,
            scoped,
            images=images,
            apply_sets=specset.projects,
            prune=prune,
            host=host,
            runtime=observe_runtime(controlplane) if desired else RuntimeObservation({}),
            restart_if_needed=restart_if_needed,
        ),
    )


def observe_runtime(paths: StatePaths | None = None) -> RuntimeObservation:
    """The control plane's state of every agent it knows (the other half of what `diff`
    compares); unknown when it is not running. A control plane that refuses this user, or
    answers in another version's terms, is an error: a plan made without it would be a guess."""
    client = ControlPlaneClient((paths or state_paths()).socket)
    try:
        raw: Mapping[str, Mapping[str, Any]] = client.call("runtime_state")
    except ControlPlaneNotRunningError:
        return RuntimeObservation(None, "control plane not running")
    return RuntimeObservation({k: AgentRuntimeState.from_dict(v) for k, v in raw.items()})


def prepare_delete(port: DockerPort, keys: Iterable[str], *, volumes: bool) -> Prepared:
    observed = observe(port)
    return Prepared(observed, plan_delete(keys, observed, volumes=volumes))


def apply_plan(
    port: DockerPort,
    the_plan: Plan,
    *,
    agents: Sequence[DesiredAgent] = (),
    controlplane: StatePaths | None = None,
    wait: bool = True,
    timeout: float = 120.0,
    on_event: Callable[[StepEvent], None] = lambda _e: None,
    on_build_line: Callable[[str], None] = lambda _l: None,
    on_step: Callable[[str, StepRecord], None] = lambda _c, _s: None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ExecutionResult, list[AgentOutcome]]:
    """Execute, then wait until every agent is Ready; one outcome per agent.

    With `controlplane` (its state paths; the CP must be running), the plan's control plane
    steps (UpdateRuntime, UpdateFirewall) go to it, new containers get bootstrap material from
    its PKI, and readiness is the CP's verdict on each container's current start. Nothing is
    sent to the control plane outside the plan. `sleep` paces the readiness polls (watch mode
    passes one that raises when it is told to stop).
    """
    tools = StepTools(on_build_line=on_build_line)
    client: ControlPlaneClient | None = None
    if controlplane is not None:
        # The PKI (cryptography, PyJWT) loads only here: `clawker diff` never signs anything.
        from reconciler.controlplane.identity.bootstrap import bootstrap_archive  # noqa: PLC0415
        from reconciler.controlplane.identity.pki import ClawkerPKI  # noqa: PLC0415

        client = ControlPlaneClient(controlplane.socket)
        pki = ClawkerPKI.load_or_create(controlplane.pki)
        cp = client
        tools = StepTools(
            bootstrap=lambda key, name: bootstrap_archive(pki, key, name),
            on_build_line=on_build_line,
            update_firewall=lambda key, domains: cp.call(
                "firewall_set", agent=key, domains=list(domains)
            ),
            update_runtime=lambda spec, fresh: cp.call(
                "runtime_put", spec=spec.as_dict(), fresh_config=fresh
            ),
        )
    for step in the_plan.steps:  # a bind mount's source must exist before the create
        if step.container is not None:
            ensure_share_dir(step.container)
    result = execute(port, the_plan, tools=tools, on_event=on_event)
    errors = result.agent_errors(the_plan)
    names = {a.key: naming.container_name(a.project, a.name) for a in agents if a.key not in errors}
    # Steps are shown for the starts this apply made; an agent already Ready was reported then.
    started = {
        naming.container_name(*s.agent.split("/", 1))
        for s in the_plan.steps
        if s.action is Action.START_CONTAINER and s.agent and s.id in result.done
    }
    readiness: Mapping[str, Readiness] = {}
    if wait and client is not None and names:
        readiness = wait_ready(
            port,
            client,
            names.values(),
            network=naming.network_name(),
            timeout=timeout,
            on_step=lambda name, record: on_step(name, record) if name in started else None,
            sleep=sleep,
        )
    outcomes = []
    for change in the_plan.changes:
        if change.key in errors:
            outcomes.append(AgentOutcome(change.key, "failed", errors[change.key]))
            continue
        verdict = readiness.get(names.get(change.key, ""))
        if verdict is not None and not verdict.ready:
            outcomes.append(AgentOutcome(change.key, "failed", f"not ready: {verdict.detail}"))
            continue
        outcomes.append(AgentOutcome(change.key, _OUTCOME[change.kind]))
    return result, outcomes


@dataclass(frozen=True)
class AgentStatus:
    """Desired vs observed for one agent, as `clawker get agents` shows it."""

    project: str
    name: str
    declared: bool
    container: str
    state: str  # running | exited | ... | missing
    up_to_date: bool | None  # None: not declared, or nothing to compare with
    container_id: str = ""
    workspace: str = ""
    mode: str = ""
    ready: bool = False
    initialized: bool = False
    firewall_enrolled: bool = False
    detail: str = ""
    pending: tuple[str, ...] = ()  # changes the control plane holds for the next start

    @property
    def key(self) -> str:
        return naming.agent_key(self.project, self.name)


@dataclass(frozen=True)
class Conditions:
    ready: bool
    initialized: bool
    detail: str
    firewall_enrolled: bool = False
    pending: tuple[str, ...] = ()


def pending_at_next_start(
    used: AgentRuntimeSpec | None, current: AgentRuntimeState | None
) -> tuple[str, ...]:
    """What the control plane holds that the running start was not driven with: it takes
    effect at the next start (a post_init that already ran never does)."""
    if used is None or current is None or current.spec is None:
        return ()
    return tuple(
        d.label
        for d in runtime_differences(used, current.spec)
        if not (d.field == "post_init" and current.post_init_done)
    )


def readiness_conditions(
    port: DockerPort, observed: ObservedState, cp: ControlPlaneClient
) -> dict[str, Conditions]:
    """Per running agent container (by id): the CP's verdict on its current start."""
    running = [
        a.container
        for a in observed.agents.values()
        if a.container is not None and a.container.state == "running"
    ]
    if not running:
        return {}
    from bpf.loader import cgroup2_root, cgroup_id  # noqa: PLC0415 - libbpf's wrappers, for `get`

    try:
        raw: Mapping[str, Any] = cp.call("status", containers=[c.id for c in running])
        runtimes: Mapping[str, Mapping[str, Any]] = cp.call("runtime_state")
    except ControlPlaneNotRunningError:
        return {c.id: Conditions(False, False, "control plane not running") for c in running}
    enrolled = _enrolled_cgroups(cp)
    result = {}
    for c in running:
        info = port.inspect_runtime(c.id, naming.network_name())
        data = raw.get(c.id)
        status = StartStatus.from_dict(data) if data else None
        # Enrolled means: the kernel's policy map holds this start's cgroup (a restart makes a
        # new cgroup, so an enrolment of an earlier start does not count).
        cgroup = cgroup2_root() / naming.cgroup_parent().strip("/") / c.id
        try:
            on_map = cgroup_id(cgroup) in enrolled
        except OSError:
            on_map = False
        if info is None or status is None or status.started_at != info.started_at:
            result[c.id] = Conditions(False, False, "waiting for the control plane", on_map)
            continue
        ready = status.phase == "ready"
        current = runtimes.get(status.agent_key)
        pending = pending_at_next_start(
            status.runtime, AgentRuntimeState.from_dict(current) if current else None
        )
        result[c.id] = Conditions(ready, ready, status.detail, on_map, pending)
    return result


def _enrolled_cgroups(cp: ControlPlaneClient) -> set[int]:
    try:
        status: Mapping[str, Any] = cp.call("firewall_status")
    except ApiError:
        return set()
    return {int(cg) for agent in status.get("agents", []) for cg in agent["enrolledCgroups"]}


def agent_statuses(
    observed: ObservedState,
    desired: Iterable[DesiredAgent] = (),
    *,
    only_desired: bool = False,
    conditions: Mapping[str, Conditions] | None = None,
) -> list[AgentStatus]:
    wanted = {a.key: a for a in desired}
    keys = set(wanted) if only_desired else set(wanted) | set(observed.agents)
    rows = []
    for key in sorted(keys):
        project, name = key.split("/", 1)
        obs = observed.agent(project, name)
        agent = wanted.get(key)
        c = obs.container
        up_to_date: bool | None = None
        if agent is not None and c is not None:
            up_to_date = c.labels.get(naming.SPEC_HASH) == spec_hash(agent)
        cond = (conditions or {}).get(c.id) if c else None
        rows.append(
            AgentStatus(
                project=project,
                name=name,
                declared=agent is not None,
                container=c.name if c else naming.container_name(project, name),
                state=c.state if c else "missing",
                up_to_date=up_to_date,
                container_id=c.id[:12] if c else "",
                workspace=agent.workspace.path
                if agent
                else (c.labels.get(naming.WORKSPACE_PATH, "") if c else ""),
                mode=agent.workspace.mode.value if agent else "",
                ready=cond.ready if cond else False,
                initialized=cond.initialized if cond else False,
                firewall_enrolled=cond.firewall_enrolled if cond else False,
                detail=cond.detail if cond else "",
                pending=cond.pending if cond else (),
            )
        )
    return rows

"""One path for every verb: observe → plan → (render, confirm: the CLI's part) → execute → wait.

These functions hold the sequencing so that the CLI, watch mode and the control plane share it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from reconciler import naming
from reconciler.controlplane.api.client import ApiError, ControlPlaneClient
from reconciler.controlplane.api.messages import (
    AgentRuntimeSpec,
    AgentRuntimeState,
    Phase,
    StepRecord,
)
from reconciler.controlplane.host_dirs import HostDirs
from reconciler.controlplane.paths import StatePaths
from reconciler.controlplane.runtime_spec import runtime_differences
from reconciler.docker.engine import ContainerSpec, DockerPort, MountSpec
from reconciler.host.host_state import ensure_share_dir
from reconciler.images import ImageInputs, build_project_image
from reconciler.loop.execute import ExecutionResult, StepEvent, StepStatus, StepTools, execute
from reconciler.loop.observe import ObservedState
from reconciler.loop.plan import Action, ChangeKind, Plan, Step
from reconciler.loop.prepare import (
    Prepared,
    observe_bases,
    observe_runtime,
    prepare_apply,
    prepare_delete,
)
from reconciler.loop.ready import Readiness, wait_ready
from reconciler.loop.timeline import Timeline
from reconciler.settings import Settings
from specs import DesiredAgent, spec_hash

# Observing and planning live in reconciler.loop.prepare (all `diff` loads); they are named
# here too, beside the verbs that go on to execute.
__all__ = [
    "AgentOutcome",
    "AgentStatus",
    "Prepared",
    "agent_statuses",
    "apply_plan",
    "forget_agents",
    "observe_bases",
    "observe_runtime",
    "prepare_apply",
    "prepare_delete",
]


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


def _fault_hook(settings: Settings) -> Callable[[Step], None]:
    """The fault-injection tests' kill point (Settings.test_kill_after); a no-op otherwise."""
    if not settings.test_kill_after:
        return lambda _step: None

    def kill(step: Step) -> None:
        if step.action.value == settings.test_kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


def forget_agents(settings: Settings, keys: Sequence[str]) -> bool:
    """Tell the control plane these agents are gone (their runtime spec and firewall state
    follow their containers); False when it is not running to be told."""
    if not keys:
        return True
    paths = StatePaths(settings.state_dir)
    try:
        ControlPlaneClient(paths.socket).forget_agents(keys)
    except ApiError:
        # Told at its next start instead, if it ever ran here (its state dir exists).
        with contextlib.suppress(OSError):
            fd = os.open(paths.forget_pending, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as pending:
                pending.write("".join(f"{key}\n" for key in keys))
        return False
    return True


def apply_plan(
    port: DockerPort,
    the_plan: Plan,
    *,
    settings: Settings,
    agents: Sequence[DesiredAgent] = (),
    controlplane: StatePaths | None = None,
    wait: bool = True,
    timeout: float = 120.0,
    on_event: Callable[[StepEvent], None] = lambda _e: None,
    on_build_line: Callable[[str], None] = lambda _l: None,
    on_step: Callable[[str, StepRecord], None] = lambda _c, _s: None,
    sleep: Callable[[float], None] = time.sleep,
    timeline: Timeline | None = None,
    before_start: Callable[[str], None] | None = None,
) -> tuple[ExecutionResult, list[AgentOutcome]]:
    """Execute, then wait until every agent is Ready; one outcome per agent.

    With `controlplane` (its state paths; the CP must be running), the plan's control plane
    steps (UpdateRuntime, UpdateFirewall) go to it, new containers get bootstrap material the
    CP issues (the CLI holds no key), and readiness is the CP's verdict on each container's
    current start. Nothing is sent to the control plane outside the plan. `sleep` paces the
    readiness polls (watch mode passes one that raises when it is told to stop).
    """

    def build_image(inputs: ImageInputs, base: str) -> None:
        build_project_image(port, inputs, on_build_line, settings=settings, base=base or None)

    tools = StepTools(
        on_build_line=on_build_line,
        build_image=build_image,
        before_start=before_start,
        after_step=_fault_hook(settings),
    )
    client: ControlPlaneClient | None = None
    if controlplane is not None:
        client = cp = ControlPlaneClient(controlplane.socket)

        def update_firewall(key: str, domains: Sequence[str]) -> None:
            cp.firewall_set(key, domains)

        def update_runtime(spec: AgentRuntimeSpec, fresh_config: bool) -> None:
            cp.runtime_put(spec, fresh_config=fresh_config)

        host_dirs = HostDirs(controlplane.containers)

        def prepare_create(spec: ContainerSpec) -> ContainerSpec:
            """An agent's container gets its own host directory, bound where its bootstrap
            material is read, for the CP to write that material into (host_dirs.py)."""
            if spec.labels.get(naming.PURPOSE) != "agent":
                return spec
            try:
                token, path = host_dirs.create()
            except OSError:
                return spec  # not this host's state directory: the CP hands an archive back
            bind = MountSpec("bind", naming.BOOTSTRAP_MOUNT, str(path), read_only=True)
            labels = {**spec.labels, naming.HOST_DIR: token}
            return replace(spec, labels=labels, mounts=(*spec.mounts, bind))

        tools = StepTools(
            bootstrap=cp.issue_bootstrap,
            prepare_create=prepare_create,
            on_build_line=on_build_line,
            update_firewall=update_firewall,
            update_runtime=update_runtime,
            build_image=build_image,
            before_start=before_start,
            after_step=_fault_hook(settings),
        )
    for step in the_plan.steps:  # a bind mount's source must exist before the create
        if step.container is not None:
            ensure_share_dir(step.container, dict(settings.host_environment))
    tl = timeline or Timeline()

    def timed_event(event: StepEvent) -> None:
        name = f"step:{event.step.action}"
        if event.status is StepStatus.STARTED:
            tl.begin(name, event.step.target)
        elif event.status in (StepStatus.DONE, StepStatus.FAILED):
            tl.end(name, event.step.target)
        on_event(event)

    with tl.span("execute"):
        result = execute(port, the_plan, tools=tools, on_event=timed_event)
    errors = result.agent_errors(the_plan)
    deleted = [c.key for c in the_plan.changes if c.kind is ChangeKind.DELETE]
    forget_agents(settings, [key for key in deleted if key not in errors])
    names = {a.key: naming.container_name(a.project, a.name) for a in agents if a.key not in errors}
    # Steps are shown for the starts this apply made; an agent already Ready was reported then.
    started = {
        naming.container_name(*s.agent.split("/", 1))
        for s in the_plan.steps
        if s.action is Action.START_CONTAINER and s.agent and s.id in result.done
    }
    readiness: Mapping[str, Readiness] = {}
    if wait and client is not None and names:
        with tl.span("ready"):
            readiness = wait_ready(
                port,
                client,
                names.values(),
                network=settings.network,
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


def readiness_conditions(observed: ObservedState, cp: ControlPlaneClient) -> dict[str, Conditions]:
    """Per running agent container (by id): the CP's verdict on its current start.

    Every condition is the control plane's: it lists its parent cgroup and reads the kernel's
    policy map once for all of them (FirewallEnrolled), and records when the init steps are done
    (Initialized, false while post_init runs). Two CP calls in all, whatever the number."""
    running = [
        a.container
        for a in observed.agents.values()
        if a.container is not None and a.container.state == "running"
    ]
    if not running:
        return {}
    try:
        reports = cp.start_reports([c.id for c in running])
        runtimes = cp.runtime_state()
    except ApiError as exc:
        return {c.id: Conditions(False, False, str(exc)) for c in running}
    result = {}
    for c in running:
        report = reports.get(c.id)
        status = report.status if report else None
        if report is None or status is None:
            result[c.id] = Conditions(False, False, "waiting for the control plane")
            continue
        result[c.id] = Conditions(
            status.phase is Phase.READY,
            report.initialized,
            status.detail,
            report.firewall_enrolled,
            pending_at_next_start(status.runtime, runtimes.get(status.agent_key)),
        )
    return result


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

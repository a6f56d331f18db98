"""The executor runs a plan's steps in dependency order and decides nothing.

Steps run on a small thread pool (bounded parallelism: Docker serialises much internally, and
two cores gain little past four calls in flight). A failed step skips everything that depends on
it, and the containers its agent created *in this run* are removed again: never anything that
existed before the run. Volumes are never rolled back: once a volume exists, another pass (watch
mode, a second apply) may have planned around it or mounted it, and removing it under that pass
is how Docker came to auto-create an unlabelled volume in its place. An empty labelled volume
left behind is harmless: the next apply uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler import naming
from reconciler.controlplane.api.messages import AgentRuntimeSpec
from reconciler.docker.engine import ContainerSpec, DockerError, ObjectPort
from reconciler.host.config_seed import seed_archive
from reconciler.host.progress import marker_archive
from reconciler.host.workspace import snapshot_archive
from reconciler.images import ImageError, ImageInputs
from reconciler.loop.plan import Action, Plan, Step

__all__ = ["ExecutionResult", "StepEvent", "StepStatus", "StepTools", "execute", "run_step"]


class StepStatus(StrEnum):
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    ROLLED_BACK = "rolled back"


@dataclass(frozen=True)
class StepEvent:
    step: Step
    status: StepStatus
    error: str = ""


@dataclass
class ExecutionResult:
    done: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)
    rolled_back: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def agent_errors(self, plan: Plan) -> dict[str, str]:
        """The first error of each agent that had one."""
        errors: dict[str, str] = {}
        for step in plan.steps:
            if step.id in self.failed and step.agent:
                errors.setdefault(step.agent, self.failed[step.id])
        for step in plan.steps:
            if step.id in self.skipped and step.agent and step.agent not in errors:
                errors[step.agent] = "not attempted: a step it depends on failed"
        return errors


@dataclass(frozen=True)
class StepTools:
    """What some steps need besides the port: kept outside so the executor stays dumb."""

    # (agent key, container name) -> (its id, None: written into its host directory; or a tar
    # to copy in at /): the control plane's identity for a new container
    bootstrap: Callable[[str, str], tuple[str, bytes | None]] | None = None
    # CreateContainer: what the create adds to the plan's spec (the bootstrap's host directory)
    prepare_create: Callable[[ContainerSpec], ContainerSpec] = lambda spec: spec
    on_build_line: Callable[[str], None] = lambda _line: None
    # (agent key, allowlist): the control plane call behind UpdateFirewall
    update_firewall: Callable[[str, tuple[str, ...]], None] | None = None
    # (runtime spec, fresh config volume): the control plane call behind UpdateRuntime
    update_runtime: Callable[[AgentRuntimeSpec, bool], None] | None = None
    # BuildImage: (inputs, base to build FROM) -> None; builds go through images/, not here
    build_image: Callable[[ImageInputs, str], None] | None = None
    # (container name): right before a start, e.g. `run -it` attaching so nothing is lost
    before_start: Callable[[str], None] | None = None
    # Called once a step's call has returned: the fault-injection tests kill the process
    # here (Settings.test_kill_after), to show that a pass killed anywhere resumes.
    after_step: Callable[[Step], None] = lambda _step: None


def run_step(port: ObjectPort, step: Step, tools: StepTools = StepTools()) -> None:
    """The one Docker call a step stands for."""
    _call(port, step, tools)
    tools.after_step(step)


def _call(port: ObjectPort, step: Step, tools: StepTools) -> None:
    match step.action:
        case Action.BUILD_IMAGE:
            assert step.image_inputs is not None
            if tools.build_image is None:
                raise DockerError("no image builder: apply builds images through images/")
            try:
                tools.build_image(step.image_inputs, step.base_image)
            except ImageError as exc:
                raise DockerError(str(exc)) from exc
        case Action.COPY_BOOTSTRAP:
            if tools.bootstrap is None:
                raise DockerError("no bootstrap issuer: the control plane's PKI is needed")
            assert step.agent is not None
            # The identity is bound to the container's id, which exists only once it is created.
            created, material = tools.bootstrap(step.agent, step.target)
            if material is not None:
                port.put_archive(created, "/", material)
        case Action.CREATE_NETWORK:
            port.create_network(step.target, step.labels)
        case Action.CREATE_VOLUME:
            port.create_volume(step.target, step.labels)
        case Action.CREATE_CONTAINER:
            assert step.container is not None
            port.create_container(tools.prepare_create(step.container))
        case Action.COPY_WORKSPACE:
            with snapshot_archive(step.source_dir, step.user) as archive:
                port.put_archive(step.target, step.source_dir, archive)
            # the marker goes last, once the whole copy is in (reconciler.host.progress)
            port.put_archive(
                step.target, naming.CONFIG_MOUNT, marker_archive("workspace", step.user)
            )
        case Action.SEED_CONFIG:
            assert step.seed is not None
            with seed_archive(step.seed) as archive:  # ends with its marker
                port.put_archive(step.target, naming.CONFIG_MOUNT, archive)
        case Action.START_CONTAINER:
            if tools.before_start is not None:
                tools.before_start(step.target)
            port.start_container(step.target)
        case Action.STOP_CONTAINER:
            port.stop_container(step.target)
        case Action.REMOVE_CONTAINER:
            port.remove_container(step.target)
        case Action.RENAME_CONTAINER:
            port.rename_container(step.target, step.new_name)
        case Action.UPDATE_FIREWALL:
            if tools.update_firewall is None:
                raise DockerError("no control plane to update the firewall allowlist")
            tools.update_firewall(step.target, step.allowlist)
        case Action.UPDATE_RUNTIME:
            if tools.update_runtime is None or step.runtime is None:
                raise DockerError("no control plane to update the agent's runtime")
            tools.update_runtime(step.runtime, step.fresh_config)
        case Action.REMOVE_VOLUME:
            port.remove_volume(step.target)


def execute(
    port: ObjectPort,
    plan: Plan,
    *,
    parallelism: int = 4,
    tools: StepTools = StepTools(),
    on_event: Callable[[StepEvent], None] = lambda _event: None,
) -> ExecutionResult:
    """Run `plan` against `port`; report every step's progress through `on_event`."""
    result = ExecutionResult()
    steps = {s.id: s for s in plan.steps}
    pending = dict(steps)
    dependents: dict[int, list[int]] = {s.id: [] for s in plan.steps}
    for s in plan.steps:
        for d in s.depends_on:
            dependents[d].append(s.id)
    failed_agents: set[str] = set()

    def skip_dependents(step_id: int) -> None:
        for dep_id in dependents[step_id]:
            if dep_id in pending:
                del pending[dep_id]
                result.skipped.add(dep_id)
                on_event(StepEvent(steps[dep_id], StepStatus.SKIPPED))
                skip_dependents(dep_id)

    # Depth first: a free slot goes to the ready step of the agent that comes first in the plan,
    # so agents reach StartContainer one after another while later agents are still being
    # created, and the control plane's per-start work runs in the shadow of Docker's.
    rank: dict[str | None, int] = {}
    for s in plan.steps:
        rank.setdefault(s.agent, len(rank))

    def ready() -> list[Step]:
        found = [
            s
            for s in pending.values()
            if all(d in result.done for d in s.depends_on)
            and not (s.agent and s.agent in failed_agents)
        ]
        return sorted(found, key=lambda s: rank[s.agent])

    slots = max(1, parallelism)
    with ThreadPoolExecutor(max_workers=slots) as pool:
        running: dict[Future[None], Step] = {}
        while pending or running:
            for step in ready()[: slots - len(running)]:
                del pending[step.id]
                on_event(StepEvent(step, StepStatus.STARTED))
                running[pool.submit(run_step, port, step, tools)] = step
            if not running:
                # Whatever is left waits on a failed agent or a failed dependency.
                for step_id in list(pending):
                    if step_id in pending:
                        del pending[step_id]
                        result.skipped.add(step_id)
                        on_event(StepEvent(steps[step_id], StepStatus.SKIPPED))
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                step = running.pop(fut)
                exc = fut.exception()
                if exc is None:
                    result.done.add(step.id)
                    on_event(StepEvent(step, StepStatus.DONE))
                    continue
                message = str(exc) if isinstance(exc, DockerError) else repr(exc)
                result.failed[step.id] = message
                on_event(StepEvent(step, StepStatus.FAILED, message))
                if step.agent:
                    failed_agents.add(step.agent)
                skip_dependents(step.id)

    for agent in sorted(failed_agents):
        _roll_back(port, plan, agent, result, on_event)
    return result


def _roll_back(
    port: ObjectPort,
    plan: Plan,
    agent: str,
    result: ExecutionResult,
    on_event: Callable[[StepEvent], None],
) -> None:
    """Remove what this run created for `agent`, newest first; nothing older is touched but
    a replaced container that this run renamed out of the way and did not remove: it gets the
    agent's name back (a swap that failed leaves the old container as it found it, or stopped)."""
    names: dict[str, str] = {}
    retired: list[Step] = []
    removed = {
        s.target
        for s in plan.steps
        if s.agent == agent and s.id in result.done and s.action is Action.REMOVE_CONTAINER
    }
    for step in plan.steps:
        if step.agent != agent or step.id not in result.done:
            continue
        if step.action is Action.CREATE_CONTAINER:
            names[step.target] = step.target
        elif step.action is Action.RENAME_CONTAINER and step.target in names:
            names[step.target] = step.new_name
        elif step.action is Action.RENAME_CONTAINER and step.target not in removed:
            retired.append(step)
    for step in reversed(plan.steps):
        if step.agent != agent or step.id not in result.done:
            continue
        try:
            if step.action is Action.CREATE_CONTAINER:
                port.remove_container(names[step.target])
            else:
                continue
        except DockerError as exc:
            on_event(StepEvent(step, StepStatus.FAILED, f"rollback failed: {exc}"))
            continue
        result.rolled_back.append(f"{step.kind}:{names.get(step.target, step.target)}")
        on_event(StepEvent(step, StepStatus.ROLLED_BACK))
    for step in retired:  # after the removals above: the agent's name is free again
        project, _, name = agent.partition("/")
        try:
            port.rename_container(step.target, naming.container_name(project, name))
        except DockerError as exc:
            on_event(StepEvent(step, StepStatus.FAILED, f"rollback failed: {exc}"))
            continue
        result.rolled_back.append(f"{step.kind}:{step.target}")
        on_event(StepEvent(step, StepStatus.ROLLED_BACK))

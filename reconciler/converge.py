"""One path for every verb: observe → plan → (render, confirm: the CLI's part) → execute → wait.

These functions hold the sequencing so that the CLI, watch mode and the control plane share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from reconciler import naming
from reconciler.docker_port import DockerPort
from reconciler.executor import ExecutionResult, StepEvent, execute
from reconciler.observed import ObservedState, observe
from reconciler.planning import Action, ChangeKind, Plan, plan, plan_delete
from reconciler.readiness import Readiness, wait_ready
from specs import DesiredAgent, SpecSet, spec_hash

__all__ = [
    "AgentOutcome",
    "AgentStatus",
    "Prepared",
    "agent_statuses",
    "apply_plan",
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


def prepare_apply(port: DockerPort, specset: SpecSet, *, prune: bool = False) -> Prepared:
    image = naming.agent_image()
    observed = observe(port, [image] if specset.agents else [])
    return Prepared(
        observed,
        plan(specset.agents, observed, image=image, apply_sets=specset.projects, prune=prune),
    )


def prepare_delete(port: DockerPort, keys: Iterable[str], *, volumes: bool) -> Prepared:
    observed = observe(port)
    return Prepared(observed, plan_delete(keys, observed, volumes=volumes))


def apply_plan(
    port: DockerPort,
    the_plan: Plan,
    *,
    wait: bool = True,
    timeout: float = 60.0,
    on_event: Callable[[StepEvent], None] = lambda _e: None,
) -> tuple[ExecutionResult, list[AgentOutcome]]:
    """Execute, then wait until every started agent is Ready; one outcome per agent."""
    result = execute(port, the_plan, on_event=on_event)
    errors = result.agent_errors(the_plan)
    started = {
        s.agent: s.target
        for s in the_plan.steps
        if s.action is Action.START_CONTAINER and s.id in result.done and s.agent
    }
    readiness: Mapping[str, Readiness] = (
        wait_ready(port, started.values(), timeout=timeout) if wait and started else {}
    )
    outcomes = []
    for change in the_plan.changes:
        if change.key in errors:
            outcomes.append(AgentOutcome(change.key, "failed", errors[change.key]))
            continue
        verdict = readiness.get(started.get(change.key, ""))
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

    @property
    def key(self) -> str:
        return naming.agent_key(self.project, self.name)

    @property
    def ready(self) -> bool:
        return self.state == "running"


def agent_statuses(
    observed: ObservedState, desired: Iterable[DesiredAgent] = (), *, only_desired: bool = False
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
            )
        )
    return rows

"""The pure planner: `plan(desired, observed) -> Plan`.

No I/O and no clocks: the same inputs always give the same plan, so its tests are golden text.
Every step is one Docker API call and carries the cause that made it necessary; the executor
only runs steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from reconciler import naming
from reconciler.controlplane.api.messages import AgentRuntimeSpec, AgentRuntimeState
from reconciler.controlplane.runtime_spec import Effect, desired_runtime, runtime_differences
from reconciler.docker.engine import ContainerInfo, ContainerSpec
from reconciler.errors import UsageError
from reconciler.firewall.allowlist import allowlist_change, effective_allowlist
from reconciler.host.host_state import HostContext, HostState
from reconciler.images import ImageInputs, build_reason
from reconciler.loop.desired import (
    SPEC_VIEW_LABEL,
    Placement,
    RunOptions,
    desired_container,
    desired_volumes,
)
from reconciler.loop.observe import ObservedState
from specs import HASH_VERSION, DesiredAgent, WorkspaceMode, recreate_view, spec_hash

if TYPE_CHECKING:  # constructed only for a new config volume (_seed_config)
    from reconciler.host.config_seed import ConfigSeed

__all__ = [
    "Action",
    "AgentChange",
    "ChangeKind",
    "FieldChange",
    "Plan",
    "PlanError",
    "RuntimeObservation",
    "Step",
    "images_to_build",
    "plan",
    "plan_delete",
    "plan_start",
    "plan_volume_prune",
]


class PlanError(UsageError):
    """The plan cannot be made (for example the agent image is missing)."""


class Action(StrEnum):
    CREATE_NETWORK = "CreateNetwork"
    CREATE_VOLUME = "CreateVolume"
    CREATE_CONTAINER = "CreateContainer"
    COPY_WORKSPACE = "CopyWorkspace"
    SEED_CONFIG = "SeedConfig"
    START_CONTAINER = "StartContainer"
    STOP_CONTAINER = "StopContainer"
    REMOVE_CONTAINER = "RemoveContainer"
    RENAME_CONTAINER = "RenameContainer"
    REMOVE_VOLUME = "RemoveVolume"
    BUILD_IMAGE = "BuildImage"
    COPY_BOOTSTRAP = "CopyBootstrap"
    UPDATE_FIREWALL = "UpdateFirewall"  # a control plane call, not a Docker one
    UPDATE_RUNTIME = "UpdateRuntime"  # a control plane call: what the agent's starts run


# Steps whose success leaves something behind that a failed attempt must remove again.
CREATES = frozenset({Action.CREATE_VOLUME, Action.CREATE_CONTAINER})


@dataclass(frozen=True)
class Step:
    """One Docker API call: `target` is a name or id the call acts on."""

    id: int
    action: Action
    kind: str  # network | volume | container
    target: str
    cause: str
    depends_on: tuple[int, ...] = ()
    agent: str | None = None
    container: ContainerSpec | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    new_name: str = ""  # RenameContainer: the final name; CopyBootstrap: the identity's name
    source_dir: str = ""
    image_inputs: ImageInputs | None = None
    base_image: str = ""  # BuildImage: the image it builds FROM (chosen by observation)
    allowlist: tuple[str, ...] = ()  # UpdateFirewall: the agent's whole allowlist
    seed: ConfigSeed | None = None  # SeedConfig: what the new config volume starts with
    user: naming.AgentUser = naming.DEFAULT_AGENT_USER  # CopyWorkspace: who owns the copy
    runtime: AgentRuntimeSpec | None = None  # UpdateRuntime: the agent's whole runtime spec
    fresh_config: bool = False  # UpdateRuntime: a new config volume (post_init not run on it)

    def __str__(self) -> str:
        deps = " ".join(f"#{d}" for d in self.depends_on)
        return f"[{deps}] -> #{self.id} {self.kind}:{self.target}, {self.action}, {self.cause}"


@dataclass(frozen=True)
class BaseChoice:
    """What a project image would be built FROM: `ref`, or why no base is usable (`error`)."""

    ref: str
    error: str = ""


class ChangeKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"  # changed in place (started)
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "noop"


@dataclass(frozen=True)
class FieldChange:
    """One changed field; `effect` says when the change takes effect. `summary`, when set, is
    shown instead of old -> new (an allowlist's `+ a, - b`)."""

    path: str
    old: Any
    new: Any
    sensitive: bool = False
    effect: Effect = Effect.REPLACE
    summary: str = ""


@dataclass(frozen=True)
class AgentChange:
    key: str
    kind: ChangeKind
    reasons: tuple[str, ...] = ()
    fields: tuple[FieldChange, ...] = ()
    resources: tuple[str, ...] = ()  # e.g. "+ volume clawker.p.a-config"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    changes: tuple[AgentChange, ...]
    warnings: tuple[str, ...] = ()  # said by diff and apply, whether or not anything changes

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def deletions(self) -> tuple[AgentChange, ...]:
        """The agents this plan removes (prune, delete): what `apply` asks about before it acts.
        A replace keeps the agent and its volumes, so it is not asked about."""
        return tuple(c for c in self.changes if c.kind is ChangeKind.DELETE)

    def counts(self) -> tuple[int, int, int]:
        """(to add, to change, to destroy) in Terraform's sense: a replace is one add + one."""
        add = sum(c.kind in (ChangeKind.CREATE, ChangeKind.REPLACE) for c in self.changes)
        change = sum(c.kind is ChangeKind.UPDATE for c in self.changes)
        destroy = sum(c.kind in (ChangeKind.DELETE, ChangeKind.REPLACE) for c in self.changes)
        return add, change, destroy

    def __str__(self) -> str:
        return "\n".join(str(s) for s in self.steps)


class _StepBuilder:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(
        self,
        action: Action,
        kind: str,
        target: str,
        cause: str,
        depends_on: Iterable[int | None] = (),
        **extra: Any,
    ) -> int:
        step_id = len(self.steps) + 1
        deps = tuple(sorted({d for d in depends_on if d is not None}))
        self.steps.append(Step(step_id, action, kind, target, cause, deps, **extra))
        return step_id


def _flatten(view: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in view.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _field_changes(old_view: Mapping[str, Any], new_view: Mapping[str, Any]) -> list[FieldChange]:
    old, new = _flatten(old_view), _flatten(new_view)
    changes = []
    for path in sorted(old.keys() | new.keys()):
        if old.get(path) != new.get(path):
            sensitive = path.startswith("agent.env.") or path == "agent.env"
            changes.append(FieldChange(path, old.get(path), new.get(path), sensitive))
    return changes


def _field_group(path: str) -> str:
    """`agent.env.FOO` -> `agent.env`; `command` -> `command`: the unit a cause names."""
    parts = path.split(".")
    return (
        ".".join(parts[:2]) if parts[0] in {"agent", "build", "workspace", "security"} else parts[0]
    )


def _recorded_view(container: ContainerInfo) -> dict[str, Any] | None:
    raw = container.labels.get(SPEC_VIEW_LABEL)
    if not raw:
        return None
    try:
        view = json.loads(raw)
    except ValueError:
        return None
    return view if isinstance(view, dict) else None


def _replace_reasons(
    agent: DesiredAgent, container: ContainerInfo, image: _ImagePlan
) -> tuple[list[str], list[FieldChange]]:
    reasons: list[str] = []
    fields: list[FieldChange] = []
    same_version = container.labels.get(naming.HASH_VERSION) == HASH_VERSION
    # A container stamped by another hash version is compared on nothing: upgrading clawker
    # must never recreate every agent.
    if same_version and container.labels.get(naming.SPEC_HASH) != spec_hash(agent):
        old_view = _recorded_view(container)
        if old_view is None:
            reasons.append("spec changed")
        else:
            fields = _field_changes(old_view, recreate_view(agent))
            groups = sorted({_field_group(f.path) for f in fields})
            reasons.append(f"{', '.join(groups) or 'spec'} changed")
    if image.build_step is not None:
        reasons.append(f"image rebuilt ({image.build_cause})")
    elif image.current_id and container.image_id != image.current_id:
        reasons.append("image changed")
    return reasons, fields


@dataclass(frozen=True)
class _ImagePlan:
    """The image one project's agents run: its ref, the step that builds it (if any), and the
    id their containers must already run to count as up to date."""

    ref: str
    build_step: int | None
    build_cause: str | None
    current_id: str | None
    user: naming.AgentUser = naming.DEFAULT_AGENT_USER


def images_to_build(
    desired: Iterable[DesiredAgent], images: Mapping[str, ImageInputs], observed: ObservedState
) -> list[ImageInputs]:
    """The inputs of the images `plan` builds for `desired`: those whose observed labels (the
    image list) do not match. Only their bases matter to the plan (`bases`)."""
    projects = {a.project for a in desired}
    wanted = []
    for project in sorted(projects & images.keys()):
        inputs = images[project]
        seen = observed.images.get(inputs.ref)
        if build_reason(inputs, seen.labels if seen else None) is not None:
            wanted.append(inputs)
    return wanted


def plan(
    desired: Sequence[DesiredAgent],
    observed: ObservedState,
    *,
    images: Mapping[str, ImageInputs],
    apply_sets: Iterable[str] = (),
    prune: bool = False,
    host: HostState | None = None,
    runtime: RuntimeObservation | None = None,
    restart_if_needed: bool = False,
    placement: Placement = Placement(),  # noqa: B008 - frozen, so a shared default is safe
    bases: Mapping[str, BaseChoice] | None = None,
    run: Mapping[str, RunOptions] | None = None,
) -> Plan:
    """Steps that make Docker and the control plane match `desired`; `images` holds each
    project's image inputs. With `prune`, also remove agents applied from one of `apply_sets`
    (projects) that are no longer declared. `host` is what new containers take from the host
    (see `observe_host`); `placement` is the network and parent cgroup they go in (from
    Settings); `bases` is, per declared base image, what a build would start FROM
    (`observe_bases` of `images_to_build`: a base is looked up only where the plan builds), so
    the plan shows it and an unusable base is an error before anything is touched. `runtime`
    is the control plane's state of the agents (None: not planned); with `restart_if_needed`,
    a running agent whose changes wait for its next start is restarted.
    `run` names the agents `clawker run`/`create` make (by key): their containers are labelled
    as made by run and join no apply set, so no `apply --prune` removes them."""
    b = _StepBuilder()
    changes: list[AgentChange] = []
    network = placement.network
    net_step: int | None = None
    if desired and network not in observed.networks:
        net_step = b.add(
            Action.CREATE_NETWORK,
            "network",
            network,
            "not found",
            labels={naming.PURPOSE: "network"},
        )
    image_plans: dict[str, _ImagePlan] = {}
    warnings: list[str] = []
    for project in sorted({a.project for a in desired}):
        if project not in images:
            raise PlanError(f"no image inputs for project {project}")
        inputs = images[project]
        warnings += inputs.warnings
        seen = observed.images.get(inputs.ref)
        cause = build_reason(inputs, seen.labels if seen else None)
        step = None
        if cause:
            choice = (bases or {}).get(inputs.base_image, BaseChoice(inputs.base_image))
            if choice.error:
                raise PlanError(choice.error)
            step = b.add(
                Action.BUILD_IMAGE,
                "image",
                inputs.ref,
                cause,
                image_inputs=inputs,
                base_image=choice.ref,
            )
        image_plans[project] = _ImagePlan(
            inputs.ref, step, cause, seen.id if seen else None, inputs.user
        )

    for agent in sorted(desired, key=lambda a: a.key):
        rt = _plan_runtime(b, agent, observed, runtime, host)
        change = _plan_agent(
            b,
            agent,
            observed,
            image_plans[agent.project],
            net_step,
            host,
            placement,
            before_start=rt.steps,
            run=(run or {}).get(agent.key),
        )
        changes.append(_with_runtime(b, agent, change, rt, observed, restart_if_needed))

    if prune:
        changes += _plan_prune(b, desired, observed, set(apply_sets))
    return Plan(tuple(b.steps), tuple(changes), tuple(warnings))


def _plan_prune(
    b: _StepBuilder, desired: Sequence[DesiredAgent], observed: ObservedState, sets: set[str]
) -> list[AgentChange]:
    wanted = {a.key for a in desired}
    changes = []
    for key in sorted(observed.agents):
        obs = observed.agents[key]
        members = [c for c in (obs.container, *obs.leftovers) if c is not None]
        if key in wanted or not any(c.labels.get(naming.APPLY_SET) in sets for c in members):
            continue
        for c in members:
            b.add(
                Action.REMOVE_CONTAINER,
                "container",
                c.name,
                f"pruned: not declared in apply set {c.labels.get(naming.APPLY_SET)}",
                agent=key,
            )
        changes.append(
            AgentChange(
                key,
                ChangeKind.DELETE,
                ("not declared any more",),
                resources=tuple(f"- container {c.name}" for c in members),
            )
        )
    return changes


def _remove_leftover(b: _StepBuilder, c: ContainerInfo, key: str) -> int:
    """A container of an interrupted replace goes before anything is created; one that still
    runs (a replaced container that had not been stopped yet) is stopped first, not killed."""
    why = "leftover from an interrupted replace"
    after: list[int] = []
    if c.state in ("running", "paused", "restarting"):
        after = [b.add(Action.STOP_CONTAINER, "container", c.name, why, agent=key)]
    return b.add(Action.REMOVE_CONTAINER, "container", c.name, why, after, agent=key)


def _plan_agent(
    b: _StepBuilder,
    agent: DesiredAgent,
    observed: ObservedState,
    image: _ImagePlan,
    net_step: int | None,
    host: HostState | None = None,
    placement: Placement = Placement(),  # noqa: B008 - frozen, so a shared default is safe
    *,
    before_start: Sequence[int] = (),
    run: RunOptions | None = None,
) -> AgentChange:
    """Docker's part of one agent; every start waits for `before_start` (the control plane's
    steps: a start is driven with what they write)."""
    key = agent.key
    obs = observed.agent(agent.project, agent.name)
    resources: list[str] = []
    cleanup = [_remove_leftover(b, c, key) for c in obs.leftovers]
    resources += [f"- container {c.name}" for c in obs.leftovers]

    volume_steps: list[int] = []
    # Roles whose fill (seed, snapshot copy) this plan makes: new volumes, and volumes whose
    # marker says an earlier, interrupted pass never finished filling them.
    fill_roles = dict.fromkeys(observed.unfinished.get(key, ()), "unfinished")
    for vol in desired_volumes(agent):
        if vol.name not in observed.volumes:
            volume_steps.append(
                b.add(
                    Action.CREATE_VOLUME,
                    "volume",
                    vol.name,
                    "not found",
                    # after the image: a volume's marker is read through a container of it
                    [image.build_step],
                    agent=key,
                    labels=vol.labels,
                )
            )
            resources.append(f"+ volume {vol.name}")
            fill_roles[vol.role] = "new"

    apply_set = agent.project
    final = naming.container_name(agent.project, agent.name)
    before_create = [net_step, image.build_step, *volume_steps, *cleanup]
    current = obs.container
    if current is None:
        spec = desired_container(
            agent,
            image=image.ref,
            apply_set=apply_set,
            host=host,
            placement=placement,
            run=run,
            user=image.user,
        )
        create = b.add(
            Action.CREATE_CONTAINER,
            "container",
            spec.name,
            "not found",
            before_create,
            agent=key,
            container=spec,
        )
        last = _prepare_container(b, agent, spec.name, create, fill_roles, host, image.user)
        b.add(
            Action.START_CONTAINER,
            "container",
            spec.name,
            "created",
            [last, *before_start],
            agent=key,
        )
        resources.append(f"+ container {spec.name}")
        return AgentChange(key, ChangeKind.CREATE, ("not found",), resources=tuple(resources))

    reasons, fields = _replace_reasons(agent, current, image)
    if reasons:
        temp = naming.replacement_name(agent.project, agent.name)
        spec = desired_container(
            agent,
            image=image.ref,
            name=temp,
            apply_set=apply_set,
            host=host,
            placement=placement,
            run=run,
            user=image.user,
        )
        cause = "; ".join(reasons)
        create = b.add(
            Action.CREATE_CONTAINER,
            "container",
            temp,
            cause,
            before_create,
            agent=key,
            container=spec,
        )
        last = _prepare_container(b, agent, temp, create, fill_roles, host, image.user)
        # The swap (docs/reconcile.md, "Replacing a container"): the old container gives up
        # the name, the new one takes it, then the new one starts while the old one stops.
        # Docker's stop (its SIGTERM and teardown) runs beside the new start instead of before
        # it; the control plane holds the new start's steps until no other container of the
        # agent runs, so the agent's volumes never have two agents at once.
        old = current.id[:12]
        retire = b.add(
            Action.RENAME_CONTAINER,
            "container",
            old,
            f"gives its name to {temp}",
            [last],
            agent=key,
            new_name=naming.retired_name(agent.project, agent.name),
        )
        rename = b.add(
            Action.RENAME_CONTAINER,
            "container",
            temp,
            f"replaces {final}",
            [retire],
            agent=key,
            new_name=final,
        )
        b.add(
            Action.START_CONTAINER,
            "container",
            final,
            "created",
            [rename, *before_start],
            agent=key,
        )
        stop = b.add(
            Action.STOP_CONTAINER, "container", old, f"replaced: {cause}", [rename], agent=key
        )
        b.add(Action.REMOVE_CONTAINER, "container", old, f"replaced: {cause}", [stop], agent=key)
        resources.append(f"-/+ container {final}")
        return AgentChange(key, ChangeKind.REPLACE, tuple(reasons), tuple(fields), tuple(resources))

    if current.state == "created":
        # Never started: whatever preparation an interrupted pass did is redone (fresh
        # bootstrap material, the fills its markers do not show) before the first start.
        cause = "never started: prepared again"
        last = _prepare_container(
            b, agent, current.name, None, fill_roles, host, image.user, [*volume_steps, *cleanup]
        )
        b.add(Action.START_CONTAINER, "container", current.name, cause, [last], agent=key)
        resources.append(f"~ container {current.name} (prepare, start)")
        return AgentChange(key, ChangeKind.UPDATE, (cause,), resources=tuple(resources))
    if current.state != "running":
        b.add(
            Action.START_CONTAINER,
            "container",
            current.name,
            f"container is {current.state}",
            [*volume_steps, *cleanup, *before_start],
            agent=key,
        )
        resources.append(f"~ container {current.name} (start)")
        return AgentChange(
            key,
            ChangeKind.UPDATE,
            (f"container is {current.state}",),
            resources=tuple(resources),
        )
    if resources:
        return AgentChange(
            key, ChangeKind.UPDATE, ("resources missing",), resources=tuple(resources)
        )
    return AgentChange(key, ChangeKind.NOOP)


@dataclass(frozen=True)
class RuntimeObservation:
    """The control plane's state of the agents it knows, by agent key. `agents` None: it does
    not answer (`unknown` says why), so every agent's runtime is planned as an update."""

    agents: Mapping[str, AgentRuntimeState] | None
    unknown: str = "control plane not running"


@dataclass(frozen=True)
class _RuntimePlan:
    steps: tuple[int, ...] = ()
    fields: tuple[FieldChange, ...] = ()
    reasons: tuple[str, ...] = ()


_NO_HOST = HostContext(uid=-1, gid=-1, home="", share_dir="")


def _plan_runtime(
    b: _StepBuilder,
    agent: DesiredAgent,
    observed: ObservedState,
    cp: RuntimeObservation | None,
    host: HostState | None,
) -> _RuntimePlan:
    """The control plane's part of one agent: its runtime spec (what its starts run and wire)
    and its live allowlist, each one step when the control plane's differs from the spec's."""
    if cp is None:
        return _RuntimePlan()
    key = agent.key
    spec = desired_runtime(agent, host.context if host else _NO_HOST)
    allowlist = effective_allowlist(agent)
    fresh_config = naming.volume_name(agent.project, agent.name, "config") not in observed.volumes
    if cp.agents is None:
        why = f"unknown: {cp.unknown}"
        return _RuntimePlan(
            steps=(
                b.add(
                    Action.UPDATE_RUNTIME,
                    "runtime",
                    key,
                    f"runtime {why}",
                    agent=key,
                    runtime=spec,
                    fresh_config=fresh_config,
                ),
                b.add(
                    Action.UPDATE_FIREWALL,
                    "firewall",
                    key,
                    f"firewall allowlist {why}",
                    agent=key,
                    allowlist=allowlist,
                ),
            ),
            fields=(
                FieldChange("runtime", None, None, effect=Effect.NEXT_START, summary=why),
                FieldChange("firewall allowlist", None, None, effect=Effect.LIVE, summary=why),
            ),
            reasons=(f"runtime {why}",),
        )
    state = cp.agents.get(key) or AgentRuntimeState(key)
    steps: list[int] = []
    fields: list[FieldChange] = []
    causes: list[str] = []
    by_effect: dict[Effect, list[str]] = {}
    for diff in runtime_differences(state.spec, spec):
        effect = Effect.NEXT_START
        if diff.field == "post_init" and diff.new.strip():
            done = state.post_init_done and not fresh_config
            effect = Effect.POST_INIT_DONE if done else Effect.POST_INIT_PENDING
        fields.append(FieldChange(diff.label, diff.old, diff.new, effect=effect))
        by_effect.setdefault(effect, []).append(diff.label)
    causes = [f"{', '.join(labels)} changed: {e.when}" for e, labels in by_effect.items()]
    if state.spec is None:  # a new agent, or the control plane lost its state
        causes = [f"runtime not held by the control plane: {Effect.NEXT_START.when}"]
    if fresh_config and state.post_init_done:  # the CP's record belongs to the old volume
        causes.append("new config volume: post_init not run on it")
    if causes:
        cause = "; ".join(causes)
        steps.append(
            b.add(
                Action.UPDATE_RUNTIME,
                "runtime",
                key,
                cause,
                agent=key,
                runtime=spec,
                fresh_config=fresh_config,
            )
        )
    line = allowlist_change(state.allowlist or (), allowlist)
    if line:
        cause = f"firewall allowlist changed: {Effect.LIVE.when}"
        causes.append(cause)
        steps.append(
            b.add(Action.UPDATE_FIREWALL, "firewall", key, cause, agent=key, allowlist=allowlist)
        )
        fields.append(
            FieldChange(
                "firewall allowlist", state.allowlist, allowlist, effect=Effect.LIVE, summary=line
            )
        )
    return _RuntimePlan(tuple(steps), tuple(fields), tuple(causes))


def _with_runtime(
    b: _StepBuilder,
    agent: DesiredAgent,
    change: AgentChange,
    rt: _RuntimePlan,
    observed: ObservedState,
    restart_if_needed: bool,
) -> AgentChange:
    """The agent's change with its control plane part; a restart when asked and needed."""
    if not rt.steps:
        return change
    if change.kind is ChangeKind.CREATE:  # the first start runs all of it: no fields to show
        return replace(change, resources=(*change.resources, "+ control plane runtime"))
    resources = change.resources
    current = observed.agent(agent.project, agent.name).container
    starting = any(s.agent == agent.key and s.action is Action.START_CONTAINER for s in b.steps)
    waiting = sorted(
        {f.path for f in rt.fields if f.effect in (Effect.NEXT_START, Effect.POST_INIT_PENDING)}
    )
    if restart_if_needed and waiting and current is not None and not starting:
        cause = f"restart requested, for changes that wait for a start: {', '.join(waiting)}"
        stop = b.add(
            Action.STOP_CONTAINER, "container", current.name, cause, rt.steps, agent=agent.key
        )
        b.add(Action.START_CONTAINER, "container", current.name, cause, [stop], agent=agent.key)
        resources = (*resources, f"~ container {current.name} (restart)")
    kind = ChangeKind.UPDATE if change.kind is ChangeKind.NOOP else change.kind
    return replace(
        change,
        kind=kind,
        reasons=(*change.reasons, *rt.reasons),
        fields=(*change.fields, *rt.fields),
        resources=resources,
    )


def _prepare_container(
    b: _StepBuilder,
    agent: DesiredAgent,
    container: str,
    after: int | None,
    fill_roles: Mapping[str, str],
    host: HostState | None,
    user: naming.AgentUser,
    also_after: Iterable[int] = (),
) -> int:
    """Before a container's first start: its workspace copy (snapshot mode, when the volume
    is not filled yet), its config seed (likewise) and its bootstrap material (always: a new
    container is a new identity)."""
    last = _copy_workspace(
        b, agent, container, [after, *also_after], fill_roles.get("workspace"), user
    )
    if "config" in fill_roles:
        last = [_seed_config(b, agent, container, last, host, fill_roles["config"], user)]
    return b.add(
        Action.COPY_BOOTSTRAP,
        "container",
        container,
        "new container identity",
        last,
        agent=agent.key,
        new_name=naming.container_name(agent.project, agent.name),
    )


def _copy_workspace(
    b: _StepBuilder,
    agent: DesiredAgent,
    container: str,
    after: list[int | None],
    volume: str | None,
    user: naming.AgentUser,
) -> list[int | None]:
    """A snapshot workspace is copied once: into a volume not filled yet, never again.
    `volume` is "new" or "unfinished" when the workspace volume needs its copy."""
    if agent.workspace.mode is not WorkspaceMode.SNAPSHOT or volume is None:
        return after
    return [
        b.add(
            Action.COPY_WORKSPACE,
            "container",
            container,
            f"{volume} workspace volume: snapshot of {agent.workspace.path}",
            after,
            agent=agent.key,
            source_dir=agent.workspace.path,
            user=user,
        )
    ]


def _seed_config(
    b: _StepBuilder,
    agent: DesiredAgent,
    container: str,
    after: list[int | None],
    host: HostState | None,
    volume: str,
    user: naming.AgentUser,
) -> int:
    """A config volume is seeded once: a new one, or one whose seed never finished."""
    from reconciler.host.config_seed import ConfigSeed  # noqa: PLC0415

    claude = agent.agent.claude_code
    seed = ConfigSeed(
        strategy=claude.config.strategy,
        use_host_auth=claude.use_host_auth,
        workspace=agent.workspace.path,
        host_claude_dir=host.context.claude_dir if host else "",
        host_claude_json=host.context.claude_json if host else "",
        user=user,
        api_relay=claude.api_key is not None,
    )
    what = seed.strategy + (", host auth" if seed.use_host_auth else "")
    return b.add(
        Action.SEED_CONFIG,
        "container",
        container,
        f"{volume} config volume (seed: {what})",
        after,
        agent=agent.key,
        seed=seed,
    )


def plan_delete(keys: Iterable[str], observed: ObservedState, *, volumes: bool) -> Plan:
    """Remove the containers of the named agents; their volumes only when asked by name."""
    b = _StepBuilder()
    changes: list[AgentChange] = []
    for key in sorted(set(keys)):
        obs = observed.agents.get(key)
        project, name = key.split("/", 1)
        members = [c for c in ((obs.container, *obs.leftovers) if obs else ()) if c is not None]
        removals = [
            b.add(Action.REMOVE_CONTAINER, "container", c.name, "delete requested", agent=key)
            for c in members
        ]
        resources = [f"- container {c.name}" for c in members]
        if volumes:
            for role in naming.VOLUME_ROLES:
                vol = naming.volume_name(project, name, role)
                if vol in observed.volumes:
                    b.add(
                        Action.REMOVE_VOLUME,
                        "volume",
                        vol,
                        "delete --volumes requested",
                        removals,
                        agent=key,
                    )
                    resources.append(f"- volume {vol}")
        if resources:
            changes.append(
                AgentChange(
                    key, ChangeKind.DELETE, ("delete requested",), resources=tuple(resources)
                )
            )
    return Plan(tuple(b.steps), tuple(changes))


def plan_start(key: str, container: str, state: str) -> Plan:
    """Start an agent's existing container (`clawker start`); the control plane drives the
    start to Ready as for any start (DESIGN §6)."""
    b = _StepBuilder()
    b.add(Action.START_CONTAINER, "container", container, f"start requested ({state})", agent=key)
    return Plan(
        tuple(b.steps),
        (AgentChange(key, ChangeKind.UPDATE, (f"container is {state}",)),),
    )


# Volumes that hold a person's logins, sessions and shell history.
KEEPSAKE_ROLES = frozenset({"config", "history"})


def plan_volume_prune(observed: ObservedState, *, all_roles: bool) -> Plan:
    """Remove the volumes of agents that have no container any more. Config and history
    volumes (logins, sessions, history) only with `all_roles` (`volume prune --all`)."""
    b = _StepBuilder()
    changes: list[AgentChange] = []
    by_agent: dict[str, list[str]] = {}
    for name, labels in sorted(observed.volumes.items()):
        project, agent = labels.get(naming.PROJECT), labels.get(naming.AGENT)
        if not project or not agent:
            continue
        key = naming.agent_key(project, agent)
        obs = observed.agents.get(key)
        if obs is not None and (obs.container is not None or obs.leftovers):
            continue
        if labels.get(naming.VOLUME_ROLE) in KEEPSAKE_ROLES and not all_roles:
            continue
        cause = "its agent has no container"
        b.add(Action.REMOVE_VOLUME, "volume", name, cause, agent=key)
        by_agent.setdefault(key, []).append(name)
    for key, names in by_agent.items():
        changes.append(
            AgentChange(
                key,
                ChangeKind.DELETE,
                ("volume prune requested",),
                resources=tuple(f"- volume {n}" for n in names),
            )
        )
    return Plan(tuple(b.steps), tuple(changes))

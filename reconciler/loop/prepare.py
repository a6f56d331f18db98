"""Observe and plan: the part of the reconcile loop that `diff` runs (DESIGN §5).

`diff` stops after the plan, so this module holds what it needs and nothing of what comes
after: the executor, the readiness wait, the control plane's host directories and the image
builder load with `reconciler.loop.converge`, for the verbs that change things.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from reconciler.controlplane.api.client import (
    ControlPlaneClient,
    ControlPlaneMismatchError,
    ControlPlaneNotRunningError,
)
from reconciler.controlplane.paths import StatePaths
from reconciler.docker.engine import DockerPort
from reconciler.host.host_state import observe_host
from reconciler.images.inputs import ImageError, ImageInputs, project_image_inputs
from reconciler.loop.beside import Beside
from reconciler.loop.desired import Placement
from reconciler.loop.observe import ObservedState, observe
from reconciler.loop.plan import (
    BaseChoice,
    Plan,
    RuntimeObservation,
    images_to_build,
    plan,
    plan_delete,
)
from reconciler.settings import Settings, code_identity
from specs import DesiredAgent, SpecSet

if TYPE_CHECKING:
    from reconciler.loop.timeline import Timeline

__all__ = [
    "Prepared",
    "observe_bases",
    "observe_runtime",
    "prepare_apply",
    "prepare_delete",
]


@dataclass(frozen=True)
class Prepared:
    observed: ObservedState
    plan: Plan


def prepare_apply(
    port: DockerPort,
    specset: SpecSet,
    *,
    settings: Settings,
    prune: bool = False,
    keys: Collection[str] | None = None,
    restart_if_needed: bool = False,
    timeline: Timeline | None = None,
    settle: Callable[[], None] | None = None,
) -> Prepared:
    """Observe Docker and the control plane, and plan; raises ImageError when a project's
    agents disagree on `build`, ApiError when a running control plane cannot be asked (see
    `observe_runtime`).

    With `keys` (agent keys), plan only those agents: the others are left out of both the
    desired and the observed side, so nothing else is created, changed or pruned (watch mode's
    per-agent passes). `settle` is called just before Docker's objects are listed (see
    `observe`). With `timeline`, each phase is a span of it.
    """

    def span(name: str) -> contextlib.AbstractContextManager[None]:
        return timeline.span(name) if timeline is not None else contextlib.nullcontext()

    desired: Sequence[DesiredAgent] = specset.agents
    if keys is not None:
        desired = [a for a in specset.agents if a.key in keys]

    def ask_control_plane() -> RuntimeObservation:
        with span("observe control plane"):
            return observe_runtime(settings) if desired else RuntimeObservation({})

    # The control plane is asked beside everything else (its own socket, no state shared):
    # most of its answer, and of Docker's lists, is waiting for the other process.
    runtime = Beside(ask_control_plane)
    with span("image inputs"):
        images = {i.project: i for i in project_image_inputs(specset.agents, settings)}
    # What does not depend on Docker's objects first: a `settle` (watch mode's wait for Docker
    # to record an exit) overlaps it, and Docker's lists come next.
    with span("observe host"):
        host = observe_host(desired, dict(settings.host_environment))
    with span("observe"):
        try:
            observed = observe(port, settle)
        except Exception:
            runtime.result()  # the control plane's error first, as when it was asked first
            raise
    # Only a project whose image the plan builds needs its base looked at: the image list
    # (observed.images) already tells which images are up to date, so a no-op pass makes no
    # inspects beyond the lists.
    with span("observe bases"):
        bases = observe_bases(
            port, images_to_build(desired, images, observed), allow_pull=settings.allow_pull
        )
    scoped = observed
    if keys is not None:
        scoped = replace(observed, agents={k: a for k, a in observed.agents.items() if k in keys})
    with span("plan"):
        the_plan = plan(
            desired,
            scoped,
            images=images,
            apply_sets=specset.projects,
            prune=prune,
            host=host,
            runtime=runtime.result(),
            restart_if_needed=restart_if_needed,
            placement=Placement(settings.network, settings.cgroup_parent),
            bases=bases,
        )
    return Prepared(observed, the_plan)


def observe_bases(
    port: DockerPort, images: Iterable[ImageInputs], *, allow_pull: bool
) -> dict[str, BaseChoice]:
    """Per declared base image of `images`: what a build would start FROM (an inspect or two
    per base). Pass only the images the plan builds (`images_to_build`): a plan looks at the
    base of no other."""
    declared_bases = sorted({i.base_image for i in images})
    if not declared_bases:
        return {}
    # The builder's module loads only for a pass that builds (a no-op diff never does).
    from reconciler.images.building import resolve_base_image  # noqa: PLC0415

    choices: dict[str, BaseChoice] = {}
    for declared in declared_bases:
        try:
            choices[declared] = BaseChoice(
                resolve_base_image(port, declared, allow_pull=allow_pull)
            )
        except ImageError as exc:
            choices[declared] = BaseChoice(declared, str(exc))
    return choices


def observe_runtime(settings: Settings) -> RuntimeObservation:
    """The control plane's state of every agent it knows: the other half of what `diff`
    compares. Unknown when it is not running (apply starts it before planning). A control plane
    that refuses this user, runs other settings or another clawker is an error, each its own
    (ApiError subclasses): a plan made without its state would be a guess."""
    cp = ControlPlaneClient(StatePaths(settings.state_dir).socket)
    try:
        hello = cp.check_agreement(settings.agreement())
    except ControlPlaneNotRunningError:
        return RuntimeObservation(None, "control plane not running")
    if hello.version != code_identity():
        raise ControlPlaneMismatchError(
            f"the control plane (pid {hello.pid}) runs clawker {hello.version}, this is "
            f"{code_identity()}: `clawker apply` restarts it (when no start is in flight), or "
            "stop it with `clawker controlplane down`"
        )
    return RuntimeObservation(cp.runtime_state())


def prepare_delete(port: DockerPort, keys: Iterable[str], *, volumes: bool) -> Prepared:
    observed = observe(port)
    return Prepared(observed, plan_delete(keys, observed, volumes=volumes))

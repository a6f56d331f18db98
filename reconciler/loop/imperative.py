"""The imperative verbs' half of the one path: which project, which agent, and the
`DesiredAgent` that `clawker run`/`create` make from the Project's defaults plus flags.

Nothing here is a second loop: `prepare_run` plans through `planning.plan` like `apply`, with
the agent marked as made by run (labelled so, in no apply set: `apply --prune` never removes it).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler import naming
from reconciler.docker.engine import ContainerInfo, DockerPort
from reconciler.host.host_state import observe_host
from reconciler.images import project_image_inputs
from reconciler.loop.desired import Placement, RunOptions
from reconciler.loop.observe import ObservedAgent, ObservedState, observe
from reconciler.loop.plan import images_to_build, plan
from reconciler.loop.prepare import Prepared, observe_bases, observe_runtime
from reconciler.settings import Settings
from specs import DesiredAgent, SpecSet, WorkspaceMode

__all__ = [
    "PROJECT_FILES",
    "AgentFlags",
    "TargetError",
    "find_project_file",
    "prepare_run",
    "resolve_container",
    "resolve_new_agent",
    "run_agent",
]

# Looked for in the current directory, then in each parent (as compose looks for its file).
PROJECT_FILES = ("clawker.yaml", ".clawker.yaml", "agents.yaml")
IMAGE_SHORTHAND = "@"


class TargetError(Exception):
    """The named project or agent is missing or ambiguous; the message lists the candidates."""


def find_project_file(start: str | os.PathLike[str]) -> str | None:
    """The first project file in `start` or one of its parents; None when there is none."""
    here = Path(start).resolve()
    for directory in (here, *here.parents):
        for name in PROJECT_FILES:
            candidate = directory / name
            if candidate.is_file():
                return str(candidate)
    return None


@dataclass(frozen=True)
class AgentFlags:
    """What `run`/`create` flags change on top of the spec (`--` CMD replaces its command)."""

    env: Mapping[str, str] = field(default_factory=dict)
    mode: WorkspaceMode | None = None
    workdir: str | None = None  # the host directory to use as the workspace
    worktree: str | None = None  # a git branch: the workspace becomes a worktree of it
    command: tuple[str, ...] = ()


def _split_ref(ref: str) -> tuple[str | None, str]:
    if ref.startswith("clawker.") and ref.count(".") >= 2:  # a container name
        _, project, name = ref.split(".", 2)
        return project, name
    if "/" in ref:
        project, name = ref.split("/", 1)
        return project, name
    return None, ref


def resolve_new_agent(specset: SpecSet, ref: str | None) -> tuple[str, str]:
    """(project, agent name) for `run`/`create`: NAME, PROJECT/NAME or a container name; no
    name at all gets a fresh `run-xxxxxx`. The project must be one the specs declare."""
    project, name = _split_ref(ref) if ref else (None, f"run-{secrets.token_hex(3)}")
    projects = sorted(specset.defaults)
    if project is None:
        declaring = sorted({a.project for a in specset.agents if a.name == name})
        if len(declaring) == 1:
            project = declaring[0]
        elif len(projects) == 1:
            project = projects[0]
        elif not projects:
            raise TargetError("the specs declare no project; add a `kind: Project` document")
        else:
            raise TargetError(
                f"agent {name!r}: several projects are declared ({', '.join(projects)}); "
                f"name one, as PROJECT/{name}"
            )
    if project not in specset.defaults:
        raise TargetError(
            f"project {project!r} is not declared in {', '.join(specset.files) or 'the specs'}; "
            f"declared: {', '.join(projects) or 'none'}"
        )
    from specs.values import agent_name  # noqa: PLC0415 - the spec language's own name rule

    try:
        agent_name(name)
    except ValueError as exc:
        raise TargetError(f"--agent {name!r}: {exc}") from exc
    return project, name


def run_agent(specset: SpecSet, project: str, name: str, flags: AgentFlags) -> DesiredAgent:
    """The agent `run`/`create` make: the declared Agent if there is one, else the Project's
    defaults under this name; then the flags."""
    declared = next((a for a in specset.agents if a.key == naming.agent_key(project, name)), None)
    agent = declared or replace(specset.defaults[project], name=name)
    workspace = agent.workspace
    if flags.workdir:
        path = os.path.realpath(os.path.expanduser(flags.workdir))
        if not os.path.isdir(path):
            raise TargetError(f"--workdir {flags.workdir}: not a directory")
        workspace = replace(workspace, path=path)
    if flags.worktree:
        path = ensure_worktree(workspace.path, flags.worktree)
        workspace = replace(workspace, path=path)
    if flags.mode is not None:
        workspace = replace(workspace, mode=flags.mode)
    if workspace.mode is WorkspaceMode.SNAPSHOT and os.path.isfile(
        os.path.join(workspace.path, ".git")
    ):
        raise TargetError(
            f"workspace {workspace.path} is a git worktree; snapshot mode cannot copy it "
            "(its history lives in the main repository): use --mode bind"
        )
    agent = replace(agent, workspace=workspace)
    if flags.env:
        agent = replace(agent, agent=replace(agent.agent, env={**agent.agent.env, **flags.env}))
    if flags.command:
        agent = replace(agent, command=tuple(flags.command))
    return agent


def ensure_worktree(workspace: str, branch: str) -> str:
    """A git worktree of the workspace's repository on `branch`, made when missing, beside the
    repository as `<repo>.worktrees/<branch>` (an agent sees it at that same path)."""
    git = ["git", "-C", workspace]
    top = subprocess.run(
        [*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    )
    if top.returncode != 0:
        raise TargetError(f"--worktree {branch}: {workspace} is not in a git repository")
    root = top.stdout.strip()
    path = f"{root}.worktrees/{branch.replace('/', '-')}"
    if os.path.isdir(path):
        return os.path.realpath(path)
    exists = subprocess.run(
        [*git, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        capture_output=True,
        check=False,
    )
    argv = [*git, "worktree", "add", path, branch]
    if exists.returncode != 0:
        argv = [*git, "worktree", "add", "-b", branch, path]
    made = subprocess.run(argv, capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise TargetError(f"--worktree {branch}: git worktree add failed: {made.stderr.strip()}")
    return os.path.realpath(path)


def prepare_run(
    port: DockerPort,
    agent: DesiredAgent,
    options: RunOptions,
    *,
    settings: Settings,
    replace: bool = False,
) -> Prepared:
    """Observe and plan one agent made by run. An agent that already has a container is an
    error (as `docker run --name` is) unless `replace`: say how to reach the existing one."""
    observed = observe(port)
    existing = observed.agent(agent.project, agent.name).container
    if existing is not None and not replace:
        raise TargetError(
            f"agent {agent.key} already has a container ({existing.name}, {existing.state}); "
            f"`clawker start -a -i {agent.key}` or `clawker attach {agent.key}` reaches it, "
            f"`clawker rm {agent.key}` removes it"
        )
    images = {i.project: i for i in project_image_inputs([agent], settings)}
    only = {k: a for k, a in observed.agents.items() if k == agent.key}
    scoped = ObservedState(only, observed.volumes, observed.networks, observed.images)
    return Prepared(
        observed,
        plan(
            [agent],
            scoped,
            images=images,
            host=observe_host([agent], dict(settings.host_environment)),
            runtime=observe_runtime(settings),
            placement=Placement(settings.network, settings.cgroup_parent),
            bases=observe_bases(
                port, images_to_build([agent], images, observed), allow_pull=settings.allow_pull
            ),
            run={agent.key: options},
        ),
    )


def resolve_container(
    observed: ObservedState, ref: str, *, project: str | None = None
) -> ContainerInfo:
    """The container an existing agent's verb acts on: NAME (in `project` when one is known and
    it has that agent), PROJECT/NAME or the container name. Errors list the candidates."""
    agents = [a for a in observed.agents.values() if a.container is not None]
    wanted_project, name = _split_ref(ref)
    matches: Sequence[ObservedAgent]
    if wanted_project is not None:
        matches = [a for a in agents if a.project == wanted_project and a.name == name]
    else:
        matches = [a for a in agents if a.name == name]
        if len(matches) > 1 and project is not None:
            matches = [a for a in matches if a.project == project] or matches
    if len(matches) == 1 and matches[0].container is not None:
        return matches[0].container
    if not matches:
        raise TargetError(f"no agent {ref!r}; {_candidates(agents)}")
    raise TargetError(
        f"agent name {ref!r} is ambiguous: {', '.join(sorted(a.key for a in matches))}; "
        "name one as PROJECT/NAME"
    )


def _candidates(agents: Iterable[ObservedAgent]) -> str:
    keys = sorted(a.key for a in agents)
    return f"agents: {', '.join(keys)}" if keys else "there are no agents (see `clawker ps -a`)"

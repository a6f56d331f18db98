"""The imperative verbs' pure parts: project files found upward, agents made from the project's
defaults plus flags, names resolved (or refused with the candidates), run agents planned as made
by run and never pruned, volume prune keeping logins, and the boot log's phase lines."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cli.boot_log import BootLog
from cli.container_verbs import render_clawkerd_line
from cli.style import Style
from reconciler import naming
from reconciler.docker.engine import ContainerInfo
from reconciler.images import image_inputs
from reconciler.loop.desired import RunOptions, desired_container, desired_volumes
from reconciler.loop.execute import StepEvent, StepStatus
from reconciler.loop.imperative import (
    AgentFlags,
    TargetError,
    ensure_worktree,
    find_project_file,
    resolve_container,
    resolve_new_agent,
    run_agent,
)
from reconciler.loop.observe import ObservedState, group_containers
from reconciler.loop.plan import Action, plan, plan_volume_prune
from specs import SpecSet, WorkspaceMode, load_specs

PROJECT = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: myapp}
spec:
  workspace: {path: ./ws}
  agent: {env: {EDITOR: vim}, pre_run: echo hi}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev}
spec: {command: [claude, --continue]}
"""


def project(tmp_path: Path) -> SpecSet:
    (tmp_path / "ws").mkdir(exist_ok=True)
    spec = tmp_path / "clawker.yaml"
    spec.write_text(PROJECT)
    return load_specs([str(spec)])


def test_the_project_file_is_found_in_a_parent_directory(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_file(deep) is None
    (tmp_path / "agents.yaml").write_text("")
    (tmp_path / "a" / ".clawker.yaml").write_text("")
    assert find_project_file(deep) == str(tmp_path / "a" / ".clawker.yaml")
    (deep / "clawker.yaml").write_text("")
    assert find_project_file(deep) == str(deep / "clawker.yaml")


def test_an_undeclared_agent_gets_the_projects_defaults_then_the_flags(tmp_path: Path) -> None:
    specset = project(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    flags = AgentFlags(
        env={"EXTRA": "1"}, mode=WorkspaceMode.SNAPSHOT, workdir=str(other), command=("bash",)
    )
    agent = run_agent(specset, *resolve_new_agent(specset, "scratch"), flags)
    assert (agent.project, agent.name) == ("myapp", "scratch")
    assert agent.agent.env == {"EDITOR": "vim", "EXTRA": "1"}
    assert agent.agent.pre_run == "echo hi"
    assert agent.command == ("bash",)
    assert agent.workspace.path == os.path.realpath(other)
    assert agent.workspace.mode is WorkspaceMode.SNAPSHOT


def test_a_declared_agent_starts_from_its_spec(tmp_path: Path) -> None:
    specset = project(tmp_path)
    for ref in ("dev", "myapp/dev", "clawker.myapp.dev"):
        agent = run_agent(specset, *resolve_new_agent(specset, ref), AgentFlags())
        assert agent.command == ("claude", "--continue")
    with pytest.raises(TargetError, match=r"project 'nope' is not declared.*declared: myapp"):
        resolve_new_agent(specset, "nope/dev")


def _observed(*agents: tuple[str, str]) -> ObservedState:
    containers = [
        ContainerInfo(
            f"{i:064x}",
            naming.container_name(p, n),
            {naming.PROJECT: p, naming.AGENT: n, naming.PURPOSE: "agent"},
            "running",
            "",
        )
        for i, (p, n) in enumerate(agents)
    ]
    return ObservedState(agents=group_containers(containers))


def test_names_resolve_or_list_the_candidates() -> None:
    observed = _observed(("app", "dev"), ("web", "dev"), ("app", "ci"))
    assert resolve_container(observed, "ci").name == "clawker.app.ci"
    assert resolve_container(observed, "web/dev").name == "clawker.web.dev"
    assert resolve_container(observed, "clawker.app.dev").name == "clawker.app.dev"
    assert resolve_container(observed, "dev", project="web").name == "clawker.web.dev"
    with pytest.raises(TargetError, match="ambiguous: app/dev, web/dev"):
        resolve_container(observed, "dev")
    with pytest.raises(TargetError, match="no agent 'qa'; agents: app/ci, app/dev, web/dev"):
        resolve_container(observed, "qa")


def test_a_run_agent_is_labelled_made_by_run_and_never_pruned(tmp_path: Path) -> None:
    specset = project(tmp_path)
    agent = run_agent(specset, "myapp", "scratch", AgentFlags())
    images = {"myapp": image_inputs(agent)}
    options = RunOptions(tty=False, stdin_open=True, auto_remove=True)
    the_plan = plan([agent], ObservedState(), images=images, run={agent.key: options})
    [create] = [s for s in the_plan.steps if s.action is Action.CREATE_CONTAINER]
    assert create.container is not None
    assert create.container.labels[naming.MADE_BY] == "run"
    assert naming.APPLY_SET not in create.container.labels
    assert (create.container.tty, create.container.auto_remove) == (False, True)

    spec = desired_container(agent, image="img", run=options)
    running = ContainerInfo("f" * 64, spec.name, dict(spec.labels), "running", "")
    observed = ObservedState(agents=group_containers([running]))
    pruned = plan([], observed, images={}, apply_sets=["myapp"], prune=True)
    assert pruned.empty


def test_volume_prune_keeps_logins_and_history_unless_all(tmp_path: Path) -> None:
    specset = project(tmp_path)
    gone = run_agent(specset, "myapp", "gone", AgentFlags(mode=WorkspaceMode.SNAPSHOT))
    alive = run_agent(specset, "myapp", "alive", AgentFlags(mode=WorkspaceMode.SNAPSHOT))
    volumes = {v.name: v.labels for a in (gone, alive) for v in desired_volumes(a)}
    spec = desired_container(alive, image="img")
    container = ContainerInfo("e" * 64, spec.name, dict(spec.labels), "exited", "")
    observed = ObservedState(agents=group_containers([container]), volumes=volumes)
    assert [s.target for s in plan_volume_prune(observed, all_roles=False).steps] == [
        "clawker.myapp.gone-workspace"
    ]
    assert [s.target for s in plan_volume_prune(observed, all_roles=True).steps] == [
        "clawker.myapp.gone-config",
        "clawker.myapp.gone-history",
        "clawker.myapp.gone-workspace",
    ]


def test_the_boot_log_shows_each_phase_once_it_is_done(tmp_path: Path) -> None:
    specset = project(tmp_path)
    agent = run_agent(specset, "myapp", "scratch", AgentFlags())
    images = {"myapp": image_inputs(agent)}
    observed = ObservedState(networks=frozenset({naming.NETWORK_NAME_DEFAULT}))
    the_plan = plan([agent], observed, images=images, run={agent.key: RunOptions()})
    screen = tmp_path / "screen"
    fd = os.open(screen, os.O_WRONLY | os.O_CREAT)
    ticks = iter(range(100))
    try:
        log = BootLog(
            the_plan,
            {"workspace": "ws (bind)", "config": "cfg", "container": "c"},
            fd=fd,
            style=Style.plain(),
            clock=lambda: float(next(ticks)),
        )
        for step in the_plan.steps:
            log.on_event(StepEvent(step, StepStatus.STARTED))
            log.on_event(StepEvent(step, StepStatus.DONE))
        log.finish_phases()
    finally:
        os.close(fd)
    lines = screen.read_text().splitlines()
    names = [line.split()[1] for line in lines]
    assert names == ["image", "workspace", "config", "container"]
    assert lines[1] == "✓ workspace    ws (bind)"
    assert all(line.endswith("s") for line in lines if "config" in line or "container" in line)


def test_clawkerd_log_lines_render_as_text() -> None:
    raw = '{"ts": "2026-01-01T00:00:00Z", "level": "info", "event": "cmd_started", "pid": 7}'
    assert render_clawkerd_line(raw) == "2026-01-01T00:00:00Z INFO    cmd_started pid=7"
    assert render_clawkerd_line("not json") == "not json"


def test_flags_cannot_snapshot_a_worktree(tmp_path: Path) -> None:
    specset = project(tmp_path)
    (tmp_path / "ws" / ".git").write_text("gitdir: /elsewhere\n")
    with pytest.raises(TargetError, match="git worktree"):
        run_agent(specset, "myapp", "x", AgentFlags(mode=WorkspaceMode.SNAPSHOT))


def test_worktree_flag_makes_a_worktree_beside_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    path = ensure_worktree(str(repo), "feature/x")
    assert path == os.path.realpath(tmp_path / "repo.worktrees" / "feature-x")
    assert ensure_worktree(str(repo), "feature/x") == path  # the second run reuses it
    branch = subprocess.run(
        ["git", "-C", path, "branch", "--show-current"], capture_output=True, text=True, check=True
    )
    assert branch.stdout.strip() == "feature/x"
    with pytest.raises(TargetError, match="not in a git repository"):
        ensure_worktree(str(tmp_path), "main")

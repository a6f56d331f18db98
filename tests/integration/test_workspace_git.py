"""The workspace and git inside an agent, with real git on both sides (docs/workspace.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Scope
from tests.integration.dockerexec import exec_in
from tests.integration.test_firewall import assert_verify_closed

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: WORKSPACE, mode: MODE}
  build: {harness: none}
  agent: {enable_shared_dir: SHARED}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""


def _spec(scope: Scope, workspace: Path, mode: str, *, shared: bool = False) -> Path:
    body = (
        SPEC.replace("WORKSPACE", str(workspace))
        .replace("MODE", mode)
        .replace("SHARED", "true" if shared else "false")
    )
    return scope.write_spec(body)


def _name(scope: Scope) -> str:
    return f"clawker.{scope.project}.dev"


def host_git(scope: Scope, *args: str, cwd: Path) -> str:
    """git on the host, as the test's host user (its own HOME, no system config)."""
    env = {
        **os.environ,
        "HOME": scope.env["CLAWKER_HOST_HOME"],
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Host",
        "GIT_AUTHOR_EMAIL": "host@example.invalid",
        "GIT_COMMITTER_NAME": "Host",
        "GIT_COMMITTER_EMAIL": "host@example.invalid",
    }
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def agent_exec(scope: Scope, name: str, *cmd: str, user: str = "claude") -> tuple[int, str]:
    """Run `cmd` in the agent container as the agent user (stdout and stderr together)."""
    return exec_in(scope.api, name, cmd, user=user)


def _clawker_env(scope: Scope, name: str) -> dict[str, str]:
    """The CLAWKER_* variables a process in the agent sees (those the agent prompt names)."""
    code, out = agent_exec(scope, name, "env")
    assert code == 0
    pairs = (line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {key: value for key, value in pairs if key.startswith("CLAWKER_")}


def make_repository(scope: Scope, path: Path) -> None:
    """A repository with one commit that the agent user (uid 1001) may write, as it could
    if the host user's uid were 1001 (docs/workspace.md: file ownership in bind mode)."""
    host_git(scope, "init", "-q", "-b", "main", cwd=path)
    host_git(scope, "add", "-A", cwd=path)
    host_git(scope, "commit", "-q", "-m", "first commit", cwd=path)


def open_to_agent(*paths: Path) -> None:
    for path in paths:
        subprocess.run(["chmod", "-R", "a+rwX", str(path)], check=True)


def write_host_gitconfig(scope: Scope) -> None:
    (Path(scope.env["CLAWKER_HOST_HOME"]) / ".gitconfig").write_text(
        "[user]\n\tname = Agent Smith\n\temail = agent@example.invalid\n"
    )


def test_a_bind_mode_agent_sees_the_repository_at_the_host_path(scope: Scope) -> None:
    ws = (scope.workdir / "ws").resolve()
    (ws / ".clawkerignore").write_text("node_modules/\n")
    (ws / ".gitignore").write_text("node_modules/\n")
    (ws / "node_modules" / "pkg").mkdir(parents=True)
    (ws / "node_modules" / "pkg" / "index.js").write_text("host copy\n")
    make_repository(scope, ws)
    open_to_agent(ws)
    share = Path(scope.env["CLAWKER_HOST_HOME"]) / ".clawker-share"
    share.mkdir()
    (share / "notes.txt").write_text("shared\n")
    scope.clawker("apply", "-f", str(_spec(scope, ws, "bind", shared=True)), check=0)
    name = _name(scope)

    assert agent_exec(scope, name, "pwd") == (0, f"{ws}\n")
    assert _clawker_env(scope, name) == {
        "CLAWKER_PROJECT": scope.project,
        "CLAWKER_AGENT": "dev",
        "CLAWKER_WORKSPACE": str(ws),
        "CLAWKER_WORKSPACE_MODE": "bind",
        "CLAWKER_CREDENTIAL_PROXY": "/run/clawker/git-credential.sock",
        "CLAWKER_FIREWALL_ENABLED": "true",
    }
    assert agent_exec(scope, name, "sh", "-c", 'test -S "$CLAWKER_CREDENTIAL_PROXY"')[0] == 0
    assert agent_exec(scope, name, "git", "log", "--format=%s") == (0, "first commit\n")
    code, out = agent_exec(scope, name, "sh", "-c", "echo agent > from-agent.txt && git status -s")
    assert (code, out) == (0, "?? from-agent.txt\n")
    assert (ws / "from-agent.txt").read_text() == "agent\n"  # bind: the host's own files

    # The ignored directory is an empty tmpfs inside; what is written there stays inside.
    assert agent_exec(scope, name, "ls", "-A", f"{ws}/node_modules") == (0, "")
    assert agent_exec(scope, name, "touch", f"{ws}/node_modules/inside")[0] == 0
    assert sorted(p.name for p in (ws / "node_modules").iterdir()) == ["pkg"]

    # The repository's config and hooks are read-only, for root inside too.
    for user in ("claude", "root"):
        code, out = agent_exec(scope, name, "touch", f"{ws}/.git/hooks/pre-commit", user=user)
        assert code != 0 and "Read-only file system" in out
        code, out = agent_exec(scope, name, "sh", "-c", f"echo x >> {ws}/.git/config", user=user)
        assert code != 0 and "Read-only file system" in out

    assert agent_exec(scope, name, "cat", "/home/claude/.clawker-share/notes.txt") == (
        0,
        "shared\n",
    )
    code, _ = agent_exec(scope, name, "touch", "/home/claude/.clawker-share/new", user="root")
    assert code != 0


def test_a_snapshot_mode_agent_works_on_its_own_copy_of_the_repository(scope: Scope) -> None:
    ws = (scope.workdir / "ws").resolve()
    (ws / ".clawkerignore").write_text("*.log\n")
    (ws / "build.log").write_text("noise\n")
    make_repository(scope, ws)
    write_host_gitconfig(scope)
    scope.clawker("apply", "-f", str(_spec(scope, ws, "snapshot")), check=0)
    name = _name(scope)

    assert agent_exec(scope, name, "pwd") == (0, f"{ws}\n")
    env = _clawker_env(scope, name)
    assert (env["CLAWKER_WORKSPACE"], env["CLAWKER_WORKSPACE_MODE"]) == (str(ws), "snapshot")
    assert agent_exec(scope, name, "git", "log", "--format=%s") == (0, "first commit\n")
    assert agent_exec(scope, name, "test", "-e", f"{ws}/build.log")[0] == 1
    code, out = agent_exec(
        scope,
        name,
        "sh",
        "-c",
        "echo inside > inside.txt && git add inside.txt && git commit -q -m 'agent commit'"
        " && git log --format=%s",
    )
    assert (code, out) == (0, "agent commit\nfirst commit\n")
    # Neither the file nor the commit reaches the host; the host's later files stay outside.
    assert not (ws / "inside.txt").exists()
    assert host_git(scope, "log", "--format=%s", cwd=ws) == "first commit\n"
    (ws / "later.txt").write_text("host\n")
    assert agent_exec(scope, name, "test", "-e", f"{ws}/later.txt")[0] == 1


def test_a_worktree_agent_commits_into_the_main_repository(scope: Scope) -> None:
    main = (scope.workdir / "ws").resolve()
    make_repository(scope, main)
    worktree = scope.workdir.resolve() / "feature-wt"
    host_git(scope, "worktree", "add", "-q", "-b", "feature", str(worktree), cwd=main)
    open_to_agent(main, worktree)
    write_host_gitconfig(scope)
    scope.clawker("apply", "-f", str(_spec(scope, worktree, "bind")), check=0)
    name = _name(scope)

    assert agent_exec(scope, name, "pwd") == (0, f"{worktree}\n")
    assert agent_exec(scope, name, "git", "log", "--format=%s") == (0, "first commit\n")
    code, out = agent_exec(
        scope,
        name,
        "sh",
        "-c",
        "echo work > work.txt && git add work.txt && git commit -q -m 'from the agent'"
        " && git status --porcelain",
    )
    assert (code, out) == (0, "")
    # The commit is in the main repository, on the worktree's branch, by the copied identity.
    assert host_git(scope, "log", "--format=%s|%an", "feature", cwd=main) == (
        "from the agent|Agent Smith\nfirst commit|Host\n"
    )
    assert host_git(scope, "log", "--format=%s", "main", cwd=main) == "first commit\n"

    hooks = main / ".git" / "hooks"
    for user in ("claude", "root"):
        code, out = agent_exec(
            scope, name, "sh", "-c", f"echo evil > {hooks}/post-commit", user=user
        )
        assert code != 0 and "Read-only file system" in out
        code, out = agent_exec(
            scope, name, "git", "config", "--file", f"{main}/.git/config", "core.hooksPath", "/tmp"
        )
        assert code != 0
    assert not (hooks / "post-commit").exists()
    assert "hooksPath" not in (main / ".git" / "config").read_text()
    assert_verify_closed(scope, "dev")  # the firewall holds for a worktree agent too


def test_a_worktree_in_snapshot_mode_is_refused(scope: Scope) -> None:
    main = (scope.workdir / "ws").resolve()
    make_repository(scope, main)
    worktree = scope.workdir.resolve() / "feature-wt"
    host_git(scope, "worktree", "add", "-q", "-b", "feature", str(worktree), cwd=main)
    spec = _spec(scope, worktree, "snapshot")

    proc = scope.clawker("apply", "-f", str(spec), check=2)

    assert f"{spec}:5:" in proc.stderr
    assert "spec.workspace.mode" in proc.stderr
    assert "is a git worktree" in proc.stderr and "use mode: bind" in proc.stderr
    assert scope.containers() == [] and scope.volumes() == set()

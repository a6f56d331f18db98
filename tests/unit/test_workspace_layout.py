"""A workspace as the agent sees it: git layout (worktrees), ignored directories, host paths,
and the mounts and environment they give the container. Real git; no Docker."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from reconciler.docker.engine import MountSpec
from reconciler.host.git_layout import GitLayout, GitLayoutError, git_layout, parse_gitdir_file
from reconciler.host.host_state import HostContext, HostState, host_context, observe_host
from reconciler.host.workspace import ignored_directories
from reconciler.loop.desired import desired_container
from specs import DesiredAgent, SpecErrors, load_specs


def git(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture
def repo_and_worktree(tmp_path: Path) -> tuple[Path, Path]:
    main = tmp_path / "main"
    main.mkdir()
    (main / "a.txt").write_text("a\n")
    git("init", "-q", "-b", "main", cwd=main)
    git("add", "-A", cwd=main)
    git("commit", "-q", "-m", "one", cwd=main)
    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "-b", "feature", str(worktree), cwd=main)
    return main.resolve(), worktree.resolve()


def test_a_plain_repository_is_its_own_common_directory(
    repo_and_worktree: tuple[Path, Path],
) -> None:
    main, _ = repo_and_worktree

    assert git_layout(str(main)) == GitLayout(f"{main}/.git", f"{main}/.git")


def test_a_worktree_leads_to_the_main_repository(repo_and_worktree: tuple[Path, Path]) -> None:
    main, worktree = repo_and_worktree

    layout = git_layout(str(worktree))

    assert layout == GitLayout(
        f"{main}/.git/worktrees/wt", f"{main}/.git", linked=True, has_hooks=True
    )


def test_not_a_repository_and_broken_git_files(tmp_path: Path) -> None:
    assert git_layout(str(tmp_path)) is None
    (tmp_path / ".git").write_text("nonsense\n")
    with pytest.raises(GitLayoutError, match="no 'gitdir: PATH' line"):
        git_layout(str(tmp_path))
    (tmp_path / ".git").write_text("gitdir: ../missing\n")
    with pytest.raises(GitLayoutError, match="not a directory"):
        git_layout(str(tmp_path))


def test_a_relative_gitdir_resolves_against_the_worktree() -> None:
    assert parse_gitdir_file("gitdir: ../main/.git/worktrees/wt\n", "/src/wt") == (
        "/src/main/.git/worktrees/wt"
    )


def test_ignored_directories_are_the_outermost_matches(tmp_path: Path) -> None:
    (tmp_path / ".clawkerignore").write_text("node_modules/\n*.log\n/build\n")
    for d in ("node_modules/a/node_modules", "pkg/node_modules", "build/x", "src/build", ".git/x"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "debug.log").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "pkg")

    assert sorted(ignored_directories(str(tmp_path))) == [
        str(tmp_path / "build"),
        str(tmp_path / "node_modules"),
        str(tmp_path / "pkg" / "node_modules"),
    ]
    (tmp_path / ".clawkerignore").unlink()
    assert ignored_directories(str(tmp_path)) == ()


def test_the_host_user_and_paths_come_from_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gnupg").mkdir(parents=True)
    (home / ".gnupg" / "S.gpg-agent.extra").write_text("")

    context = host_context({"CLAWKER_HOST_HOME": str(home), "SSH_AUTH_SOCK": "/tmp/ssh.sock"})

    assert context == HostContext(
        uid=home.stat().st_uid,
        gid=home.stat().st_gid,
        home=str(home),
        share_dir=str(home / ".clawker-share"),
        ssh_auth_sock="/tmp/ssh.sock",
        gpg_extra_socket=str(home / ".gnupg" / "S.gpg-agent.extra"),
    )
    assert context.claude_dir == f"{home}/.claude"
    named = host_context(
        {
            "CLAWKER_HOST_HOME": str(home),
            "CLAWKER_SHARE_DIR": "/srv/share",
            "CLAWKER_HOST_SSH_AUTH_SOCK": "/run/a.sock",
            "SSH_AUTH_SOCK": "/tmp/ssh.sock",
            "CLAWKER_HOST_GPG_SOCKET": "/run/g.sock",
        }
    )
    assert (named.share_dir, named.ssh_auth_sock, named.gpg_extra_socket) == (
        "/srv/share",
        "/run/a.sock",
        "/run/g.sock",
    )


def load_agent(tmp_path: Path, workspace: Path, spec: str = "") -> DesiredAgent:
    path = tmp_path / "agents.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {{name: p}}
        spec:
          workspace: {{path: {workspace}}}
        ---
        apiVersion: clawker.dev/v1alpha1
        kind: Agent
        metadata: {{name: a}}
        """)
        + spec
    )
    (agent,) = load_specs([str(path)]).agents
    return agent


def test_a_worktree_in_snapshot_mode_is_refused_where_the_mode_is_written(
    tmp_path: Path, repo_and_worktree: tuple[Path, Path]
) -> None:
    _, worktree = repo_and_worktree

    with pytest.raises(SpecErrors) as raised:
        load_agent(tmp_path, worktree, "spec:\n  workspace: {mode: snapshot}\n")

    assert str(raised.value).startswith(f"{tmp_path}/agents.yaml:11:21: ")
    assert "spec.workspace.mode: workspace" in str(raised.value)
    assert "is a git worktree" in str(raised.value)


def test_a_worktree_agent_mounts_the_main_git_directory_with_config_and_hooks_read_only(
    tmp_path: Path, repo_and_worktree: tuple[Path, Path]
) -> None:
    main, worktree = repo_and_worktree
    agent = load_agent(tmp_path, worktree)
    host = observe_host([agent], {"CLAWKER_HOST_HOME": str(tmp_path)})

    spec = desired_container(agent, image="img", host=host)

    git_dir = f"{main}/.git"
    assert spec.mounts[0] == MountSpec("bind", str(worktree), str(worktree))
    assert spec.mounts[3:] == (
        MountSpec("bind", git_dir, git_dir),
        MountSpec("bind", f"{git_dir}/config", f"{git_dir}/config", read_only=True),
        MountSpec("bind", f"{git_dir}/hooks", f"{git_dir}/hooks", read_only=True),
    )
    assert spec.working_dir == str(worktree)


def test_host_files_and_sockets_become_mounts_and_environment(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "node_modules").mkdir(parents=True)
    (ws / ".clawkerignore").write_text("node_modules/\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = t\n")
    agent = load_agent(tmp_path, ws, "spec:\n  agent: {enable_shared_dir: true}\n")
    host = observe_host([agent], {"CLAWKER_HOST_HOME": str(home)})

    spec = desired_container(agent, image="img", host=host)

    assert spec.mounts[3:] == (
        MountSpec("tmpfs", str(ws.resolve() / "node_modules")),
        MountSpec("bind", "/run/clawker/host/gitconfig", str(home / ".gitconfig"), read_only=True),
        MountSpec("bind", "/home/claude/.clawker-share", str(home / ".clawker-share"), True),
    )
    assert {k: v for k, v in spec.env.items() if k.startswith("CLAWKER_")} == {
        "CLAWKER_PROJECT": "p",
        "CLAWKER_AGENT": "a",
        "CLAWKER_WORKSPACE": str(ws.resolve()),
        "CLAWKER_WORKSPACE_MODE": "bind",
        "CLAWKER_CREDENTIAL_PROXY": "/run/clawker/git-credential.sock",
        "CLAWKER_FIREWALL_ENABLED": "true",
    }
    assert spec.env["SSH_AUTH_SOCK"] == "/run/clawker/ssh-agent.sock"
    assert spec.env["CLAUDE_CONFIG_DIR"] == "/home/claude/.claude"


def test_forwarding_switched_off_sets_no_sockets_and_mounts_no_gitconfig(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / ".gitconfig").write_text("[user]\n\tname = t\n")
    agent = load_agent(
        tmp_path,
        ws,
        "spec:\n  security:\n    git_credentials:\n"
        "      {forward_https: false, forward_ssh: false, copy_git_config: false}\n",
    )
    host = HostState(host_context({"CLAWKER_HOST_HOME": str(tmp_path)}), str(tmp_path / ".g"))

    spec = desired_container(agent, image="img", host=host)

    assert len(spec.mounts) == 3
    assert "SSH_AUTH_SOCK" not in spec.env and "CLAWKER_CREDENTIAL_PROXY" not in spec.env

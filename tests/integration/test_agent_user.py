"""The agent user is the workspace's owner (docs/workspace.md): real checkouts owned by other
uids, real images, a real control plane driving post_init and pre_run as that user."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from tests.cleanup import TEST_LABEL
from tests.integration.conftest import Scope
from tests.integration.test_workspace_git import agent_exec, write_host_gitconfig

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: WORKSPACE, mode: MODE}
  build: {harness: none, base_image: BASE}
  agent:
    post_init: "echo $(id -u):$(id -g) >> /home/claude/.claude/post-init-ids"
    pre_run: "echo $(id -u):$(id -g) >> /commandhistory/pre-run-ids"
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""

CONFIG, HISTORY = "/home/claude/.claude", "/commandhistory"


def _spec(
    scope: Scope, workspace: Path, base: str = "clawker-base:bookworm", mode: str = "bind"
) -> Path:
    body = SPEC.replace("WORKSPACE", str(workspace)).replace("BASE", base)
    return scope.write_spec(body.replace("MODE", mode))


def _name(scope: Scope) -> str:
    return f"clawker.{scope.project}.dev"


def git(*args: str, cwd: Path) -> str:
    """git on the host as root, in checkouts that belong to someone else."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Host",
        "GIT_AUTHOR_EMAIL": "host@example.invalid",
        "GIT_COMMITTER_NAME": "Host",
        "GIT_COMMITTER_EMAIL": "host@example.invalid",
    }
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def checkout(path: Path) -> None:
    """A repository with one commit (still root's: the caller gives it away)."""
    path.mkdir(exist_ok=True)
    (path / "hello.txt").write_text("hello from the host\n")
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "first commit", cwd=path)


def give(uid: int, gid: int, *paths: Path) -> None:
    for path in paths:
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(path)], check=True)


def owner(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_uid, info.st_gid


def as_root(scope: Scope, *cmd: str) -> str:
    code, out = agent_exec(scope, _name(scope), *cmd, user="root")
    assert code == 0, out
    return out


def ids_in(scope: Scope) -> dict[str, str]:
    """Who is who inside: the agent user, the CMD clawkerd forked, the volumes and their files,
    and what post_init and pre_run wrote as themselves."""
    name = _name(scope)
    return {
        "id": agent_exec(scope, name, "sh", "-c", "echo $(id -u):$(id -g)")[1].strip(),
        "cmd": ":".join(as_root(scope, "ps", "-o", "uid=,gid=", "-C", "sleep").split()),
        "volumes": " ".join(
            as_root(scope, "stat", "-c", "%u:%g", CONFIG, f"{CONFIG}/.claude.json", HISTORY).split()
        ),
        "post_init": as_root(scope, "cat", f"{CONFIG}/post-init-ids").strip(),
        "pre_run": as_root(scope, "cat", f"{HISTORY}/pre-run-ids").strip(),
    }


def expected(uid: int, gid: int, pre_run: str = "") -> dict[str, str]:
    ids = f"{uid}:{gid}"
    return {
        "id": ids,
        "cmd": ids,
        "volumes": " ".join([ids] * 3),
        "post_init": ids,
        "pre_run": pre_run or ids,
    }


def base_with_a_user_at_1000(scope: Scope) -> str:
    """clawker-base with a `node` user and group at 1000 owning a file, as node images have."""
    return _base(
        scope,
        "nodebase",
        "RUN groupadd --gid 1000 node && useradd --uid 1000 --gid 1000 -m node"
        " && install -o node -g node -d /opt/node-owned\n",
    )


def _base(scope: Scope, what: str, run: str) -> str:
    ref = f"clawker-test-{what}:{scope.run_id}"
    dockerfile = "FROM clawker-base:bookworm\n" + run
    for _ in scope.api.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=ref,
        rm=True,
        labels={TEST_LABEL: scope.run_id, "dev.clawker.managed": "true"},
        decode=True,
    ):
        pass
    return ref


def test_a_checkout_owned_by_1000_is_the_agents_to_edit_and_commit_in(scope: Scope) -> None:
    main = (scope.workdir / "repo").resolve()
    checkout(main)
    worktree = scope.workdir.resolve() / "feature-wt"
    git("worktree", "add", "-q", "-b", "feature", str(worktree), cwd=main)
    give(1000, 1000, main, worktree)
    write_host_gitconfig(scope)
    base = base_with_a_user_at_1000(scope)
    proc = scope.clawker("apply", "-f", str(_spec(scope, worktree, base)), check=0)
    assert "warning" not in proc.stderr
    assert "clawker: moving user node from uid 1000 to 59999" in proc.stderr
    name = _name(scope)

    assert ids_in(scope) == expected(1000, 1000)
    # The base's user at 1000 moved aside, with what it owned.
    assert as_root(scope, "id", "-u", "node").strip() == "59999"
    assert as_root(scope, "stat", "-c", "%u:%g", "/opt/node-owned").strip() == "59999:59999"
    code, out = agent_exec(
        scope,
        name,
        "sh",
        "-c",
        "echo 'more from the agent' >> hello.txt && echo new > new.txt"
        " && git add -A && git commit -q -m 'from the agent' && git status --porcelain",
    )
    assert (code, out) == (0, "")
    assert owner(worktree / "new.txt") == (1000, 1000)
    assert owner(worktree / "hello.txt") == (1000, 1000)
    assert (worktree / "hello.txt").read_text().endswith("more from the agent\n")
    assert git("log", "--format=%s", "feature", cwd=main) == "from the agent\nfirst commit\n"
    stray = subprocess.run(
        [
            "find",
            str(main),
            str(worktree),
            "(",
            "!",
            "-uid",
            "1000",
            "-o",
            "!",
            "-gid",
            "1000",
            ")",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert stray == ""  # nothing the agent made in the repository belongs to anyone else


def test_a_base_image_that_already_has_a_claude_user_keeps_it_at_the_owners_ids(
    scope: Scope,
) -> None:
    ws = (scope.workdir / "repo").resolve()
    checkout(ws)
    give(4242, 4343, ws)
    write_host_gitconfig(scope)
    base = _base(
        scope,
        "claudebase",
        "RUN groupadd --gid 1500 claude && useradd --uid 1500 --gid 1500 -m claude"
        " && install -o claude -g claude -d /opt/claude-owned"
        " && su claude -c 'echo from-the-base > /home/claude/.base-file'\n",
    )
    proc = scope.clawker("apply", "-f", str(_spec(scope, ws, base)), check=0)
    assert "moving the base image's user claude from uid 1500 to 4242" in proc.stderr
    assert "moving the base image's group claude from gid 1500 to 4343" in proc.stderr
    assert ids_in(scope) == expected(4242, 4343)
    assert as_root(scope, "stat", "-c", "%u:%g", "/opt/claude-owned").strip() == "4242:4343"
    code, out = agent_exec(scope, _name(scope), "cat", "/home/claude/.base-file")
    assert (code, out) == (0, "from-the-base\n")  # its home and what was in it are kept


def test_an_odd_owner_and_then_a_change_of_owner(scope: Scope) -> None:
    ws = (scope.workdir / "repo").resolve()
    checkout(ws)
    give(4242, 4343, ws)
    write_host_gitconfig(scope)
    spec = str(_spec(scope, ws))
    scope.clawker("apply", "-f", spec, check=0)
    name = _name(scope)
    assert ids_in(scope) == expected(4242, 4343)
    code, out = agent_exec(
        scope,
        name,
        "sh",
        "-c",
        "echo new > new.txt && git add new.txt && git commit -q -m odd"
        f" && mkdir -p {CONFIG}/projects/p && echo '{{\"s\": 1}}' > {CONFIG}/projects/p/s.jsonl"
        f" && echo 'make test' >> {HISTORY}/.bash_history",
    )
    assert code == 0, out
    assert owner(ws / "new.txt") == (4242, 4343)
    first_id = scope.inspect(name)["Id"]

    give(1000, 1000, ws)
    diff = scope.clawker("diff", "-f", spec, check=1)
    assert diff.stdout.count("will be built") == 1
    assert "inputs changed: user uid 4242 → 1000, gid 4343 → 1000" in diff.stdout
    assert "-/+ agent" in diff.stdout
    scope.clawker("apply", "-f", spec, check=0)

    assert scope.inspect(name)["Id"] != first_id
    # post_init ran once, as the first owner; pre_run on both starts, each as its user.
    assert ids_in(scope) == expected(1000, 1000, pre_run="4242:4343\n1000:1000") | {
        "post_init": "4242:4343"
    }
    assert as_root(scope, "cat", f"{CONFIG}/projects/p/s.jsonl") == '{"s": 1}\n'
    assert "make test" in as_root(scope, "cat", f"{HISTORY}/.bash_history")
    leftovers = as_root(
        scope, "find", CONFIG, HISTORY, "(", "-uid", "4242", "-o", "-gid", "4343", ")"
    )
    assert leftovers == ""
    code, out = agent_exec(scope, name, "sh", "-c", "echo again >> new.txt && git commit -qam two")
    assert code == 0, out
    assert scope.clawker("diff", "-f", spec, check=0).stdout.startswith("No changes.")


def test_a_root_owned_checkout_warns_and_keeps_1001(scope: Scope) -> None:
    ws = (scope.workdir / "ws").resolve()
    assert owner(ws) == (0, 0)
    spec = str(_spec(scope, ws))
    diff = scope.clawker("diff", "-f", spec, check=1)
    assert f"warning: project {scope.project}: workspace {ws} is owned by root" in diff.stderr
    assert "chown -R" in diff.stderr and "snapshot" in diff.stderr
    apply = scope.clawker("apply", "-f", spec, check=0)
    assert f"workspace {ws} is owned by root" in apply.stderr
    assert ids_in(scope) == expected(1001, 1001)


def test_a_snapshot_copy_follows_a_change_of_owner_and_is_not_copied_again(scope: Scope) -> None:
    ws = (scope.workdir / "ws").resolve()
    give(4242, 4343, ws)
    spec = str(_spec(scope, ws, mode="snapshot"))
    scope.clawker("apply", "-f", spec, check=0)
    name = _name(scope)
    code, out = agent_exec(scope, name, "sh", "-c", f"echo mine > {ws}/made.txt")
    assert code == 0, out
    files = (str(ws), f"{ws}/hello.txt", f"{ws}/made.txt")
    assert as_root(scope, "stat", "-c", "%u:%g", *files).split() == ["4242:4343"] * 3

    give(1000, 1000, ws)
    (ws / "later.txt").write_text("the host's, after the copy\n")
    proc = scope.clawker("apply", "-f", spec, check=0)
    assert "inputs changed: user uid 4242 → 1000, gid 4343 → 1000" in proc.stdout
    assert as_root(scope, "stat", "-c", "%u:%g", *files).split() == ["1000:1000"] * 3
    assert as_root(scope, "cat", f"{ws}/made.txt") == "mine\n"
    assert agent_exec(scope, name, "test", "-e", f"{ws}/later.txt")[0] == 1  # not copied again
    assert agent_exec(scope, name, "sh", "-c", f"echo more >> {ws}/made.txt")[0] == 0

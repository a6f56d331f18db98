"""The agent user is the workspace owner (docs/workspace.md), without Docker: the rule, the
image input it becomes, the plan that carries it, and the volume hand-over script run for real
on a temporary directory (the tests run as root, so they can make files of any owner)."""

from __future__ import annotations

import os
import subprocess
import tarfile
import textwrap
from pathlib import Path
from typing import IO

import pytest

from cli.render import plan_as_data
from reconciler import naming
from reconciler.controlplane.bridge.socket_bridge import bridge_listeners
from reconciler.controlplane.registry import AgentRuntimeSpec
from reconciler.controlplane.runtime.session import PREPARE_VOLUMES
from reconciler.host.config_seed import ConfigSeed, seed_archive
from reconciler.host.workspace import snapshot_archive
from reconciler.images import ImageError, build_reason, image_inputs, project_image_inputs
from reconciler.images.agent_user import project_user, user_for
from reconciler.images.dockerfile import render_dockerfile
from reconciler.loop.observe import ObservedState
from reconciler.loop.plan import Action, plan
from specs import DesiredAgent, load_specs

AgentUser = naming.AgentUser

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAWKER_CACHE_DIR", str(tmp_path / "cache"))


def agents(
    tmp_path: Path, owners: dict[str, tuple[int, int]], mode: str = "bind"
) -> list[DesiredAgent]:
    """One agent per workspace directory, each owned as `owners` says."""
    docs = [
        textwrap.dedent("""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {name: myapp}
        spec: {build: {harness: none}}
        """)
    ]
    for name, (uid, gid) in owners.items():
        ws = tmp_path / f"ws-{name}"
        ws.mkdir()
        os.chown(ws, uid, gid)
        docs.append(
            textwrap.dedent(f"""\
            apiVersion: clawker.dev/v1alpha1
            kind: Agent
            metadata: {{name: {name}, project: myapp}}
            spec:
              workspace: {{path: {ws}, mode: {mode}}}
              command: [sleep, infinity]
            """)
        )
    spec = tmp_path / "agents.yaml"
    spec.write_text("---\n".join(docs))
    return list(load_specs([str(spec)]).agents)


def test_the_agent_user_takes_the_owner_ids_but_never_root() -> None:
    assert user_for((1000, 1000)) == AgentUser(1000, 1000)
    assert user_for((4242, 4343)) == AgentUser(4242, 4343)
    assert user_for((0, 0)) == AgentUser(1001, 1001)
    assert user_for((0, 4343)) == AgentUser(1001, 1001)
    assert user_for((1000, 0)) == AgentUser(1000, 1001)  # nor the root group
    assert user_for(None) == AgentUser(1001, 1001)
    with pytest.raises(ValueError, match="never root"):
        render_dockerfile(base_image="b", packages=[], harness="none", user=AgentUser(0, 0))


def test_an_odd_owner_becomes_an_image_input_named_in_the_reason(tmp_path: Path) -> None:
    (dev,) = agents(tmp_path, {"dev": (4242, 4343)})
    inputs = image_inputs(dev)
    assert inputs.user == AgentUser(4242, 4343) and inputs.warnings == ()
    assert inputs.labels()["dev.clawker.image-user"] == "4242:4343"
    assert "RUN uid=4242 gid=4343;" in inputs.dockerfile
    assert build_reason(inputs, inputs.labels()) is None
    old = image_inputs(dev, user=AgentUser(1001, 1001))
    assert build_reason(inputs, old.labels()) == (
        "inputs changed: user uid 1001 → 4242, gid 1001 → 4343"
    )
    same_gid = image_inputs(dev, user=AgentUser(1000, 4343))
    assert build_reason(inputs, same_gid.labels()) == "inputs changed: user uid 1000 → 4242"
    # An image of older clawker has no user label: its user was 1001:1001.
    older = {k: v for k, v in old.labels().items() if k != "dev.clawker.image-user"}
    assert build_reason(image_inputs(dev, user=AgentUser(1000, 1000)), older) == (
        "inputs changed: user uid 1001 → 1000, gid 1001 → 1000"
    )


def test_the_user_step_comes_last_and_moves_a_base_user_aside() -> None:
    text = render_dockerfile(
        base_image="b", packages=[], harness="claude", user=AgentUser(1000, 1000)
    )
    user_step = text.index("RUN uid=1000 gid=1000;")
    assert user_step > text.index("COPY harness/claude") > 0  # a new owner rebuilds one layer
    assert 'usermod --uid "$n" "$other"' in text and 'groupmod --gid "$n" "$other"' in text
    assert text.count("n=$(free_id)") == 1  # one free id for both: node:node stays a pair


def test_a_root_owned_workspace_keeps_1001_with_a_warning(tmp_path: Path) -> None:
    desired = agents(tmp_path, {"dev": (0, 0)})
    (inputs,) = project_image_inputs(desired)
    assert inputs.user == AgentUser(1001, 1001)
    (warning,) = inputs.warnings
    assert f"{tmp_path}/ws-dev is owned by root" in warning
    assert "runs as uid 1001 gid 1001" in warning
    assert "chown -R" in warning and "snapshot" in warning
    p = plan(desired, ObservedState(), images={"myapp": inputs})
    assert p.warnings == (warning,)
    assert plan_as_data(p)["warnings"] == [warning]  # diff -o json carries it too


def test_workspaces_of_different_owners_in_one_project_are_an_error(tmp_path: Path) -> None:
    desired = agents(tmp_path, {"dev": (1000, 1000), "test": (4242, 4343)})
    with pytest.raises(ImageError) as caught:
        project_image_inputs(desired)
    message = str(caught.value)
    assert "agents dev" in message and "and test" in message
    assert "owned by uid 1000 gid 1000" in message and "owned by uid 4242 gid 4343" in message
    # Root's and 1001's workspaces give the same user: no conflict.
    (tmp_path / "b").mkdir()
    both = agents(tmp_path / "b", {"a": (0, 0), "b": (1001, 1001)})
    assert project_user("p", both).user == AgentUser(1001, 1001)


def test_the_plan_hands_the_user_to_the_container_the_seed_and_the_copy(tmp_path: Path) -> None:
    desired = agents(tmp_path, {"dev": (4242, 4343)}, mode="snapshot")
    images = {"myapp": image_inputs(desired[0])}
    p = plan(desired, ObservedState(), images=images)
    by_action = {s.action: s for s in p.steps}
    container = by_action[Action.CREATE_CONTAINER].container
    assert container is not None and container.labels[naming.AGENT_USER] == "4242:4343"
    seed = by_action[Action.SEED_CONFIG].seed
    assert seed is not None and seed.user == AgentUser(4242, 4343)
    assert by_action[Action.COPY_WORKSPACE].user == AgentUser(4242, 4343)

    (tmp_path / "ws-dev" / "f.txt").write_text("x")
    with snapshot_archive(str(tmp_path / "ws-dev"), AgentUser(4242, 4343)) as raw:
        assert _tar_owners(raw) == {(4242, 4343)}
    with seed_archive(ConfigSeed("fresh", False, "/w", user=AgentUser(4242, 4343))) as raw:
        assert _tar_owners(raw) == {(4242, 4343)}


def _tar_owners(raw: IO[bytes]) -> set[tuple[int, int]]:
    with tarfile.open(fileobj=raw) as tar:
        return {(m.uid, m.gid) for m in tar.getmembers()}


def test_the_bridge_sockets_belong_to_the_container_user() -> None:
    runtime = AgentRuntimeSpec("p/a", forward_ssh=True, ssh_auth_sock="/tmp/ssh.sock")
    (listener,) = bridge_listeners(runtime, "c", user=AgentUser(4242, 4343))
    assert (listener.uid, listener.gid) == (4242, 4343)
    assert AgentUser.from_label("4242:4343") == AgentUser(4242, 4343)
    assert AgentUser.from_label(None) == AgentUser.from_label("0:0") == AgentUser(1001, 1001)


def _owners(root: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for path in [root, *root.rglob("*")]:
        info = os.lstat(path)
        found[str(path.relative_to(root))] = (info.st_uid, info.st_gid)
    return found


def test_prepare_volumes_hands_the_old_users_files_over_and_leaves_roots(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "projects").mkdir(parents=True)
    (config / "projects" / "s.jsonl").write_text("{}\n")
    (config / "root-made").write_text("r")
    (config / "link").symlink_to("/etc/passwd")
    for path in (config, config / "projects", config / "projects" / "s.jsonl", config / "link"):
        os.lchown(path, 1001, 1001)
    fresh = tmp_path / "fresh"  # a volume root Docker made (root), e.g. a snapshot workspace
    fresh.mkdir()

    def run() -> subprocess.CompletedProcess[str]:
        argv = ["sh", "-ec", PREPARE_VOLUMES, "prepare-volumes", "4242", "4343"]
        return subprocess.run(
            [*argv, str(config), str(fresh)], capture_output=True, text=True, check=True
        )

    out = run().stdout
    assert f"{config}: files of uid 1001 now belong to uid 4242" in out
    assert _owners(config) == {
        ".": (4242, 4343),
        "projects": (4242, 4343),
        "projects/s.jsonl": (4242, 4343),
        "link": (4242, 4343),
        "root-made": (0, 0),
    }
    assert os.stat("/etc/passwd").st_uid == 0  # a symlink is changed, never its target
    assert _owners(fresh) == {".": (4242, 4343)}
    assert (config / "projects" / "s.jsonl").read_text() == "{}\n"
    assert run().stdout == ""  # once handed over, a later start has nothing to do


def test_prepare_volumes_fails_when_a_volume_root_is_missing(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.mkdir()
    argv = ["sh", "-ec", PREPARE_VOLUMES, "prepare-volumes", "4242", "4343"]
    done = subprocess.run(
        [*argv, str(present), str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "missing" in done.stderr

"""Scenarios against the real Docker engine, named like sentences."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import docker.errors
import pytest

from reconciler.controlplane.api.client import ControlPlaneClient
from reconciler.controlplane.paths import StatePaths
from tests.integration.conftest import Scope

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
  agent: {env: {GREETING: hello}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT, labels: {team: infra}}
spec:
  command: [sleep, infinity]
"""


def _name(scope: Scope, agent: str = "dev") -> str:
    return f"clawker.{scope.project}.{agent}"


def test_apply_creates_everything_with_the_right_names_labels_and_mounts(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    proc = scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{scope.project}/dev created" in proc.stdout

    info = scope.inspect(_name(scope))
    labels = info["Config"]["Labels"]
    assert labels["dev.clawker.managed"] == "true"
    assert labels["dev.clawker.project"] == scope.project
    assert labels["dev.clawker.agent"] == "dev"
    assert labels["dev.clawker.purpose"] == "agent"
    assert labels["dev.clawker.hash-version"] == "1"
    assert len(labels["dev.clawker.spec-hash"]) == 64
    assert labels["team"] == "infra"
    assert info["State"]["Running"]

    ws = str((scope.workdir / "ws").resolve())
    assert info["Config"]["WorkingDir"] == ws
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts[ws]["Type"] == "bind" and mounts[ws]["Source"] == ws
    assert mounts["/home/claude/.claude"]["Name"] == f"{_name(scope)}-config"
    assert mounts["/commandhistory"]["Name"] == f"{_name(scope)}-history"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["CLAWKER_PROJECT"] == scope.project
    assert env["CLAWKER_AGENT"] == "dev"
    assert env["CLAWKER_WORKSPACE_MODE"] == "bind"
    assert env["GREETING"] == "hello"
    assert info["HostConfig"]["CapDrop"] == ["ALL"]  # and the base set added (desired.py)
    assert "NET_RAW" not in info["HostConfig"]["CapAdd"]
    assert info["HostConfig"]["CgroupParent"] == scope.env["CLAWKER_CGROUP_PARENT"]
    assert scope.env["CLAWKER_NETWORK"] in info["NetworkSettings"]["Networks"]

    # The workspace is the host's folder at the same absolute path.
    code, out = scope.exec(_name(scope), "cat", f"{ws}/hello.txt")
    assert (code, out) == (0, "hello from the host\n")
    assert scope.volumes() == {f"{_name(scope)}-config", f"{_name(scope)}-history"}


def test_an_unchanged_apply_is_a_no_op(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    before = {c["Id"] for c in scope.containers()}
    proc = scope.clawker("apply", "-f", str(spec), check=0)
    assert "No changes." in proc.stdout
    assert f"agent/{scope.project}/dev unchanged" in proc.stdout
    assert {c["Id"] for c in scope.containers()} == before
    diff = scope.clawker("diff", "-f", str(spec), check=0)
    assert "No changes" in diff.stdout


def test_changing_env_recreates_the_container_and_keeps_volume_data(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    old_id = scope.inspect(_name(scope))["Id"]
    code, _ = scope.exec(
        _name(scope),
        "sh",
        "-c",
        "echo session > /home/claude/.claude/s.txt && "
        "echo 'ls -la' > /commandhistory/.bash_history",
    )
    assert code == 0

    scope.write_spec(SPEC.replace("GREETING: hello", "GREETING: bonjour"))
    diff = scope.clawker("diff", "-f", str(spec), check=1)
    assert "-/+ agent" in diff.stdout
    assert "agent.env changed" in diff.stdout
    assert "(sensitive value)" in diff.stdout and "bonjour" not in diff.stdout
    shown = scope.clawker("diff", "-f", str(spec), "--show-secrets", check=1)
    assert '"bonjour"' in shown.stdout
    as_json = json.loads(scope.clawker("diff", "-f", str(spec), "-o", "json", check=1).stdout)
    assert as_json["summary"] == {"add": 1, "change": 0, "destroy": 1}

    proc = scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{scope.project}/dev recreated" in proc.stdout
    info = scope.inspect(_name(scope))
    assert info["Id"] != old_id
    assert "GREETING=bonjour" in info["Config"]["Env"]
    assert info["State"]["Running"]
    assert [c["Names"][0] for c in scope.containers()] == [f"/{_name(scope)}"]
    code, out = scope.exec(
        _name(scope), "cat", "/home/claude/.claude/s.txt", "/commandhistory/.bash_history"
    )
    assert (code, out) == (0, "session\nls -la\n")


def _clawkerd_events(scope: Scope, name: str) -> list[dict[str, str]]:
    code, out = scope.exec(name, "cat", "/var/log/clawker/clawkerd.log")
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_a_replace_starts_the_new_container_beside_the_old_ones_stop_and_runs_no_step_before_it_has_stopped(  # noqa: E501
    scope: Scope,
) -> None:
    """The swap (docs/reconciler.md): the old container gives up the name and stops while the
    new one starts, but the new one's steps (and so its command) wait for the old agent's exit.
    The old agent here takes 2 s to exit on SIGTERM and writes when it did."""
    slow = SPEC.replace(
        "[sleep, infinity]",
        "[sh, -c, \"trap 'sleep 2; date +%s.%N > /home/claude/.claude/old-exit; exit 0' TERM;"
        ' while :; do sleep 0.1; done"]',
    )
    spec = scope.write_spec(slow)
    scope.clawker("apply", "-f", str(spec), check=0)
    old_id = scope.inspect(_name(scope))["Id"]

    scope.write_spec(slow.replace("GREETING: hello", "GREETING: bonjour"))
    proc = scope.clawker("apply", "-f", str(spec), check=0)

    assert f"agent/{scope.project}/dev recreated" in proc.stdout
    info = scope.inspect(_name(scope))
    assert info["Id"] != old_id and info["State"]["Running"]
    assert [c["Names"][0] for c in scope.containers()] == [f"/{_name(scope)}"]  # no .old left
    code, exited = scope.exec(_name(scope), "cat", "/home/claude/.claude/old-exit")
    assert code == 0, "the old agent was not stopped with SIGTERM (or not at all)"
    events = _clawkerd_events(scope, _name(scope))
    first_step = next(e for e in events if e["event"] == "step_started")
    started = dt.datetime.fromisoformat(first_step["ts"]).timestamp()
    assert started >= float(exited) - 0.002, (first_step, exited)  # ms stamps against ns


def test_a_container_deleted_by_hand_is_recreated(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    scope.api.remove_container(_name(scope), force=True)
    diff = scope.clawker("diff", "-f", str(spec), check=1)
    assert "will be created (not found)" in diff.stdout
    proc = scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{scope.project}/dev created" in proc.stdout
    assert scope.inspect(_name(scope))["State"]["Running"]


def test_a_stopped_container_is_started_in_place(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    old_id = scope.inspect(_name(scope))["Id"]
    scope.api.stop(_name(scope), timeout=1)
    proc = scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{scope.project}/dev configured" in proc.stdout
    info = scope.inspect(_name(scope))
    assert info["Id"] == old_id and info["State"]["Running"]


def _block_name(scope: Scope, name: str) -> None:
    """Take a container name with an object clawker did not make: creating it must fail."""
    scope.api.create_container(
        "clawker-base:bookworm", ["true"], name=name, labels={"dev.clawker.test": scope.run_id}
    )


def test_a_failed_create_keeps_its_new_volumes_and_never_touches_older_ones(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    _block_name(scope, _name(scope))
    proc = scope.clawker("apply", "-f", str(spec), check=1)
    assert f"agent/{scope.project}/dev failed" in proc.stdout
    # Never rolled back: another pass (a watch, a second apply) may already use them.
    volumes = {f"{_name(scope)}-config", f"{_name(scope)}-history"}
    assert scope.volumes() == volumes
    for volume in volumes:
        assert scope.api.inspect_volume(volume)["Labels"]["dev.clawker.managed"] == "true"

    # Volumes that existed before the failing attempt survive it.
    scope.api.remove_container(_name(scope), force=True)
    scope.clawker("apply", "-f", str(spec), check=0)
    scope.api.remove_container(_name(scope), force=True)
    _block_name(scope, _name(scope))
    scope.clawker("apply", "-f", str(spec), check=1)
    assert scope.volumes() == {f"{_name(scope)}-config", f"{_name(scope)}-history"}


def test_a_command_that_cannot_start_fails_the_apply_with_its_exit_code(scope: Scope) -> None:
    spec = scope.write_spec(SPEC.replace("[sleep, infinity]", "[/no/such/binary]"))
    proc = scope.clawker("apply", "-f", str(spec), check=1)
    assert f"agent/{scope.project}/dev failed" in proc.stdout
    assert "cannot start the user command" in proc.stdout and "/no/such/binary" in proc.stdout
    # clawkerd exits 127; the container stays, stopped, for inspection.
    state = scope.wait_stopped(_name(scope))
    assert state["ExitCode"] == 127


def test_a_replace_whose_new_container_fails_to_create_leaves_the_old_one(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    old_id = scope.inspect(_name(scope))["Id"]
    # The temporary name is taken by an object clawker did not make, so the create fails.
    scope.write_spec(SPEC.replace("[sleep, infinity]", "[sleep, '1000']"))
    scope.api.create_container(
        "clawker-base:bookworm",
        name=f"{_name(scope)}.next",
        labels={"dev.clawker.test": scope.run_id},
    )
    proc = scope.clawker("apply", "-f", str(spec), check=1)
    assert "failed" in proc.stdout
    info = scope.inspect(_name(scope))
    assert info["Id"] == old_id and info["State"]["Running"]


def test_delete_removes_containers_and_keeps_volumes(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    refused = scope.clawker("delete", "-f", str(spec), check=2)
    assert "-y" in refused.stderr
    assert len(scope.containers()) == 1
    proc = scope.clawker("delete", "-f", str(spec), "-y", check=0)
    assert "Volumes were kept" in proc.stdout
    assert scope.containers() == []
    assert scope.volumes() == {f"{_name(scope)}-config", f"{_name(scope)}-history"}
    scope.clawker("delete", "-f", str(spec), "--volumes", "-y", check=0)
    assert scope.volumes() == set()


def test_prune_removes_only_agents_of_the_recorded_apply_set(scope: Scope) -> None:
    two = SPEC + "---\n" + SPEC.split("---\n", 1)[1].replace("name: dev", "name: extra")
    spec = scope.write_spec(two)
    scope.clawker("apply", "-f", str(spec), check=0)
    # A container of the same project made outside `apply` carries no apply-set label.
    scope.api.create_container(
        "clawker-base:bookworm",
        ["sleep", "infinity"],
        name=f"{_name(scope, 'manual')}",
        labels={
            "dev.clawker.test": scope.run_id,
            "dev.clawker.managed": "true",
            "dev.clawker.object": "container",
            "dev.clawker.scope": f"dev.clawker.test={scope.run_id}",
            "dev.clawker.project": scope.project,
            "dev.clawker.agent": "manual",
            "dev.clawker.purpose": "agent",
        },
    )
    scope.write_spec(SPEC)
    no_prune = scope.clawker("apply", "-f", str(spec), check=0)
    assert "No changes." in no_prune.stdout
    refused = scope.clawker("apply", "-f", str(spec), "--prune", check=2)
    assert "-y" in refused.stderr
    proc = scope.clawker("apply", "-f", str(spec), "--prune", "-y", check=0)
    assert f"agent/{scope.project}/extra deleted" in proc.stdout
    names = sorted(c["Names"][0].lstrip("/") for c in scope.containers())
    assert names == [_name(scope), _name(scope, "manual")]
    assert f"{_name(scope, 'extra')}-config" in scope.volumes()


def test_nothing_unlabelled_is_listed_or_touched(scope: Scope) -> None:
    # Same labels as an agent, but not managed: clawker must not see it.
    scope.api.create_container(
        "clawker-base:bookworm",
        ["sleep", "infinity"],
        name=f"stranger-{scope.run_id}",
        labels={
            "dev.clawker.test": scope.run_id,
            "dev.clawker.project": scope.project,
            "dev.clawker.agent": "dev",
            "dev.clawker.purpose": "agent",
        },
    )
    scope.api.create_volume(f"{_name(scope)}-config", labels={"dev.clawker.test": scope.run_id})
    listing = json.loads(scope.clawker("get", "agents", "-o", "json", check=0).stdout)
    assert listing["items"] == []
    spec = scope.write_spec(SPEC)
    proc = scope.clawker("apply", "-f", str(spec), check=1)
    assert "exists but clawker did not make it" in proc.stderr
    # The stranger and the unmanaged volume are exactly as they were.
    assert scope.inspect(f"stranger-{scope.run_id}")["State"]["Status"] == "created"
    assert scope.api.inspect_volume(f"{_name(scope)}-config")["Labels"] == {
        "dev.clawker.test": scope.run_id
    }
    assert [c["Names"][0] for c in scope.containers()] == [f"/stranger-{scope.run_id}"]


def test_snapshot_mode_copies_the_workspace_once_minus_ignored_files(scope: Scope) -> None:
    ws = scope.workdir / "ws"
    (ws / ".clawkerignore").write_text("*.log\nsecrets/\n")
    (ws / "debug.log").write_text("noise")
    (ws / "secrets").mkdir()
    (ws / "secrets" / "key").write_text("s3cret")
    (ws / "src").mkdir()
    (ws / "src" / "main.py").write_text("print('hi')\n")
    spec = scope.write_spec(SPEC.replace("mode: bind", "mode: snapshot"))
    scope.clawker("apply", "-f", str(spec), check=0)
    name, path = _name(scope), str(ws.resolve())
    assert scope.exec(name, "cat", f"{path}/src/main.py") == (0, "print('hi')\n")
    assert scope.exec(name, "test", "-e", f"{path}/debug.log")[0] == 1
    assert scope.exec(name, "test", "-e", f"{path}/secrets")[0] == 1
    # Writes inside do not reach the host, and the host's later writes do not reach inside.
    assert scope.exec(name, "sh", "-c", f"echo inside > {path}/new.txt")[0] == 0
    assert not (ws / "new.txt").exists()
    (ws / "later.txt").write_text("host")
    assert scope.exec(name, "test", "-e", f"{path}/later.txt")[0] == 1
    assert scope.exec(name, "stat", "-c", "%u", f"{path}/src/main.py") == (0, "1001\n")
    assert f"{name}-workspace" in scope.volumes()


def test_invalid_specs_touch_nothing(scope: Scope) -> None:
    spec = scope.write_spec(SPEC.replace("command:", "comand:"))
    proc = scope.clawker("apply", "-f", str(spec), check=2)
    assert "did you mean 'command'" in proc.stderr
    assert "nothing was changed" in proc.stderr
    assert scope.containers() == []
    assert scope.volumes() == set()
    with pytest.raises(docker.errors.NotFound):
        scope.api.inspect_network(scope.env["CLAWKER_NETWORK"])


def test_get_agents_shows_desired_against_observed(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    before = json.loads(
        scope.clawker("get", "agents", "-f", str(spec), "-o", "json", check=0).stdout
    )
    assert [(i["agent"], i["observed"]["state"]) for i in before["items"]] == [
        (f"{scope.project}/dev", "missing")
    ]
    scope.clawker("apply", "-f", str(spec), check=0)
    table = scope.clawker("get", "agents", check=0).stdout
    assert "UP-TO-DATE" in table and scope.project in table and "running" in table
    # Without -f, the project file found here or in a parent says which agents are declared.
    inside = scope.workdir / "src" / "deep"
    inside.mkdir(parents=True)
    found = json.loads(scope.clawker("get", "agents", "-o", "json", check=0, cwd=inside).stdout)
    assert [(i["agent"], i["desired"]["declared"]) for i in found["items"]] == [
        (f"{scope.project}/dev", True)
    ]
    elsewhere = json.loads(scope.clawker("get", "agents", "-o", "json", check=0).stdout)
    assert [i["desired"]["declared"] for i in elsewhere["items"]] == [False]
    # A project file that does not load is a warning: the listing still works.
    spec.write_text(spec.read_text() + "\n  bogus: [\n")
    broken = scope.clawker("get", "agents", "-o", "json", check=0, cwd=inside)
    assert "warning:" in broken.stderr and "DECLARED is shown as no" in broken.stderr
    assert [i["desired"]["declared"] for i in json.loads(broken.stdout)["items"]] == [False]
    spec.write_text(textwrap.dedent(SPEC).replace("PROJECT", scope.project))
    after = json.loads(
        scope.clawker("get", "agents", "-f", str(spec), "-o", "json", check=0).stdout
    )
    item = after["items"][0]
    assert item["upToDate"] is True
    assert item["conditions"] == [
        {"type": "Ready", "status": True, "message": "ready"},
        {"type": "FirewallEnrolled", "status": True},
        {"type": "Initialized", "status": True},
    ]
    # A restart makes a new cgroup: until the CP enrols it, the old enrolment does not count.
    scope.clawker("controlplane", "down", check=0)
    scope.api.restart(f"clawker.{scope.project}.dev", timeout=1)
    stale = json.loads(
        scope.clawker("get", "agents", "-f", str(spec), "-o", "json", check=0).stdout
    )["items"][0]["conditions"]
    assert [c["status"] for c in stale] == [False, False, False]


def test_agents_deleted_while_the_control_plane_is_down_are_forgotten_at_its_next_start(
    scope: Scope,
) -> None:
    paths = StatePaths(Path(scope.env["CLAWKER_STATE_DIR"]))
    spec = str(scope.write_spec(SPEC))
    key = f"{scope.project}/dev"
    scope.clawker("apply", "-f", spec, check=0)
    assert key in ControlPlaneClient(paths.socket).runtime_state()

    scope.clawker("controlplane", "down", check=0)
    scope.clawker("delete", "-f", spec, "-y", check=0)
    assert paths.forget_pending.read_text() == f"{key}\n"
    scope.clawker("controlplane", "up", check=0)
    assert key not in ControlPlaneClient(paths.socket).runtime_state()
    assert not paths.forget_pending.exists()

    scope.clawker("apply", "-f", spec, check=0)
    scope.clawker("controlplane", "down", check=0)
    # A stale key (its agent was made again since) is alive at the next start: it is kept.
    paths.forget_pending.write_text(f"{key}\n")
    scope.clawker("controlplane", "up", check=0)
    assert key in ControlPlaneClient(paths.socket).runtime_state()
    assert not paths.forget_pending.exists()

"""A pass killed anywhere resumes exactly where it stopped (docs/reconciler.md, "Durable
progress"): `apply` SIGKILLed right after each kind of step in turn, the control plane killed
during post_init, then one more apply, which must converge without a hand repair and without
repeating a finished step. And two applies at once: one waits for the other, both succeed.

One kill per step kind keeps it bounded; the kill point is the executor's fault hook
(CLAWKER_TEST_KILL_AFTER, which only tests set)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker.errors
import pytest

from tests.cleanup import TEST_LABEL
from tests.integration.conftest import REPO, Scope

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: snapshot}
  build: {harness: none}
  agent:
    env: {ROUND: "1"}
    post_init: echo run >> /home/claude/.claude/post-init-count; GATE
    pre_run: echo run >> /tmp/pre-run-count
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""
CONFIG = "/home/claude/.claude"
# post_init waits for this file when the test needs it still running
GATE = "while [ ! -e /tmp/go ]; do sleep 0.1; done"


def _name(scope: Scope) -> str:
    return f"clawker.{scope.project}.dev"


def _spec(scope: Scope, round_: int = 1, gate: bool = False) -> Path:
    body = SPEC.replace('ROUND: "1"', f'ROUND: "{round_}"').replace(
        "GATE", GATE if gate else "true"
    )
    return scope.write_spec(body)


def _popen(scope: Scope, *args: str, kill_after: str = "") -> subprocess.Popen[str]:
    env = dict(scope.env)
    if kill_after:
        env["CLAWKER_TEST_KILL_AFTER"] = kill_after
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _killed_apply(scope: Scope, spec: Path, kind: str) -> None:
    proc = _popen(scope, "apply", "-f", str(spec), "-y", kill_after=kind)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"not killed after {kind}:\n{out}\n{err}"


def _read(scope: Scope, container: str, path: str) -> str | None:
    """A file of a container in any state (volumes included), or None when it is absent."""
    try:
        stream, _ = scope.api.get_archive(container, path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        return member.read().decode() if member else None


def _write(scope: Scope, container: str, path: str, text: str) -> None:
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(os.path.basename(path))
        info.size, info.uid, info.gid = len(data), 1001, 1001
        tar.addfile(info, io.BytesIO(data))
    assert scope.api.put_archive(container, os.path.dirname(path), buffer.getvalue())


def _our_container(scope: Scope) -> str | None:
    """The agent's container after a kill: its final name, or the replacement's."""
    for c in scope.containers():
        names = [n.lstrip("/") for n in c["Names"]]
        if any(n.startswith(_name(scope)) for n in names):
            return str(c["Id"])
    return None


def _mark_finished_fills(scope: Scope) -> dict[str, str]:
    """Overwrite what a finished seed or copy wrote, so a repeat of it would show; returns
    what each file must hold after the resumed pass."""
    container = _our_container(scope)
    ws = str(scope.workdir / "ws")
    expected = {
        f"{CONFIG}/.claude.json": "seeded",
        f"{ws}/hello.txt": "hello from the host\n",
    }
    if container is None:
        return expected
    markers = {
        f"{CONFIG}/.claude.json": f"{CONFIG}/.clawker-progress/config-seeded",
        f"{ws}/hello.txt": f"{CONFIG}/.clawker-progress/workspace-copied",
    }
    for path, marker in markers.items():
        if _read(scope, container, marker) is not None:
            _write(scope, container, path, "kept\n")  # a second fill would overwrite it
            expected[path] = "kept\n"
    return expected


def _check_converged(scope: Scope, spec: Path, expected: dict[str, str], post_init: int) -> None:
    scope.clawker("apply", "-f", str(spec), "-y", check=0)  # exit 0: every agent Ready
    name = _name(scope)
    assert scope.inspect(name)["State"]["Running"]
    for path, text in expected.items():
        found = _read(scope, name, path)
        assert found is not None, path
        if text == "seeded":
            assert json.loads(found)["hasCompletedOnboarding"] is True
        else:
            assert found == text, path
    assert _read(scope, name, f"{CONFIG}/.clawker-progress/config-seeded") is not None
    assert _read(scope, name, "/run/clawker/bootstrap/ca.pem") is not None
    assert _read(scope, name, f"{CONFIG}/post-init-count") == "run\n" * post_init
    assert _read(scope, name, "/tmp/pre-run-count") == "run\n"  # this container started once
    names = sorted(n.lstrip("/") for c in scope.containers() for n in c["Names"])
    assert names == [name], names  # no replacement or probe left behind


COLD = ["CreateVolume", "CreateContainer", "CopyWorkspace", "SeedConfig", "CopyBootstrap"]
COLD += ["StartContainer"]
RECREATE = ["StopContainer", "RemoveContainer", "RenameContainer"]


def test_an_apply_killed_after_each_kind_of_step_resumes_and_repeats_nothing(
    scope: Scope,
) -> None:
    (scope.workdir / "ws" / "hello.txt").write_text("hello from the host\n")
    spec = _spec(scope)
    for kind in COLD:
        _killed_apply(scope, spec, kind)
        expected = _mark_finished_fills(scope)
        _check_converged(scope, spec, expected, post_init=1)
        scope.clawker("delete", "-f", str(spec), "--volumes", "-y", check=0)
    scope.clawker("apply", "-f", str(spec), "-y", check=0)
    for round_, kind in enumerate(RECREATE, start=2):
        spec = _spec(scope, round_=round_)
        _killed_apply(scope, spec, kind)
        # volumes are kept and filled: nothing may be seeded or copied again
        expected = {
            f"{CONFIG}/.claude.json": "seeded",
            f"{scope.workdir / 'ws'}/hello.txt": "hello from the host\n",
        }
        _check_converged(scope, spec, expected, post_init=1)
        assert scope.inspect(_name(scope))["Config"]["Env"].count(f"ROUND={round_}") == 1


def _wait_for(check: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _controlplane_pid(scope: Scope) -> int:
    return int((Path(scope.env["CLAWKER_STATE_DIR"]) / "controlplane.pid").read_text())


def test_the_control_plane_killed_during_post_init_never_runs_it_twice(scope: Scope) -> None:
    spec = _spec(scope, gate=True)
    first = _popen(scope, "apply", "-f", str(spec), "-y")
    name = _name(scope)
    _wait_for(
        lambda: (
            _our_container(scope) is not None
            and _read(scope, name, f"{CONFIG}/post-init-count") == "run\n"
        ),
        "post_init to start",
    )
    os.kill(_controlplane_pid(scope), signal.SIGKILL)
    first.kill()
    first.communicate(timeout=60)
    code, _ = scope.exec(name, "touch", "/tmp/go")  # post_init may finish now
    assert code == 0
    again = scope.clawker("apply", "-f", str(spec), "-y", check=0)  # starts a new CP
    assert "Traceback" not in again.stderr
    assert _read(scope, name, f"{CONFIG}/post-init-count") == "run\n"
    assert _read(scope, name, f"{CONFIG}/post-initialized") is not None


def test_two_applies_at_once_one_waits_and_both_succeed(scope: Scope) -> None:
    spec = _spec(scope, gate=True)
    first = _popen(scope, "apply", "-f", str(spec), "-y")
    name = _name(scope)
    _wait_for(
        lambda: (
            _our_container(scope) is not None
            and _read(scope, name, f"{CONFIG}/post-init-count") == "run\n"
        ),
        "the first apply to be waiting for Ready",
    )
    second = _popen(scope, "apply", "-f", str(spec), "-y")
    assert second.stderr is not None
    line = second.stderr.readline()  # it waits before it observes anything
    assert line.startswith(f"waiting for another apply (pid {first.pid}) to finish"), line
    assert scope.exec(name, "touch", "/tmp/go")[0] == 0
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert (first.returncode, second.returncode) == (0, 0), (out1, err1, out2, err2)
    assert "Conflict" not in err1 + err2 + out1 + out2
    assert "No changes." in out2


def test_diff_reads_the_progress_of_kept_volumes_without_making_a_container(
    scope: Scope,
) -> None:
    spec = str(_spec(scope))
    scope.clawker("apply", "-f", spec, check=0)
    scope.clawker("delete", "-f", spec, "-y", check=0)  # the volumes stay, their markers too
    config = scope.api.inspect_volume(f"{_name(scope)}-config")["Mountpoint"]
    markers = Path(config) / ".clawker-progress"
    assert (markers / "config-seeded").exists()

    def diff_without_a_container() -> str:
        since = time.time_ns()
        out = scope.clawker("diff", "-f", spec, "-o", "json", check=1).stdout
        events = scope.api.events(
            since=since // 10**9,
            until=int(time.time()) + 1,
            filters={
                "type": "container",
                "event": "create",
                "label": f"{TEST_LABEL}={scope.run_id}",
            },
            decode=True,
        )
        # Docker filters by whole seconds: the apply's own create may be in that second.
        created = [e for e in events if int(e["timeNano"]) >= since]
        assert created == []  # no probe container, not even for a moment
        return " ".join(step["cause"] for step in json.loads(out)["steps"])

    assert "unfinished config volume" not in diff_without_a_container()
    (markers / "config-seeded").unlink()  # as if a pass had died before its seed finished
    assert "unfinished config volume" in diff_without_a_container()

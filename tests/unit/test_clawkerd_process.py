"""clawkerd as a process: privilege drop, signals, exit codes, reaping, its TTY and its log.

Each test runs its own clawkerd subprocess; as root the CMD runs as an unprivileged user
(`nobody`, or CLAWKER_TEST_USER), which is what makes the uid checks mean something.
"""

from __future__ import annotations

import json
import os
import pty
import pwd
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from proto.gen import clawkerd_pb2 as pb
from reconciler.controlplane.identity.pki import ClawkerPKI
from tests.unit.test_clawkerd_harness import (
    DEADLINE_SECONDS,
    IS_ROOT,
    TEST_USER,
    Clawkerd,
    cp_credentials,
    hello,
    open_session,
    shared_dir,
    start_clawkerd,
    user_ids,
    wait_until,
    write_bootstrap,
)

needs_root = pytest.mark.skipif(not IS_ROOT, reason="dropping to another uid needs root")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClawkerPKI:
    return ClawkerPKI.load_or_create(tmp_path_factory.mktemp("pki") / "ca")


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_dir() as path:
        yield path


@pytest.fixture
def daemons() -> Iterator[list[Clawkerd]]:
    """Started clawkerds, killed at teardown whatever the test did."""
    started: list[Clawkerd] = []
    yield started
    for daemon in started:
        daemon.stop()


def _start(
    daemons: list[Clawkerd],
    root: Path,
    pki: ClawkerPKI,
    command: list[str],
    **kwargs: object,
) -> Clawkerd:
    daemon = start_clawkerd(root, pki, command, **kwargs)  # type: ignore[arg-type]
    daemons.append(daemon)
    return daemon


def _agent_ready(daemon: Clawkerd, pki: ClawkerPKI) -> None:
    session = open_session(daemon.port, cp_credentials(pki))
    assert session.ask(pb.Command(agent_ready=pb.AgentReady())).HasField("ack")
    session.close()


def _workspace(shared: Path) -> dict[str, str]:
    return {"CLAWKER_WORKSPACE": str(shared)}


@needs_root
def test_the_cmd_runs_as_the_target_user_and_only_after_agent_ready(
    pki: ClawkerPKI, tmp_path: Path, shared: Path, daemons: list[Clawkerd]
) -> None:
    ids = shared / "ids"
    script = f'echo "$(id -u) $(id -g) $HOME $USER $(pwd)" > {ids}.tmp; mv {ids}.tmp {ids}; exit 0'
    daemon = _start(daemons, tmp_path, pki, ["sh", "-c", script], env=_workspace(shared))
    session = open_session(daemon.port, cp_credentials(pki))
    assert session.ask(hello()).HasField("hello_ack")
    assert not ids.exists(), "the CMD ran before AgentReady"
    assert session.ask(pb.Command(agent_ready=pb.AgentReady())).HasField("ack")
    wait_until(ids.exists, "the CMD to write its ids")
    uid, gid = user_ids()
    home = pwd.getpwnam(TEST_USER).pw_dir
    assert ids.read_text().split() == [str(uid), str(gid), home, TEST_USER, str(shared)]
    assert daemon.wait_exit() == 0
    session.close()


def test_sigterm_reaches_the_cmd_and_its_exit_code_is_clawkerds(
    pki: ClawkerPKI, tmp_path: Path, shared: Path, daemons: list[Clawkerd]
) -> None:
    ready = shared / "ready"
    script = f'trap "exit 7" TERM; touch {ready}; while :; do sleep 0.05; done'
    daemon = _start(daemons, tmp_path, pki, ["sh", "-c", script], env=_workspace(shared))
    _agent_ready(daemon, pki)
    wait_until(ready.exists, "the CMD to install its trap")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 7
    assert any(
        e["event"] == "signal_forwarded" and e["signal"] == "SIGTERM" for e in daemon.log_events()
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1])
def test_a_cmd_killed_by_a_forwarded_signal_exits_128_plus_signum(
    pki: ClawkerPKI,
    tmp_path: Path,
    shared: Path,
    daemons: list[Clawkerd],
    signum: signal.Signals,
) -> None:
    ready = shared / "ready"
    daemon = _start(
        daemons,
        tmp_path,
        pki,
        ["sh", "-c", f"touch {ready}; exec sleep 60"],
        env=_workspace(shared),
    )
    _agent_ready(daemon, pki)
    wait_until(ready.exists, "the CMD to start")
    wait_until(lambda: any(e["event"] == "cmd_started" for e in daemon.log_events()), "cmd_started")
    # `exec sleep` must have replaced sh before the signal, or sh's default would answer it.
    pid = next(e["pid"] for e in daemon.log_events() if e["event"] == "cmd_started")
    wait_until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep", "exec sleep")
    daemon.signal(signum)
    assert daemon.wait_exit() == 128 + signum


def test_the_cmds_own_exit_code_is_clawkerds(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["sh", "-c", "exit 42"])
    _agent_ready(daemon, pki)
    assert daemon.wait_exit() == 42


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_before_agent_ready_exits_1(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd], signum: signal.Signals
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["sleep", "60"])
    daemon.signal(signum)
    assert daemon.wait_exit() == 1
    assert "before AgentReady" in daemon.stderr()


def test_sigwinch_before_agent_ready_is_ignored(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["sleep", "60"])
    daemon.signal(signal.SIGWINCH)
    wait_until(lambda: daemon.has_event("signal_ignored"), "the signal to be logged")
    assert daemon.process.poll() is None
    session = open_session(daemon.port, cp_credentials(pki))
    assert session.ask(hello()).hello_ack.cmd_running is False
    session.close()


def test_missing_bootstrap_material_exits_2_and_says_what_is_missing(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["true"], bootstrap=False, wait=False)
    assert daemon.wait_exit() == 2
    message = daemon.stderr()
    assert "bootstrap material missing" in message
    for name in ("cert.pem", "key.pem", "ca.pem", "register.jwt"):
        assert name in message
    assert daemon.has_event("boot_failed")


def test_a_missing_register_jwt_alone_exits_2(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    write_bootstrap(pki, tmp_path / "bootstrap")
    (tmp_path / "bootstrap" / "register.jwt").unlink()
    daemon = _start(daemons, tmp_path, pki, ["true"], bootstrap=False, wait=False)
    assert daemon.wait_exit() == 2
    assert "register.jwt" in daemon.stderr()
    assert "cert.pem" not in daemon.stderr()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLAWKER_AGENT": ""}, "CLAWKER_AGENT is not set"),
        ({"CLAWKER_USER": "no-such-user-here"}, "no-such-user-here"),
    ],
)
def test_bad_configuration_exits_2(
    pki: ClawkerPKI,
    tmp_path: Path,
    daemons: list[Clawkerd],
    env: dict[str, str],
    message: str,
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["true"], env=env, wait=False)
    assert daemon.wait_exit() == 2
    assert message in daemon.stderr()


def test_a_listen_address_in_use_exits_2(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        daemon = _start(
            daemons, tmp_path, pki, ["true"], env={"CLAWKERD_LISTEN": address}, wait=False
        )
        assert daemon.wait_exit() == 2
    assert f"cannot listen on {address}" in daemon.stderr()


def test_a_failing_fatal_step_sends_done_then_clawkerd_exits_with_its_code(
    pki: ClawkerPKI, tmp_path: Path, shared: Path, daemons: list[Clawkerd]
) -> None:
    ran = shared / "cmd-ran"
    daemon = _start(daemons, tmp_path, pki, ["touch", str(ran)], env=_workspace(shared))
    session = open_session(daemon.port, cp_credentials(pki))
    uid, gid = user_ids()
    step = pb.ShellCommand(
        id="post-init",
        argv=["sh", "-c", "echo boom >&2; exit 5"],
        uid=uid,
        gid=gid,
        exit_on_non_zero=True,
        name="post_init",
    )
    outputs, terminal = session.run_step(step)
    assert terminal[0].done == pb.Done(id="post-init", exit_code=5)
    assert b"".join(o.data for o in outputs) == b"boom\n"
    assert daemon.wait_exit() == 5
    assert not ran.exists()
    assert "post_init" in daemon.stderr()
    session.close()


def test_a_succeeding_fatal_step_changes_nothing(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["sleep", "60"])
    session = open_session(daemon.port, cp_credentials(pki))
    uid, gid = user_ids()
    step = pb.ShellCommand(id="ok", argv=["true"], uid=uid, gid=gid, exit_on_non_zero=True)
    _, terminal = session.run_step(step)
    assert terminal[0].done.exit_code == 0
    assert session.ask(hello()).hello_ack.cmd_running is False
    assert daemon.process.poll() is None
    session.close()


def test_a_timed_out_fatal_step_exits_124(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["sleep", "60"])
    session = open_session(daemon.port, cp_credentials(pki))
    uid, gid = user_ids()
    step = pb.ShellCommand(
        id="slow", argv=["sleep", "30"], uid=uid, gid=gid, timeout_seconds=1, exit_on_non_zero=True
    )
    _, terminal = session.run_step(step)
    assert terminal[0].error.code == pb.ERROR_CODE_TIMEOUT
    assert daemon.wait_exit() == 124
    session.close()


def test_a_cmd_that_cannot_start_is_an_error_and_exit_127(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["/nonexistent/agent"])
    session = open_session(daemon.port, cp_credentials(pki))
    response = session.ask(pb.Command(agent_ready=pb.AgentReady()))
    assert response.error.code == pb.ERROR_CODE_SPAWN_FAILED
    assert "/nonexistent/agent" in response.error.message
    assert daemon.wait_exit() == 127
    session.close()


_ORPHAN_SCRIPT = """
sh -c 'sleep 0.3 & echo $! > {shared}/orphan.pid'
orphan=$(cat {shared}/orphan.pid)
i=0
while [ -e /proc/$orphan ] && [ $i -lt 150 ]; do
  i=$((i + 1)); sleep 0.05
done
if [ -e /proc/$orphan ]; then
  echo "$(cut -d' ' -f3 /proc/$orphan/stat)" > {shared}/result
else
  echo reaped > {shared}/result
fi
"""


def _orphan_result(
    daemons: list[Clawkerd],
    tmp_path: Path,
    pki: ClawkerPKI,
    shared: Path,
    wrapper: list[str],
) -> tuple[int, str]:
    """Run a CMD that orphans a short-lived grandchild and watches it: "reaped" or its state."""
    script = _ORPHAN_SCRIPT.format(shared=shared)
    daemon = _start(
        daemons,
        tmp_path,
        pki,
        ["sh", "-c", script],
        env=_workspace(shared),
        wrapper=wrapper,
    )
    _agent_ready(daemon, pki)
    code = daemon.wait_exit(timeout=DEADLINE_SECONDS + 4)
    return code, (shared / "result").read_text().strip()


def test_an_orphaned_grandchild_is_reaped_as_subreaper(
    pki: ClawkerPKI, tmp_path: Path, shared: Path, daemons: list[Clawkerd]
) -> None:
    code, result = _orphan_result(daemons, tmp_path, pki, shared, wrapper=[])
    assert (code, result) == (0, "reaped")
    assert any(e["event"] == "orphan_reaped" for e in daemons[0].log_events())


def _can_unshare_pid() -> bool:
    if not IS_ROOT or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        check=False,
        timeout=DEADLINE_SECONDS,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare_pid(), reason="needs root and unshare --pid")
def test_an_orphaned_grandchild_is_reaped_by_clawkerd_as_pid_1(
    pki: ClawkerPKI, tmp_path: Path, shared: Path, daemons: list[Clawkerd]
) -> None:
    wrapper = ["unshare", "--pid", "--fork", "--mount-proc"]
    code, result = _orphan_result(daemons, tmp_path, pki, shared, wrapper=wrapper)
    assert (code, result) == (0, "reaped")
    listening = next(e for e in daemons[0].log_events() if e["event"] == "listening")
    assert listening["pid1"] is True


def test_the_log_rotates_and_keeps_three_backups(
    pki: ClawkerPKI, tmp_path: Path, daemons: list[Clawkerd]
) -> None:
    daemon = _start(daemons, tmp_path, pki, ["sleep", "60"], env={"CLAWKERD_LOG_MAX_BYTES": "600"})
    session = open_session(daemon.port, cp_credentials(pki))
    for _ in range(40):
        assert session.ask(hello()).HasField("hello_ack")
    session.close()
    log_dir = daemon.log_path.parent
    wait_until((log_dir / "clawkerd.log.3").exists, "three rotations")
    names = sorted(p.name for p in log_dir.iterdir())
    assert names == ["clawkerd.log", "clawkerd.log.1", "clawkerd.log.2", "clawkerd.log.3"]
    for path in log_dir.iterdir():
        assert path.stat().st_size <= 600
        for line in path.read_text().splitlines():
            assert json.loads(line)["event"]


def test_on_a_tty_steps_render_as_lines_then_the_cmd_gets_the_terminal(
    pki: ClawkerPKI, tmp_path: Path, shared: Path, daemons: list[Clawkerd]
) -> None:
    if shutil.which("setsid") is None:
        pytest.skip("needs setsid(1) to give clawkerd a controlling terminal")
    answer = shared / "answer"
    script = f'read line; echo "got:$line" > {answer}'
    master, slave = pty.openpty()
    try:
        daemon = _start(
            daemons,
            tmp_path,
            pki,
            ["sh", "-c", script],
            env=_workspace(shared),
            wrapper=["setsid", "--ctty"],
            stdio=slave,
        )
        session = open_session(daemon.port, cp_credentials(pki))
        uid, gid = user_ids()
        for step_id, argv in (("seed-config", ["true"]), ("lint", ["false"])):
            step = pb.ShellCommand(
                id=step_id, argv=argv, uid=uid, gid=gid, name=step_id, tty_render=True
            )
            session.run_step(step)
        quiet = pb.ShellCommand(id="quiet", argv=["true"], uid=uid, gid=gid, name="quiet")
        session.run_step(quiet)
        assert session.ask(pb.Command(agent_ready=pb.AgentReady())).HasField("ack")
        # Only the foreground process group may read the TTY; a CMD left in the background
        # would be stopped by SIGTTIN and never answer.
        os.write(master, b"hello\n")
        wait_until(answer.exists, "the CMD to read from the terminal")
        assert answer.read_text() == "got:hello\n"
        assert daemon.wait_exit() == 0
        session.close()
        screen = _read_all(master).decode()
        assert "✓ seed-config" in screen
        assert "✗ lint (exit 1)" in screen
        assert "quiet" not in screen
    finally:
        os.close(slave)
        os.close(master)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)

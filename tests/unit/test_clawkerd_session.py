"""The Session protocol against a real clawkerd over real mTLS: what the CP sends, what it gets
back, and who is not allowed to talk to clawkerd at all."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proto import CLAWKERD_TLS_NAME
from proto.gen import clawkerd_pb2 as pb
from proto.gen import clawkerd_pb2_grpc as pb_grpc
from reconciler.controlplane.identity.pki import ClawkerPKI
from tests.unit.test_clawkerd_harness import (
    CONTAINER_ID,
    Clawkerd,
    SessionStream,
    channel_credentials,
    cp_credentials,
    hello,
    open_session,
    shared_dir,
    start_clawkerd,
    user_ids,
    wait_until,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClawkerPKI:
    return ClawkerPKI.load_or_create(tmp_path_factory.mktemp("pki") / "ca")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with shared_dir() as path:
        yield path


@pytest.fixture(scope="module")
def daemon(
    pki: ClawkerPKI, tmp_path_factory: pytest.TempPathFactory, workdir: Path
) -> Iterator[Clawkerd]:
    """One clawkerd for the tests that do not start its CMD."""
    started = start_clawkerd(
        tmp_path_factory.mktemp("clawkerd"), pki, ["sleep", "60"], env={"EXTRA": "container"}
    )
    yield started
    started.stop()


@pytest.fixture
def session(daemon: Clawkerd, pki: ClawkerPKI) -> Iterator[SessionStream]:
    stream = open_session(daemon.port, cp_credentials(pki))
    yield stream
    stream.close()


def _step(
    step_id: str,
    argv: list[str],
    *,
    cwd: str = "",
    env: dict[str, str] | None = None,
    timeout_seconds: int = 0,
) -> pb.ShellCommand:
    uid, gid = user_ids()
    return pb.ShellCommand(
        id=step_id,
        argv=argv,
        uid=uid,
        gid=gid,
        cwd=cwd,
        env=env or {},
        timeout_seconds=timeout_seconds,
        name=step_id,
    )


def _stdout(outputs: list[pb.Output]) -> bytes:
    return b"".join(o.data for o in outputs if o.stream == pb.OUTPUT_STREAM_STDOUT)


def _stderr(outputs: list[pb.Output]) -> bytes:
    return b"".join(o.data for o in outputs if o.stream == pb.OUTPUT_STREAM_STDERR)


def _client_cert(pki: ClawkerPKI, common_name: str) -> tuple[bytes, bytes]:
    """A client certificate from the clawker CA itself, with any CN (what an intruder with a
    stolen CA-issued cert would hold)."""
    ca_key = serialization.load_pem_private_key(
        (pki.directory / "ca.key").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate(pki.ca_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# -- the protocol ----------------------------------------------------------------------------


def test_hello_reports_identity_and_a_fresh_state(session: SessionStream) -> None:
    ack = session.ask(hello()).hello_ack
    assert ack.agent == "dev"
    assert ack.project == "proj"
    assert ack.clawkerd_version
    assert ack.container_id
    assert ack.initialized is False
    assert ack.cmd_running is False


def test_register_required_returns_the_bootstrap_jwt(
    session: SessionStream, daemon: Clawkerd, pki: ClawkerPKI
) -> None:
    token = session.ask(pb.Command(register_required=pb.RegisterRequired())).register_token.jwt
    assert token == (daemon.root / "bootstrap" / "register.jwt").read_text()
    claims = pki.verify_registration_jwt(token, CONTAINER_ID, lambda jti: False)
    assert claims.agent_key == "proj/dev"


def test_a_step_streams_its_output_and_ends_with_one_done(session: SessionStream) -> None:
    script = "echo out; echo err >&2; printf 'x%.0s' $(seq 100000); exit 3"
    outputs, terminal = session.run_step(_step("s1", ["sh", "-c", script]))
    assert terminal[0].done == pb.Done(id="s1", exit_code=3)
    assert all(o.id == "s1" for o in outputs)
    assert _stdout(outputs) == b"out\n" + b"x" * 100000
    assert _stderr(outputs) == b"err\n"
    # Nothing more for s1: the next response belongs to the next command.
    assert session.ask(hello()).WhichOneof("kind") == "hello_ack"


def test_a_step_runs_as_the_given_uid_gid_with_its_env_and_cwd(
    session: SessionStream, workdir: Path
) -> None:
    uid, gid = user_ids()
    step = _step(
        "who",
        ["sh", "-c", 'echo "$(id -u) $(id -g) $STEP_VAR $EXTRA $(pwd)"'],
        cwd=str(workdir),
        env={"STEP_VAR": "from-cp"},
    )
    outputs, terminal = session.run_step(step)
    assert terminal[0].done.exit_code == 0
    assert _stdout(outputs).decode().split() == [
        str(uid),
        str(gid),
        "from-cp",
        "container",
        str(workdir),
    ]


def test_a_step_that_times_out_ends_with_one_timeout_error(session: SessionStream) -> None:
    outputs, terminal = session.run_step(
        _step("slow", ["sh", "-c", "echo started; sleep 30"], timeout_seconds=1)
    )
    error = terminal[0].error
    assert (error.id, error.code) == ("slow", pb.ERROR_CODE_TIMEOUT)
    assert "timed out after 1s" in error.message
    assert _stdout(outputs) == b"started\n"
    assert session.ask(hello()).WhichOneof("kind") == "hello_ack"


def test_a_step_whose_leftover_process_holds_its_pipes_still_ends(
    session: SessionStream,
) -> None:
    outputs, terminal = session.run_step(_step("bg", ["sh", "-c", "sleep 3 & echo hi"]))
    assert terminal[0].done == pb.Done(id="bg", exit_code=0)
    assert _stdout(outputs) == b"hi\n"


def test_a_step_dies_with_the_session_that_started_it(
    daemon: Clawkerd, pki: ClawkerPKI, workdir: Path
) -> None:
    pid_file = workdir / "step.pid"
    session = open_session(daemon.port, cp_credentials(pki))
    session.send(
        pb.Command(
            shell_command=_step("orphaned", ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"])
        )
    )
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), "the step to start")
    pid = int(pid_file.read_text())
    session.close()
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the step to be killed and reaped")


def test_a_step_that_cannot_start_ends_with_spawn_failed(session: SessionStream) -> None:
    _, terminal = session.run_step(_step("missing", ["/nonexistent/tool"]))
    error = terminal[0].error
    assert (error.id, error.code) == ("missing", pb.ERROR_CODE_SPAWN_FAILED)
    assert "/nonexistent/tool" in error.message


def test_malformed_steps_are_refused(session: SessionStream) -> None:
    response = session.ask(pb.Command(shell_command=_step("", ["true"])))
    assert response.error.code == pb.ERROR_CODE_INVALID_ARGUMENT
    response = session.ask(pb.Command(shell_command=_step("empty", [])))
    assert (response.error.id, response.error.code) == ("empty", pb.ERROR_CODE_INVALID_ARGUMENT)


def test_a_signal_without_a_running_cmd_is_an_error(session: SessionStream) -> None:
    response = session.ask(pb.Command(signal=pb.Signal(signum=15)))
    assert response.error.code == pb.ERROR_CODE_NO_CMD


def test_steps_run_concurrently_and_hello_answers_meanwhile(session: SessionStream) -> None:
    session.send(pb.Command(shell_command=_step("long", ["sleep", "1"])))
    assert session.ask(hello()).WhichOneof("kind") == "hello_ack"
    assert session.recv().done == pb.Done(id="long", exit_code=0)


def test_agent_initialized_writes_the_marker_once_per_container(
    pki: ClawkerPKI, tmp_path: Path
) -> None:
    daemon = start_clawkerd(tmp_path, pki, ["sleep", "60"])
    try:
        session = open_session(daemon.port, cp_credentials(pki))
        assert session.ask(hello()).hello_ack.initialized is False
        assert session.ask(pb.Command(agent_initialized=pb.AgentInitialized())).HasField("ack")
        assert (daemon.state_dir / "initialized").exists()
        assert session.ask(hello()).hello_ack.initialized is True
        session.close()
    finally:
        daemon.stop()


def test_agent_ready_starts_the_cmd_once(pki: ClawkerPKI, tmp_path: Path) -> None:
    with shared_dir() as shared:
        started = shared / "started"
        command = ["sh", "-c", f'echo "$$" >> {started}; sleep 60']
        daemon = start_clawkerd(tmp_path, pki, command, env={"CLAWKER_WORKSPACE": str(shared)})
        try:
            session = open_session(daemon.port, cp_credentials(pki))
            assert session.ask(hello()).hello_ack.cmd_running is False
            assert not started.exists()
            assert session.ask(pb.Command(agent_ready=pb.AgentReady())).HasField("ack")
            wait_until(started.exists, "the CMD to start")
            assert session.ask(hello()).hello_ack.cmd_running is True
            # The CP re-adopting the container after its own restart: a no-op.
            again = open_session(daemon.port, cp_credentials(pki))
            assert again.ask(pb.Command(agent_ready=pb.AgentReady())).HasField("ack")
            assert again.ask(hello()).hello_ack.cmd_running is True
            assert len(started.read_text().split()) == 1
            # Signal reaches the CMD; its death by SIGTERM is clawkerd's exit code.
            assert session.ask(pb.Command(signal=pb.Signal(signum=15))).HasField("ack")
            assert daemon.wait_exit() == 128 + 15
            again.close()
            session.close()
        finally:
            daemon.stop()


# -- who may talk to clawkerd ----------------------------------------------------------------


def _first_response_error(port: int, credentials: grpc.ChannelCredentials) -> grpc.RpcError:
    stream = open_session(port, credentials, timeout=5)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stream.ask(hello())
        return caught.value
    finally:
        stream.close()


def test_a_client_certificate_with_another_cn_is_refused(daemon: Clawkerd, pki: ClawkerPKI) -> None:
    cert, key = _client_cert(pki, "clawker-intruder")
    error = _first_response_error(daemon.port, channel_credentials(pki.ca_pem, cert, key))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "clawker-intruder" in (error.details() or "")
    wait_until(lambda: daemon.has_event("peer_refused"), "the refusal to be logged")


def test_another_containers_leaf_is_refused(daemon: Clawkerd, pki: ClawkerPKI) -> None:
    leaf = pki.issue_leaf("proj/other", "0" * 64)
    error = _first_response_error(
        daemon.port, channel_credentials(pki.ca_pem, leaf.cert_pem, leaf.key_pem)
    )
    # Refused by TLS (a server-only certificate) or by the CN check; never served.
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED)


def test_a_client_certificate_from_another_ca_fails_the_handshake(
    daemon: Clawkerd, pki: ClawkerPKI, tmp_path: Path
) -> None:
    stranger = ClawkerPKI.load_or_create(tmp_path / "stranger")
    credentials = channel_credentials(
        pki.ca_pem, stranger.controlplane_cert_pem, stranger.controlplane_key_pem
    )
    assert _first_response_error(daemon.port, credentials).code() == grpc.StatusCode.UNAVAILABLE


def test_no_client_certificate_fails_the_handshake(daemon: Clawkerd, pki: ClawkerPKI) -> None:
    error = _first_response_error(daemon.port, channel_credentials(pki.ca_pem))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_the_cp_refuses_a_clawkerd_of_another_ca(
    daemon: Clawkerd, pki: ClawkerPKI, tmp_path: Path
) -> None:
    """The other direction of mTLS: a CP trusting only its own CA does not talk to an impostor."""
    stranger = ClawkerPKI.load_or_create(tmp_path / "stranger")
    credentials = channel_credentials(
        stranger.ca_pem, stranger.controlplane_cert_pem, stranger.controlplane_key_pem
    )
    assert _first_response_error(daemon.port, credentials).code() == grpc.StatusCode.UNAVAILABLE


def test_the_log_records_events_without_secrets(daemon: Clawkerd) -> None:
    token = (daemon.root / "bootstrap" / "register.jwt").read_text()
    events = daemon.log_events()
    assert {"boot", "listening"} <= {e["event"] for e in events}
    assert all({"ts", "level", "event"} <= set(e) for e in events)
    assert token not in daemon.log_path.read_text()
    assert os.stat(daemon.log_path).st_mode & 0o007 == 0


def test_the_bridge_is_refused_to_a_peer_that_is_not_the_cp(
    daemon: Clawkerd, pki: ClawkerPKI, tmp_path: Path
) -> None:
    cert, key = _client_cert(pki, "clawker-intruder")
    channel = grpc.secure_channel(
        f"127.0.0.1:{daemon.port}",
        channel_credentials(pki.ca_pem, cert, key),
        options=[("grpc.ssl_target_name_override", CLAWKERD_TLS_NAME)],
    )
    path = tmp_path / "ssh-agent.sock"
    listen = pb.Frame(
        kind=pb.FRAME_KIND_LISTEN,
        listeners=[pb.BridgeListener(path=str(path), uid=os.getuid(), gid=os.getgid())],
    )
    try:
        frames = pb_grpc.ClawkerdStub(channel).Bridge(iter([listen]), timeout=5)
        with pytest.raises(grpc.RpcError) as caught:
            next(iter(frames))
    finally:
        channel.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not path.exists()  # nothing was bound for it


def test_an_open_bridge_stream_ends_cleanly_when_clawkerd_exits(
    pki: ClawkerPKI, tmp_path: Path
) -> None:
    """The CP keeps its Bridge stream open for the container's life. When the CMD exits, the
    stream is ended by clawkerd (OK, after bridge_down), not cancelled by the server's shutdown
    once its grace runs out: that grace used to hold every stop and recreate for 3 s."""
    daemon = start_clawkerd(tmp_path, pki, ["sleep", "60"])
    channel = grpc.secure_channel(
        f"127.0.0.1:{daemon.port}",
        cp_credentials(pki),
        options=[("grpc.ssl_target_name_override", CLAWKERD_TLS_NAME)],
    )
    hold = threading.Event()
    path = tmp_path / "agent.sock"

    def requests() -> Iterator[pb.Frame]:
        yield pb.Frame(
            kind=pb.FRAME_KIND_LISTEN,
            listeners=[pb.BridgeListener(path=str(path), uid=os.getuid(), gid=os.getgid())],
        )
        hold.wait(30)  # the CP does not half-close: only clawkerd can end this stream

    try:
        call = pb_grpc.ClawkerdStub(channel).Bridge(requests(), timeout=30)
        frames = iter(call)
        assert next(frames).kind == pb.FRAME_KIND_READY
        session = open_session(daemon.port, cp_credentials(pki))
        assert session.ask(pb.Command(agent_ready=pb.AgentReady())).HasField("ack")
        assert session.ask(pb.Command(signal=pb.Signal(signum=15))).HasField("ack")
        assert list(frames) == []  # ends without an RpcError
        assert call.code() == grpc.StatusCode.OK
        assert daemon.wait_exit() == 128 + 15
        assert daemon.has_event("bridge_down")
        assert not path.exists()
        session.close()
    finally:
        hold.set()
        channel.close()
        daemon.stop()

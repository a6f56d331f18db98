"""Shared harness for the clawkerd tests (no tests here): a real clawkerd subprocess with
bootstrap material from a real ClawkerPKI, and a real gRPC client holding the CP's certificate.

clawkerd listens on 127.0.0.1 port 0 and logs the port it got; the harness reads it from the
JSON log, so there is no port race and no fixed sleep: every wait is a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from proto import CLAWKERD_TLS_NAME
from proto.gen import clawkerd_pb2 as pb
from proto.gen import clawkerd_pb2_grpc as pb_grpc
from reconciler.controlplane.identity.pki import ClawkerPKI

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_KEY = "proj/dev"
CONTAINER_ID = "c0ffee" + "0" * 58  # leaves and tokens are bound to a container id
DEADLINE_SECONDS = 8.0
IS_ROOT = os.geteuid() == 0
# As root the CMD and steps drop to an unprivileged user; otherwise they run as ourselves.
TEST_USER = os.environ.get("CLAWKER_TEST_USER") or (
    "nobody" if IS_ROOT else pwd.getpwuid(os.getuid()).pw_name
)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE_SECONDS) -> Any:
    """Poll `condition` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def write_bootstrap(pki: ClawkerPKI, directory: Path) -> str:
    """Fill a bootstrap dir the way the CP does; return the registration JWT."""
    leaf = pki.issue_leaf(AGENT_KEY, CONTAINER_ID)
    token = pki.issue_registration_jwt(AGENT_KEY, CONTAINER_ID)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in (
        ("cert.pem", leaf.cert_pem),
        ("key.pem", leaf.key_pem),
        ("ca.pem", leaf.ca_pem),
        ("register.jwt", token.encode()),
    ):
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o400)
    return token


@contextlib.contextmanager
def shared_dir() -> Iterator[Path]:
    """A world-writable directory the unprivileged CMD can reach (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="clawkerd-test-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Clawkerd:
    """A clawkerd subprocess and where it keeps its log and state."""

    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    state_dir: Path
    stderr_path: Path
    port: int = 0

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON line of the current log file."""
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def has_event(self, event: str) -> bool:
        """True once clawkerd logged `event`."""
        return any(e["event"] == event for e in self.log_events())

    def stderr(self) -> str:
        """What clawkerd wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def wait_listening(self) -> int:
        """Block until clawkerd logged its port (or died); return the port."""

        def ready() -> int | None:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"clawkerd exited {self.process.returncode} before listening: {self.stderr()}"
                )
            for event in self.log_events():
                if event["event"] == "listening":
                    return int(event["port"])
            return None

        self.port = wait_until(ready, "clawkerd to listen")
        return self.port

    def wait_exit(self, timeout: float = DEADLINE_SECONDS) -> int:
        """clawkerd's exit code (fails the test at the deadline)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"clawkerd still running after {timeout}s") from None

    def signal(self, signum: int) -> None:
        """Send a signal to clawkerd itself."""
        self.process.send_signal(signum)

    def stop(self) -> None:
        """Kill clawkerd and whatever it started (cleanup)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(DEADLINE_SECONDS)


def start_clawkerd(
    root: Path,
    pki: ClawkerPKI,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    bootstrap: bool = True,
    wrapper: Sequence[str] = (),
    stdio: int | None = None,
    wait: bool = True,
) -> Clawkerd:
    """Start `[wrapper] python -m clawkerd -- command`, listening on 127.0.0.1 port 0.

    `stdio` (a pty's fd) becomes clawkerd's stdin, stdout and stderr.
    """
    bootstrap_dir = root / "bootstrap"
    if bootstrap:
        write_bootstrap(pki, bootstrap_dir)
    log_path = root / "log" / "clawkerd.log"
    state_dir = root / "state"
    stderr_path = root / "clawkerd.stderr"
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO_ROOT),
        "CLAWKER_AGENT": "dev",
        "CLAWKER_PROJECT": "proj",
        "CLAWKER_USER": TEST_USER,
        "CLAWKERD_BOOTSTRAP_DIR": str(bootstrap_dir),
        "CLAWKERD_LISTEN": "127.0.0.1:0",
        "CLAWKERD_LOG": str(log_path),
        "CLAWKERD_STATE_DIR": str(state_dir),
        **(env or {}),
    }
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "clawkerd", "--", *command],
            env=full_env,
            stdin=stdio if stdio is not None else subprocess.DEVNULL,
            stdout=stdio if stdio is not None else subprocess.DEVNULL,
            stderr=stdio if stdio is not None else stderr,
            # Its own group, so cleanup can kill everything it started; a TTY test instead
            # wraps it in `setsid --ctty`, which needs a process that is no group leader.
            process_group=0 if stdio is None else None,
        )
    daemon = Clawkerd(root, process, log_path, state_dir, stderr_path)
    if wait:
        daemon.wait_listening()
    return daemon


def channel_credentials(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials trusting `ca_pem`, with a client certificate when given one."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def cp_credentials(pki: ClawkerPKI) -> grpc.ChannelCredentials:
    """What the control plane dials with."""
    return channel_credentials(pki.ca_pem, pki.controlplane_cert_pem, pki.controlplane_key_pem)


@dataclass
class SessionStream:
    """A Session RPC driven from the test thread: send Commands, receive Responses in order."""

    channel: grpc.Channel
    requests: queue.Queue[pb.Command | None] = field(default_factory=queue.Queue)
    call: Any = None

    def send(self, command: pb.Command) -> None:
        """Queue one Command."""
        self.requests.put(command)

    def recv(self) -> pb.Response:
        """The next Response (the RPC's deadline bounds the wait)."""
        response: pb.Response = next(self.call)
        return response

    def ask(self, command: pb.Command) -> pb.Response:
        """Send a Command and return the next Response."""
        self.send(command)
        return self.recv()

    def run_step(self, step: pb.ShellCommand) -> tuple[list[pb.Output], list[pb.Response]]:
        """Send a ShellCommand; collect its Output and terminal responses until the first one."""
        self.send(pb.Command(shell_command=step))
        outputs: list[pb.Output] = []
        while True:
            response = self.recv()
            kind = response.WhichOneof("kind")
            if kind == "output":
                outputs.append(response.output)
            elif kind in ("done", "error"):
                return outputs, [response]
            else:
                raise AssertionError(f"unexpected response during a step: {response}")

    def close(self) -> None:
        """Half-close the request stream and the channel."""
        self.requests.put(None)
        self.channel.close()


def open_session(
    port: int, credentials: grpc.ChannelCredentials, timeout: float = 20.0
) -> SessionStream:
    """Dial clawkerd as the CP does (TLS name `clawkerd`) and open a Session."""
    channel = grpc.secure_channel(
        f"127.0.0.1:{port}",
        credentials,
        options=[("grpc.ssl_target_name_override", CLAWKERD_TLS_NAME)],
    )
    stream = SessionStream(channel)
    stub = pb_grpc.ClawkerdStub(channel)
    stream.call = stub.Session(iter(stream.requests.get, None), timeout=timeout)
    return stream


def hello() -> pb.Command:
    """A Hello command."""
    return pb.Command(hello=pb.Hello(cp_version="test"))


def user_ids() -> tuple[int, int]:
    """uid and gid of TEST_USER."""
    entry = pwd.getpwnam(TEST_USER)
    return entry.pw_uid, entry.pw_gid

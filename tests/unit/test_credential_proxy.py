"""The credential proxy and the socket bridge without Docker: request checks, the host's real
`git credential` with a store helper in a temporary home, and the relay run as a local process
behind a fake exec (the port's edge)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

from reconciler.controlplane.bridge.credentials import (
    CredentialRequestError,
    HostGit,
    answer,
    host_name,
    parse_request,
)
from reconciler.controlplane.bridge.socket_bridge import (
    BridgeError,
    CredentialTarget,
    Listener,
    SocketBridge,
    UnixTarget,
    bridge_listeners,
)
from reconciler.controlplane.registry import AgentRuntimeSpec
from reconciler.in_container.git_credential_clawker import ask_proxy
from reconciler.in_container.socket_relay import DATA, OPEN, FrameReader, encode_frame


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty request"),
        (b"fetch\nprotocol=https\nhost=h\n\n", "unknown operation"),
        (b"get\nprotocol=https\nhost=h\npassword=a\0b\n\n", "NUL"),
        (b"get\nprotocol=https\nhost=h\npassword=first\nsecond line\n\n", "without '='"),
        (b"get\nprotocol=https\nhost=h\nusername=a\rb\n\n", "carriage return"),
        (b"get\nprotocol=https\nhost=h\nBad Key=x\n\n", "invalid attribute name"),
        (b"get\nprotocol=http\nhost=h\n\n", "only protocol=https"),
        (b"get\nhost=h\n\n", "only protocol=https"),
        (b"get\nprotocol=https\n\n", "no host"),
        (b"get\nurl=https://h/\nprotocol=https\nhost=h\n\n", "url= is not accepted"),
        (b"get\nprotocol=https\nhost=" + b"h" * 70000 + b"\n\n", "over 65536 bytes"),
        (b"get\nprotocol=https\nhost=\xff\n\n", "not UTF-8"),
    ],
)
def test_a_malformed_or_unwanted_request_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(CredentialRequestError, match=reason):
        parse_request(raw)


def test_a_well_formed_request_keeps_its_attributes_in_order() -> None:
    request = parse_request(
        b"get\ncapability[]=authtype\nprotocol=https\nhost=git.example.invalid:8443\n"
        b"path=org/repo.git\n\nignored=after the blank line\n"
    )

    assert request.operation == "get"
    assert request.fields == (
        ("capability[]", "authtype"),
        ("protocol", "https"),
        ("host", "git.example.invalid:8443"),
        ("path", "org/repo.git"),
    )


def allowed_here() -> tuple[str, ...]:
    """The agent's allowlist in these tests: the servers they ask about."""
    return (".example.invalid",)


@pytest.fixture
def host_git(tmp_path: Path) -> HostGit:
    """The host user's git with a `store` helper that knows one credential."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    (home / ".git-credentials").write_text("https://ada:s3cret@git.example.invalid\n")
    return HostGit(os.getuid(), os.getgid(), str(home))


def test_get_is_answered_by_the_host_git_and_store_is_approved_there(host_git: HostGit) -> None:
    reply = answer(host_git, b"get\nprotocol=https\nhost=git.example.invalid\n\n", allowed_here)

    assert b"username=ada\n" in reply and b"password=s3cret\n" in reply
    stored = b"store\nprotocol=https\nhost=other.example.invalid\nusername=bo\npassword=pw\n\n"
    assert answer(host_git, stored, allowed_here) == b""
    assert "https://bo:pw@other.example.invalid" in (
        Path(host_git.home, ".git-credentials").read_text()
    )


def test_an_unknown_host_gets_an_empty_answer_and_no_prompt(host_git: HostGit) -> None:
    assert (
        answer(host_git, b"get\nprotocol=https\nhost=unknown.example.invalid\n\n", allowed_here)
        == b""
    )


class LocalExecPort:
    """`exec_socket` of a fake port: runs the relay as a local process and frames its stdout
    and stderr the way Docker multiplexes an exec's streams."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def exec_socket(
        self, container_id: str, argv: Sequence[str], *, user: str = ""
    ) -> socket.socket:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, *argv[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.processes.append(proc)
        assert proc.stdin and proc.stdout and proc.stderr
        write_lock = threading.Lock()

        def to_relay() -> None:
            assert proc.stdin
            with contextlib.suppress(OSError):
                while data := theirs.recv(65536):
                    proc.stdin.write(data)
                    proc.stdin.flush()
            proc.stdin.close()

        def from_relay(pipe: IO[bytes], stream: int) -> None:
            with contextlib.suppress(OSError):
                while data := os.read(pipe.fileno(), 65536):
                    with write_lock:
                        theirs.sendall(struct.pack(">BxxxI", stream, len(data)) + data)
            if stream == 1:  # the process ended: so does the exec's stream
                proc.wait()
                with contextlib.suppress(OSError):
                    theirs.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=to_relay, daemon=True).start()
        threading.Thread(target=from_relay, args=(proc.stdout, 1), daemon=True).start()
        threading.Thread(target=from_relay, args=(proc.stderr, 2), daemon=True).start()
        return ours


@pytest.fixture
def port() -> Iterator[LocalExecPort]:
    fake = LocalExecPort()
    yield fake
    for proc in fake.processes:
        proc.kill()
        proc.wait()


def echo_server(path: Path) -> socket.socket:
    """A host socket that answers every message with its upper case (a stand-in agent)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_the_bridge_carries_credential_requests_and_agent_connections(
    tmp_path: Path, port: LocalExecPort, host_git: HostGit
) -> None:
    inside = tmp_path / "inside"
    me = {"uid": os.getuid(), "gid": os.getgid()}
    agent = echo_server(tmp_path / "host-agent.sock")
    bridge = SocketBridge(
        port,  # type: ignore[arg-type]
        "c0ffee",
        [
            Listener(
                str(inside / "git-credential.sock"), CredentialTarget(host_git, allowed_here), **me
            ),
            Listener(
                str(inside / "agent.sock"), UnixTarget(str(tmp_path / "host-agent.sock")), **me
            ),
        ],
    )
    bridge.start(timeout=10)
    try:
        assert oct((inside / "agent.sock").stat().st_mode & 0o777) == "0o600"
        # git-credential-clawker, as git runs it inside, against the relay's socket.
        lines = ask_proxy(
            str(inside / "git-credential.sock"),
            "get",
            [b"protocol=https", b"host=git.example.invalid"],
        )
        assert b"password=s3cret" in lines
        refused = ask_proxy(
            str(inside / "git-credential.sock"), "get", [b"protocol=http", b"host=x"]
        )
        assert refused == []
        for _ in range(2):  # connections come and go; each is its own channel
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(inside / "agent.sock"))
                client.sendall(b"sign this")
                assert client.recv(100) == b"SIGN THIS"
        assert bridge.alive
    finally:
        bridge.close()
        agent.close()
    port.processes[0].wait(timeout=10)
    assert not (inside / "agent.sock").exists()  # the relay removes its sockets when it ends


def test_frames_survive_being_cut_anywhere() -> None:
    stream = encode_frame(OPEN, 7, b"\x01") + encode_frame(DATA, 7, b"x" * 1000)
    reader = FrameReader()

    frames = [f for i in range(0, len(stream), 3) for f in reader.feed(stream[i : i + 3])]

    assert frames == [(OPEN, 7, b"\x01"), (DATA, 7, b"x" * 1000)]


def test_an_agent_gets_the_listeners_its_spec_and_the_host_allow() -> None:
    runtime = AgentRuntimeSpec(
        "p/a",
        forward_https=True,
        forward_ssh=True,
        forward_gpg=True,
        host_uid=1000,
        host_gid=1000,
        host_home="/home/ada",
        ssh_auth_sock="/tmp/ssh.sock",
    )

    paths = [item.path for item in bridge_listeners(runtime)]

    assert paths == ["/run/clawker/git-credential.sock", "/run/clawker/ssh-agent.sock"]
    assert bridge_listeners(AgentRuntimeSpec("p/a")) == []


def test_a_relay_that_cannot_listen_fails_the_bridge_at_once_with_its_reason(
    tmp_path: Path, port: LocalExecPort
) -> None:
    (tmp_path / "a-file").write_text("")
    me = {"uid": os.getuid(), "gid": os.getgid()}
    bridge = SocketBridge(
        port,  # type: ignore[arg-type]
        "c0ffee",
        [Listener(str(tmp_path / "a-file" / "x.sock"), UnixTarget("/nowhere"), **me)],
    )

    with pytest.raises(BridgeError, match=r"did not start: FileExistsError"):
        bridge.start(timeout=30)
    assert not bridge.alive


def test_the_bridge_ends_when_the_relay_does(
    tmp_path: Path, port: LocalExecPort, host_git: HostGit
) -> None:
    me = {"uid": os.getuid(), "gid": os.getgid()}
    bridge = SocketBridge(
        port,  # type: ignore[arg-type]
        "c0ffee",
        [Listener(str(tmp_path / "in" / "c.sock"), CredentialTarget(host_git, allowed_here), **me)],
    )
    bridge.start(timeout=10)

    port.processes[0].kill()  # what stopping the container does to its exec

    deadline = time.monotonic() + 10
    while bridge.alive:
        assert time.monotonic() < deadline, "the bridge outlived its relay"
        time.sleep(0.05)


def test_a_host_off_the_agents_allowlist_gets_nothing_and_git_is_not_asked(
    host_git: HostGit, tmp_path: Path
) -> None:
    asked = tmp_path / "asked"
    helper = tmp_path / "helper.sh"
    helper.write_text(f"#!/bin/sh\ncat >> {asked}\necho username=ada\necho password=s3cret\n")
    helper.chmod(0o755)
    Path(host_git.home, ".gitconfig").write_text(f"[credential]\n\thelper = {helper}\n")
    only = lambda: ("git.example.invalid", ".corp.example")  # noqa: E731

    for request in (
        b"get\nprotocol=https\nhost=elsewhere.example.invalid\n\n",
        b"get\nprotocol=https\nhost=example.invalid\n\n",
        b"get\nprotocol=https\nhost=git.example.invalid.evil.test\n\n",
    ):
        with pytest.raises(CredentialRequestError, match="not on the agent's allowlist"):
            answer(host_git, request, only)
    assert not asked.exists()  # the host's helpers never saw the name

    ok = answer(host_git, b"get\nprotocol=https\nhost=git.example.invalid:8443\n\n", only)
    assert b"password=s3cret" in ok
    assert b"password=s3cret" in answer(
        host_git, b"get\nprotocol=https\nhost=src.corp.example\n\n", only
    )


def test_an_answer_about_another_host_is_not_passed_on(host_git: HostGit, tmp_path: Path) -> None:
    helper = tmp_path / "helper.sh"
    helper.write_text(
        "#!/bin/sh\necho host=other.example\necho username=ada\necho password=s3cret\n"
    )
    helper.chmod(0o755)
    Path(host_git.home, ".gitconfig").write_text(f"[credential]\n\thelper = {helper}\n")
    with pytest.raises(CredentialRequestError, match="another host"):
        answer(host_git, b"get\nprotocol=https\nhost=git.example.invalid\n\n", allowed_here)


def test_the_host_name_of_gits_host_attribute_drops_the_port() -> None:
    assert host_name("git.example:8443") == "git.example"
    assert host_name("git.example") == "git.example"
    assert host_name("[fd00::1]:443") == "fd00::1"

"""The credential proxy and the socket bridge without Docker: request checks, the host's real
`git credential` with a store helper in a temporary home, and the bridge between the CP's side
and a real clawkerd run as a local process (the Bridge RPC over real mTLS)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reconciler.controlplane.bridge.credentials import (
    CredentialRequestError,
    HostGit,
    answer,
    host_name,
    parse_request,
)
from reconciler.controlplane.bridge.frames import MAX_CHANNELS, MAX_PAYLOAD
from reconciler.controlplane.bridge.socket_bridge import (
    CredentialTarget,
    Listener,
    UnixTarget,
    bridge_listeners,
)
from reconciler.controlplane.identity.pki import ClawkerPKI, container_tls_name
from reconciler.controlplane.registry import AgentRuntimeSpec
from reconciler.controlplane.runtime.bridge_stream import BridgeError, SocketBridge
from reconciler.in_container.git_credential_clawker import ask_proxy
from tests.unit.test_clawkerd_harness import (
    CONTAINER_ID,
    Clawkerd,
    cp_credentials,
    start_clawkerd,
    wait_until,
)


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


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClawkerPKI:
    return ClawkerPKI.load_or_create(tmp_path_factory.mktemp("pki") / "ca")


@pytest.fixture(scope="module")
def clawkerd(pki: ClawkerPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clawkerd]:
    """A real clawkerd (as a local process, listening on 127.0.0.1) the bridges talk to."""
    started = start_clawkerd(tmp_path_factory.mktemp("clawkerd"), pki, ["sleep", "60"])
    yield started
    started.stop()


def dial(pki: ClawkerPKI, daemon: Clawkerd) -> grpc.Channel:
    """A channel to `daemon` the way the CP opens one (pinned to the container's id)."""
    channel = grpc.secure_channel(
        f"127.0.0.1:{daemon.port}",
        cp_credentials(pki),
        options=[("grpc.ssl_target_name_override", container_tls_name(CONTAINER_ID))],
    )
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel


def echo_server(path: Path) -> socket.socket:
    """A host socket that answers every message with its upper case (a stand-in agent)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def answer(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_the_bridge_carries_credential_requests_and_agent_connections(
    tmp_path: Path, pki: ClawkerPKI, clawkerd: Clawkerd, host_git: HostGit
) -> None:
    inside = tmp_path / "inside"
    me = {"uid": os.getuid(), "gid": os.getgid()}
    agent = echo_server(tmp_path / "host-agent.sock")
    bridge = SocketBridge(
        dial(pki, clawkerd),
        CONTAINER_ID,
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
        # git-credential-clawker, as git runs it inside, against clawkerd's socket.
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
        # More than one frame's worth each way, through the bounded queues.
        big = os.urandom(3 * MAX_PAYLOAD + 17)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(inside / "agent.sock"))
            sender = threading.Thread(target=client.sendall, args=(big,))
            sender.start()
            got = bytearray()
            while len(got) < len(big):
                got += client.recv(65536)
            sender.join()
        assert bytes(got) == big.upper()
        assert bridge.alive
    finally:
        bridge.close()
        agent.close()
    # clawkerd closes the listeners and removes its sockets when the stream ends.
    wait_until(lambda: not (inside / "agent.sock").exists(), "the socket to be removed")
    wait_until(lambda: not bridge.alive, "the bridge to end")


def test_a_connection_the_host_side_closes_ends_inside_at_once(
    tmp_path: Path, pki: ClawkerPKI, clawkerd: Clawkerd
) -> None:
    """An answer that ends with its connection (the API relay's `Connection: close`): the
    client, which never half-closed, sees the answer and then the end."""
    me = {"uid": os.getuid(), "gid": os.getgid()}
    host = socket.socket(socket.AF_UNIX)
    host.bind(str(tmp_path / "host.sock"))
    host.listen()

    def answer_once() -> None:
        conn, _ = host.accept()
        with conn:
            conn.recv(100)
            conn.sendall(b"answer")

    threading.Thread(target=answer_once, daemon=True).start()
    path = tmp_path / "in" / "relay.sock"
    bridge = SocketBridge(
        dial(pki, clawkerd),
        CONTAINER_ID,
        [Listener(str(path), UnixTarget(str(tmp_path / "host.sock")), **me)],
    )
    bridge.start(timeout=10)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(path))
            client.sendall(b"request")
            got = b""
            while chunk := client.recv(100):
                got += chunk
        assert got == b"answer"
    finally:
        bridge.close()
        host.close()


def test_a_listener_that_cannot_be_made_fails_the_bridge_at_once_with_its_reason(
    tmp_path: Path, pki: ClawkerPKI, clawkerd: Clawkerd
) -> None:
    (tmp_path / "a-file").write_text("")
    me = {"uid": os.getuid(), "gid": os.getgid()}
    bridge = SocketBridge(
        dial(pki, clawkerd),
        CONTAINER_ID,
        [Listener(str(tmp_path / "a-file" / "x.sock"), UnixTarget("/nowhere"), **me)],
    )

    with pytest.raises(BridgeError, match=r"did not start: FileExistsError"):
        bridge.start(timeout=30)
    wait_until(lambda: not bridge.alive, "the bridge to end")


def test_a_newer_bridge_replaces_the_previous_one_as_after_a_cp_restart(
    tmp_path: Path, pki: ClawkerPKI, clawkerd: Clawkerd
) -> None:
    me = {"uid": os.getuid(), "gid": os.getgid()}
    agent = echo_server(tmp_path / "host-agent.sock")
    path = tmp_path / "in" / "agent.sock"
    listeners = [Listener(str(path), UnixTarget(str(tmp_path / "host-agent.sock")), **me)]
    first = SocketBridge(dial(pki, clawkerd), CONTAINER_ID, listeners)
    first.start(timeout=10)
    second = SocketBridge(dial(pki, clawkerd), CONTAINER_ID, listeners)
    try:
        second.start(timeout=10)  # the first one's stream is still open: it gives way

        wait_until(lambda: not first.alive, "the previous bridge to end")
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            client.sendall(b"still here")
            assert client.recv(100) == b"STILL HERE"
        assert second.alive
    finally:
        first.close()
        second.close()
        agent.close()


def test_more_connections_than_the_limit_are_closed_as_they_come(
    tmp_path: Path, pki: ClawkerPKI, clawkerd: Clawkerd
) -> None:
    me = {"uid": os.getuid(), "gid": os.getgid()}
    agent = echo_server(tmp_path / "host-agent.sock")
    path = tmp_path / "in" / "agent.sock"
    listeners = [Listener(str(path), UnixTarget(str(tmp_path / "host-agent.sock")), **me)]
    bridge = SocketBridge(dial(pki, clawkerd), CONTAINER_ID, listeners)
    bridge.start(timeout=10)
    clients = []
    try:
        for _ in range(MAX_CHANNELS):
            client = socket.socket(socket.AF_UNIX)
            client.connect(str(path))
            client.sendall(b"x")
            assert client.recv(10) == b"X"  # open through the bridge
            clients.append(client)
        with socket.socket(socket.AF_UNIX) as extra:
            extra.connect(str(path))
            extra.settimeout(10)
            assert extra.recv(10) == b""  # closed by clawkerd, never relayed
        assert bridge.alive
    finally:
        for client in clients:
            client.close()
        bridge.close()
        agent.close()


def test_the_bridge_ends_when_clawkerd_does(
    tmp_path: Path, pki: ClawkerPKI, host_git: HostGit
) -> None:
    me = {"uid": os.getuid(), "gid": os.getgid()}
    daemon = start_clawkerd(tmp_path / "own", pki, ["sleep", "60"])
    try:
        bridge = SocketBridge(
            dial(pki, daemon),
            CONTAINER_ID,
            [
                Listener(
                    str(tmp_path / "in" / "c.sock"), CredentialTarget(host_git, allowed_here), **me
                )
            ],
        )
        bridge.start(timeout=10)

        daemon.stop()  # what stopping the container does to clawkerd

        wait_until(lambda: not bridge.alive, "the bridge to end with clawkerd")
    finally:
        daemon.stop()


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

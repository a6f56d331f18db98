"""The host half of the socket bridge: what answers the agent's ssh agent, gpg agent, git
credential proxy and API relay sockets, reached over the CP's own mTLS connection to clawkerd,
with no port on the host and no shared socket file. (The Bridge stream itself, the gRPC part,
is runtime/bridge_stream.py.)

On every start of an agent container (and after a CP restart) the CP opens a `Bridge` stream
(proto/clawkerd.proto) to the container's clawkerd, already PID 1 and root, and tells it which
sockets to listen on; clawkerd sends each connection made to them here as frames on that stream.
Here a connection is answered by connecting to the host user's `SSH_AUTH_SOCK` or gpg-agent
extra socket, by the credential proxy (`credentials.py`) or by the API relay (`api_relay.py`).

Who is asking is known by construction: the CP's channel only ever talks to the container it
was opened for (TLS requires the leaf issued for that container id), so nothing else on the host
or the network can reach these answers. The bridge ends with the container (clawkerd exits, the
stream ends) and with the CP (its connection closes, clawkerd closes the listeners).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from proto.gen import clawkerd_pb2 as pb
from reconciler import naming
from reconciler.controlplane.bridge.api_relay import ApiKeySource, ApiRelayConfig, ApiRelayTarget
from reconciler.controlplane.bridge.credentials import CredentialRequestError, HostGit, answer
from reconciler.controlplane.bridge.frames import DATA, MAX_PAYLOAD, Send
from reconciler.controlplane.registry import AgentRuntimeSpec

__all__ = [
    "MAX_CREDENTIAL_REQUEST",
    "CredentialTarget",
    "Listener",
    "Target",
    "UnixTarget",
    "bridge_listeners",
]

log = logging.getLogger("clawker.controlplane.bridge")

MAX_CREDENTIAL_REQUEST = 64 * 1024


class Channel(Protocol):
    """One connection through the bridge, as its host side sees frames for it."""

    def data(self, payload: bytes) -> None: ...
    def eof(self) -> None: ...
    def close(self) -> None: ...


class Target(Protocol):
    """What answers connections to one listener on the host side."""

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> Channel | None: ...


@dataclass(frozen=True)
class Listener:
    """A unix socket clawkerd opens inside the container (or, with `tcp_port`, a port on the
    container's own 127.0.0.1), and its host-side target."""

    path: str
    target: Target
    uid: int = naming.AGENT_UID
    gid: int = naming.AGENT_GID
    mode: int = 0o600
    tcp_port: int = 0

    def message(self) -> pb.BridgeListener:
        """What clawkerd is told to listen on."""
        if self.tcp_port:
            return pb.BridgeListener(tcp_port=self.tcp_port)
        return pb.BridgeListener(path=self.path, uid=self.uid, gid=self.gid, mode=self.mode)


@dataclass(frozen=True)
class UnixTarget:
    """A host unix socket (an ssh or gpg agent) each connection is relayed to, byte for byte."""

    path: str

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> Channel | None:
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            host.settimeout(5.0)
            host.connect(self.path)
            host.settimeout(None)
        except OSError as exc:
            host.close()
            log.warning("cannot reach %s for a bridged connection: %s", self.path, exc)
            return None
        relayed = _UnixChannel(host, channel, send, drop)
        threading.Thread(target=relayed.pump, name=f"bridge-ch{channel}", daemon=True).start()
        return relayed


class _UnixChannel:
    def __init__(self, host: socket.socket, channel: int, send: Send, drop: Callable[[int], None]):
        self._host, self._channel, self._send, self._drop = host, channel, send, drop

    def pump(self) -> None:
        """Host → container, until the host side closes."""
        try:
            while data := self._host.recv(MAX_PAYLOAD):
                self._send(DATA, self._channel, data)
        except OSError:
            pass
        self._drop(self._channel)

    def data(self, payload: bytes) -> None:
        try:
            self._host.sendall(payload)
        except OSError:
            self._drop(self._channel)

    def eof(self) -> None:
        try:
            self._host.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(self._channel)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._host.shutdown(socket.SHUT_RDWR)
        self._host.close()


@dataclass(frozen=True)
class CredentialTarget:
    """The credential proxy: one request per connection, answered by the host's git."""

    git: HostGit
    allowlist: Callable[[], Iterable[str]]  # the agent's live firewall allowlist
    container: str = ""  # for the log

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> Channel | None:
        return _CredentialChannel(self, channel, send, drop)


class _CredentialChannel:
    def __init__(
        self, target: CredentialTarget, channel: int, send: Send, drop: Callable[[int], None]
    ):
        self._target, self._channel, self._send, self._drop = target, channel, send, drop
        self._request = bytearray()
        self._answered = False

    def data(self, payload: bytes) -> None:
        self._request += payload
        if len(self._request) > MAX_CREDENTIAL_REQUEST:
            log.warning("credential request from %s refused: too long", self._target.container)
            self._answered = True
            self._drop(self._channel)
        elif b"\n\n" in self._request:
            self._answer()

    def eof(self) -> None:
        self._answer()

    def _answer(self) -> None:
        if self._answered:
            return
        self._answered = True
        request = bytes(self._request)
        threading.Thread(
            target=self._run, args=(request,), name=f"credential-ch{self._channel}", daemon=True
        ).start()

    def _run(self, request: bytes) -> None:
        try:
            reply = answer(self._target.git, request, self._target.allowlist)
        except CredentialRequestError as exc:
            log.warning("credential request from %s refused: %s", self._target.container, exc)
            reply = b""
        except (OSError, ValueError) as exc:  # git missing, timed out, or answered nonsense
            log.warning("credential request from %s failed: %s", self._target.container, exc)
            reply = b""
        for start in range(0, len(reply), MAX_PAYLOAD):
            self._send(DATA, self._channel, reply[start : start + MAX_PAYLOAD])
        self._drop(self._channel)

    def close(self) -> None:
        self._answered = True


def bridge_listeners(
    runtime: AgentRuntimeSpec,
    container: str = "",
    allowlist: Callable[[], Iterable[str]] | None = None,
    user: naming.AgentUser | None = None,
    api_relay: ApiRelayConfig | None = None,
) -> list[Listener]:
    """The sockets an agent gets, from its runtime spec: the API relay with
    agent.claude_code.api_key, the credential proxy with forward_https, the ssh agent with
    forward_ssh, the gpg agent with forward_gpg, each only when the host has one, owned by the
    container's agent user `user`. The proxy answers for hosts on `allowlist()` (the agent's
    live firewall allowlist; without one, for no host: the allowlist is the firewall's state,
    not part of the runtime spec)."""
    owner = user or naming.DEFAULT_AGENT_USER
    listeners: list[Listener] = []
    targets: list[tuple[str, Target]] = []
    if runtime.api_relay:  # agent.claude_code.api_key: the API relay's port (api_relay.py)
        relay = ApiRelayTarget(api_relay or ApiRelayConfig(), ApiKeySource.of(runtime), container)
        listeners.append(Listener(naming.API_RELAY_URL, relay, tcp_port=naming.API_RELAY_PORT))
    if runtime.forward_https and runtime.host_home:
        git = HostGit(runtime.host_uid, runtime.host_gid, runtime.host_home)
        hosts: Callable[[], Iterable[str]] = allowlist or (lambda: ())
        targets.append((naming.CREDENTIAL_SOCKET, CredentialTarget(git, hosts, container)))
    if runtime.forward_ssh and runtime.ssh_auth_sock:
        targets.append((naming.SSH_AGENT_SOCKET, UnixTarget(runtime.ssh_auth_sock)))
    if runtime.forward_gpg and runtime.gpg_extra_socket:
        targets.append((naming.GPG_AGENT_SOCKET, UnixTarget(runtime.gpg_extra_socket)))
    return listeners + [Listener(path, target, owner.uid, owner.gid) for path, target in targets]

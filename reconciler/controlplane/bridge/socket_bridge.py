"""The host half of the socket bridge: the agent's ssh agent, gpg agent, git credential proxy
and API relay, reached over the CP's own mTLS connection to clawkerd, with no port on the host
and no shared socket file.

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
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from proto.gen import clawkerd_pb2 as pb
from proto.gen import clawkerd_pb2_grpc as pb_grpc
from reconciler import naming
from reconciler.controlplane.bridge.api_relay import ApiKeySource, ApiRelayConfig, ApiRelayTarget
from reconciler.controlplane.bridge.credentials import CredentialRequestError, HostGit, answer
from reconciler.controlplane.bridge.frames import (
    CLOSE,
    DATA,
    EOF,
    MAX_PAYLOAD,
    OPEN,
    FrameKind,
    Send,
)
from reconciler.controlplane.registry import AgentRuntimeSpec
from reconciler.errors import ClawkerError

__all__ = [
    "BridgeError",
    "Bridges",
    "CredentialTarget",
    "Listener",
    "SocketBridge",
    "UnixTarget",
    "bridge_listeners",
]

log = logging.getLogger("clawker.controlplane.bridge")

MAX_CREDENTIAL_REQUEST = 64 * 1024
# Frames on their way to clawkerd; bounded, so a client that reads slowly slows its host side
# (an upstream answer, the ssh agent) down instead of growing the CP's memory.
OUTBOX_SIZE = 64

# Opens a channel to one container's clawkerd, ready for calls (raises when it cannot).
Dial = Callable[[], grpc.Channel]


class BridgeError(ClawkerError):
    """clawkerd did not bring the bridge's listeners up."""


class _Channel(Protocol):
    def data(self, payload: bytes) -> None: ...
    def eof(self) -> None: ...
    def close(self) -> None: ...


class Target(Protocol):
    """What answers connections to one listener on the host side."""

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> _Channel | None: ...


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

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> _Channel | None:
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

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> _Channel | None:
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


class SocketBridge:
    """One container start's Bridge stream, and the channels open through it. It owns
    `channel` from `start()` on, and closes it when the bridge ends."""

    def __init__(self, channel: grpc.Channel, container_id: str, listeners: Sequence[Listener]):
        self.container_id = container_id
        self._channel = channel
        self._listeners = tuple(listeners)
        self._outbox: queue.Queue[pb.Frame | None] = queue.Queue(maxsize=OUTBOX_SIZE)
        self._call: grpc.Future[pb.Frame] | None = None
        self._lock = threading.Lock()
        self._channels: dict[int, _Channel] = {}
        self._ready = threading.Event()
        self._refused = ""
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 20.0) -> None:
        """Open the stream and wait until clawkerd's listeners are up."""
        listeners = [item.message() for item in self._listeners]
        self._outbox.put(pb.Frame(kind=pb.FRAME_KIND_LISTEN, listeners=listeners))
        stub = pb_grpc.ClawkerdStub(self._channel)
        call = stub.Bridge(self._requests())  # no deadline: it lives as long as the start
        self._call = call  # type: ignore[assignment]  # a streaming call is a Future too
        self._thread = threading.Thread(
            target=self._read, args=(call,), name=f"bridge-{self.container_id[:12]}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        # Ready, or the stream already ended (clawkerd refused, or went away): no need to wait on.
        while not self._ready.wait(0.05) and self.alive and time.monotonic() < deadline:
            pass
        if not self._ready.is_set() or self._refused:
            self.close()
            detail = self._refused or f"no answer within {timeout:.0f}s"
            raise BridgeError(f"the bridge of {self.container_id[:12]} did not start: {detail}")

    def close(self) -> None:
        self._ended.set()
        if self._call is not None:
            self._call.cancel()
        with contextlib.suppress(queue.Full):
            self._outbox.put_nowait(None)
        threading.Thread(target=self._channel.close, name="bridge-close", daemon=True).start()

    # -- the stream ------------------------------------------------------------------------
    def _requests(self) -> Iterator[pb.Frame]:
        while (frame := self._outbox.get()) is not None:
            yield frame

    def _send(self, kind: FrameKind, channel: int, payload: bytes = b"") -> None:
        frame = pb.Frame(kind=kind, channel=channel, data=payload)
        while not self._ended.is_set():  # a full outbox waits for gRPC, unless the bridge ended
            try:
                self._outbox.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue

    def _drop(self, channel: int) -> None:
        """Close a channel from the host side and tell clawkerd."""
        with self._lock:
            relayed = self._channels.pop(channel, None)
        if relayed is not None:
            relayed.close()
            self._send(CLOSE, channel)

    def _read(self, call: Iterator[pb.Frame]) -> None:
        try:
            for frame in call:
                self._handle(frame)
        except grpc.RpcError as exc:
            if not self._ended.is_set():
                log.info("bridge of %s ended: %s", self.container_id[:12], exc.code().name)
        finally:
            self._ended.set()
            with self._lock:
                channels, self._channels = self._channels, {}
            for relayed in channels.values():
                relayed.close()
            self.close()

    def _handle(self, frame: pb.Frame) -> None:
        kind, channel = frame.kind, frame.channel
        if kind == pb.FRAME_KIND_READY:
            self._refused = frame.error
            self._ready.set()
            return
        if kind == OPEN:
            opened = None
            if frame.listener < len(self._listeners):
                opened = self._listeners[frame.listener].target.open(
                    channel, self._send, self._drop
                )
            if opened is None:
                self._send(CLOSE, channel)
                return
            with self._lock:
                self._channels[channel] = opened
            return
        with self._lock:
            relayed = self._channels.get(channel)
            if kind == CLOSE:
                self._channels.pop(channel, None)
        if relayed is None:
            return
        if kind == DATA:
            relayed.data(frame.data)
        elif kind == EOF:
            relayed.eof()
        elif kind == CLOSE:
            relayed.close()


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


class Bridges:
    """The CP's bridges, one per running agent container start."""

    def __init__(self, api_relay: ApiRelayConfig | None = None) -> None:
        self._api_relay = api_relay or ApiRelayConfig()
        self._lock = threading.Lock()
        self._bridges: dict[str, tuple[str, SocketBridge]] = {}

    def ensure(
        self,
        container_id: str,
        started_at: str,
        name: str,
        runtime: AgentRuntimeSpec,
        allowlist: Callable[[], Iterable[str]] | None = None,
        user: naming.AgentUser | None = None,
        *,
        channel: grpc.Channel | None = None,
        dial: Dial | None = None,
    ) -> bool:
        """A live bridge for this start of the container (a no-op when it already has one),
        on `channel` (a ready channel to its clawkerd, handed over) or else on one `dial()`
        opens. True if the bridge took `channel`: the caller must not close it then."""
        with self._lock:
            current = self._bridges.get(container_id)
            if current is not None and current[0] == started_at and current[1].alive:
                return False
            if current is not None:
                current[1].close()
                del self._bridges[container_id]
        listeners = bridge_listeners(runtime, name, allowlist, user, self._api_relay)
        if not listeners:
            return False
        took = channel is not None
        try:
            if channel is None:
                if dial is None:
                    return False
                channel = dial()
            bridge = SocketBridge(channel, container_id, listeners)
            bridge.start()
        except (BridgeError, grpc.RpcError, grpc.FutureTimeoutError, OSError) as exc:
            log.warning("no ssh/gpg/credential/API forwarding for %s: %s", name, exc)
            return took  # a failed bridge closed the channel it took
        with self._lock:
            self._bridges[container_id] = (started_at, bridge)
        log.info("bridge up for %s: %s", name, ", ".join(item.path for item in listeners))
        return took

    def close_all(self) -> None:
        with self._lock:
            bridges, self._bridges = self._bridges, {}
        for _, bridge in bridges.values():
            bridge.close()

"""The host half of the socket bridge: the agent's ssh agent, gpg agent and git credential
proxy, reached through `docker exec` with no port and no shared socket file.

On every start of an agent container the CP runs `socket_relay` inside it (`docker exec -i`, as
root); the relay listens on the agent's sockets and sends each connection here as frames over the
exec's stdin/stdout. Here a connection is answered by connecting to the host user's
`SSH_AUTH_SOCK` or gpg-agent extra socket, or by the credential proxy (`credentials.py`).

Who is asking is known by construction: the CP opened the exec into one container that it
inspected and found managed, so nothing else on the host or the network can reach these
answers. The bridge ends with the container (its exec dies, the stream ends) and its relay ends
with the CP (stdin closes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler import naming
from reconciler.controlplane.bridge.api_relay import ApiKeySource, ApiRelayConfig, ApiRelayTarget
from reconciler.controlplane.bridge.credentials import CredentialRequestError, HostGit, answer
from reconciler.controlplane.registry import AgentRuntimeSpec
from reconciler.docker.engine import DockerError, DockerPort
from reconciler.errors import ClawkerError
from reconciler.images.dockerfile import VENV
from reconciler.in_container import socket_relay
from reconciler.in_container.socket_relay import (
    CLOSE,
    DATA,
    EOF,
    MAX_PAYLOAD,
    OPEN,
    READY,
    FrameError,
    FrameReader,
    encode_frame,
)

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

RELAY_PYTHON = f"{VENV}/bin/python"
_DOCKER_HEADER = struct.Struct(">BxxxI")  # docker's stream multiplexing: stream id, length
_STDOUT, _STDERR = 1, 2
MAX_CREDENTIAL_REQUEST = 64 * 1024

Send = Callable[[bytes, int, bytes], None]


class BridgeError(ClawkerError):
    """The relay did not come up inside the container."""


class _Channel(Protocol):
    def data(self, payload: bytes) -> None: ...
    def eof(self) -> None: ...
    def close(self) -> None: ...


class Target(Protocol):
    """What answers connections to one listener on the host side."""

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> _Channel | None: ...


@dataclass(frozen=True)
class Listener:
    """A unix socket the relay opens inside the container (or, with `tcp_port`, a port on the
    container's own 127.0.0.1), and its host-side target."""

    path: str
    target: Target
    uid: int = naming.AGENT_UID
    gid: int = naming.AGENT_GID
    mode: int = 0o600
    tcp_port: int = 0

    def config(self) -> dict[str, object]:
        """What the in-container relay is told to listen on."""
        if self.tcp_port:
            return {"tcp_port": self.tcp_port}
        return {"path": self.path, "uid": self.uid, "gid": self.gid, "mode": self.mode}


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
    """One container's relay, and the channels open through it."""

    def __init__(self, port: DockerPort, container_id: str, listeners: Sequence[Listener]):
        self.container_id = container_id
        self._port = port
        self._listeners = tuple(listeners)
        self._sock: socket.socket | None = None
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._channels: dict[int, _Channel] = {}
        self._ready = threading.Event()
        self._stderr = bytearray()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 20.0) -> None:
        """Run the relay inside the container and wait until its sockets listen."""
        config = [item.config() for item in self._listeners]
        source = Path(socket_relay.__file__).read_text(encoding="utf-8")
        self._sock = self._port.exec_socket(
            self.container_id, [RELAY_PYTHON, "-I", "-c", source, json.dumps(config)], user="0"
        )
        self._thread = threading.Thread(
            target=self._read, name=f"bridge-{self.container_id[:12]}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        # Ready, or the relay already gave up (no python in the image, say): no need to wait on.
        while not self._ready.wait(0.05) and self.alive and time.monotonic() < deadline:
            pass
        if not self._ready.is_set():
            self.close()
            said = self._stderr.decode(errors="replace").strip().splitlines()
            detail = said[-1][-300:] if said else ""  # a traceback's last line names the error
            raise BridgeError(
                f"the socket relay in {self.container_id[:12]} did not start"
                + (f": {detail}" if detail else f" within {timeout:.0f}s")
            )

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    # -- the stream ------------------------------------------------------------------------
    def _send(self, kind: bytes, channel: int, payload: bytes = b"") -> None:
        assert self._sock is not None
        frame = encode_frame(kind, channel, payload)
        # On failure the reader sees the end of the stream and closes everything.
        with self._write_lock, contextlib.suppress(OSError):
            self._sock.sendall(frame)

    def _drop(self, channel: int) -> None:
        """Close a channel from the host side and tell the relay."""
        with self._lock:
            relayed = self._channels.pop(channel, None)
        if relayed is not None:
            relayed.close()
            self._send(CLOSE, channel)

    def _read(self) -> None:
        assert self._sock is not None
        frames = FrameReader()
        pending = bytearray()
        try:
            while chunk := self._sock.recv(65536):
                pending += chunk
                while len(pending) >= _DOCKER_HEADER.size:
                    stream, length = _DOCKER_HEADER.unpack_from(pending)
                    if len(pending) < _DOCKER_HEADER.size + length:
                        break
                    body = bytes(pending[_DOCKER_HEADER.size : _DOCKER_HEADER.size + length])
                    del pending[: _DOCKER_HEADER.size + length]
                    if stream == _STDOUT:
                        for kind, channel, payload in frames.feed(body):
                            self._handle(kind, channel, payload)
                    elif stream == _STDERR:
                        self._stderr += body
                        del self._stderr[:-4000]
        except (OSError, FrameError) as exc:
            log.warning("bridge of %s broke: %s", self.container_id[:12], exc)
        finally:
            with self._lock:
                channels, self._channels = self._channels, {}
            for relayed in channels.values():
                relayed.close()
            if self._sock is not None:
                self._sock.close()
            if self._stderr:
                log.info(
                    "relay of %s said: %s",
                    self.container_id[:12],
                    self._stderr.decode(errors="replace").strip()[-500:],
                )

    def _handle(self, kind: bytes, channel: int, payload: bytes) -> None:
        if kind == READY:
            self._ready.set()
            return
        if kind == OPEN:
            index = payload[0] if payload else len(self._listeners)
            opened = None
            if index < len(self._listeners):
                opened = self._listeners[index].target.open(channel, self._send, self._drop)
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
            relayed.data(payload)
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

    def __init__(self, port: DockerPort, api_relay: ApiRelayConfig | None = None) -> None:
        self._port = port
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
    ) -> None:
        """A live bridge for this start of the container (a no-op when it already has one)."""
        with self._lock:
            current = self._bridges.get(container_id)
            if current is not None and current[0] == started_at and current[1].alive:
                return
            if current is not None:
                current[1].close()
                del self._bridges[container_id]
        listeners = bridge_listeners(runtime, name, allowlist, user, self._api_relay)
        if not listeners:
            return
        bridge = SocketBridge(self._port, container_id, listeners)
        try:
            bridge.start()
        except (BridgeError, DockerError) as exc:
            log.warning("no ssh/gpg/credential forwarding for %s: %s", name, exc)
            return
        with self._lock:
            self._bridges[container_id] = (started_at, bridge)
        log.info("bridge up for %s: %s", name, ", ".join(item.path for item in listeners))

    def close_all(self) -> None:
        with self._lock:
            bridges, self._bridges = self._bridges, {}
        for _, bridge in bridges.values():
            bridge.close()

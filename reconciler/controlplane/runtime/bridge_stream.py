"""The Bridge stream of one container start (proto/clawkerd.proto `Bridge`): the gRPC half of
the socket bridge (bridge/socket_bridge.py has what answers its connections; docs/credentials.md).

It rides on the CP's mTLS channel to the container's clawkerd: the one the start's dial opened
(handed over once the dial succeeded, before the Session's steps), or, for a start already
handled (a restarted CP, a resync finding the bridge gone), one dialled for it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import grpc

from proto.gen import clawkerd_pb2 as pb
from proto.gen import clawkerd_pb2_grpc as pb_grpc
from reconciler import naming
from reconciler.controlplane.bridge.api_relay import ApiRelayConfig
from reconciler.controlplane.bridge.frames import CLOSE, DATA, EOF, OPEN, FrameKind
from reconciler.controlplane.bridge.socket_bridge import Channel, Listener, bridge_listeners
from reconciler.controlplane.registry import AgentRuntimeSpec
from reconciler.errors import ClawkerError

__all__ = ["BridgeError", "Bridges", "Dial", "SocketBridge"]

log = logging.getLogger("clawker.controlplane.bridge")

# Frames on their way to clawkerd; bounded, so a client that reads slowly slows its host side
# (an upstream answer, the ssh agent) down instead of growing the CP's memory.
OUTBOX_SIZE = 64

# Opens a channel to one container's clawkerd, ready for calls (raises when it cannot).
Dial = Callable[[], grpc.Channel]


class BridgeError(ClawkerError):
    """clawkerd did not bring the bridge's listeners up."""


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
        self._channels: dict[int, Channel] = {}
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

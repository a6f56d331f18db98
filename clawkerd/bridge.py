"""clawkerd's half of the socket bridge: the agent's sockets, carried over the CP's connection.

The CP opens a `Bridge` stream (proto/clawkerd.proto) on its mTLS connection to this clawkerd and
names the listeners the agent's runtime spec enables: unix sockets (the ssh agent, the gpg agent,
the git credential proxy), owned by the agent user with their mode, and 127.0.0.1 ports of the
container's own network namespace (the API relay). Each connection a client makes to one is a
channel of frames on that stream; the CP answers it on the host (reconciler/controlplane/bridge).

Who is asking is known by construction: the stream is the CP's (the servicer checked its
certificate) on a connection the CP pinned to this container's id. Nothing is opened on the host
or on any network. One bridge at a time: a newer stream (a restarted CP, before the old
connection is noticed dead) replaces the previous one, whose listeners close first. When the
stream ends (the CP went away, clawkerd exits) the listeners close and their sockets are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from clawkerd.logging_setup import EventLog
from proto import BRIDGE_MAX_CHANNELS, BRIDGE_MAX_PAYLOAD
from proto.gen import clawkerd_pb2 as pb

__all__ = ["BridgeHost"]

# Frames waiting for the CP to read them; bounded, so a slow CP slows the clients down.
OUTBOX_SIZE = 64


class _End:
    pass


_END = _End()


@dataclass
class _Channel:
    writer: asyncio.StreamWriter
    closed: asyncio.Event
    task: asyncio.Task[None] | None


class _Bridge:
    """One Bridge stream's listeners and channels."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[pb.Frame | _End] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self._servers: list[asyncio.Server] = []
        self._sockets: list[tuple[str, int]] = []  # unix socket paths and their inodes
        self._channels: dict[int, _Channel] = {}
        self._numbers = itertools.count(1)
        self._closed = False

    async def listen(self, listeners: list[pb.BridgeListener]) -> None:
        for index, spec in enumerate(listeners):
            sock = _bind(spec)
            serve = functools.partial(self._serve, index)
            try:
                if spec.tcp_port:
                    server = await asyncio.start_server(serve, sock=sock)
                else:
                    self._sockets.append((spec.path, os.lstat(spec.path).st_ino))
                    server = await asyncio.start_unix_server(serve, sock=sock)
            except BaseException:
                sock.close()
                raise
            self._servers.append(server)

    async def _serve(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One client connection: OPEN, then its bytes as DATA, then EOF; held until CLOSE."""
        if self._closed or len(self._channels) >= BRIDGE_MAX_CHANNELS:
            writer.close()
            return
        number = next(self._numbers)
        channel = _Channel(writer, asyncio.Event(), asyncio.current_task())
        self._channels[number] = channel
        try:
            await self.outbox.put(pb.Frame(kind=pb.FRAME_KIND_OPEN, channel=number, listener=index))
            while data := await reader.read(BRIDGE_MAX_PAYLOAD):
                await self.outbox.put(pb.Frame(kind=pb.FRAME_KIND_DATA, channel=number, data=data))
            if channel.closed.is_set():  # the CP closed it (closing the writer ended the read)
                return
            # The client is done sending; it may still read the answer.
            await self.outbox.put(pb.Frame(kind=pb.FRAME_KIND_EOF, channel=number))
            await channel.closed.wait()
        except OSError:
            if self._channels.pop(number, None) is not None and not self._closed:
                await self.outbox.put(pb.Frame(kind=pb.FRAME_KIND_CLOSE, channel=number))
        finally:
            self._channels.pop(number, None)
            writer.close()

    async def from_cp(self, frame: pb.Frame) -> None:
        """A frame the CP sent for a channel."""
        channel = self._channels.get(frame.channel)
        if channel is None:
            return
        try:
            if frame.kind == pb.FRAME_KIND_DATA:
                channel.writer.write(frame.data)
                await channel.writer.drain()
            elif frame.kind == pb.FRAME_KIND_EOF:
                if channel.writer.can_write_eof():
                    channel.writer.write_eof()
            elif frame.kind == pb.FRAME_KIND_CLOSE:  # the client sees the end at once
                self._channels.pop(frame.channel, None)
                channel.closed.set()
                channel.writer.close()
        except OSError:  # the client went away: tell the CP
            if self._channels.pop(frame.channel, None) is not None:
                channel.closed.set()
                await self.outbox.put(pb.Frame(kind=pb.FRAME_KIND_CLOSE, channel=frame.channel))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.writer.close()
            channel.closed.set()
            if channel.task is not None:
                channel.task.cancel()  # it may wait for room in the outbox nobody reads now
        for path, inode in self._sockets:
            _remove_own_socket(path, inode)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        while True:  # what is still queued is for channels that are gone
            try:
                self.outbox.put_nowait(_END)
                return
            except asyncio.QueueFull:
                self.outbox.get_nowait()


class BridgeHost:
    """The bridge of this clawkerd: at most one, the newest stream's."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._current: _Bridge | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """End the current bridge's stream (clawkerd is exiting: nothing will connect now)."""
        async with self._lock:
            if self._current is not None:
                await self._current.close()

    async def serve(self, frames: AsyncIterator[pb.Frame], peer: str) -> AsyncIterator[pb.Frame]:
        """The frames for one Bridge stream, whose first frame from the CP is LISTEN."""
        first = await anext(aiter(frames), None)
        if first is None or first.kind != pb.FRAME_KIND_LISTEN:
            yield pb.Frame(kind=pb.FRAME_KIND_READY, error="the first frame must be LISTEN")
            return
        bridge = _Bridge()
        failed = ""
        async with self._lock:
            if self._current is not None:
                await self._current.close()
                self._log.info("bridge_replaced", peer=peer)
            self._current = bridge
            try:
                await bridge.listen(list(first.listeners))
            except OSError as exc:
                await bridge.close()
                failed = f"{type(exc).__name__}: {exc}"
        if failed:
            self._log.error("bridge_listen_failed", peer=peer, error=failed)
            yield pb.Frame(kind=pb.FRAME_KIND_READY, error=failed)
            return
        self._log.info(
            "bridge_up",
            peer=peer,
            listeners=[item.path or f"127.0.0.1:{item.tcp_port}" for item in first.listeners],
        )
        reader = asyncio.create_task(self._read(bridge, frames))
        try:
            yield pb.Frame(kind=pb.FRAME_KIND_READY)
            while not isinstance(item := await bridge.outbox.get(), _End):
                yield item
        finally:
            reader.cancel()
            await bridge.close()
            if self._current is bridge:
                self._current = None
            self._log.info("bridge_down", peer=peer)

    async def _read(self, bridge: _Bridge, frames: AsyncIterator[pb.Frame]) -> None:
        try:
            async for frame in frames:
                await bridge.from_cp(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke (the CP vanished): end this bridge
            self._log.info("bridge_stream_ended", error=str(exc))
        await bridge.close()


def _bind(spec: pb.BridgeListener) -> socket.socket:
    """A bound, listening, non-blocking socket for one listener: a unix socket owned by
    spec.uid:spec.gid with spec.mode (set before it listens), or 127.0.0.1:spec.tcp_port."""
    if spec.tcp_port:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", spec.tcp_port))
            server.listen(64)
        except BaseException:
            server.close()
            raise
        server.setblocking(False)
        return server
    parent = os.path.dirname(spec.path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700)
        os.chown(parent, spec.uid, spec.gid)
    if os.path.lexists(spec.path):
        os.unlink(spec.path)  # left by the previous start of this container
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(spec.path)
        os.chown(spec.path, spec.uid, spec.gid)
        os.chmod(spec.path, spec.mode or 0o600)
        server.listen(16)
    except BaseException:
        server.close()
        raise
    server.setblocking(False)
    return server


def _remove_own_socket(path: str, inode: int) -> None:
    """Unlink `path` only if it is still this bridge's socket."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass

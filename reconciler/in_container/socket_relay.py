"""The in-container half of the socket bridge (stdlib only).

The control plane runs this file inside an agent container with `docker exec -i`, as root:
`python -I -c <this file> '<listeners as JSON>'`. It listens on unix sockets inside the container
(the ssh agent, the gpg agent, the git credential proxy) and on 127.0.0.1 of the container's own
network namespace (the API relay), and carries every connection made to them over the exec's
stdin and stdout to the host, where `socket_bridge` answers it. No port is opened on the host or
any network, and the relay ends with the container (its exec dies) or with the CP (stdin closes).

Frames, both ways: kind (1 byte), channel (4 bytes, big endian), length (4 bytes), payload.

- `R` (relay → host): the listeners are up.
- `O` (relay → host): a client connected to listener number `payload[0]`; `channel` is new.
- `D`: bytes for the other end of `channel`.
- `W`: this end will send nothing more on `channel` (a half close: git's helper shuts its
  write side down and then reads the answer).
- `C`: `channel` is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import struct
import sys
import time
from collections.abc import Iterator

__all__ = [
    "CLOSE",
    "DATA",
    "EOF",
    "HEADER",
    "MAX_CHANNELS",
    "MAX_PAYLOAD",
    "OPEN",
    "READY",
    "FrameReader",
    "encode_frame",
    "main",
]

HEADER = struct.Struct(">cII")
READY, OPEN, DATA, EOF, CLOSE = b"R", b"O", b"D", b"W", b"C"
KINDS = frozenset({READY, OPEN, DATA, EOF, CLOSE})
MAX_PAYLOAD = 64 * 1024
MAX_CHANNELS = 64


class FrameError(ValueError):
    """The peer sent something that is not a frame."""


def encode_frame(kind: bytes, channel: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    return HEADER.pack(kind, channel, len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[bytes, int, bytes]]:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            kind, channel, length = HEADER.unpack_from(self._buffer)
            if kind not in KINDS or length > MAX_PAYLOAD:
                raise FrameError(f"bad frame header {bytes(self._buffer[: HEADER.size])!r}")
            end = HEADER.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            yield kind, channel, payload


def _write(frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        written = os.write(1, view)
        view = view[written:]


def _listen_tcp(port: int, wait: float = 15.0) -> socket.socket:
    """A listening socket on 127.0.0.1:`port`; the relay of the previous start or of the previous
    CP may still hold it for a moment (it exits when its stdin closes), so binding retries."""
    deadline = time.monotonic() + wait
    while True:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", port))
            break
        except OSError:
            server.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    server.listen(64)
    server.setblocking(False)
    return server


def _listen(spec: dict[str, object]) -> tuple[socket.socket, int]:
    """A listening socket at spec['path'], owned by spec['uid'] with spec['mode'], and the
    inode of its path; or, with spec['tcp_port'], one on 127.0.0.1 (inode 0)."""
    if spec.get("tcp_port"):
        return _listen_tcp(int(str(spec["tcp_port"]))), 0
    path, uid, gid = str(spec["path"]), int(str(spec["uid"])), int(str(spec["gid"]))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700)
        os.chown(parent, uid, gid)
    if os.path.lexists(path):
        os.unlink(path)  # left by the previous start of this container
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chown(path, uid, gid)
    os.chmod(path, int(str(spec.get("mode", 0o600))))
    server.listen(16)
    server.setblocking(False)
    return server, os.lstat(path).st_ino


def main(argv: list[str]) -> int:
    specs = json.loads(argv[1])
    listeners = [_listen(spec) for spec in specs]
    selector = selectors.DefaultSelector()
    for index, (server, _) in enumerate(listeners):
        selector.register(server, selectors.EVENT_READ, ("listener", index))
    selector.register(0, selectors.EVENT_READ, ("host", 0))
    channels: dict[int, socket.socket] = {}
    next_channel = 1
    reader = FrameReader()
    _write(encode_frame(READY, 0))

    def close(channel: int, tell_host: bool) -> None:
        conn = channels.pop(channel, None)
        if conn is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        conn.close()
        if tell_host:
            _write(encode_frame(CLOSE, channel))

    try:
        while True:
            for key, _ in selector.select():
                role, number = key.data
                if role == "listener":
                    try:
                        conn, _ = listeners[number][0].accept()
                    except BlockingIOError:
                        continue
                    if len(channels) >= MAX_CHANNELS:
                        conn.close()
                        continue
                    conn.setblocking(True)
                    if conn.family == socket.AF_INET:  # small API requests, streamed answers
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    channel, next_channel = next_channel, next_channel + 1
                    channels[channel] = conn
                    selector.register(conn, selectors.EVENT_READ, ("client", channel))
                    _write(encode_frame(OPEN, channel, bytes([number])))
                elif role == "client":
                    conn = channels.get(number)
                    if conn is None:
                        continue  # closed by a frame handled earlier in this round
                    try:
                        data = conn.recv(MAX_PAYLOAD)
                    except OSError:
                        close(number, tell_host=True)
                        continue
                    if data:
                        _write(encode_frame(DATA, number, data))
                    else:  # the client is done sending; it may still read the answer
                        selector.unregister(conn)
                        _write(encode_frame(EOF, number))
                else:
                    data = os.read(0, MAX_PAYLOAD + HEADER.size)
                    if not data:
                        return 0  # the host went away
                    for kind, channel, payload in reader.feed(data):
                        conn = channels.get(channel)
                        if conn is None:
                            continue
                        try:
                            if kind == DATA:
                                conn.sendall(payload)
                            elif kind == EOF:
                                conn.shutdown(socket.SHUT_WR)
                            elif kind == CLOSE:
                                close(channel, tell_host=False)
                        except OSError:
                            close(channel, tell_host=True)
    finally:
        for spec, (_, inode) in zip(specs, listeners, strict=True):
            if inode:
                _remove_own_socket(str(spec["path"]), inode)


def _remove_own_socket(path: str, inode: int) -> None:
    """Unlink `path` only if it is still this relay's socket, not a newer relay's."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The person's terminal and a container's stdio: raw mode, size, resizes and the byte pumps.

On a TTY the terminal is put in raw mode (the CMD in the container echoes and edits), its size
is sent at start and on every SIGWINCH, and it is restored on every way out (normal exit, a
detach, an exception, SIGTERM/SIGHUP). Docker's detach keys (ctrl-p ctrl-q) are read by the
daemon, which then ends the stream and leaves the container running.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["Terminal", "pump_multiplexed", "pump_raw", "terminal_size"]

_CHUNK = 32 * 1024


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on `fd`; None when it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


class Terminal:
    """The CLI's own stdin/stdout as the container's terminal."""

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self.stdin_fd, self.stdout_fd = stdin_fd, stdout_fd
        self._saved: list[int | list[bytes | int]] | None = None

    @property
    def is_tty(self) -> bool:
        return os.isatty(self.stdin_fd) and os.isatty(self.stdout_fd)

    @contextlib.contextmanager
    def raw(self) -> Iterator[None]:
        """Raw mode for the duration; the old mode comes back however the block is left."""
        if not os.isatty(self.stdin_fd):
            yield
            return
        self._saved = termios.tcgetattr(self.stdin_fd)
        previous = {sig: signal.signal(sig, _raise_exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            tty.setraw(self.stdin_fd, termios.TCSANOW)
            yield
        finally:
            self.restore()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def restore(self) -> None:
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.stdin_fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    @contextlib.contextmanager
    def resizes(self, resize: Callable[[int, int], None]) -> Iterator[None]:
        """Send the size now and on every SIGWINCH until the block ends."""

        def send() -> None:
            size = terminal_size(self.stdout_fd)
            if size is not None:
                with contextlib.suppress(Exception):  # the container may already be gone
                    resize(*size)

        def on_winch(_signum: int, _frame: FrameType | None) -> None:
            send()

        previous = signal.signal(signal.SIGWINCH, on_winch)
        send()
        try:
            yield
        finally:
            signal.signal(signal.SIGWINCH, previous)


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[written:]


def pump_raw(sock: socket.socket, stdin_fd: int | None, stdout_fd: int = 1) -> None:
    """A TTY container: its raw output to `stdout_fd`, `stdin_fd` (if any) to it, until the
    container's side ends (it exited, or the daemon read the detach keys)."""
    readers: list[int | socket.socket] = [sock]
    if stdin_fd is not None:
        readers.append(stdin_fd)
    while True:
        try:
            ready, _, _ = select.select(readers, [], [])
        except InterruptedError:  # SIGWINCH
            continue
        if sock in ready:
            data = sock.recv(_CHUNK)
            if not data:
                return
            _write_all(stdout_fd, data)
        if stdin_fd is not None and stdin_fd in ready:
            data = os.read(stdin_fd, _CHUNK)
            if not data:
                readers.remove(stdin_fd)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                continue
            sock.sendall(data)


def docker_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Docker's multiplexed stream (8-byte header: stream id, size; then the payload) split
    into its complete frames, and the bytes of the frame not yet complete."""
    frames = []
    while len(data) >= 8:
        stream, size = struct.unpack(">BxxxL", data[:8])
        if len(data) < 8 + size:
            break
        frames.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return frames, data


def pump_multiplexed(
    sock: socket.socket, stdin_fd: int | None, stdout_fd: int = 1, stderr_fd: int = 2
) -> None:
    """A container without a TTY: Docker's frames (8-byte header: stream, size) demultiplexed
    to `stdout_fd`/`stderr_fd`; `stdin_fd` copied in, its end closing the CMD's stdin."""
    readers: list[int | socket.socket] = [sock]
    if stdin_fd is not None:
        readers.append(stdin_fd)
    pending = b""
    while True:
        try:
            ready, _, _ = select.select(readers, [], [])
        except InterruptedError:
            continue
        if sock in ready:
            data = sock.recv(_CHUNK)
            if not data:
                return
            frames, pending = docker_frames(pending + data)
            for stream, payload in frames:
                _write_all(stderr_fd if stream == 2 else stdout_fd, payload)
        if stdin_fd is not None and stdin_fd in ready:
            chunk = os.read(stdin_fd, _CHUNK)
            if not chunk:
                readers.remove(stdin_fd)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                continue
            sock.sendall(chunk)


def flush_std() -> None:
    """Python's buffered stdout/stderr out before raw bytes follow on the same fds."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()

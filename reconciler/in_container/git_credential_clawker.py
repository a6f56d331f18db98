"""git-credential-clawker: git's credential helper inside agent images (stdlib only).

Installed as /usr/local/bin/git-credential-clawker; git runs it as `git-credential-clawker
get|store|erase` with the request attributes on stdin. It never holds a credential: it forwards
the request to the host's credential proxy named by CLAWKER_CREDENTIAL_PROXY (a unix socket path,
or host:port) and prints the proxy's answer. With no proxy configured, or none answering, it
prints nothing and exits 0, so git falls through to its other helpers.

Wire format to the proxy (the proxy itself is issue 7): one line with the operation, then git's
`key=value` attribute lines, then an empty line; the proxy answers with `key=value` lines and
closes the connection (an empty line also ends the answer).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import BinaryIO

PROXY_ENV = "CLAWKER_CREDENTIAL_PROXY"
OPERATIONS = ("get", "store", "erase")
TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 64 * 1024


def read_request(stream: BinaryIO) -> list[bytes]:
    """git's attribute lines, up to the first empty line or end of input."""
    lines: list[bytes] = []
    for raw in stream:
        line = raw.rstrip(b"\r\n")
        if not line:
            break
        lines.append(line)
    return lines


def connect(address: str) -> socket.socket:
    """A connection to the proxy: a path (or unix:PATH) is a unix socket, else host:port."""
    if address.startswith("unix:"):
        address = address[len("unix:") :]
    if address.startswith(("/", ".")):
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.settimeout(TIMEOUT_SECONDS)
        try:
            unix.connect(address)
        except OSError:
            unix.close()
            raise
        return unix
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise OSError(f"{PROXY_ENV}={address!r} is neither a socket path nor host:port")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_SECONDS)


def ask_proxy(address: str, operation: str, request: list[bytes]) -> list[bytes]:
    """Send one request; return the answer's `key=value` lines."""
    with connect(address) as conn:
        conn.sendall(b"\n".join([operation.encode(), *request]) + b"\n\n")
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < MAX_ANSWER_BYTES:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    lines: list[bytes] = []
    for raw in answer[:MAX_ANSWER_BYTES].split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            break
        if b"=" in line and b"\0" not in line:
            lines.append(line)
    return lines


def main(argv: list[str]) -> int:
    operation = argv[1] if len(argv) > 1 else ""
    if operation not in OPERATIONS:
        return 0  # git may grow new operations; unknown ones are ignored, as git expects
    request = read_request(sys.stdin.buffer)
    address = os.environ.get(PROXY_ENV, "").strip()
    if not address:
        return 0
    try:
        answer = ask_proxy(address, operation, request)
    except OSError as exc:
        print(
            f"git-credential-clawker: the credential proxy at {address} did not answer ({exc}); "
            "git falls back to its other credential helpers",
            file=sys.stderr,
        )
        return 0
    if operation == "get" and answer:
        sys.stdout.buffer.write(b"\n".join(answer) + b"\n")
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

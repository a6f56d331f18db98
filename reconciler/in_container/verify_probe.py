"""`clawker verify`'s probes, run inside an agent container (as root, stdlib only).

argv[1] is a JSON list of probes; one JSON list of results goes to stdout. Each probe tries one
way out and reports only what happened from the inside: connected or not, answered or not,
created or not, with the errno. The control plane decides PASS or ESCAPE, with what its own
targets saw. Nothing here picks an address: every destination comes from the control plane,
which owns them all (docs/firewall.md, "clawker verify").
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import sys
from typing import Any

TIMEOUT = 2.0


def _error(exc: OSError) -> dict[str, Any]:
    name = errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
    return {"error": name}


def _tcp(probe: dict[str, Any]) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in probe["host"] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((probe["host"], probe["port"]))
        sock.sendall(probe.get("token", "").encode())
        return {"connected": True}


def _udp(probe: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(probe["token"].encode(), (probe["host"], probe["port"]))
        return {"sent": True}


def _query(name: str) -> bytes:
    header = struct.pack("!HHHHHH", int.from_bytes(os.urandom(2), "big"), 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split("."))
    return header + labels + b"\0" + struct.pack("!HH", 1, 1)  # A, IN


def _skip_name(data: bytes, at: int) -> int:
    while True:
        length = data[at]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def _addresses(reply: bytes) -> tuple[int, list[str]]:
    """(rcode, the A records' addresses) of a DNS reply."""
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", reply[:12])
    at = 12
    for _ in range(qd):
        at = _skip_name(reply, at) + 4
    found = []
    for _ in range(an):
        at = _skip_name(reply, at)
        rtype, _, _, length = struct.unpack("!HHIH", reply[at : at + 10])
        at += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[at : at + 4]))
        at += length
    return flags & 0xF, found


def _dns(probe: dict[str, Any]) -> dict[str, Any]:
    query = _query(probe["name"])
    server = (probe["server"], probe["port"])
    if probe.get("tcp"):
        with socket.create_connection(server, timeout=TIMEOUT) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionResetError(errno.ECONNRESET, "closed mid-answer")
                data += chunk
            reply = data[2:]
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendto(query, server)
            reply = sock.recv(65535)
    rcode, addresses = _addresses(reply)
    return {"answered": True, "rcode": rcode, "addresses": addresses}


def _socket(probe: dict[str, Any]) -> dict[str, Any]:
    # Created, never used: a socket the firewall should have refused is the escape itself.
    socket.socket(probe["family"], probe["type"], probe["proto"]).close()
    return {"created": True}


PROBES = {"tcp": _tcp, "udp": _udp, "dns": _dns, "socket": _socket}


def main(argv: list[str]) -> int:
    results = []
    for probe in json.loads(argv[1]):
        try:
            results.append(PROBES[probe["kind"]](probe))
        except OSError as exc:
            results.append(_error(exc))
        except (ValueError, IndexError, struct.error) as exc:
            results.append({"error": f"unreadable answer: {exc}"})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

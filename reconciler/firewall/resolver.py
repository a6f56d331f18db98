"""The firewall's DNS resolver: the only name service agents can reach.

The BPF programs send every port-53 datagram and connection of an enrolled container here. The
resolver identifies the asking agent by the query's source address (the container's address on
the agent network, recorded at enrolment), answers NXDOMAIN for names off that agent's
allowlist and an empty answer for every type but A, and forwards A queries upstream (capped per
minute under leading-dot entries). The IPv4 addresses of the answer's CNAME chain are written
into the agent's allow map *before* the reply leaves, so the agent's first connect after
resolving already finds them.
"""

from __future__ import annotations

import logging
import secrets
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dnslib import QTYPE, RCODE, DNSError, DNSHeader, DNSQuestion, DNSRecord

from reconciler.firewall.allowlist import matching_entry
from reconciler.firewall.journal import NXDOMAIN, THROTTLED, FirewallJournal

__all__ = [
    "Answerer",
    "Asker",
    "DnsResolver",
    "Resolution",
    "SubdomainThrottle",
    "Upstream",
    "UpstreamPort",
    "host_upstream",
    "parse_address",
]

log = logging.getLogger("clawker.firewall.dns")

MIN_TTL = 60  # seconds an answered address stays allowed, at the least
_UDP_PAYLOAD = 512
SUBDOMAIN_LIMIT = 20  # new names per leading-dot entry, agent and minute
MAX_CNAME_CHAIN = 8


@dataclass(frozen=True)
class Asker:
    """The agent behind a query's source address."""

    agent_key: str
    agent_id: int
    allowlist: tuple[str, ...]


@dataclass(frozen=True)
class Resolution:
    """One allowed A answer: the addresses to allow and for how long (seconds)."""

    name: str
    addresses: tuple[tuple[str, int], ...]  # (address, ttl)


def parse_address(text: str, default_port: int = 53) -> tuple[str, int]:
    """`ip` or `ip:port` (IPv4) as a socket address."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), default_port
    return host, int(port)


def host_upstream(
    override: str = "", resolv_conf: Path = Path("/etc/resolv.conf")
) -> tuple[str, int]:
    """`override` (ip[:port], Settings.dns_upstream), else the host's first IPv4 nameserver."""
    if override.strip():
        return parse_address(override)
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
            return parts[1], 53
    return "127.0.0.1", 53


class Upstream:
    """Asks the upstream resolver: UDP first, TCP when the answer was truncated."""

    def __init__(self, address: tuple[str, int], timeout: float = 3.0) -> None:
        self.address = address
        self.timeout = timeout

    def ask(self, query: bytes) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.address)
            sock.send(query)
            qid = query[:2]
            while True:
                reply = sock.recv(65535)
                if reply[:2] == qid:
                    break
        if len(reply) > 2 and reply[2] & 0x02:  # TC: ask again over TCP
            reply = self._ask_tcp(query)
        return reply

    def _ask_tcp(self, query: bytes) -> bytes:
        with socket.create_connection(self.address, timeout=self.timeout) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            return _read_framed(sock)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        data += chunk
    return data


def _read_framed(sock: socket.socket) -> bytes:
    (length,) = struct.unpack("!H", _read_exact(sock, 2))
    return _read_exact(sock, length)


class UpstreamPort(Protocol):
    address: tuple[str, int]

    def ask(self, query: bytes) -> bytes: ...


class SubdomainThrottle:
    """Caps how many *different* names under one leading-dot entry an agent may have forwarded
    per minute. Each new subdomain is a query the agent chose the bytes of, sent to a resolver
    outside the host: without a cap, `.sentry.io` is a tunnel of ~30 bytes per query."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], dict[str, float]] = {}  # (agent, entry) -> name -> at
        self._lock = threading.Lock()

    def admit(self, agent: str, entry: str, name: str) -> bool:
        """Whether `name` may go upstream now; a name already admitted in the window always
        may (a client retrying or re-resolving costs nothing)."""
        now = self._clock()
        with self._lock:
            seen = self._seen.setdefault((agent, entry), {})
            for old in [n for n, at in seen.items() if now - at >= self.window]:
                del seen[old]
            if name in seen:
                return True
            if len(seen) >= self.limit:
                return False
            seen[name] = now
            return True


class Answerer:
    """What the resolver says to one query: the policy, without sockets of its own.

    Only A is forwarded, as a fresh query; every other type is answered here, empty, so the
    query type an agent picks never leaves the host. Of the upstream's answer only the CNAME
    chain from the queried name and the A records at its names are kept: a record for any other
    name opens nothing and is not passed on."""

    def __init__(
        self,
        *,
        identify: Callable[[str], Asker | None],
        upstream: UpstreamPort,
        record: Callable[[Asker, Resolution], None],
        journal: FirewallJournal | None = None,
        throttle: SubdomainThrottle | None = None,
    ) -> None:
        self._identify = identify
        self._upstream = upstream
        self._record = record
        self._journal = journal or FirewallJournal()
        self._throttle = throttle or SubdomainThrottle(SUBDOMAIN_LIMIT)
        self.answered: dict[str, dict[str, int]] = {}  # agent -> {"allowed": n, "denied": n}
        self._lock = threading.Lock()

    def _count(self, agent: str, outcome: str) -> None:
        with self._lock:
            tally = self.answered.setdefault(agent, {"allowed": 0, "denied": 0})
            tally[outcome] += 1

    def answer(self, query: bytes, client_ip: str, *, max_size: int | None) -> bytes:
        """The reply to one query from `client_ip` (b"" when it is not worth one).

        `max_size` None: UDP, so the client's advertised EDNS size (or 512) applies."""
        try:
            request = DNSRecord.parse(query)
        except (DNSError, struct.error, IndexError, ValueError):
            return b""
        reply = request.reply()
        reply.rr = []
        if request.header.opcode != 0 or len(request.questions) != 1:
            reply.header.rcode = RCODE.NOTIMP if request.header.opcode else RCODE.FORMERR
            return _packed(reply)
        asker = self._identify(client_ip)
        question = request.q
        name = str(question.qname).rstrip(".").lower()
        qtype = QTYPE.get(question.qtype, str(question.qtype))
        if asker is None:
            log.warning("refused a query for %s from %s: not an enrolled agent", name, client_ip)
            reply.header.rcode = RCODE.REFUSED
            return _packed(reply)
        entry = matching_entry(name, asker.allowlist)
        if entry is None:
            log.info("%s asked for %s: not on its allowlist (NXDOMAIN)", asker.agent_key, name)
            self._count(asker.agent_key, "denied")
            self._journal.add(asker.agent_key, NXDOMAIN, name=name, qtype=qtype)
            reply.header.rcode = RCODE.NXDOMAIN
            return _packed(reply)
        if question.qtype != QTYPE.A:
            # AAAA: native IPv6 is refused, so the agent falls back to IPv4 at once; HTTPS,
            # SVCB, TXT, ...: nothing the harness needs, and the type must not reach upstream.
            self._count(asker.agent_key, "allowed")
            return _packed(reply)
        subdomain = entry.startswith(".") and name != entry[1:]
        if subdomain and not self._throttle.admit(asker.agent_key, entry, name):
            log.warning(
                "%s asked for %s: over %d new names under %s per minute (REFUSED)",
                asker.agent_key,
                name,
                self._throttle.limit,
                entry,
            )
            self._count(asker.agent_key, "denied")
            self._journal.add(asker.agent_key, THROTTLED, name=name, qtype=qtype)
            reply.header.rcode = RCODE.REFUSED
            return _packed(reply)
        self._count(asker.agent_key, "allowed")
        try:
            response = self._forward(name, question.qtype)
        except (OSError, DNSError, struct.error, ValueError, IndexError) as exc:
            log.warning("upstream %s failed for %s: %s", self._upstream.address, name, exc)
            reply.header.rcode = RCODE.SERVFAIL
            return _packed(reply)
        reply.header.rcode = response.header.rcode
        reply.rr = _chain_records(name, response.rr)
        addresses = tuple((str(rr.rdata), int(rr.ttl)) for rr in reply.rr if rr.rtype == QTYPE.A)
        if addresses:
            self._record(asker, Resolution(name, addresses))  # before the reply leaves
        packed = _packed(reply)
        if len(packed) > (max_size or _client_payload(request)):
            packed = _packed(reply.truncate())
        return packed

    def _forward(self, name: str, qtype: int) -> Any:
        # A fresh query, not the agent's bytes: only the question it may ask leaves the host.
        header = DNSHeader(id=secrets.randbelow(0x10000), rd=1)
        query = DNSRecord(header, q=DNSQuestion(name, qtype))
        return DNSRecord.parse(self._upstream.ask(query.pack()))


def _owner(rr: Any) -> str:
    return str(rr.rname).rstrip(".").lower()


def _chain_records(name: str, records: list[Any]) -> list[Any]:
    """The answer's CNAME chain from `name` (in chain order), then the A records of the chain's
    names; anything else (records about other names, other types) is dropped."""
    chain, kept = [name], []
    cnames = {_owner(rr): rr for rr in records if rr.rtype == QTYPE.CNAME}
    while chain[-1] in cnames and len(chain) <= MAX_CNAME_CHAIN:
        rr = cnames[chain[-1]]
        target = str(rr.rdata).rstrip(".").lower()
        if target in chain:  # a loop
            break
        kept.append(rr)
        chain.append(target)
    names = set(chain)
    kept += [rr for rr in records if rr.rtype == QTYPE.A and _owner(rr) in names]
    return kept


class DnsResolver:
    """Serves an Answerer on `address:port`, UDP and TCP; `port` 0 picks a free one."""

    def __init__(self, address: str, answerer: Answerer, *, port: int = 0) -> None:
        self.address = address
        self.answerer = answerer
        self._udp, self._tcp = self._bind(address, port)
        self.port: int = self._udp.server_address[1]

    def _bind(
        self, address: str, port: int
    ) -> tuple[socketserver.ThreadingUDPServer, socketserver.ThreadingTCPServer]:
        answerer = self.answerer

        class _Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = answerer.answer(data, self.client_address[0], max_size=None)
                if reply:
                    sock.sendto(reply, self.client_address)

        class _Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.settimeout(10.0)
                try:
                    while True:
                        query = _read_framed(self.connection)
                        reply = answerer.answer(query, self.client_address[0], max_size=65535)
                        if not reply:
                            return
                        self.connection.sendall(struct.pack("!H", len(reply)) + reply)
                except (ConnectionError, OSError, struct.error):
                    return

        # UDP and TCP on the same port: a free UDP port whose TCP twin may be taken, so retry.
        last: OSError | None = None
        for _ in range(20):
            udp = socketserver.ThreadingUDPServer((address, port), _Udp)
            udp.daemon_threads = True
            try:
                tcp = socketserver.ThreadingTCPServer((address, udp.server_address[1]), _Tcp)
            except OSError as exc:
                udp.server_close()
                last = exc
                if port:
                    break
                continue
            tcp.daemon_threads = True
            return udp, tcp
        raise OSError(f"cannot bind the DNS resolver on {address}:{port}: {last}")

    def start(self) -> None:
        for name, server in (("dns-udp", self._udp), ("dns-tcp", self._tcp)):
            thread = threading.Thread(
                target=server.serve_forever, name=f"{name}-{self.address}", daemon=True
            )
            thread.start()
        log.info("resolver listening on %s:%d", self.address, self.port)

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.shutdown()
            server.server_close()


def _client_payload(request: Any) -> int:
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(_UDP_PAYLOAD, int(rr.rclass))
    return _UDP_PAYLOAD


def _packed(record: Any) -> bytes:
    data: bytes = record.pack()
    return data

"""Test hosts the firewall tests own: a network namespace with addresses in 10.213.<n>.0/24
behind a veth pair, TCP listeners there, and an upstream DNS resolver on the host's loopback
that maps test names to them. Nothing here talks to any address the test did not create.

Containers reach the namespace through the host: the agent network's gateway routes
10.213.<n>.0/24 to the veth (Docker masquerades the container's source address).
"""

from __future__ import annotations

import fcntl
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from pyroute2 import IPRoute, NetNS, netns

LISTEN_PORT = 8080
SINK_PORT = 8081  # TCP and UDP: keeps connections open and records every byte that arrives
_SUBNET_LOCK = Path("/run/lock/clawker-test-subnets.lock")


@dataclass(frozen=True)
class Accepted:
    local: str  # the test host's address the connection reached
    peer: str
    at: float  # time.time()


@dataclass
class HostNamespace:
    """Addresses in a namespace of our own, each answering on LISTEN_PORT with a banner."""

    netns: str
    host_if: str
    addresses: dict[str, str]  # role -> address
    accepted: list[Accepted] = field(default_factory=list)
    sunk: list[tuple[str, bytes]] = field(default_factory=list)  # (tcp|udp, data) on SINK_PORT
    _stop: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)

    def sunk_bytes(self) -> bytes:
        return b"".join(data for _, data in list(self.sunk))

    def reached(self, role: str) -> list[Accepted]:
        return [a for a in self.accepted if a.local == self.addresses[role]]

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            sock.close()
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=self.host_if):
                ipr.link("del", index=index)
        if self.netns in netns.listnetns():
            netns.remove(self.netns)


def _free_subnet(ipr: IPRoute) -> int:
    used = {
        int(a.get_attr("IFA_ADDRESS").split(".")[2])
        for a in ipr.get_addr(family=socket.AF_INET)
        if a.get_attr("IFA_ADDRESS", "").startswith("10.213.")
    }
    for route in ipr.get_routes(family=socket.AF_INET):
        dst = route.get_attr("RTA_DST") or ""
        if dst.startswith("10.213."):
            used.add(int(dst.split(".")[2]))
    free = [n for n in range(1, 255) if n not in used]
    if not free:
        raise RuntimeError("no free 10.213.<n>.0/24 for test hosts")
    return free[0]


def make_test_hosts(run_id: str, roles: tuple[str, ...]) -> HostNamespace:
    """One namespace, one address per role (10.213.<n>.2, .3, ...), listeners on all."""
    name = f"clawker-fw-{run_id}"
    host_if, peer_if = f"cfw{run_id[:8]}", f"cfw{run_id[:8]}p"
    _SUBNET_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(_SUBNET_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two xdist workers must not pick the same subnet
        netns.create(name)
        with IPRoute() as ipr:
            n = _free_subnet(ipr)
            ipr.link(
                "add", ifname=host_if, kind="veth", peer={"ifname": peer_if, "net_ns_fd": name}
            )
            index = ipr.link_lookup(ifname=host_if)[0]
            ipr.addr("add", index=index, address=f"10.213.{n}.1", prefixlen=24)
            ipr.link("set", index=index, state="up")
    addresses = {role: f"10.213.{n}.{i + 2}" for i, role in enumerate(roles)}
    with NetNS(name) as ns:
        index = ns.link_lookup(ifname=peer_if)[0]
        for address in addresses.values():
            ns.addr("add", index=index, address=address, prefixlen=24)
        ns.link("set", index=index, state="up")
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=f"10.213.{n}.1")
    hosts = HostNamespace(name, host_if, addresses)
    listener = netns.create_socket(name, socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", LISTEN_PORT))
    listener.listen(64)
    listener.settimeout(0.2)
    hosts._sockets.append(listener)

    def serve() -> None:
        while not hosts._stop.is_set():
            try:
                conn, peer = listener.accept()
            except (TimeoutError, OSError):
                continue
            local = conn.getsockname()[0]
            hosts.accepted.append(Accepted(local, peer[0], time.time()))
            try:
                conn.sendall(f"hello from {local}\n".encode())
            finally:
                conn.close()

    threading.Thread(target=serve, name=f"testhosts-{run_id}", daemon=True).start()
    _start_sink(hosts, name)
    return hosts


def _start_sink(hosts: HostNamespace, name: str) -> None:
    """SINK_PORT on every address: TCP connections are read until they close, UDP datagrams
    are recorded as they come."""
    tcp = netns.create_socket(name, socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", SINK_PORT))
    tcp.listen(16)
    tcp.settimeout(0.2)
    udp = netns.create_socket(name, socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", SINK_PORT))
    udp.settimeout(0.2)
    hosts._sockets += [tcp, udp]

    def read(conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not hosts._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                hosts.sunk.append(("tcp", data))

    def accept() -> None:
        while not hosts._stop.is_set():
            try:
                conn, _ = tcp.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=read, args=(conn,), daemon=True).start()

    def receive() -> None:
        while not hosts._stop.is_set():
            try:
                data, _ = udp.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            hosts.sunk.append(("udp", data))

    threading.Thread(target=accept, name="testhosts-sink-tcp", daemon=True).start()
    threading.Thread(target=receive, name="testhosts-sink-udp", daemon=True).start()


class UpstreamStub:
    """The upstream resolver the control plane forwards to: test names only, on 127.0.0.1."""

    def __init__(self, records: Mapping[str, str], ttl: int = 300) -> None:
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        # name -> (other name, address): an A record about another name, added to its answer
        self.smuggled: dict[str, tuple[str, str]] = {}
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []  # (name, type)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address: tuple[str, int] = self._sock.getsockname()
        self._stop = threading.Event()
        threading.Thread(target=self._serve, name="test-upstream", daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            request = DNSRecord.parse(data)
            name = str(request.q.qname).rstrip(".").lower()
            self.queries.append((name, QTYPE[request.q.qtype]))
            reply = request.reply()
            address = self.records.get(name)
            if address is None:
                reply.header.rcode = RCODE.NXDOMAIN
            elif request.q.qtype == QTYPE.A:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=self.ttl))
                if name in self.smuggled:
                    other, extra = self.smuggled[name]
                    reply.add_answer(RR(other, QTYPE.A, rdata=A(extra), ttl=self.ttl))
            self._sock.sendto(reply.pack(), peer)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()

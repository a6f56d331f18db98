"""`clawker verify`: try every known way out from inside each live agent, against targets the
control plane sets up on this machine for the purpose, and say PASS or ESCAPE per probe.

Why no probe can send a packet off the machine, even with the firewall broken or absent
(docs/firewall.md, "clawker verify", has the long form):

- every IPv4 target is 198.18.<n>.1 (RFC 2544's benchmarking range, never routed on the
  internet), which the control plane adds to the host's loopback device for the run: a local
  address, so the host itself answers it; and before that it adds a `blackhole` route for all of
  198.18.<n>.0/24, so any other address there is dropped by the host, never routed on. An
  agent's only route is its bridge to the host, so whatever it sends meets the host's routing
  table first, where the local table (the target) and the blackhole route win;
- the IPv6 target is a ULA address added the same way (fd00:c1a5:0:<n>::1, its /64
  blackholed), and an agent network has no IPv6 route anyway;
- the gateway is the host's own address on the agent network, and the peer is another agent
  container on the same bridge, which has no uplink;
- the DNS probes ask only for an agent container's own Docker name: Docker's embedded resolver
  answers it from its own records (it forwards only names it does not know) and clawker's
  resolver never forwards a name off the allowlist (a probe whose name the allowlist allows is
  skipped, since clawker's resolver would forward it);
- the packet, raw and ping probes only create a socket; they never send on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from reconciler.docker.engine import DockerError, DockerPort
from reconciler.firewall.allowlist import domain_allowed
from reconciler.firewall.enforcement import Enrolment, Firewall
from reconciler.images.dockerfile import VENV
from reconciler.in_container import verify_probe

__all__ = [
    "ESCAPE",
    "PASS",
    "SKIP",
    "ProbeResult",
    "VerifyTargets",
    "docker_dns_ports",
    "judge",
    "listening_on_127_0_0_11",
    "verify_agents",
]

log = logging.getLogger("clawker.controlplane.verify")

PASS, ESCAPE, SKIP = "PASS", "ESCAPE", "SKIP"
CLAWKERD_PORT = 7700
PROBE_PYTHON = f"{VENV}/bin/python"  # clawkerd's, in every agent image
_SUBNET_LOCK = Path("/run/lock/clawker-verify-subnets.lock")
_AF_PACKET, _SOCK_RAW, _SOCK_DGRAM, _ETH_P_ALL_BE = 17, 3, 2, 0x0300
_IPPROTO_ICMP = 1


@dataclass(frozen=True)
class ProbeResult:
    agent: str
    container: str
    probe: str
    verdict: str  # PASS | ESCAPE | SKIP
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Listener:
    sock: socket.socket
    port: int
    seen: list[str] = field(default_factory=list)  # tokens that arrived


class VerifyTargets:
    """The run's targets: 198.18.<n>.1 and fd00:c1a5:0:<n>::1 on the host's loopback device,
    the rest of their /24 and /64 blackholed, and TCP and UDP listeners there and on each agent
    network's gateway, recording what arrives."""

    def __init__(self) -> None:
        self.label = f"lo:clkv{os.getpid():x}"[:15]  # marks this process's address on lo
        self.ip4 = self.ip6 = self.subnet4 = self.subnet6 = ""
        self._listeners: list[_Listener] = []
        self._stop = threading.Event()
        self.tcp4: _Listener | None = None
        self.udp4: _Listener | None = None
        self.tcp6: _Listener | None = None
        self._gateways: dict[str, _Listener] = {}

    # -- set up and tear down ----------------------------------------------------------------
    def __enter__(self) -> VerifyTargets:
        try:
            self._make_interface()
            self.tcp4 = self._listen(socket.AF_INET, socket.SOCK_STREAM, self.ip4)
            self.udp4 = self._listen(socket.AF_INET, socket.SOCK_DGRAM, self.ip4)
            self.tcp6 = self._listen6()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _make_interface(self) -> None:
        _SUBNET_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(_SUBNET_LOCK, "w") as lock, IPRoute() as ipr:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two control planes must not pick the same /24
            self._remove_stale(ipr)
            n = _free_subnet(ipr)
            lo = ipr.link_lookup(ifname="lo")[0]
            self.subnet4, self.ip4 = f"198.18.{n}.0", f"198.18.{n}.1"
            self.subnet6, self.ip6 = f"fd00:c1a5:0:{n:x}::", f"fd00:c1a5:0:{n:x}::1"
            # Every other address of the /24 (/64) is dropped on the host, never routed on.
            ipr.route("add", dst=self.subnet4, dst_len=24, type="blackhole")
            ipr.addr("add", index=lo, address=self.ip4, prefixlen=32, label=self.label)
            try:
                ipr.route("add", dst=self.subnet6, dst_len=64, type="blackhole", family=10)
                ipr.addr("add", index=lo, address=self.ip6, prefixlen=128, family=10)
            except Exception as exc:  # no IPv6 on this host: the probe still runs, unanswered
                log.info("no IPv6 target for verify: %s", exc)

    def _remove(self, ipr: IPRoute, n: int | None = None) -> None:
        """Remove the targets of subnet `n` (default: this run's): addresses, then routes."""
        if n is None:
            if not self.ip4:
                return
            n = int(self.ip4.split(".")[2])
        lo = ipr.link_lookup(ifname="lo")[0]
        for address, length, af in ((f"198.18.{n}.1", 32, 2), (f"fd00:c1a5:0:{n:x}::1", 128, 10)):
            with contextlib.suppress(Exception):
                ipr.addr("del", index=lo, address=address, prefixlen=length, family=af)
        for dst, length, af in ((f"198.18.{n}.0", 24, 2), (f"fd00:c1a5:0:{n:x}::", 64, 10)):
            with contextlib.suppress(Exception):
                ipr.route("del", dst=dst, dst_len=length, type="blackhole", family=af)

    def _remove_stale(self, ipr: IPRoute) -> None:
        """Targets a killed run left: labelled with the pid of a process that is gone, or ours.
        (Called under the subnet lock, so no run is half set up meanwhile.)"""
        lo = ipr.link_lookup(ifname="lo")[0]
        for a in ipr.get_addr(family=socket.AF_INET, index=lo):
            label, address = a.get_attr("IFA_LABEL") or "", a.get_attr("IFA_ADDRESS") or ""
            if not label.startswith("lo:clkv") or not address.startswith("198.18."):
                continue
            try:
                pid = int(label.removeprefix("lo:clkv"), 16)
                if pid != os.getpid():
                    os.kill(pid, 0)
                    continue  # a live control plane's run
            except ProcessLookupError:
                pass
            except (ValueError, PermissionError):
                continue
            self._remove(ipr, int(address.split(".")[2]))

    def _listen(self, family: int, kind: int, address: str, port: int = 0) -> _Listener:
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        sock.settimeout(0.2)
        listener = _Listener(sock, sock.getsockname()[1])
        self._listeners.append(listener)
        threading.Thread(target=self._serve, args=(listener, kind), daemon=True).start()
        return listener

    def _listen6(self) -> _Listener | None:
        for _ in range(20):  # a fresh address may be tentative for a moment
            try:
                return self._listen(socket.AF_INET6, socket.SOCK_STREAM, self.ip6)
            except OSError:
                time.sleep(0.1)
        return None

    def gateway(self, address: str) -> _Listener:
        """A TCP listener on an agent network's gateway (the host's address there)."""
        if address not in self._gateways:
            self._gateways[address] = self._listen(socket.AF_INET, socket.SOCK_STREAM, address)
        return self._gateways[address]

    def _serve(self, listener: _Listener, kind: int) -> None:
        while not self._stop.is_set():
            try:
                if kind == socket.SOCK_DGRAM:
                    data = listener.sock.recv(4096)
                else:
                    conn, _ = listener.sock.accept()
                    with conn:
                        conn.settimeout(1.0)
                        data = conn.recv(4096)
                listener.seen.append(data.decode(errors="replace"))
            except (TimeoutError, OSError):
                continue

    def close(self) -> None:
        self._stop.set()
        for listener in self._listeners:
            listener.sock.close()
        with contextlib.suppress(Exception), IPRoute() as ipr:
            self._remove(ipr)
        self.ip4 = ""

    def arrived(self, token: str) -> bool:
        return any(token in seen for lst in self._listeners for seen in lst.seen)


def _free_subnet(ipr: IPRoute) -> int:
    used = set()
    for a in ipr.get_addr(family=socket.AF_INET):
        address = a.get_attr("IFA_ADDRESS") or ""
        if address.startswith("198.18."):
            used.add(int(address.split(".")[2]))
    for route in ipr.get_routes(family=socket.AF_INET):
        dst = route.get_attr("RTA_DST") or ""
        if dst.startswith("198.18."):
            used.add(int(dst.split(".")[2]))
    free = [n for n in range(1, 255) if n not in used]
    if not free:
        raise OSError("no free 198.18.<n>.0/24 for verify's targets")
    return free[0]


def docker_dns_ports(pid: int) -> tuple[list[int], list[int]]:
    """The UDP and TCP ports Docker's embedded resolver listens on at 127.0.0.11 inside the
    network namespace of `pid` (its real ports, behind Docker's DNAT of port 53)."""

    def table(name: str) -> str:
        try:
            return Path(f"/proc/{pid}/net/{name}").read_text()
        except OSError:
            return ""

    return listening_on_127_0_0_11(table("udp"), "07"), listening_on_127_0_0_11(table("tcp"), "0A")


def listening_on_127_0_0_11(table: str, state: str) -> list[int]:
    """Ports of /proc/net/{udp,tcp} rows bound to 127.0.0.11 in `state` (07: an unconnected
    UDP socket, 0A: a TCP listener)."""
    found = []
    for line in table.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        address, _, port = parts[1].partition(":")
        if address == "0B00007F" and parts[3] == state:  # 127.0.0.11, little-endian hex
            found.append(int(port, 16))
    return sorted(found)


@dataclass(frozen=True)
class _Probe:
    name: str
    spec: dict[str, Any]
    reading: str  # how to read the result: connect | datagram | dns | socket
    token: str = ""
    skip: str = ""


def _probes(
    enrolment: Enrolment,
    name: str,
    pid: int,
    allowlist: tuple[str, ...],
    t: VerifyTargets,
    peer: Enrolment | None,
) -> list[_Probe]:
    def token() -> str:
        return f"clawker-verify-{secrets.token_hex(8)}"

    assert t.tcp4 and t.udp4
    gateway = enrolment.resolver.rpartition(":")[0]
    udp_ports, tcp_ports = docker_dns_ports(pid)
    dns_skip = f"{name} is on the allowlist" if domain_allowed(name, allowlist) else ""
    probes = [
        _Probe(
            "direct-ip-tcp", {"kind": "tcp", "host": t.ip4, "port": t.tcp4.port}, "connect", token()
        ),
        _Probe(
            "direct-ip-udp",
            {"kind": "udp", "host": t.ip4, "port": t.udp4.port},
            "datagram",
            token(),
        ),
        _Probe(
            "ipv4-mapped",
            {"kind": "tcp", "host": f"::ffff:{t.ip4}", "port": t.tcp4.port},
            "connect",
            token(),
        ),
        _Probe(
            "ipv6",
            {"kind": "tcp", "host": t.ip6, "port": t.tcp6.port if t.tcp6 else 9},
            "connect",
            token(),
        ),
        _Probe(
            "unlisted-name",
            {"kind": "dns", "server": "127.0.0.11", "port": 53, "name": name},
            "dns",
            skip=dns_skip,
        ),
        _Probe(
            "dns-over-tcp",
            {"kind": "dns", "server": "127.0.0.11", "port": 53, "name": name, "tcp": True},
            "dns",
            skip=dns_skip,
        ),
        _Probe(
            "docker-dns-udp",
            {
                "kind": "dns",
                "server": "127.0.0.11",
                "port": udp_ports[0] if udp_ports else 0,
                "name": name,
            },
            "dns",
            skip=dns_skip or ("" if udp_ports else "Docker's resolver not found"),
        ),
        _Probe(
            "docker-dns-tcp",
            {
                "kind": "dns",
                "server": "127.0.0.11",
                "port": tcp_ports[0] if tcp_ports else 0,
                "name": name,
                "tcp": True,
            },
            "dns",
            skip=dns_skip or ("" if tcp_ports else "Docker's resolver not found"),
        ),
        _Probe(
            "packet-socket",
            {"kind": "socket", "family": _AF_PACKET, "type": _SOCK_RAW, "proto": _ETH_P_ALL_BE},
            "socket",
        ),
        _Probe(
            "raw-socket",
            {"kind": "socket", "family": socket.AF_INET, "type": _SOCK_RAW, "proto": _IPPROTO_ICMP},
            "socket",
        ),
        _Probe(
            "ping-socket",
            {
                "kind": "socket",
                "family": socket.AF_INET,
                "type": _SOCK_DGRAM,
                "proto": _IPPROTO_ICMP,
            },
            "socket",
        ),
        _Probe(
            "gateway",
            {"kind": "tcp", "host": gateway, "port": t.gateway(gateway).port},
            "connect",
            token(),
        ),
    ]
    if peer is not None:
        probes.append(
            _Probe(
                "peer",
                {"kind": "tcp", "host": peer.address, "port": CLAWKERD_PORT},
                "connect",
                token(),
            )
        )
    else:
        probes.append(_Probe("peer", {}, "connect", skip="no other live agent on its network"))
    return probes


def judge(reading: str, result: dict[str, Any], arrived: bool) -> tuple[str, str]:
    """PASS or ESCAPE, and why, for one probe's inside result; `arrived`: a target of ours got
    the probe's token. `reading`: connect | datagram | dns | socket."""
    error = str(result.get("error", ""))
    if reading == "connect":
        if result.get("connected") or arrived:
            return ESCAPE, "connected" + (" and the target got the probe's data" if arrived else "")
        return PASS, f"refused ({error})"
    if reading == "datagram":
        if arrived:
            return ESCAPE, "the target got the datagram"
        return PASS, f"refused ({error})" if error else "sent, nothing arrived"
    if reading == "dns":
        if result.get("addresses"):
            return ESCAPE, f"answered {', '.join(result['addresses'])}"
        if result.get("answered"):
            return PASS, f"answered with no address (rcode {result.get('rcode')})"
        return PASS, f"no answer ({error})"
    if result.get("created"):
        return ESCAPE, "the socket was created"
    return PASS, f"refused ({error})"


def _run_probes(port: DockerPort, container_id: str, probes: list[_Probe]) -> list[dict[str, Any]]:
    specs = [dict(p.spec, token=p.token) for p in probes]
    source = Path(verify_probe.__file__).read_text(encoding="utf-8")
    code, out = port.exec_output(
        container_id, [PROBE_PYTHON, "-I", "-c", source, json.dumps(specs)], user="0"
    )
    lines = out.strip().splitlines()
    if code != 0 or not lines:
        raise DockerError(f"the probes did not run (exit {code}): {out.strip()[-300:]}")
    results: list[dict[str, Any]] = json.loads(lines[-1])
    return results


def verify_agents(
    port: DockerPort, firewall: Firewall, network: str, agent: str | None = None
) -> list[ProbeResult]:
    """Probe every live enrolled agent container (or only `agent`'s); PASS/ESCAPE/SKIP each."""
    enrolments = [e for e in firewall.enrolments() if agent is None or e.agent_key == agent]
    results: list[ProbeResult] = []
    if not enrolments:
        return results
    with VerifyTargets() as targets:
        for enrolment in enrolments:
            info = port.inspect_runtime(enrolment.container_id, network)
            if info is None or not info.running:
                continue
            peers = [
                e
                for e in firewall.enrolments()
                if e.container_id != enrolment.container_id and e.resolver == enrolment.resolver
            ]
            allowlist = firewall.state(enrolment.agent_key).domains
            probes = _probes(
                enrolment, info.name, info.pid, allowlist, targets, peers[0] if peers else None
            )
            runnable = [p for p in probes if not p.skip]
            answers = _run_probes(port, info.id, runnable)
            time.sleep(0.3)  # a datagram that got through has arrived by now
            by_name = dict(zip((p.name for p in runnable), answers, strict=True))
            for probe in probes:
                if probe.skip:
                    verdict, detail = SKIP, probe.skip
                else:
                    arrived = bool(probe.token) and targets.arrived(probe.token)
                    verdict, detail = judge(probe.reading, by_name[probe.name], arrived)
                results.append(
                    ProbeResult(enrolment.agent_key, info.name, probe.name, verdict, detail)
                )
    return results

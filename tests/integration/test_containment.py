"""The five escapes of issue 14, each tried from inside a live agent as an attacker would,
against test hosts in a network namespace the test makes (tests/integration/testhosts.py).

Each was reproduced against the code before its fix (docs/firewall.md, "What is covered"), and
each test fails if the escape comes back. Fixtures and probes are test_firewall.py's.
"""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from dnslib import RCODE, DNSRecord

from bpf.loader import attach_egress, cgroup_id
from bpf.maps import PinnedMaps, Policy
from bpf.tc import host_veths_of, veth_wall_program_id
from reconciler.docker.seccomp import agent_seccomp_profile
from tests.cleanup import TEST_LABEL, remove_cgroup_parent
from tests.integration.dockerexec import exec_id, exec_in
from tests.integration.test_firewall import (
    EPERM,
    Firewalled,
    dns_query,
    fw,
    kernel_scope,
    wait_for,
)
from tests.integration.testhosts import LISTEN_PORT, SINK_PORT

__all__ = ["fw", "kernel_scope"]  # test_firewall's fixtures, used here too

pytestmark = [pytest.mark.docker, pytest.mark.root]

AF_INET, AF_INET6, AF_PACKET = 2, 10, 17
SOCK_DGRAM, SOCK_RAW = 2, 3
ETH_P_ALL = 0x0003


def _docker_dns_ports(fw: Firewalled) -> dict[str, int]:
    """The real ports of Docker's embedded resolver in the agent's network namespace (dockerd
    listens on 127.0.0.11:<high port> and NATs port 53 there)."""
    pid = fw.scope.inspect(fw.container)["State"]["Pid"]
    ports = {}
    for proto in ("udp", "tcp"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            local = line.split()[1]
            address, port = local.split(":")
            if address == "0B00007F":  # 127.0.0.11, little-endian hex
                ports[proto] = int(port, 16)
    assert set(ports) == {"udp", "tcp"}, ports
    return ports


def test_dockers_embedded_resolver_is_refused_on_its_real_ports(fw: Firewalled) -> None:
    """Escape 1: dockerd forwards any name, from outside the agent's cgroup."""
    fw.apply("ok")
    ports = _docker_dns_ports(fw)
    # The container's own name: dockerd answers it itself, so even the old, open path would
    # send nothing off this machine.
    udp = dns_query(fw.container, "A") | {"port": ports["udp"]}
    tcp = dns_query(fw.container, "A", tcp=True) | {"port": ports["tcp"]}
    for user in ("root", "claude"):
        assert fw.probe(udp, tcp, user=user) == [EPERM, EPERM], user
    # Port 53 of the same address is still clawker's resolver, which does not know the name.
    (ours,) = fw.probe(dns_query(fw.container, "A"))
    assert DNSRecord.parse(bytes.fromhex(ours["reply"])).header.rcode == RCODE.NXDOMAIN


def test_packet_raw_and_ping_sockets_are_refused_whatever_the_user(fw: Firewalled) -> None:
    """Escape 2: packet and raw sockets (seccomp and no NET_RAW), ping sockets (the sysctl)."""
    fw.apply("ok")
    for user in ("root", "claude"):
        results = fw.probe(
            {"op": "socket", "family": AF_PACKET, "type": SOCK_RAW, "proto": ETH_P_ALL},
            {"op": "socket", "family": AF_PACKET, "type": SOCK_DGRAM, "proto": ETH_P_ALL},
            {"op": "socket", "family": AF_INET, "type": SOCK_RAW, "proto": 255},
            {"op": "socket", "family": AF_INET6, "type": SOCK_RAW, "proto": 255},
            {"op": "socket", "family": AF_INET, "type": SOCK_DGRAM, "proto": 1},
            user=user,
        )
        assert results[:4] == [EPERM] * 4, user
        assert results[4] == {"ok": False, "errno": "EACCES"}, user
    info = fw.scope.inspect(fw.container)
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    assert "NET_RAW" not in info["HostConfig"]["CapAdd"]
    assert info["HostConfig"]["Sysctls"] == {"net.ipv4.ping_group_range": "1 0"}


PACKET_SOCKET = "import socket; socket.socket(17, 3, 0x0300).close(); print('made')"


def test_the_seccomp_profile_refuses_a_packet_socket_even_with_net_raw(fw: Firewalled) -> None:
    """Escape 2, belt and braces: were NET_RAW ever granted, the profile still refuses. Two
    plain containers of the agent's image with NET_RAW, one with the profile, one without (so
    the test shows it can fail); both on no network."""
    fw.apply("ok")
    api = fw.scope.api
    image = fw.scope.inspect(fw.container)["Config"]["Image"]
    labels = {"dev.clawker.managed": "true", TEST_LABEL: fw.scope.run_id}
    made = {}
    for name, options in (("profile", [f"seccomp={agent_seccomp_profile()}"]), ("none", [])):
        container = api.create_container(
            image,
            ["python3", "-c", PACKET_SOCKET],
            entrypoint=[],
            labels=labels,
            host_config=api.create_host_config(
                network_mode="none", cap_add=["NET_RAW"], security_opt=options or None
            ),
        )
        api.start(container)
        assert api.wait(container, timeout=60)["StatusCode"] in (0, 1)
        made[name] = api.logs(container).decode(errors="replace")
    assert "PermissionError" in made["profile"] and "made" not in made["profile"]
    assert made["none"].strip() == "made"


def test_a_spec_asking_for_net_raw_is_refused_before_docker_is_touched(fw: Firewalled) -> None:
    """Escape 2, at its root: `cap_add: [NET_RAW]` was accepted."""
    spec = fw.write_spec("ok")
    text = spec.read_text().replace("firewall: {", "cap_add: [NET_RAW, SYS_TIME]\n    firewall: {")
    spec.write_text(text)
    failed = fw.scope.clawker("apply", "-f", str(spec), check=2)
    assert "capability NET_RAW is refused" in failed.stderr
    assert "capability SYS_TIME is refused" in failed.stderr
    assert fw.scope.api.containers(all=True, filters={"name": fw.container}) == []


HOLD = textwrap.dedent("""\
    import json, os, socket, sys, time
    ip, port = sys.argv[1], int(sys.argv[2])
    t = socket.create_connection((ip, port), timeout=5)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((ip, port))
    t.sendall(b"tcp-before;"); u.send(b"udp-before;")
    open("/tmp/held", "w").close()
    while not os.path.exists("/tmp/go"):
        time.sleep(0.05)
    result = {}
    for name, sock in (("tcp", t), ("udp", u)):
        try:
            for _ in range(20):
                sock.send(name.encode() + b"-after;")
                time.sleep(0.05)
            result[name] = "sent"
        except OSError as e:
            result[name] = os.strerror(e.errno)
    json.dump(result, open("/tmp/result.json", "w"))
""")


def _exec(fw: Firewalled, *argv: str, detach: bool = False) -> str:
    if detach:
        api = fw.scope.api
        api.exec_start(exec_id(api, fw.container, argv, user="claude"), detach=True)
        return ""
    return exec_in(fw.scope.api, fw.container, argv, user="claude")[1]


def _file(fw: Firewalled, path: str) -> str:
    return _exec(fw, "sh", "-c", f"cat {path} 2>/dev/null || true")


def test_sockets_opened_during_a_bypass_carry_nothing_after_it(fw: Firewalled) -> None:
    """Escape 4: addresses were checked only at connect/sendmsg, so a socket outlived a bypass."""
    fw.apply("ok")
    blocked = fw.ip("blocked")
    fw.scope.clawker("firewall", "bypass", "5m", "--agent", "dev", check=0)
    _exec(fw, "python3", "-c", HOLD, blocked, str(SINK_PORT), detach=True)
    wait_for(lambda: _file(fw, "/tmp/held") == "" and b"udp-before" in fw.hosts.sunk_bytes(),
             20, "the held sockets to reach the test host during the bypass")  # fmt: skip
    assert b"tcp-before;" in fw.hosts.sunk_bytes()

    fw.scope.clawker("firewall", "bypass", "0", "--agent", "dev", check=0)
    _exec(fw, "touch", "/tmp/go")
    result: dict[str, Any] = wait_for(
        lambda: json.loads(_file(fw, "/tmp/result.json") or "null"), 30, "the held sockets"
    )
    time.sleep(1)  # anything that got out has arrived by now
    assert b"after" not in fw.hosts.sunk_bytes()
    assert result["udp"] == "Operation not permitted"  # the packet wall's drop, at once
    # The wall's drops reach `firewall log` (rate-limited in the kernel), with the address.
    log = json.loads(
        fw.scope.clawker("firewall", "log", "--agent", "dev", "-o", "json", check=0).stdout
    )
    walled = [e for e in log if e["hook"] == "wall" and e["address"] == blocked]
    assert walled and walled[0]["port"] == SINK_PORT and walled[0]["uid"] == -1, log
    assert {e["protocol"] for e in walled} <= {"tcp", "udp"}, walled


SOURCE_ROUTE = textwrap.dedent("""\
    import json, socket, struct, sys
    ok, blocked, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # IPv4 loose source route: NOP, LSRR (type 131), length 7, pointer 4, one hop.
    lsrr = bytes([1, 131, 7, 4]) + socket.inet_aton(blocked)
    out = {}
    def attempt(name, fn):
        try:
            fn(); out[name] = "ok"
        except OSError as e:
            out[name] = e.errno
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attempt("setsockopt IP_OPTIONS", lambda: s.setsockopt(socket.IPPROTO_IP, 4, lsrr))
    attempt("sendmsg IP_RETOPTS", lambda: s.sendmsg(
        [b"routed;"], [(socket.IPPROTO_IP, 7, lsrr)], 0, (ok, port)))
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    srh = bytes([17, 2, 4, 0, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "::1")
    attempt("setsockopt IPV6_RTHDR", lambda: s6.setsockopt(socket.IPPROTO_IPV6, 57, srh))
    print(json.dumps(out))
""")


def test_source_routes_and_routing_headers_are_refused(fw: Firewalled) -> None:
    """Escape 5: a socket aimed at an allowed address delivered to another one."""
    fw.apply("ok")
    ok, blocked = fw.ip("ok"), fw.ip("blocked")
    assert fw.probe({"op": "resolve", "name": fw.names["ok"]})[0]["ok"]  # ok is allowed
    for user in ("root", "claude"):
        argv = ["python3", "-c", SOURCE_ROUTE, ok, blocked, str(SINK_PORT)]
        code, text = exec_in(fw.scope.api, fw.container, argv, user=user)
        assert code == 0, text
        out = json.loads(text.strip().splitlines()[-1])
        assert out == {
            "setsockopt IP_OPTIONS": 1,  # EPERM from cgroup/setsockopt
            "sendmsg IP_RETOPTS": 1,  # EPERM: the packet wall drops a packet with options
            "setsockopt IPV6_RTHDR": 1,
        }, user
    time.sleep(0.5)
    assert b"routed" not in fw.hosts.sunk_bytes()


HELD_IN_CGROUP = textwrap.dedent("""\
    import os, socket, sys
    open(sys.argv[1] + "/cgroup.procs", "w").write(str(os.getpid()))
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5)
    s.sendall(b"enrolled;")
    print("sent", flush=True)
    sys.stdin.readline()
    try:
        s.sendall(b"unknown;")
        print("sent", flush=True)
    except OSError as e:
        print(os.strerror(e.errno), flush=True)
""")


def test_the_packet_wall_drops_every_packet_of_a_cgroup_nobody_enrolled(
    kernel_scope: tuple[Path, Path],
) -> None:
    """Escape 3, the IP half: a socket that got out once carries nothing once its cgroup is
    unknown, loopback included (what a container under the parent that clawker did not enrol
    is from its first packet)."""
    cgroup, pin_dir = kernel_scope
    attach_egress(cgroup, pin_dir)
    child = cgroup / "agent"
    child.mkdir()
    maps = PinnedMaps(pin_dir)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    proc = subprocess.Popen(
        ["python3", "-c", HELD_IN_CGROUP, str(child), str(listener.getsockname()[1])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        maps.put_policy(cgroup_id(child), Policy(agent_id=9))
        conn, _ = listener.accept()
        conn.settimeout(0.5)
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "sent"
        assert conn.recv(100) == b"enrolled;"
        maps.delete_policy(cgroup_id(child))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.stdout.readline()  # the send may be buffered: what matters is what arrives
        received = b""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                received += conn.recv(100)
            except TimeoutError:
                continue
        assert received == b""
        conn.close()
    finally:
        proc.kill()
        proc.wait()
        listener.close()
        maps.close()


# A container nobody enrolled writes UDP datagrams to the test host as whole Ethernet frames
# through a packet socket (Docker's default NET_RAW, no seccomp profile of clawker's), from its
# process's first instruction, every 5 ms; argv: gateway MAC, destination, port, tag, seconds.
RAW_FRAMES = textwrap.dedent("""
    import fcntl, socket, struct, sys, time
    gw_mac = bytes.fromhex(sys.argv[1].replace(":", ""))
    dst, port, tag = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    src_mac = s.getsockname()[4]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    src = fcntl.ioctl(probe, 0x8915, struct.pack("256s", b"eth0"))[20:24]  # SIOCGIFADDR
    def csum(data):
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xffff) + (total >> 16)
        return ~total & 0xffff
    end, i = time.monotonic() + float(sys.argv[5]), 0
    while time.monotonic() < end:
        payload = f"{tag}-{i}".encode()
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0,
                         src, socket.inet_aton(dst))
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        try:
            s.send(gw_mac + src_mac + b"\\x08\\x00" + ip + udp)
        except OSError as e:
            print(e.strerror, flush=True)
        i += 1
        time.sleep(0.005)
    print("sent", i, flush=True)
""")


def _start_foreign(fw: Firewalled, cgroup_parent: str, tag: str, seconds: float) -> str:
    """A container clawker did not make (no clawker labels but the test's own), with Docker's
    defaults, placed under `cgroup_parent` on the agents' network, sending for `seconds`."""
    api = fw.scope.api
    network = api.inspect_network(fw.scope.env["CLAWKER_NETWORK"])
    bridge = network["Options"].get("com.docker.network.bridge.name") or f"br-{network['Id'][:12]}"
    gateway_mac = Path(f"/sys/class/net/{bridge}/address").read_text().strip()
    container = api.create_container(
        "clawker-base:bookworm",
        [
            "python3",
            "-c",
            RAW_FRAMES,
            gateway_mac,
            fw.ip("blocked"),
            str(SINK_PORT),
            tag,
            str(seconds),
        ],
        entrypoint=[],
        labels={TEST_LABEL: fw.scope.run_id},
        host_config=api.create_host_config(
            cgroup_parent=cgroup_parent, network_mode=fw.scope.env["CLAWKER_NETWORK"]
        ),
    )["Id"]
    api.start(container)
    return str(container)


def _run_foreign(fw: Firewalled, cgroup_parent: str, tag: str) -> str:
    """_start_foreign for 3 s; what it printed."""
    api = fw.scope.api
    container = _start_foreign(fw, cgroup_parent, tag, 3)
    try:
        assert api.wait(container, timeout=60)["StatusCode"] == 0
        return bytes(api.logs(container)).decode()
    finally:
        api.remove_container(container, force=True)


def _sunk(fw: Firewalled, tag: str) -> list[bytes]:
    return [
        data for proto, data in fw.hosts.sunk if proto == "udp" and data.startswith(tag.encode())
    ]


def test_a_foreign_containers_packet_socket_gets_no_frame_out_from_its_first_millisecond(
    fw: Firewalled,
) -> None:
    """Escape 3, the packet-socket half: the control plane puts the veth wall on the host end
    of every container under its parent on the network `connect` event, before the
    container's process runs, so not one frame of a foreign container's leaves; enrolled
    agents (on the wall too) still resolve, ARP and connect."""
    fw.apply("ok")
    fw.wait_enrolled()
    # The same container under another parent (no wall, no cgroup programs): its frames
    # arrive, so the test can see one.
    control = f"{fw.cgroup_parent}-control"
    try:
        assert "sent" in _run_foreign(fw, control, "control")
        wait_for(lambda: _sunk(fw, "control"), 10, "the control container's frames")
    finally:
        remove_cgroup_parent(control)

    out = _run_foreign(fw, fw.cgroup_parent, "foreign")
    assert "sent" in out, out  # the frames were written...
    time.sleep(1)
    assert _sunk(fw, "foreign") == []  # ...and none left its veth
    # The agent's own traffic passes the wall on its veth: DNS, ARP, TCP to an allowed host.
    results = fw.probe(
        {"op": "resolve", "name": fw.names["ok"]},
        {"op": "connect", "ip": fw.ip("ok"), "port": LISTEN_PORT},
    )
    assert results == [
        {"ok": True, "addresses": [fw.ip("ok")]},
        {"ok": True, "data": f"hello from {fw.ip('ok')}\n"},
    ]


# IPv6 extension headers passed per message (sendmsg ancillary data), which cgroup/setsockopt
# never sees, on a UDP socket aimed at ::1 (allowed), from a process in `argv[1]` with every
# capability (the test runs as root, so the kernel's own CAP_NET_RAW checks do not help): a
# segment-routing header (type 4), a type 2 routing header, hop-by-hop and destination
# options. A listener on [::1] shows what got through; a plain datagram is the control.
RTHDR_CMSG = textwrap.dedent("""\
    import errno, json, os, socket, sys
    open(sys.argv[1] + "/cgroup.procs", "w").write(str(os.getpid()))
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rx.bind(("::1", 0))
    rx.settimeout(0.5)
    dst = ("::1", rx.getsockname()[1])
    loop = socket.inet_pton(socket.AF_INET6, "::1")
    pad = bytes([1, 4, 0, 0, 0, 0])  # a PadN option: 8 bytes of options header in all
    headers = {
        "IPV6_RTHDR type 4": (57, bytes([17, 2, 4, 0, 0, 0, 0, 0]) + loop),
        "IPV6_RTHDR type 2": (57, bytes([17, 2, 2, 1, 0, 0, 0, 0]) + loop),
        "IPV6_HOPOPTS": (54, bytes([17, 0]) + pad),
        "IPV6_DSTOPTS": (59, bytes([17, 0]) + pad),
    }
    out = {}
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    for name, (kind, data) in headers.items():
        try:
            s.sendmsg([name.encode()], [(socket.IPPROTO_IPV6, kind, data)], 0, dst)
            out[name] = "sent"
        except OSError as e:
            out[name] = errno.errorcode[e.errno]
    s.sendto(b"plain", dst)
    got = []
    try:
        while True:
            got.append(rx.recv(100).decode())
    except TimeoutError:
        pass
    print(json.dumps({"results": out, "received": got}))
""")


def test_ipv6_extension_headers_sent_per_message_are_refused_or_dropped(
    kernel_scope: tuple[Path, Path],
) -> None:
    """Escape 5, the cmsg path: setsockopt is refused by cgroup/setsockopt (the test above);
    the same headers as sendmsg ancillary data are refused by the kernel or dropped by the
    packet wall, never delivered, even with CAP_NET_RAW."""
    cgroup, pin_dir = kernel_scope
    attach_egress(cgroup, pin_dir)
    child = cgroup / "agent"
    child.mkdir()
    maps = PinnedMaps(pin_dir)
    try:
        maps.put_policy(cgroup_id(child), Policy(agent_id=11))
        proc = subprocess.run(
            ["python3", "-c", RTHDR_CMSG, str(child)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        maps.close()
    assert out["received"] == ["plain"]  # ::1 is allowed: only the header-less datagram
    for name, result in out["results"].items():
        # EINVAL: the kernel refuses the header from a cmsg; EPERM: the wall dropped it.
        assert result in ("EINVAL", "EPERM"), (name, result)


def test_a_foreign_container_started_while_the_cp_is_down_is_walled_by_its_restart(
    fw: Firewalled,
) -> None:
    """The window left (docs/firewall.md, Limits): with no control plane, nothing attaches
    the veth wall, so a foreign container started then gets its frames out; the restarted
    control plane's start-up scan finds it and not one frame more leaves."""
    fw.apply("ok")
    fw.kill_controlplane()
    api = fw.scope.api
    container = _start_foreign(fw, fw.cgroup_parent, "late", 120)
    try:
        wait_for(lambda: _sunk(fw, "late"), 30, "the frames sent while no CP runs")
        fw.scope.clawker("controlplane", "up", check=0)
        netns = Path(api.inspect_container(container)["NetworkSettings"]["SandboxKey"])
        wait_for(
            lambda: all(veth_wall_program_id(i) for i in host_veths_of(netns) or [0]),
            60,
            "the restarted CP to put the veth wall on the container",
        )
        time.sleep(0.2)  # a frame written just before the attach has arrived by now
        before = len(_sunk(fw, "late"))
        time.sleep(2)
        assert api.inspect_container(container)["State"]["Running"]  # still sending
        assert len(_sunk(fw, "late")) == before
    finally:
        api.remove_container(container, force=True)

"""The veth wall (escape 3's packet-socket half), at the kernel's edge, without Docker.

Two network namespaces the test makes: "c" plays a container (its processes run in cgroups
under the test's parent), "h" plays the host side of its veth, with the filter on that end and
a UDP listener behind it (the test host). A frame is "sent" when it reaches the listener.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bpf.loader import attach_egress, cgroup_id
from bpf.maps import PinnedMaps, Policy
from tests.integration.test_firewall import kernel_scope

__all__ = ["kernel_scope"]

pytestmark = [pytest.mark.root]

C_ADDR, H_ADDR, PORT = "10.214.0.2", "10.214.0.1", 9911


@dataclass
class Pair:
    c: str  # namespace names
    h: str
    c_if: str
    h_if: str

    def run_in_c(self, cgroup: Path, code: str, *args: str) -> str:
        """Run python `code` in namespace c, in `cgroup`, from its first instruction."""
        script = f"echo $$ > {cgroup}/cgroup.procs && exec nsenter --net=/run/netns/{self.c} "
        proc = subprocess.run(
            ["sh", "-c", script + '"$@"', "sh", "python3", "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def attach(self, pin_dir: Path) -> str:
        """Attach the wall to h's end, from inside h (the control plane's own call)."""
        code = (
            "import socket, sys; from bpf.tc import attach_veth_wall; from pathlib import Path;"
            f"print(attach_veth_wall(Path('{pin_dir}'), socket.if_nametoindex('{self.h_if}')))"
        )
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.h}", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout.strip()


@pytest.fixture
def pair() -> Iterator[Pair]:
    run = uuid.uuid4().hex[:8]
    p = Pair(f"cvw-{run}-c", f"cvw-{run}-h", f"vw{run}c", f"vw{run}h")

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True)

    try:
        sh("ip", "netns", "add", p.c)
        sh("ip", "netns", "add", p.h)
        sh("ip", "-n", p.c, "link", "add", p.c_if, "type", "veth", "peer", p.h_if, "netns", p.h)
        sh("ip", "-n", p.c, "addr", "add", f"{C_ADDR}/24", "dev", p.c_if)
        sh("ip", "-n", p.h, "addr", "add", f"{H_ADDR}/24", "dev", p.h_if)
        for ns, dev in ((p.c, p.c_if), (p.h, p.h_if), (p.c, "lo"), (p.h, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield p
    finally:
        for ns in (p.c, p.h):  # deleting a namespace deletes its end of the veth: both go
            subprocess.run(["ip", "netns", "del", ns], check=False)


class Listener:
    """The test host: a UDP socket in h that records every datagram's payload."""

    def __init__(self, pair: Pair) -> None:
        code = textwrap.dedent(f"""
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("{H_ADDR}", {PORT}))
            print("ready", flush=True)
            s.settimeout(3)
            try:
                while True:
                    print(s.recv(2048).decode(errors="replace"), flush=True)
            except TimeoutError:
                pass
            """)
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{pair.h}", "python3", "-c", code],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def received(self) -> list[str]:
        out, _ = self.proc.communicate(timeout=30)
        return out.split()


# A UDP datagram written as a whole Ethernet frame through a packet socket (the way a
# container with Docker's default NET_RAW gets past every socket-level hook), sent from the
# process's first instruction on, with and without PACKET_QDISC_BYPASS (which skips tc egress
# on the sender's side: the wall must not be there). Also ARP-resolves H with a plain socket.
RAW_SENDER = textwrap.dedent("""
    import fcntl, socket, struct, sys
    ifname, src, dst, tag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
    port = int(sys.argv[4])
    def csum(data):
        data += b"\\0" * (len(data) % 2)
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xffff) + (total >> 16)
        return ~total & 0xffff
    def frame(payload, dst_mac, src_mac):
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        return dst_mac + src_mac + b"\\x08\\x00" + ip + udp
    results = []
    for bypass in (0, 1):
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            if bypass:
                s.setsockopt(263, 20, struct.pack("i", 1))  # SOL_PACKET, PACKET_QDISC_BYPASS
            s.bind((ifname, 0))
            src_mac = s.getsockname()[4]
            for i in range(20):
                s.send(frame(f"{tag}-raw{bypass}-{i}".encode(), b"\\xff" * 6, src_mac))
            results.append("sent")
        except OSError as e:
            results.append(e.strerror)
    print(" ".join(results))
""")

INET_SENDER = textwrap.dedent("""
    import socket, sys, time
    dst, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out = "sent"
    for i in range(20):
        try:
            s.sendto(f"{tag}-inet-{i}".encode(), (dst, port))
        except OSError as e:
            out = e.strerror
        time.sleep(0.02)  # the first ones wait for ARP (the neighbour queue holds 3 at most)
    print(out)
""")


def _raw(pair: Pair, cgroup: Path, tag: str) -> str:
    return pair.run_in_c(cgroup, RAW_SENDER, pair.c_if, C_ADDR, H_ADDR, str(PORT), tag)


def test_the_veth_wall_drops_packet_socket_frames_of_unenrolled_cgroups(
    kernel_scope: tuple[Path, Path], pair: Pair
) -> None:
    parent, pin_dir = kernel_scope
    attach_egress(parent, pin_dir)
    foreign, agent = parent / "foreign", parent / "agent"
    foreign.mkdir()
    agent.mkdir()
    maps = PinnedMaps(pin_dir)
    try:
        # Without the filter the frames arrive (what escape 3 was): the test can see one.
        listener = Listener(pair)
        assert _raw(pair, foreign, "before") == "sent sent"
        assert any(line.startswith("before-raw") for line in listener.received())

        assert pair.attach(pin_dir) == "attached"
        assert pair.attach(pin_dir) == "kept"
        maps.put_policy(cgroup_id(agent), Policy(agent_id=7))
        maps.ensure_counters(7)
        maps.allow(7, H_ADDR, 2**63)
        listener = Listener(pair)
        assert _raw(pair, foreign, "foreign") == "sent sent"  # the frames are written...
        assert _raw(pair, agent, "agent") == "sent sent"  # ...enrolled or not
        inet = pair.run_in_c(agent, INET_SENDER, H_ADDR, str(PORT), "agent")
        got = listener.received()
        assert inet == "sent"
        assert not [line for line in got if "-raw" in line]  # ...and none left the veth
        # Each dropped frame is a denial: the agent's count and the unenrolled one.
        assert maps.counters(7).denied >= 40 and maps.unenrolled().denied >= 40
        # The enrolled agent's own socket works, ARP included (the namespaces start with
        # empty neighbour tables).
        assert [line for line in got if line.startswith("agent-inet")]
    finally:
        maps.close()

"""The egress firewall against the real kernel, real containers and test hosts the tests own.

Each test gets its own parent cgroup (CLAWKER_CGROUP_PARENT), pin directory
(CLAWKER_BPF_PIN_DIR), control plane, network namespace of test hosts and upstream resolver
(CLAWKER_DNS_UPSTREAM), and removes exactly those at teardown. Probes run inside the agent
container with `docker exec`, which joins the container's cgroup like any process there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from bpf.libbpf import BpfError
from bpf.loader import (
    attach_egress,
    cgroup2_root,
    cgroup_id,
    detach_egress,
    load_object,
    open_object,
)
from bpf.maps import PinnedMaps, Policy
from reconciler.controlplane import lifecycle
from reconciler.controlplane.api.channel import ApiError, call
from reconciler.controlplane.paths import StatePaths
from tests.cleanup import remove_test_objects
from tests.integration.conftest import Scope
from tests.integration.dockerexec import exec_in
from tests.integration.testhosts import LISTEN_PORT, HostNamespace, UpstreamStub, make_test_hosts

pytestmark = [pytest.mark.docker, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]

# Runs inside the container: one JSON list of operations in, one JSON list of results out.
PROBE = textwrap.dedent("""\
    import errno, json, socket, struct, sys
    def run(op):
        kind = op["op"]
        if kind == "resolve":
            infos = socket.getaddrinfo(op["name"], None, socket.AF_INET, socket.SOCK_STREAM)
            return {"addresses": sorted({i[4][0] for i in infos})}
        if kind == "connect":
            family = socket.AF_INET6 if ":" in op["ip"] else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect((op["ip"], op["port"]))
                return {"data": s.recv(100).decode()}
        if kind == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"x", (op["ip"], op["port"]))
                return {}
        if kind == "socket":
            socket.socket(op["family"], op["type"], op["proto"]).close()
            return {}
        if kind == "dns_udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(bytes.fromhex(op["query"]), (op["server"], op.get("port", 53)))
                data, source = s.recvfrom(65535)
                return {"reply": data.hex(), "source": list(source)}
        if kind == "dns_tcp":
            with socket.create_connection((op["server"], op.get("port", 53)), timeout=5) as s:
                query = bytes.fromhex(op["query"])
                s.sendall(struct.pack("!H", len(query)) + query)
                (n,) = struct.unpack("!H", s.recv(2))
                data = b""
                while len(data) < n:
                    data += s.recv(n - len(data))
                return {"reply": data.hex()}
        raise ValueError(kind)
    results = []
    for op in json.loads(sys.argv[1]):
        try:
            results.append({"ok": True, **run(op)})
        except socket.gaierror as e:
            results.append({"ok": False, "gai": e.errno})
        except OSError as e:
            name = errno.errorcode.get(e.errno, "") if e.errno else type(e).__name__
            results.append({"ok": False, "errno": name})
    print(json.dumps(results))
""")

EPERM = {"ok": False, "errno": "EPERM"}
AF_INET, AF_INET6, SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = 2, 10, 1, 2, 3
IPPROTO_ICMP = 1
IPPROTO_UDPLITE = 136


def resolve(name: str) -> dict[str, Any]:
    return {"op": "resolve", "name": name}


def connect(ip: str, port: int = LISTEN_PORT) -> dict[str, Any]:
    return {"op": "connect", "ip": ip, "port": port}


def dns_query(name: str, qtype: str, *, tcp: bool = False) -> dict[str, Any]:
    packet = DNSRecord.question(name, qtype).pack().hex()
    return {"op": "dns_tcp" if tcp else "dns_udp", "query": packet, "server": "127.0.0.11"}


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Firewalled:
    scope: Scope
    hosts: HostNamespace
    upstream: UpstreamStub
    names: dict[str, str]  # role -> test name
    cgroup_parent: str
    pin_dir: Path

    @property
    def container(self) -> str:
        return f"clawker.{self.scope.project}.dev"

    def ip(self, role: str) -> str:
        return self.hosts.addresses[role]

    def write_spec(self, *roles: str) -> Path:
        domains = ", ".join(self.names[r] for r in roles)
        return self.scope.write_spec(f"""\
            apiVersion: clawker.dev/v1alpha1
            kind: Project
            metadata: {{name: PROJECT}}
            spec:
              workspace: {{path: ./ws, mode: bind}}
              build: {{harness: none}}
              security:
                firewall: {{add_domains: [{domains}]}}
            ---
            apiVersion: clawker.dev/v1alpha1
            kind: Agent
            metadata: {{name: dev, project: PROJECT}}
            spec:
              command: [sleep, infinity]
            """)

    def apply(self, *roles: str) -> subprocess.CompletedProcess[str]:
        return self.scope.clawker("apply", "-f", str(self.write_spec(*roles)), check=0)

    def probe(self, *ops: dict[str, Any], user: str = "root") -> list[dict[str, Any]]:
        api = self.scope.api
        code, out = exec_in(
            api,
            self.container,
            ["python3", "-c", PROBE, json.dumps(list(ops))],
            user=user,
            environment={"RES_OPTIONS": "timeout:2 attempts:1"},
        )
        assert code == 0, out
        results: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
        return results

    def cp(self, method: str, **params: Any) -> Any:
        return call(self.paths.socket, method, params)  # the raw wire, as the CP answers it

    @property
    def paths(self) -> StatePaths:
        return StatePaths(Path(self.scope.env["CLAWKER_STATE_DIR"]))

    def container_cgroup_id(self) -> int:
        info = self.scope.inspect(self.container)
        return cgroup_id(cgroup2_root() / self.cgroup_parent.strip("/") / info["Id"])

    def wait_enrolled(self, timeout: float = 60.0) -> dict[str, Any]:
        """The CP's status once it enrolled the container's *current* cgroup (asking for
        firewall status triggers nothing: the CP must find the start by itself)."""

        def enrolled() -> dict[str, Any] | None:
            try:
                want = self.container_cgroup_id()
                status = self.cp("firewall_status")
            except (OSError, ApiError):
                return None
            for agent in status["agents"]:
                if want in agent["enrolledCgroups"] and agent["enrolled"]:
                    mine: dict[str, Any] = agent
                    return mine
            return None

        found: dict[str, Any] = wait_for(
            enrolled, timeout, f"{self.container}'s current cgroup to be enrolled"
        )
        return found

    def kill_controlplane(self) -> None:
        pid = int(self.paths.pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10, "the CP to die")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.fixture
def fw(scope: Scope) -> Iterator[Firewalled]:
    run_id = scope.run_id
    # The scope fixture gave this test its own parent cgroup and pin dir, and removes them.
    parent = scope.env["CLAWKER_CGROUP_PARENT"]
    pin_dir = Path(scope.env["CLAWKER_BPF_PIN_DIR"])
    hosts = make_test_hosts(run_id, ("ok", "blocked", "new"))
    suffix = f"{run_id}.clawker-test.invalid"
    names = {role: f"{role}.{suffix}" for role in hosts.addresses}
    upstream = UpstreamStub({names[r]: hosts.addresses[r] for r in names})
    scope.env.update(
        CLAWKER_DNS_UPSTREAM=f"{upstream.address[0]}:{upstream.address[1]}",
    )
    firewalled = Firewalled(scope, hosts, upstream, names, parent, pin_dir)
    try:
        yield firewalled
    finally:
        lifecycle.stop(firewalled.paths)
        remove_test_objects(run_id)
        upstream.close()
        hosts.close()


# -- scenarios ---------------------------------------------------------------------------------


def test_an_allowed_name_resolves_and_connects_and_nothing_else_gets_out(fw: Firewalled) -> None:
    fw.apply("ok")
    ok, blocked = fw.ip("ok"), fw.ip("blocked")
    for user in ("root", "claude"):  # root inside the container is filtered like anyone
        results = fw.probe(
            resolve(fw.names["ok"]),
            connect(ok),
            resolve(fw.names["blocked"]),
            connect(blocked),  # its address was never resolved through an allowed name
            {"op": "udp", "ip": blocked, "port": 9},
            connect(f"::ffff:{blocked}"),  # v4-mapped follows IPv4
            connect(f"::ffff:{ok}"),
            connect("fd00::1"),  # native IPv6: refused
            {"op": "socket", "family": AF_INET, "type": SOCK_RAW, "proto": IPPROTO_ICMP},
            {"op": "socket", "family": AF_INET, "type": SOCK_DGRAM, "proto": IPPROTO_ICMP},
            user=user,
        )
        assert results[0] == {"ok": True, "addresses": [ok]}, user
        assert results[1] == {"ok": True, "data": f"hello from {ok}\n"}, user
        assert results[2] == {"ok": False, "gai": -2}, user  # EAI_NONAME: NXDOMAIN
        assert results[3:6] == [EPERM, EPERM, EPERM], user
        assert results[6] == {"ok": True, "data": f"hello from {ok}\n"}, user
        assert results[7:9] == [EPERM, EPERM], user
        assert results[9] == {"ok": False, "errno": "EACCES"}, user  # ping_group_range is shut
    assert fw.hosts.reached("blocked") == []
    assert (fw.names["blocked"], "A") not in fw.upstream.queries  # refused before upstream

    # The resolver's answers, as a DNS client sees them (UDP and TCP, through 127.0.0.11).
    nx, aaaa, tcp = fw.probe(
        dns_query(fw.names["blocked"], "A"),
        dns_query(fw.names["ok"], "AAAA"),
        dns_query(fw.names["ok"], "A", tcp=True),
    )
    assert nx["source"] == ["127.0.0.11", 53]  # the reply looks like it came from the server
    assert DNSRecord.parse(bytes.fromhex(nx["reply"])).header.rcode == RCODE.NXDOMAIN
    empty = DNSRecord.parse(bytes.fromhex(aaaa["reply"]))
    assert (empty.header.rcode, empty.rr) == (RCODE.NOERROR, [])
    answer = DNSRecord.parse(bytes.fromhex(tcp["reply"]))
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in answer.rr] == [("A", ok)]

    status = json.loads(
        fw.scope.clawker("firewall", "status", "--agent", "dev", "-o", "json", check=0).stdout
    )
    (agent,) = status["agents"]
    assert agent["agent"] == f"{fw.scope.project}/dev"
    assert agent["enrolledCgroups"] == [fw.container_cgroup_id()]
    assert agent["allowed"] >= 4 and agent["denied"] >= 8  # raw and ping: refused before BPF
    listing = json.loads(fw.scope.clawker("firewall", "list", "-o", "json", check=0).stdout)
    assert listing[0]["domains"] == [fw.names["ok"]]
    assert list(listing[0]["addresses"]) == [ok]
    assert listing[0]["addresses"][ok] > 250  # the record's TTL (300 s), at least 60 s
    text = fw.scope.clawker("firewall", "status", check=0).stdout
    assert f"{fw.scope.project}/dev" in text and "yes (1)" in text


def test_after_a_docker_restart_the_same_holds_without_any_clawker_command(
    fw: Firewalled,
) -> None:
    fw.apply("ok")
    before = fw.container_cgroup_id()
    subprocess.run(["docker", "restart", "-t", "1", fw.container], check=True, capture_output=True)
    after = fw.container_cgroup_id()
    assert after != before  # a restart is a new cgroup: it must be enrolled again
    fw.wait_enrolled()
    results = fw.probe(
        resolve(fw.names["ok"]),
        connect(fw.ip("ok")),
        resolve(fw.names["blocked"]),
        connect(fw.ip("blocked")),
    )
    assert results == [
        {"ok": True, "addresses": [fw.ip("ok")]},
        {"ok": True, "data": f"hello from {fw.ip('ok')}\n"},
        {"ok": False, "gai": -2},
        EPERM,
    ]
    policies = PinnedMaps(fw.pin_dir)
    try:
        assert before not in policies.policies()  # the stale id was removed
    finally:
        policies.close()


def test_killing_the_control_plane_opens_nothing_and_its_restart_readopts(
    fw: Firewalled,
) -> None:
    fw.apply("ok")
    ok, blocked = fw.ip("ok"), fw.ip("blocked")
    assert fw.probe(resolve(fw.names["ok"]))[0]["ok"]

    fw.kill_controlplane()
    # Enforcement is pinned in the kernel: what was allowed stays, nothing else opens, and
    # without its resolver no name resolves at all.
    results = fw.probe(
        connect(ok), connect(blocked), resolve(fw.names["ok"]), resolve(fw.names["blocked"])
    )
    assert results[0] == {"ok": True, "data": f"hello from {ok}\n"}
    assert results[1] == EPERM
    assert not results[2]["ok"] and not results[3]["ok"]

    # A start while no CP runs: the new cgroup is unknown, so it gets nothing at all, not even
    # the addresses its agent resolved before.
    reached = len(fw.hosts.accepted)
    subprocess.run(["docker", "restart", "-t", "1", fw.container], check=True, capture_output=True)
    results = fw.probe(
        connect(ok), connect(blocked), resolve(fw.names["ok"]), connect("127.0.0.1", 7700)
    )
    assert results[:2] == [EPERM, EPERM]
    assert not results[2]["ok"]  # even DNS is refused
    assert results[3] == EPERM  # loopback too: an unknown cgroup gets nothing
    assert len(fw.hosts.accepted) == reached

    fw.scope.clawker("controlplane", "up", check=0)
    fw.wait_enrolled()
    results = fw.probe(resolve(fw.names["ok"]), connect(ok), connect(blocked))
    assert results == [
        {"ok": True, "addresses": [ok]},
        {"ok": True, "data": f"hello from {ok}\n"},
        EPERM,
    ]
    assert fw.hosts.reached("blocked") == []


def test_a_bypass_lets_traffic_through_and_ends_on_time_even_without_the_control_plane(
    fw: Firewalled,
) -> None:
    fw.apply("ok")
    blocked = fw.ip("blocked")
    assert fw.probe(connect(blocked)) == [EPERM]

    out = fw.scope.clawker("firewall", "bypass", "4s", "--agent", "dev", check=0).stdout
    assert "bypasses the firewall for" in out
    assert fw.probe(connect(blocked)) == [{"ok": True, "data": f"hello from {blocked}\n"}]
    status = json.loads(fw.scope.clawker("firewall", "status", "-o", "json", check=0).stdout)
    assert 0 < status["agents"][0]["bypassSeconds"] <= 4

    fw.kill_controlplane()  # the kernel holds the deadline: no CP is needed to end it
    wait_for(lambda: fw.probe(connect(blocked)) == [EPERM], 15, "the bypass to end")

    fw.scope.clawker("controlplane", "up", check=0)
    fw.wait_enrolled()  # the persisted deadline has passed: re-enrolling does not reopen
    assert fw.probe(connect(blocked)) == [EPERM]
    status = json.loads(fw.scope.clawker("firewall", "status", "-o", "json", check=0).stdout)
    assert status["agents"][0]["bypassSeconds"] == 0


def test_adding_a_domain_in_the_spec_opens_it_without_a_recreate(fw: Firewalled) -> None:
    fw.apply("ok")
    container_id = fw.scope.inspect(fw.container)["Id"]
    assert fw.probe(resolve(fw.names["new"])) == [{"ok": False, "gai": -2}]

    spec = fw.write_spec("ok", "new")
    diff = fw.scope.clawker("diff", "-f", str(spec), check=1)
    assert "~ update in place (live)" in diff.stdout
    assert f"~ firewall allowlist: + {fw.names['new']}" in diff.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in diff.stdout
    applied = fw.scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{fw.scope.project}/dev configured" in applied.stdout
    assert fw.scope.inspect(fw.container)["Id"] == container_id  # applied live
    new = fw.ip("new")
    assert fw.probe(resolve(fw.names["new"]), connect(new)) == [
        {"ok": True, "addresses": [new]},
        {"ok": True, "data": f"hello from {new}\n"},
    ]
    assert fw.scope.clawker("diff", "-f", str(spec), check=0)

    # Narrowing is immediate too: the removed domain's addresses are revoked at once.
    fw.apply("ok")
    assert fw.probe(connect(new), resolve(fw.names["new"])) == [EPERM, {"ok": False, "gai": -2}]
    assert fw.scope.inspect(fw.container)["Id"] == container_id


# -- the kernel half on its own ---------------------------------------------------------------


@pytest.fixture
def kernel_scope(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    run_id = uuid.uuid4().hex[:10]
    cgroup = cgroup2_root() / f"clawker-test-k{run_id}"
    pin_dir = Path(f"/sys/fs/bpf/clawker-test-k{run_id}")
    try:
        yield cgroup, pin_dir
    finally:
        detach_egress(pin_dir)
        if cgroup.is_dir():
            for child in cgroup.iterdir():
                if child.is_dir():
                    child.rmdir()
            cgroup.rmdir()


def _connect_from(cgroup: Path, port: int) -> str:
    """connect() to 127.0.0.1:port from a child process placed in `cgroup`."""
    code = (
        "import errno, socket, sys\n"
        f"open('{cgroup}/cgroup.procs', 'w').write(str(__import__('os').getpid()))\n"
        "s = socket.socket()\n"
        f"try:\n    s.connect(('127.0.0.1', {port})); print('ok')\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
    )
    return subprocess.run(
        ["python3", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_attaching_is_idempotent_and_an_unknown_cgroup_gets_nothing(
    kernel_scope: tuple[Path, Path],
) -> None:
    cgroup, pin_dir = kernel_scope
    first = attach_egress(cgroup, pin_dir)
    assert set(first.programs.values()) == {"attached"}
    again = attach_egress(cgroup, pin_dir)
    assert set(again.programs.values()) == {"kept"}

    child = cgroup / "unknown"
    child.mkdir()
    listener = subprocess.Popen(
        [
            "python3",
            "-c",
            "import socket,time;s=socket.socket();s.bind(('127.0.0.1',0));"
            "s.listen();print(s.getsockname()[1],flush=True);time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None
        port = int(listener.stdout.readline())
        assert _connect_from(child, port) == "EPERM"  # not even loopback
        maps = PinnedMaps(pin_dir)
        try:
            assert maps.unenrolled().denied >= 1
            maps.put_policy(cgroup_id(child), Policy(agent_id=7))
            assert _connect_from(child, port) == "ok"  # enrolled: loopback is allowed
        finally:
            maps.close()
    finally:
        listener.kill()
        listener.wait()


def test_a_program_the_verifier_refuses_fails_with_the_verifiers_log(tmp_path: Path) -> None:
    source = tmp_path / "bad.bpf.c"
    source.write_text(
        textwrap.dedent("""\
        #include <linux/bpf.h>
        #include <bpf/bpf_helpers.h>
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1);
                 __type(key, __u32); __type(value, __u32); } m SEC(".maps");
        SEC("cgroup/connect4")
        int bad(struct bpf_sock_addr *ctx) {
            __u32 k = 0;
            __u32 *v = bpf_map_lookup_elem(&m, &k);
            return *v;  /* no NULL check: the verifier must refuse this */
        }
        char LICENSE[] SEC("license") = "Proprietary";
        """)
    )
    obj = tmp_path / "bad.bpf.o"
    machine = subprocess.run(
        ["gcc", "-dumpmachine"], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(
        [
            "clang",
            "-O2",
            "-g",
            "-target",
            "bpf",
            f"-I/usr/include/{machine.strip()}",
            "-c",
            str(source),
            "-o",
            str(obj),
        ],
        check=True,
    )
    with open_object(obj) as handle, pytest.raises(BpfError) as refused:
        load_object(handle, "bad.bpf.o")
    message = str(refused.value)
    assert "the kernel refused it" in message
    assert "invalid mem access" in message  # the verifier's own words
    assert refused.value.errno != 0


def test_the_firewall_log_shows_what_was_refused_and_suggest_the_names_to_add(
    fw: Firewalled,
) -> None:
    fw.scope.env["CLAWKER_DNS_SUBDOMAIN_LIMIT"] = "3"
    fw.apply("ok")
    follower = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "firewall", "log", "--agent", "dev", "-f"],
        stdout=subprocess.PIPE,
        text=True,
        env=fw.scope.env,
        cwd=REPO,
    )
    blocked = fw.ip("blocked")
    wild = f".wild.{fw.scope.run_id}.clawker-test.invalid"
    fw.scope.clawker("firewall", "add", wild, "--agent", "dev", check=0)
    answers = fw.probe(*(dns_query(f"s{i}{wild}", "A") for i in range(5)))
    codes = [DNSRecord.parse(bytes.fromhex(a["reply"])).header.rcode for a in answers]
    assert codes == [RCODE.NXDOMAIN] * 3 + [RCODE.REFUSED] * 2  # upstream's answer, then capped
    results = fw.probe(
        connect(blocked),
        resolve(fw.names["blocked"]),
        # UDP-Lite: refused by sock_create (ping sockets are refused before it, by the sysctl)
        {"op": "socket", "family": AF_INET, "type": SOCK_DGRAM, "proto": IPPROTO_UDPLITE},
        user="claude",
    )
    assert results[0] == EPERM and results[1] == {"ok": False, "gai": -2}, results
    assert results[2] == EPERM, results

    def logged() -> list[dict[str, Any]] | None:
        out = fw.scope.clawker("firewall", "log", "--agent", "dev", "-o", "json", check=0)
        entries: list[dict[str, Any]] = json.loads(out.stdout)
        hooks = {e["hook"] for e in entries if e["kind"] == "denied"}
        named = any(e["kind"] == "nxdomain" for e in entries)
        return entries if named and {"connect4", "sock_create"} <= hooks else None

    entries = wait_for(logged, 10, "the refusals to reach the firewall log")
    denied = [e for e in entries if e["kind"] == "denied" and e["address"]]
    assert denied[0]["address"] == blocked and denied[0]["port"] == LISTEN_PORT
    assert (denied[0]["protocol"], denied[0]["hook"]) == ("tcp", "connect4")
    assert denied[0]["uid"] == 1001 and denied[0]["command"] == "python3"  # from the kernel
    assert any(e["kind"] == "nxdomain" and e["name"] == fw.names["blocked"] for e in entries)
    assert any(
        e["hook"] == "sock_create" and e["protocol"] == "socket inet/dgram/136" for e in entries
    )
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)  # newest last

    assert [e["name"] for e in entries if e["kind"] == "throttled"] == [
        f"s3{wild}",
        f"s4{wild}",
    ]
    text = fw.scope.clawker("firewall", "log", "--agent", "dev", check=0).stdout
    assert f"{blocked}:{LISTEN_PORT} tcp" in text and "uid 1001 python3" in text
    try:  # the follower printed the same, as it happened
        followed = (
            [follower.stdout.readline() for _ in range(len(entries))] if follower.stdout else []
        )
    finally:
        follower.terminate()
        follower.wait(10)
    assert any(f"throttled  s3{wild} (A)" in line for line in followed)
    assert any(f"{blocked}:{LISTEN_PORT} tcp" in line for line in followed)
    diff = fw.scope.clawker("firewall", "suggest", "--agent", "dev", check=0).stdout
    assert f"        - {fw.names['ok']}\n" in diff
    assert f"+       - {fw.names['blocked']}" in diff
    assert f"{blocked}:{LISTEN_PORT} tcp" in diff


def test_an_unrelated_record_in_an_allowed_answer_opens_nothing(fw: Firewalled) -> None:
    """The upstream answers the allowed name with its address *and* `other.name A <blocked>`:
    only the queried name's chain counts, so the blocked address stays closed."""
    fw.upstream.smuggled[fw.names["ok"]] = ("other.clawker-test.invalid", fw.ip("blocked"))
    fw.apply("ok")
    (answer,) = fw.probe(dns_query(fw.names["ok"], "A"))
    records = DNSRecord.parse(bytes.fromhex(answer["reply"])).rr
    assert [(str(rr.rname).rstrip("."), str(rr.rdata)) for rr in records] == [
        (fw.names["ok"], fw.ip("ok"))
    ]
    assert fw.probe(connect(fw.ip("blocked"))) == [EPERM]
    assert fw.hosts.reached("blocked") == []
    listing = json.loads(fw.scope.clawker("firewall", "list", "-o", "json", check=0).stdout)
    assert list(listing[0]["addresses"]) == [fw.ip("ok")]


# -- clawker verify ------------------------------------------------------------------------------

# Every probe: the firewall closes them all.
CLOSED_PROBES = {
    "docker-dns-udp",
    "docker-dns-tcp",
    "direct-ip-tcp",
    "direct-ip-udp",
    "ipv4-mapped",
    "ipv6",
    "unlisted-name",
    "dns-over-tcp",
    "packet-socket",
    "raw-socket",
    "ping-socket",
    "gateway",
    "peer",
}


def verify_results(scope: Scope, *args: str) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
    """`clawker verify -o json`: its exit code and results by (agent name, probe)."""
    proc = scope.clawker("verify", *args, "-o", "json")
    assert proc.returncode in (0, 1) and proc.stdout.startswith("["), proc.stdout + proc.stderr
    results = json.loads(proc.stdout)
    return proc.returncode, {(r["agent"].split("/")[1], r["probe"]): r for r in results}


def assert_verify_closed(scope: Scope, agent: str) -> None:
    """Every probe this firewall closes passes for `agent` (peer: passes or has no peer)."""
    _, results = verify_results(scope, "--agent", agent)
    for probe in CLOSED_PROBES:
        result = results[(agent, probe)]
        ok = ("PASS", "SKIP") if probe == "peer" else ("PASS",)
        assert result["verdict"] in ok, result


def _two_agents(fw: Firewalled) -> Path:
    return fw.scope.write_spec(f"""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {{name: PROJECT}}
        spec:
          workspace: {{path: ./ws, mode: bind}}
          build: {{harness: none}}
          security:
            firewall: {{add_domains: [{fw.names["ok"]}]}}
        ---
        apiVersion: clawker.dev/v1alpha1
        kind: Agent
        metadata: {{name: dev, project: PROJECT}}
        spec:
          command: [sleep, infinity]
        ---
        apiVersion: clawker.dev/v1alpha1
        kind: Agent
        metadata: {{name: snap, project: PROJECT}}
        spec:
          command: [sleep, infinity]
          workspace: {{mode: snapshot}}
        """)


def test_verify_passes_every_probe_the_firewall_closes_in_a_bind_and_a_snapshot_agent(
    fw: Firewalled,
) -> None:
    fw.scope.clawker("apply", "-f", str(_two_agents(fw)), check=0)
    code, results = verify_results(fw.scope)
    for agent in ("dev", "snap"):
        for probe in CLOSED_PROBES:
            result = results[(agent, probe)]
            assert result["verdict"] == "PASS", result
    assert code == 0
    assert fw.hosts.accepted == []  # the test's own hosts saw nothing either
    text = fw.scope.clawker("verify", "--agent", "dev").stdout
    assert "direct-ip-tcp" in text and "PASS" in text and "snap" not in text


def test_verify_sees_the_escapes_of_an_unfiltered_agent_and_nothing_leaves_the_machine(
    fw: Firewalled,
) -> None:
    fw.apply("ok")
    fw.scope.clawker("firewall", "disable", "--agent", "dev", check=0)
    code, results = verify_results(fw.scope, "--agent", "dev")
    assert code == 1
    for probe in ("direct-ip-tcp", "direct-ip-udp", "ipv4-mapped", "gateway"):
        assert results[("dev", probe)]["verdict"] == "ESCAPE", results[("dev", probe)]
    # Not the firewall's to open: the container's ping_group_range and seccomp profile.
    for probe in ("ping-socket", "packet-socket", "raw-socket"):
        assert results[("dev", probe)]["verdict"] == "PASS", results[("dev", probe)]
    # Docker's resolver answered the container's own name from its records: nothing forwarded.
    assert results[("dev", "unlisted-name")]["verdict"] == "ESCAPE"
    assert results[("dev", "peer")]["verdict"] == "SKIP"  # the only agent
    assert not [q for q in fw.upstream.queries if q[0].startswith("clawker.")]
    fw.scope.clawker("firewall", "enable", "--agent", "dev", check=0)
    _, again = verify_results(fw.scope, "--agent", "dev")
    assert all(again[("dev", p)]["verdict"] == "PASS" for p in CLOSED_PROBES - {"peer"})


def test_verify_passes_for_an_agent_with_the_harness_floor(fw: Firewalled) -> None:
    spec = fw.scope.write_spec("""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {name: PROJECT}
        spec:
          workspace: {path: ./ws, mode: bind}
          build: {harness: claude}
        ---
        apiVersion: clawker.dev/v1alpha1
        kind: Agent
        metadata: {name: dev, project: PROJECT}
        spec:
          command: [sleep, infinity]
        """)
    fw.scope.clawker("apply", "-f", str(spec), check=0)
    domains = json.loads(fw.scope.clawker("firewall", "list", "-o", "json", check=0).stdout)
    assert "api.anthropic.com" in domains[0]["domains"]  # the floor, exact names only
    assert not [d for d in domains[0]["domains"] if d.startswith(".")]
    assert_verify_closed(fw.scope, "dev")

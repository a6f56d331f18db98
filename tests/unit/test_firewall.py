"""The firewall's pure parts: allowlists, the resolver's answers, the plan, durations, layouts.

No kernel, no sockets: the resolver is driven through its Answerer with a fake upstream.
"""

from __future__ import annotations

import ctypes
import io
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from dnslib import CNAME, QTYPE, RCODE, RR, TXT, A, DNSRecord

from bpf.libbpf import libbpf
from bpf.loader import default_object, open_object
from bpf.maps import (
    DENIAL_HOOKS,
    MAP_LAYOUTS,
    PACKET_HOOKS,
    AllowKey,
    Counters,
    Denial,
    DnsOrigin,
    Policy,
    ip4_from_key,
    ip4_key,
    port_from_key,
    port_key,
)
from cli.firewall_verbs import (
    format_duration,
    log_line,
    parse_duration,
    render_suggestion,
    status_rows,
)
from cli.style import Style
from reconciler.controlplane.registry import AgentRuntimeSpec, Registry
from reconciler.docker.placement import under_parent
from reconciler.firewall.allowlist import (
    HARNESS_FLOOR,
    agent_id,
    allowlist_change,
    domain_allowed,
    effective_allowlist,
    matching_entry,
)
from reconciler.firewall.enforcement import (
    Firewall,
    FirewallConfig,
    FirewallError,
    _protocol,
    kernel_deadline,
)
from reconciler.firewall.journal import FirewallJournal
from reconciler.firewall.resolver import (
    Answerer,
    Asker,
    Resolution,
    SubdomainThrottle,
    host_upstream,
    parse_address,
)
from reconciler.firewall.state import AgentFirewall, BootInstant
from reconciler.firewall.suggest import suggest
from specs import DesiredAgent, load_specs

# -- allowlists ---------------------------------------------------------------------------------


def test_a_leading_dot_allows_the_apex_and_every_subdomain_and_nothing_else() -> None:
    allowlist = ("github.com", ".example.com")
    assert domain_allowed("github.com", allowlist)
    assert domain_allowed("GitHub.com.", allowlist)  # case and the root dot do not matter
    assert not domain_allowed("api.github.com", allowlist)  # no dot: exactly that name
    assert domain_allowed("example.com", allowlist)
    assert domain_allowed("a.b.example.com", allowlist)
    assert not domain_allowed("badexample.com", allowlist)
    assert not domain_allowed("example.com.evil.net", allowlist)


def _agent(tmp_path: Path, harness: str, domains: str) -> DesiredAgent:
    (tmp_path / "ws").mkdir(exist_ok=True)
    spec = tmp_path / "a.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {{name: p}}
        ---
        apiVersion: clawker.dev/v1alpha1
        kind: Agent
        metadata: {{name: dev, project: p}}
        spec:
          workspace: {{path: ./ws}}
          build: {{harness: {harness}}}
          security: {{firewall: {{add_domains: {domains}}}}}
        """)
    )
    return load_specs([str(spec)]).agents[0]


def test_the_allowlist_is_the_harness_floor_plus_the_specs_domains(tmp_path: Path) -> None:
    claude = _agent(tmp_path, "claude", "[github.com, api.anthropic.com]")
    allowlist = effective_allowlist(claude)
    assert set(allowlist) == {*HARNESS_FLOOR["claude"], "github.com"}
    assert list(allowlist) == sorted(allowlist)
    bare = _agent(tmp_path, "none", "[.example.com]")
    assert effective_allowlist(bare) == (".example.com",)


def test_allowlist_changes_read_as_plus_and_minus() -> None:
    assert allowlist_change(["a.com", "b.com"], ["b.com", "c.com"]) == "+ c.com, - a.com"
    assert allowlist_change(["a.com"], ["a.com"]) == ""


def test_an_agents_id_is_stable_and_64_bits() -> None:
    assert agent_id("p/dev") == agent_id("p/dev") != agent_id("p/other")
    assert 0 <= agent_id("p/dev") < 2**64


# -- the resolver's answers ---------------------------------------------------------------------


class FakeUpstream:
    address = ("192.0.2.53", 53)  # never contacted: ask() answers from a table

    def __init__(self, records: dict[str, list[tuple[str, int]]], fail: bool = False) -> None:
        self.records, self.fail = records, fail
        self.asked: list[str] = []

    def ask(self, query: bytes) -> bytes:
        request = DNSRecord.parse(query)
        name = str(request.q.qname).rstrip(".")
        self.asked.append(name)
        if self.fail:
            raise TimeoutError("timed out")
        reply = request.reply()
        for address, ttl in self.records.get(name, []):
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=ttl))
        return bytes(reply.pack())


AGENT = Asker("p/dev", agent_id("p/dev"), ("ok.test", ".wild.test"))


def _answerer(upstream: FakeUpstream, events: list[str]) -> Answerer:
    def identify(ip: str) -> Asker | None:
        return AGENT if ip == "172.30.0.2" else None

    def record(asker: Asker, resolution: Resolution) -> None:
        events.append(f"record {resolution.name} {resolution.addresses}")

    return Answerer(identify=identify, upstream=upstream, record=record)


def _ask(answerer: Answerer, name: str, qtype: str = "A", ip: str = "172.30.0.2") -> DNSRecord:
    reply = answerer.answer(DNSRecord.question(name, qtype).pack(), ip, max_size=None)
    return DNSRecord.parse(reply)


def test_an_allowed_name_is_forwarded_and_its_addresses_recorded_before_the_reply() -> None:
    upstream = FakeUpstream({"ok.test": [("10.213.1.2", 30), ("10.213.1.3", 600)]})
    events: list[str] = []
    reply = _ask(_answerer(upstream, events), "OK.test")
    assert reply.header.rcode == RCODE.NOERROR
    assert sorted(str(rr.rdata) for rr in reply.rr) == ["10.213.1.2", "10.213.1.3"]
    assert events == ["record ok.test (('10.213.1.2', 30), ('10.213.1.3', 600))"]
    assert upstream.asked == ["ok.test"]


def test_a_name_off_the_allowlist_is_nxdomain_and_never_leaves_the_host() -> None:
    upstream = FakeUpstream({"evil.test": [("10.213.1.9", 60)]})
    events: list[str] = []
    answerer = _answerer(upstream, events)
    assert _ask(answerer, "evil.test").header.rcode == RCODE.NXDOMAIN
    assert _ask(answerer, "notwild.test").header.rcode == RCODE.NXDOMAIN
    assert upstream.asked == [] and events == []
    assert answerer.answered["p/dev"] == {"allowed": 0, "denied": 2}


def test_aaaa_gets_an_empty_answer_and_subdomains_follow_the_dot_rule() -> None:
    upstream = FakeUpstream({"a.wild.test": [("10.213.1.4", 60)]})
    answerer = _answerer(upstream, [])
    empty = _ask(answerer, "a.wild.test", "AAAA")
    assert (empty.header.rcode, empty.rr) == (RCODE.NOERROR, [])
    assert [str(rr.rdata) for rr in _ask(answerer, "a.wild.test").rr] == ["10.213.1.4"]
    assert upstream.asked == ["a.wild.test"]  # AAAA was answered without asking


def test_unknown_clients_are_refused_and_upstream_failures_are_servfail() -> None:
    assert _ask(_answerer(FakeUpstream({}), []), "ok.test", ip="10.9.9.9").header.rcode == (
        RCODE.REFUSED
    )
    failing = _answerer(FakeUpstream({}, fail=True), [])
    assert _ask(failing, "ok.test").header.rcode == RCODE.SERVFAIL


def test_a_reply_too_big_for_udp_is_truncated() -> None:
    many = [(f"10.213.2.{i}", 60) for i in range(1, 60)]
    answerer = _answerer(FakeUpstream({"ok.test": many}), [])
    raw = answerer.answer(DNSRecord.question("ok.test").pack(), "172.30.0.2", max_size=None)
    assert len(raw) <= 512 and DNSRecord.parse(raw).header.tc == 1
    full = answerer.answer(DNSRecord.question("ok.test").pack(), "172.30.0.2", max_size=65535)
    assert len(DNSRecord.parse(full).rr) == 59


def test_garbage_gets_no_reply() -> None:
    assert _answerer(FakeUpstream({}), []).answer(b"\x00\x01", "172.30.0.2", max_size=None) == b""


def test_the_upstream_is_configurable_and_defaults_to_the_hosts_resolver(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search lan\nnameserver fd00::1\nnameserver 10.0.0.53\n")
    assert host_upstream("", conf) == ("10.0.0.53", 53)
    assert host_upstream("127.0.0.1:5300", conf) == ("127.0.0.1", 5300)
    assert parse_address("10.1.2.3") == ("10.1.2.3", 53)


# -- the CLI's pure parts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("0", 0)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "1.5h", "-3s", "h1"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_durations_print_short() -> None:
    assert [format_duration(s) for s in (4.2, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_status_rows_say_enrolment_filtering_and_counters() -> None:
    agent = {
        "agent": "p/dev",
        "enrolledCgroups": [12],
        "enabled": True,
        "bypassSeconds": 125.0,
        "allowed": 7,
        "denied": 2,
        "domains": 3,
        "addresses": 4,
        "dns": {"allowed": 5, "denied": 1},
    }
    assert status_rows({"agents": [agent]}) == [
        ["p/dev", "yes (1)", "bypass 2m05s", "7", "2", "3", "4", "5/1"]
    ]
    off = {**agent, "enrolledCgroups": [], "enabled": False}
    assert status_rows({"agents": [off]})[0][1:3] == ["no", "disabled"]


# -- the map layouts ---------------------------------------------------------------------------


def test_addresses_and_ports_are_kept_in_network_order() -> None:
    assert ip4_from_key(ip4_key("10.213.1.2")) == "10.213.1.2"
    assert bytes(ctypes.c_uint32(ip4_key("10.213.1.2"))) == bytes([10, 213, 1, 2])
    assert bytes(ctypes.c_uint16(port_key(53))) == b"\x00\x35"
    assert port_from_key(port_key(8080)) == 8080


def test_the_ctypes_mirrors_match_the_c_structs() -> None:
    sizes = {s.__name__: ctypes.sizeof(s) for s in (Policy, AllowKey, Counters, DnsOrigin)}
    assert sizes == {"Policy": 24, "AllowKey": 16, "Counters": 16, "DnsOrigin": 16}


def test_the_compiled_object_declares_the_maps_python_expects() -> None:
    """Opening (not loading) needs no privileges; the sizes come from the object's BTF."""
    path = default_object()
    assert path.is_file(), f"{path} is missing: run `make bpf`"
    lib = libbpf()
    with open_object(path) as obj:
        for name, (key_type, value_type) in MAP_LAYOUTS.items():
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            assert m, name
            assert lib.bpf_map__key_size(m) == ctypes.sizeof(key_type), name
            assert lib.bpf_map__value_size(m) == ctypes.sizeof(value_type), name


# -- agent names and persisted policy ----------------------------------------------------------


class MemoryStore:
    def __init__(self, *states: AgentFirewall) -> None:
        self.states = {s.agent_key: s for s in states}

    def firewall(self, agent_key: str) -> AgentFirewall | None:
        return self.states.get(agent_key)

    def put_firewall(self, state: AgentFirewall) -> None:
        self.states[state.agent_key] = state

    def firewalls(self) -> list[AgentFirewall]:
        return [self.states[k] for k in sorted(self.states)]

    def forget_firewall(self, agent_key: str) -> None:
        self.states.pop(agent_key, None)


def _firewall(store: MemoryStore) -> Firewall:
    config = FirewallConfig("/clawker", Path("/sys/fs/bpf/unused"), ("127.0.0.1", 53))
    return Firewall(config, store, clock=lambda: 1000.0)


def test_an_agent_is_named_by_key_or_by_a_unique_name() -> None:
    fw = _firewall(
        MemoryStore(AgentFirewall("a/dev"), AgentFirewall("b/dev"), AgentFirewall("a/x"))
    )
    assert fw.resolve_agent("a/dev") == "a/dev"
    assert fw.resolve_agent("x") == "a/x"
    with pytest.raises(FirewallError, match="ambiguous: a/dev, b/dev"):
        fw.resolve_agent("dev")
    with pytest.raises(FirewallError, match="knows no agent 'nope'; known agents: a/dev"):
        fw.resolve_agent("nope")


def test_a_deleted_agent_is_forgotten_so_its_name_is_no_longer_ambiguous(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    registry.put_runtime(AgentRuntimeSpec("demo/dev", pre_run="true"))
    config = FirewallConfig("/clawker", Path("/sys/fs/bpf/unused"), ("127.0.0.1", 53))
    fw = Firewall(config, registry)
    fw.state("demo/dev", ["a.com"])
    fw.state("uxp/dev", ["b.com"])
    with pytest.raises(FirewallError, match="ambiguous: demo/dev, uxp/dev"):
        fw.resolve_agent("dev")

    fw.forget("demo/dev")
    registry.forget_runtime("demo/dev")

    assert fw.resolve_agent("dev") == "uxp/dev"
    assert registry.firewall("demo/dev") is None
    assert registry.runtime("demo/dev") == AgentRuntimeSpec("demo/dev")  # the empty default
    assert Registry(tmp_path / "registry.sqlite").firewalls() == [
        AgentFirewall("uxp/dev", ("b.com",))
    ]


def test_the_first_enrolment_seeds_the_allowlist_and_later_ones_keep_it() -> None:
    store = MemoryStore()
    fw = _firewall(store)
    assert fw.state("p/dev", ["B.com.", "a.com"]).domains == ("a.com", "b.com")
    assert fw.state("p/dev", ["other.com"]).domains == ("a.com", "b.com")
    assert store.firewalls() == [AgentFirewall("p/dev", ("a.com", "b.com"))]
    bypassed = AgentFirewall("p/dev", bypass_until=1030.0, bypass_boot="b1")
    assert bypassed.bypass_left(BootInstant("b1", 1000.0)) == 30.0
    assert bypassed.bypass_left(BootInstant("b2", 1000.0)) == 0.0  # a deadline of another boot


def test_a_kernel_deadline_saturates_instead_of_wrapping() -> None:
    assert kernel_deadline(1.5) == 1_500_000_000
    assert kernel_deadline(0) == kernel_deadline(-3) == kernel_deadline(float("nan")) == 0
    assert kernel_deadline(1e30) == kernel_deadline(float("inf")) == (1 << 64) - 1


# -- the resolver's weaker spots (issue 14) -----------------------------------------------------


class ScriptedUpstream:
    """Answers every query with the records the test scripted, whatever was asked."""

    address = ("192.0.2.53", 53)  # never contacted

    def __init__(self, records: list[RR]) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    def ask(self, query: bytes) -> bytes:
        request = DNSRecord.parse(query)
        self.asked.append((str(request.q.qname).rstrip("."), QTYPE[request.q.qtype]))
        reply = request.reply()
        for rr in self.records:
            reply.add_answer(rr)
        return bytes(reply.pack())


def _scripted(records: list[RR], **kwargs: Any) -> tuple[Answerer, list[str], ScriptedUpstream]:
    upstream = ScriptedUpstream(records)
    events: list[str] = []

    def record(asker: Asker, resolution: Resolution) -> None:
        events.append(" ".join(a for a, _ in resolution.addresses))

    answerer = Answerer(
        identify=lambda ip: AGENT if ip == "172.30.0.2" else None,
        upstream=upstream,
        record=record,
        **kwargs,
    )
    return answerer, events, upstream


def test_an_unrelated_a_record_in_the_answer_opens_nothing_and_is_not_passed_on() -> None:
    answerer, allowed, _ = _scripted(
        [
            RR("ok.test", QTYPE.A, rdata=A("10.213.1.2"), ttl=60),
            RR("other.name", QTYPE.A, rdata=A("10.213.9.9"), ttl=60),
        ]
    )
    reply = _ask(answerer, "ok.test")
    assert [(str(rr.rname), str(rr.rdata)) for rr in reply.rr] == [("ok.test.", "10.213.1.2")]
    assert allowed == ["10.213.1.2"]


def test_a_cname_chain_is_followed_and_only_its_names_count() -> None:
    answerer, allowed, _ = _scripted(
        [
            RR("cdn.edge.example", QTYPE.A, rdata=A("10.213.1.5"), ttl=60),  # out of order
            RR("ok.test", QTYPE.CNAME, rdata=CNAME("ok.cdn.example"), ttl=60),
            RR("ok.cdn.example", QTYPE.CNAME, rdata=CNAME("cdn.edge.example"), ttl=60),
            RR("loop.example", QTYPE.CNAME, rdata=CNAME("ok.test"), ttl=60),
            RR("elsewhere.example", QTYPE.A, rdata=A("10.213.9.9"), ttl=60),
        ]
    )
    reply = _ask(answerer, "ok.test")
    assert [QTYPE[rr.rtype] for rr in reply.rr] == ["CNAME", "CNAME", "A"]
    assert allowed == ["10.213.1.5"]


def test_only_a_is_forwarded_and_other_query_types_are_answered_empty_here() -> None:
    answerer, allowed, upstream = _scripted([RR("ok.test", QTYPE.TXT, rdata=TXT("x"), ttl=60)])
    for qtype in ("TXT", "MX", "NULL", "HTTPS", "SVCB", "ANY", "CNAME", "AAAA", "PTR"):
        reply = _ask(answerer, "ok.test", qtype)
        assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, []), qtype
    assert upstream.asked == [] and allowed == []
    _ask(answerer, "ok.test", "A")
    assert upstream.asked == [("ok.test", "A")]


def test_new_subdomains_under_a_leading_dot_entry_are_capped_per_minute_and_logged() -> None:
    now = [1000.0]
    journal = FirewallJournal()
    throttle = SubdomainThrottle(3, clock=lambda: now[0])
    answerer, _, upstream = _scripted([], journal=journal, throttle=throttle)
    codes = [_ask(answerer, f"s{i}.wild.test").header.rcode for i in range(5)]
    assert codes == [RCODE.NOERROR] * 3 + [RCODE.REFUSED] * 2
    assert _ask(answerer, "s1.wild.test").header.rcode == RCODE.NOERROR  # seen: no new cost
    assert _ask(answerer, "wild.test").header.rcode == RCODE.NOERROR  # the apex is exact
    assert _ask(answerer, "ok.test").header.rcode == RCODE.NOERROR  # exact names: no cap
    assert [name for name, _ in upstream.asked] == [
        "s0.wild.test",
        "s1.wild.test",
        "s2.wild.test",
        "s1.wild.test",
        "wild.test",
        "ok.test",
    ]
    throttled = [(e.kind, e.name) for e in journal.entries("p/dev")]
    assert throttled == [("throttled", "s3.wild.test"), ("throttled", "s4.wild.test")]
    now[0] += 61  # a minute later the window has moved on
    assert _ask(answerer, "s3.wild.test").header.rcode == RCODE.NOERROR


def test_nxdomain_names_are_journalled_newest_last() -> None:
    journal = FirewallJournal()
    answerer, _, _ = _scripted([], journal=journal)
    _ask(answerer, "evil.test")
    _ask(answerer, "also.evil.test", "TXT")
    entries = journal.entries("p/dev")
    assert [(e.kind, e.name, e.qtype) for e in entries] == [
        ("nxdomain", "evil.test", "A"),
        ("nxdomain", "also.evil.test", "TXT"),
    ]
    assert journal.entries("p/dev", after=entries[0].seq) == entries[1:]


def test_the_harness_floor_has_no_leading_dot_entries() -> None:
    for harness, floor in HARNESS_FLOOR.items():
        assert not [d for d in floor if d.startswith(".")], harness


def test_the_entry_that_allows_a_name_prefers_an_exact_one() -> None:
    allowlist = (".wild.test", "a.wild.test", "ok.test")
    assert matching_entry("a.wild.test", allowlist) == "a.wild.test"
    assert matching_entry("b.wild.test", allowlist) == ".wild.test"
    assert matching_entry("wild.test", allowlist) == ".wild.test"
    assert matching_entry("badwild.test", allowlist) is None


# -- the firewall log and suggest ---------------------------------------------------------------


def test_the_denial_mirror_matches_struct_denial() -> None:
    assert ctypes.sizeof(Denial) == 72
    assert Denial.comm.offset == 56 and Denial.port.offset == 36
    v4 = Denial(ip4=ip4_key("198.18.3.2"), port=port_key(8080))
    assert (v4.address, port_from_key(v4.port)) == ("198.18.3.2", 8080)
    v6 = Denial()
    v6.ip6[0], v6.ip6[3] = ip4_key("253.0.0.0"), ip4_key("0.0.0.1")
    assert v6.address == "fd00::1"
    assert Denial().address == ""


def _journal() -> FirewallJournal:
    clock = iter(float(t) for t in range(1_000, 2_000))
    journal = FirewallJournal(clock=lambda: next(clock))
    journal.add("p/dev", "nxdomain", name="new.example", qtype="A")
    journal.add(
        "p/dev",
        "denied",
        address="198.18.3.2",
        port=8080,
        protocol="tcp",
        hook="connect4",
        uid=1001,
        command="curl",
    )
    journal.add("p/dev", "nxdomain", name="new.example", qtype="A")
    journal.add("p/dev", "nxdomain", name="ok.test", qtype="A")  # allowed since
    journal.add("p/dev", "throttled", name="x9.wild.test", qtype="A")
    journal.add(
        "p/dev",
        "denied",
        protocol="socket packet/raw/768",
        hook="sock_create",
        uid=0,
        command="python3",
    )
    journal.add("p/other", "nxdomain", name="theirs.example", qtype="A")
    return journal


def test_suggest_adds_refused_names_and_lists_what_a_name_cannot_fix() -> None:
    journal = _journal()
    found = suggest(
        "p/dev", ("ok.test", ".wild.test", "api.anthropic.com"), journal.entries("p/dev")
    )
    assert found.spec_domains == ("ok.test", ".wild.test")  # the floor is not in the spec
    assert [(r.what, r.count) for r in found.add] == [("new.example", 2)]
    assert [(r.what, r.detail) for r in found.addresses] == [("198.18.3.2:8080 tcp", "curl")]
    assert [r.what for r in found.throttled] == ["x9.wild.test"]
    assert [r.what for r in found.sockets] == ["socket packet/raw/768"]
    text = render_suggestion(asdict(found), Style(io.StringIO()))
    assert "+       - new.example  # NXDOMAIN x2" in text
    assert "        - ok.test\n" in text and "theirs.example" not in text
    assert "#   198.18.3.2:8080 tcp x1 by curl" in text


def test_log_lines_say_what_was_refused_and_by_whom() -> None:
    entries = [e.as_dict() for e in _journal().entries("p/dev")]
    lines = [log_line(e, Style(io.StringIO())) for e in entries]
    assert lines[0].endswith("nxdomain   new.example (A)")
    assert lines[1].endswith("denied     198.18.3.2:8080 tcp  connect4  uid 1001 curl")
    assert lines[5].endswith("denied     socket packet/raw/768  sock_create  uid 0 python3")
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)  # newest last


def test_a_registration_and_its_token_are_recorded_together(tmp_path: Path) -> None:
    """One transaction: a replayed token records no registration, a first one both."""
    registry = Registry(tmp_path / "registry.sqlite")
    assert registry.register("c1", "p/dev", "clawker.p.dev", "thumb", jti="j1")
    assert registry.token_used("j1") and registry.is_registered("c1")
    assert not registry.register("c2", "p/dev", "clawker.p.dev", "thumb", jti="j1")
    assert not registry.is_registered("c2")


def test_packet_and_setsockopt_denials_are_named_for_the_log() -> None:
    wall = Denial(hook=7, family=2, type=1, protocol=6, ip4=ip4_key("198.18.3.2"))
    assert _protocol(wall) == "tcp"
    assert _protocol(Denial(hook=8, family=17, type=3, protocol=768)) == "socket packet/raw/768"
    assert _protocol(Denial(hook=8, family=2, type=2, protocol=17)) == "udp"
    assert _protocol(Denial(hook=6, family=10, type=41, protocol=57)) == "setsockopt 41/57"
    assert DENIAL_HOOKS[7] == "wall" and DENIAL_HOOKS[8] == "veth" and 7 in PACKET_HOOKS
    entry = {
        "at": 0.0,
        "kind": "denied",
        "address": "198.18.3.2",
        "port": 80,
        "protocol": "tcp",
        "hook": "wall",
        "uid": -1,
        "command": "",
    }
    assert log_line(entry, Style(io.StringIO())).endswith("198.18.3.2:80 tcp  wall  ")


def test_a_cgroup_parent_is_ours_when_it_is_the_parent_or_under_it() -> None:
    assert under_parent("/clawker", "/clawker") and under_parent("clawker/x", "/clawker")
    assert not under_parent("/clawker-other", "/clawker") and not under_parent("", "/clawker")
    assert not under_parent("/", "/clawker")

"""`clawker verify`'s pure parts: reading the probes' results, finding Docker's resolver, and
the in-container probe's DNS parsing (no container, no kernel)."""

from __future__ import annotations

import io
import json
import socket
import threading

import pytest
from dnslib import CNAME, QTYPE, RR, A, DNSRecord

from cli.style import Style
from cli.verify_verb import verify_rows
from reconciler.controlplane.verify import ESCAPE, PASS, judge, listening_on_127_0_0_11
from reconciler.in_container import verify_probe

PROC_UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
  1: 0B00007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1
  2: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2
  3: 0B00007F:0035 0200000A:1234 01 00000000:00000000 00:00000000 00000000     0        0 3
"""


def test_dockers_resolver_is_found_on_127_0_0_11_by_state() -> None:
    assert listening_on_127_0_0_11(PROC_UDP, "07") == [0xA1B2]
    assert listening_on_127_0_0_11(PROC_UDP, "0A") == []
    assert listening_on_127_0_0_11("", "07") == []


def test_a_probe_escapes_when_it_connects_is_answered_or_its_target_saw_it() -> None:
    assert judge("connect", {"error": "EPERM"}, False) == (PASS, "refused (EPERM)")
    assert judge("connect", {"connected": True}, False)[0] == ESCAPE
    assert judge("connect", {"error": "ETIMEDOUT"}, True)[0] == ESCAPE  # the target saw it
    assert judge("datagram", {"sent": True}, False) == (PASS, "sent, nothing arrived")
    assert judge("datagram", {"sent": True}, True)[0] == ESCAPE
    assert judge("dns", {"answered": True, "rcode": 3, "addresses": []}, False)[0] == PASS
    assert judge("dns", {"answered": True, "addresses": ["172.30.0.2"]}, False) == (
        ESCAPE,
        "answered 172.30.0.2",
    )
    assert judge("socket", {"created": True}, False)[0] == ESCAPE
    assert judge("socket", {"error": "EPERM"}, False)[0] == PASS


def test_the_probe_reads_a_dns_answer_with_compressed_names_and_a_cname() -> None:
    query = DNSRecord.parse(verify_probe._query("clawker.p.dev"))
    assert (str(query.q.qname), query.q.qtype) == ("clawker.p.dev.", QTYPE.A)
    reply = query.reply()
    reply.add_answer(RR("clawker.p.dev", QTYPE.CNAME, rdata=CNAME("x.p.dev"), ttl=60))
    reply.add_answer(RR("x.p.dev", QTYPE.A, rdata=A("172.30.0.2"), ttl=60))
    assert verify_probe._addresses(reply.pack()) == (0, ["172.30.0.2"])


def test_the_probe_script_runs_each_probe_and_reports_errors_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def answer() -> None:
        data, peer = server.recvfrom(512)
        reply = DNSRecord.parse(data).reply()
        reply.header.rcode = 3
        server.sendto(reply.pack(), peer)

    threading.Thread(target=answer, daemon=True).start()
    probes = [
        {"kind": "dns", "server": "127.0.0.1", "port": server.getsockname()[1], "name": "a.b"},
        {"kind": "socket", "family": 2, "type": 2, "proto": 17},
        {"kind": "tcp", "host": "127.0.0.1", "port": 1, "token": "t"},  # nobody listens
    ]
    try:
        assert verify_probe.main(["probe", json.dumps(probes)]) == 0
    finally:
        server.close()
    dns, sock, tcp = json.loads(capsys.readouterr().out)
    assert dns == {"answered": True, "rcode": 3, "addresses": []}
    assert sock == {"created": True}
    assert tcp == {"error": "ECONNREFUSED"}


def test_verify_rows_colour_only_the_verdict() -> None:
    rows = verify_rows(
        [{"agent": "p/dev", "probe": "gateway", "verdict": "PASS", "detail": "refused (EPERM)"}],
        Style(io.StringIO()),
    )
    assert rows == [["p/dev", "gateway", "PASS", "refused (EPERM)"]]

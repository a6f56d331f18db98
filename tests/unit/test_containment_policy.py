"""The container half of containment (pure): the capability policy and the seccomp profile an
agent container is created with. The kernel's side is tests/integration/test_containment.py."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.docker.seccomp import agent_seccomp_profile, profile
from reconciler.host.host_state import observe_host
from reconciler.loop.desired import desired_container
from specs.capabilities import ADDABLE_CAPABILITIES, AGENT_BASE_CAPABILITIES, REFUSED_CAPABILITIES
from tests.unit.test_workspace_layout import load_agent


def _refusals(name: str) -> list[list[tuple[int, int, int]]]:
    """For each rule refusing `name`: its (index, value, mask) argument tests."""
    found = []
    for rule in profile()["syscalls"]:
        if name in rule["names"] and rule["action"] == "SCMP_ACT_ERRNO":
            found.append(
                [
                    (a["index"], a.get("valueTwo", a["value"]), a["value"])
                    for a in rule.get("args", [])
                ]
            )
    return found


def test_the_profile_refuses_packet_and_raw_sockets_and_io_uring() -> None:
    sockets = _refusals("socket")
    assert [(0, 17, 17)] in sockets  # AF_PACKET, any type
    assert [(0, 2, 2), (1, 3, 0xF)] in sockets  # AF_INET, SOCK_RAW (flags masked off)
    assert [(0, 10, 10), (1, 3, 0xF)] in sockets  # AF_INET6, SOCK_RAW
    for name in ("io_uring_setup", "unshare", "setns", "open_by_handle_at", "bpf", "mount"):
        assert _refusals(name) == [[]], name
    assert len(_refusals("clone")) == 7  # one per namespace flag
    assert profile()["defaultAction"] == "SCMP_ACT_ALLOW"
    assert len(profile()["architectures"]) == 1  # foreign ABIs (socketcall) are refused


def test_an_agent_container_gets_the_base_capabilities_the_profile_and_no_ping(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    agent = load_agent(tmp_path, ws, "spec:\n  security: {cap_add: [SYS_NICE]}\n")
    spec = desired_container(agent, image="img", host=observe_host([agent], {}))
    assert spec.cap_drop == ("ALL",)
    assert set(spec.cap_add) == AGENT_BASE_CAPABILITIES | {"SYS_NICE"}
    assert "NET_RAW" not in spec.cap_add
    assert spec.security_opt == (f"seccomp={agent_seccomp_profile()}",)
    json.loads(spec.security_opt[0].removeprefix("seccomp="))
    assert spec.sysctls == {"net.ipv4.ping_group_range": "1 0"}


def test_the_capability_lists_agree() -> None:
    assert AGENT_BASE_CAPABILITIES <= ADDABLE_CAPABILITIES
    assert not ADDABLE_CAPABILITIES & set(REFUSED_CAPABILITIES)
    for needed in ("NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_TIME", "BPF", "PERFMON"):
        assert needed in REFUSED_CAPABILITIES
    for needed in ("SYS_MODULE", "SYS_RAWIO", "SYS_PTRACE", "DAC_READ_SEARCH", "SYSLOG"):
        assert needed in REFUSED_CAPABILITIES

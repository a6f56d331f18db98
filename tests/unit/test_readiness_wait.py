"""The readiness wait over a fake Docker port and a fake CP on a fake clock: what it asks of each.

Every poll is one CP call; Docker is asked about a container when it is first seen, every
RECHECK seconds after, and once before its verdict; not on every poll (that loaded dockerd while
it was still starting the other containers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from reconciler.controlplane.api.client import ControlPlaneClient
from reconciler.controlplane.api.messages import Phase, StartReport, StartStatus
from reconciler.docker.engine import DockerPort, RuntimeInfo
from reconciler.loop.ready import POLL, RECHECK, wait_ready


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakePort:
    def __init__(self, names: Sequence[str]) -> None:
        self.inspects: dict[str, int] = dict.fromkeys(names, 0)

    def inspect_runtime(self, name: str, network: str) -> RuntimeInfo:
        self.inspects[name] += 1
        return RuntimeInfo(f"id-{name}", name, {}, True, "t1", "10.0.0.2", 0)

    def logs_tail(self, name: str, lines: int = 20) -> str:
        return ""


class FakeCP:
    """Reports each container Ready once the clock passes its `ready_at`."""

    def __init__(self, clock: Clock, ready_at: dict[str, float]) -> None:
        self.clock, self.ready_at = clock, ready_at
        self.calls: list[tuple[list[str], bool]] = []

    def start_reports(self, ids: Sequence[str], *, firewall: bool = True) -> dict[str, StartReport]:
        self.calls.append((list(ids), firewall))
        reports = {}
        for cid in ids:
            phase = Phase.READY if self.clock() >= self.ready_at[cid] else Phase.INITIALIZING
            reports[cid] = StartReport(cid, StartStatus(cid, "p/a", "t1", phase))
        return reports


def test_one_cp_call_per_poll_and_few_inspects() -> None:
    clock = Clock()
    names = ["a", "b", "c"]
    port = FakePort(names)
    cp = FakeCP(clock, {"id-a": 0.3, "id-b": 2.5, "id-c": 2.5})
    verdicts = wait_ready(
        cast(DockerPort, port),
        cast(ControlPlaneClient, cp),
        names,
        network="net",
        clock=clock,
        sleep=clock.sleep,
    )
    assert all(v.ready for v in verdicts.values())
    polls = len(cp.calls)
    assert polls >= 2.5 / POLL - 1  # it kept asking the CP, not Docker
    assert all(firewall is False for _ids, firewall in cp.calls)
    assert cp.calls[-1][0] == ["id-b", "id-c"]  # a Ready agent is no longer asked about
    # a: first sight + before its verdict; b, c: first sight, every RECHECK s, before theirs.
    assert port.inspects["a"] == 2
    assert port.inspects["b"] <= 2 + 2.5 / RECHECK + 1
    assert sum(port.inspects.values()) < polls

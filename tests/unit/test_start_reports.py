"""The CP's `status` answers for all the containers asked at once: one registry query, one
read of the firewall's policy map, one listing of the parent cgroup and no Docker call per
container (`get agents` asks about every agent in one call; the cost used to be an inspect,
a /proc read and a full read of the map per container)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest

from bpf.maps import PinnedMaps, Policy
from reconciler.controlplane.api.messages import Phase, StartStatus
from reconciler.controlplane.identity.pki import ClawkerPKI
from reconciler.controlplane.registry import Registry
from reconciler.controlplane.runtime import controller as controller_module
from reconciler.controlplane.runtime.controller import RuntimeController
from reconciler.docker.engine import DockerPort
from reconciler.firewall.enforcement import Firewall, FirewallConfig
from tests.unit.test_firewall import MemoryStore

AGENTS = 20


class _CountingMaps:
    """The policy map, counting how often it is read whole."""

    def __init__(self, cgroups: set[int]) -> None:
        self.cgroups = cgroups
        self.reads = 0

    def policies(self) -> dict[int, Policy]:
        self.reads += 1
        return {cg: Policy() for cg in self.cgroups}


class _NoDocker:
    """Any Docker call fails the test: the answer must not need one per container."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the status answer called Docker ({name})")


def _cid(i: int) -> str:
    return f"{i:02x}" * 32


def test_status_of_many_containers_reads_the_map_once_and_calls_docker_never(
    tmp_path: Path,
) -> None:
    parent = tmp_path / "cgroup" / "clawker-test"
    enrolled, stopped = {_cid(i) for i in range(0, AGENTS, 2)}, _cid(0)
    for i in range(AGENTS):
        (parent / _cid(i)).mkdir(parents=True)
    (parent / "docker-ffff.scope").mkdir()  # someone else's
    maps = _CountingMaps({os.stat(parent / cid).st_ino for cid in enrolled})
    (parent / stopped).rmdir()  # enrolled, then stopped: its cgroup is gone
    firewall = Firewall(
        FirewallConfig("/clawker-test", tmp_path / "pins", ("127.0.0.1", 53)), MemoryStore()
    )
    firewall._cgroup_root = tmp_path / "cgroup"
    firewall._maps = cast(PinnedMaps, maps)
    registry = Registry(tmp_path / "registry.sqlite")
    ids = [_cid(i) for i in range(AGENTS)]
    for cid in ids[:5]:
        registry.put_status(StartStatus(cid, "p/a", "t0", Phase.READY, initialized=True))
    controller = RuntimeController(
        cast(DockerPort, _NoDocker()),
        registry,
        ClawkerPKI.load_or_create(tmp_path / "pki"),
        network="net",
        firewall=firewall,
    )
    reports = controller.start_reports(ids)
    assert maps.reads == 1
    assert {cid for cid, r in reports.items() if r.firewall_enrolled} == enrolled - {stopped}
    assert all(reports[cid].status is not None and reports[cid].initialized for cid in ids[:5])
    assert all(reports[cid].status is None for cid in ids[5:])
    without = controller.start_reports(ids, firewall=False)
    assert maps.reads == 1 and not any(r.firewall_enrolled for r in without.values())


def test_asking_about_a_container_makes_at_most_one_pass_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status` is a trigger (the safety net for a lost event), but a terminal polling
    `get agents` of N agents must not cost the CP N passes per poll."""
    clock = [1000.0]
    monkeypatch.setattr(
        "reconciler.controlplane.runtime.controller.time.monotonic", lambda: clock[0]
    )
    registry = Registry(tmp_path / "registry.sqlite")
    ready, unknown = _cid(1), _cid(2)
    registry.put_status(StartStatus(ready, "p/a", "t0", Phase.READY, initialized=True))
    controller = RuntimeController(
        cast(DockerPort, _NoDocker()),
        registry,
        ClawkerPKI.load_or_create(tmp_path / "pki"),
        network="net",
    )
    poked: list[str] = []
    monkeypatch.setattr(controller, "poke", lambda cid, why="asked": poked.append(cid))
    controller.start_reports([ready, unknown])
    assert sorted(poked) == sorted([ready, unknown])  # the first ask is a trigger
    for _ in range(10):
        clock[0] += 0.4
        controller.start_reports([ready, unknown])
    # 4 s of polling: a Ready start is not looked at again; one the CP knows nothing of is
    assert poked.count(ready) == 1 and poked.count(unknown) == 11
    poked.clear()
    clock[0] += controller_module.ASK_INTERVAL
    controller.start_reports([ready])
    assert poked == [ready]  # a later ask is a trigger again

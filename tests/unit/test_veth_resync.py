"""The veth wall's resync looks at every running container under the parent: one link dump is
shared by all of them (a dump per container made the pass quadratic in the fleet), and a
container whose veth came after that dump is looked up again with a fresh one."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import pytest

from reconciler.docker.placement import PlacementWatch, Sandbox
from reconciler.firewall import veth_guard
from reconciler.firewall.veth_guard import VethGuard


class _Watch:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def running(self) -> list[str]:
        return self.ids

    def sandbox(self, container_id: str) -> Sandbox:
        return Sandbox(
            container_id, f"c-{container_id}", "/clawker-t", "net", f"/ns/{container_id}", 1
        )

    def bridge_of(self, network: str) -> None:
        return None


def test_a_resync_dumps_the_links_once_and_again_only_for_a_late_veth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [f"{i:02d}" for i in range(30)]
    nsids = {f"/ns/{cid}": i for i, cid in enumerate(ids)}
    late = ids[-1]  # its veth appears after the resync's dump
    dumps: list[list[tuple[int, int]]] = []

    def peers() -> list[tuple[int, int]]:
        links = [(100 + nsid, nsid) for ns, nsid in nsids.items() if dumps or ns != f"/ns/{late}"]
        dumps.append(links)
        return links

    def host_veths_of(netns: Path, shared: list[tuple[int, int]] | None = None) -> list[int]:
        links = peers() if shared is None else shared
        return [ifindex for ifindex, nsid in links if nsid == nsids[str(netns)]]

    attached: list[int] = []

    def attach(_pin: Path, ifindex: int) -> str:
        attached.append(ifindex)
        return "attached"

    monkeypatch.setattr(veth_guard, "veth_peers", peers)
    monkeypatch.setattr(veth_guard, "host_veths_of", host_veths_of)
    monkeypatch.setattr(veth_guard, "attach_veth_wall", attach)
    guard = VethGuard(cast(PlacementWatch, _Watch(ids)), "/clawker-t", "net", Path("/pins"), 60)
    stopper = threading.Timer(0.5, guard.stop)
    stopper.start()
    guard._resync_loop()  # one round, then it waits for the next until stopped
    stopper.join()
    assert len(dumps) == 2, "one shared dump, and one more for the container it missed"
    assert sorted(attached) == [100 + i for i in range(len(ids))]
    assert all(guard.guarded[cid] == [100 + i] for i, cid in enumerate(ids))

"""Put the veth wall on every container under the cgroup parent, clawker's or not.

The cgroup programs see every inet socket of a process under the parent, but not a packet
socket: a container clawker did not make (so without its seccomp profile and with Docker's
default NET_RAW), placed under the parent by hand, could write whole frames. The veth wall
(`clawker_veth_wall` in bpf/egress.bpf.c) sees those frames on the host-side end of the
container's veth, where they still carry their socket. This guard attaches it:

- on every veth that becomes a port of clawker's network's bridge, from rtnetlink's link
  notifications: libnetwork enslaves the host end while it sets the network up, well before
  runc starts the container's process; the program is nothing to a container that is not
  under the parent, so every port gets it;
- on every network `connect` event of a container whose cgroup parent is ours, on any
  network (Docker's inspect of a starting container waits for the start to finish, so on
  another network than clawker's the wall comes only just after the process starts);
- at start-up and every resync interval, to every running container under the parent (what
  started while the control plane was down).

Enrolled agents get it too, as a backstop. The filter stays when the control plane stops and
goes with the veth. docs/firewall.md, "The veth wall", says what is left open.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bpf.libbpf import BpfError
from bpf.tc import LinkMonitor, attach_veth_wall, host_veths_of, veth_peers, veths_on
from reconciler.docker.engine import DockerError
from reconciler.docker.placement import (
    PlacementWatch,
    Sandbox,
    default_bridge_name,
    under_parent,
)

__all__ = ["VethGuard"]

log = logging.getLogger("clawker.firewall.veth")


class VethGuard:
    def __init__(
        self,
        watch: PlacementWatch,
        cgroup_parent: str,
        network: str,
        pin_dir: Path,
        resync_seconds: float,
    ) -> None:
        self._watch = watch
        self._network = network
        self._bridges: dict[str, bool] = {}  # bridge name -> whether it is clawker's network's
        self._checked: dict[str, float] = {}  # bridge name -> when Docker was last asked
        self._parent = cgroup_parent
        self._pin_dir = pin_dir
        self._resync = resync_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.guarded: dict[str, list[int]] = {}  # container id -> host-side ifindexes

    def start(self) -> None:
        # Subscribe first, then scan: a container that connects in between is in one or both.
        threading.Thread(target=self._follow_links, name="fw-veth-links", daemon=True).start()
        threading.Thread(target=self._follow_events, name="fw-veth-events", daemon=True).start()
        threading.Thread(target=self._resync_loop, name="fw-veth-resync", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def guard(
        self,
        container_id: str,
        why: str = "resync",
        peers: Sequence[tuple[int, int]] | None = None,
    ) -> list[int]:
        """Attach the wall to the container's host-side veths when it runs under the parent;
        the interfaces it is on ([] for a container that is not ours to guard). `peers`: one
        `veth_peers()` dump shared by a resync's containers."""
        started = time.monotonic()
        sandbox = self._watch.sandbox(container_id)
        if sandbox is None or not under_parent(sandbox.cgroup_parent, self._parent):
            return []
        with self._lock:
            veths = self._attach(sandbox, why, started, peers)
            self.guarded[sandbox.container_id] = veths
            return veths

    def _attach(
        self,
        sandbox: Sandbox,
        why: str,
        started: float,
        peers: Sequence[tuple[int, int]] | None = None,
    ) -> list[int]:
        netns = sandbox.netns or (f"/proc/{sandbox.pid}/ns/net" if sandbox.pid else "")
        veths: list[int] = []
        if netns and sandbox.network_mode != "host":
            veths = host_veths_of(Path(netns), peers)
            if not veths and peers is not None:  # connected after the shared dump
                veths = host_veths_of(Path(netns))
        if not veths:
            if sandbox.container_id not in self._warned:
                self._warned.add(sandbox.container_id)
                log.warning(
                    "container %s (%s) runs under %s with no veth in this namespace (network "
                    "mode %r): the veth wall cannot guard it, so a packet socket in it is not "
                    "stopped (docs/firewall.md, Limits)",
                    sandbox.name,
                    sandbox.container_id[:12],
                    self._parent,
                    sandbox.network_mode,
                )
            return []
        for ifindex in veths:
            if attach_veth_wall(self._pin_dir, ifindex) == "attached":
                log.info(
                    "veth wall on %s (%s, ifindex %d) %.1f ms after %s",
                    sandbox.name,
                    sandbox.container_id[:12],
                    ifindex,
                    (time.monotonic() - started) * 1000,
                    why,
                )
        return veths

    def _our_bridge(self, master: int) -> bool:
        try:
            name = socket.if_indextoname(master)
        except OSError:
            return False
        known = self._bridges.get(name)
        if known is None or (not known and time.monotonic() - self._checked.get(name, 0) > 2):
            # Not cached, or found not ours over 2 s ago (Docker may not have recorded a new
            # network yet when its bridge's first port joins).
            known = self._watch.network_of_bridge(name) == self._network
            self._bridges[name] = known
            self._checked[name] = time.monotonic()
        return known

    def _attach_port(self, ifindex: int, started: float) -> None:
        try:
            with self._lock:
                done = attach_veth_wall(self._pin_dir, ifindex)
        except BpfError as exc:
            if exc.errno != errno.ENODEV:  # ENODEV: the veth went away meanwhile
                log.warning("veth wall on interface %d: %s", ifindex, exc)
            return
        if done == "attached":
            log.info(
                "veth wall on port %d of %s's bridge %.1f ms after it joined",
                ifindex,
                self._network,
                (time.monotonic() - started) * 1000,
            )

    def _follow_links(self) -> None:
        while not self._stop.is_set():
            try:
                monitor = LinkMonitor()
            except OSError as exc:
                log.warning("cannot follow link notifications (%s); again in 1 s", exc)
                self._stop.wait(1.0)
                continue
            try:
                self._scan_bridge()  # after subscribing: nothing that joins is missed
                while not self._stop.is_set():
                    for ifindex, master in monitor.next_batch():
                        started = time.monotonic()
                        if self._our_bridge(master):
                            self._attach_port(ifindex, started)
            except (OSError, DockerError, BpfError) as exc:
                log.warning("following link notifications: %s; rescanning", exc)
            finally:
                monitor.close()

    def _scan_bridge(self) -> None:
        """Every port of clawker's network's bridge, now (none while the network is missing)."""
        bridge = self._watch.bridge_of(self._network)
        if bridge is None:
            return
        self._bridges[bridge] = True
        try:
            master = socket.if_nametoindex(bridge)
        except OSError:
            return
        for ifindex in veths_on(master):
            self._attach_port(ifindex, time.monotonic())

    def _try(
        self, container_id: str, why: str, peers: Sequence[tuple[int, int]] | None = None
    ) -> None:
        try:
            self.guard(container_id, why, peers)
        except (DockerError, BpfError, OSError) as exc:
            log.warning("veth wall for %s: %s", container_id[:12], exc)

    def _follow_events(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self._watch.network_events():
                    if self._stop.is_set():
                        return
                    if event.action == "create" and event.network == self._network:
                        # Known before its first port joins: the link path asks Docker nothing.
                        self._bridges[default_bridge_name(event.network_id)] = True
                    elif event.action == "connect" and event.container_id:
                        self._try(event.container_id, "its network connect")
            except DockerError as exc:
                log.warning("%s; following network events again in 1 s", exc)
            self._stop.wait(1.0)

    def _resync_loop(self) -> None:
        while not self._stop.is_set():
            try:
                running = self._watch.running()
            except DockerError as exc:
                log.warning("veth wall resync: %s", exc)
                running = []
            try:  # one link dump for all of them, not one per container
                peers: list[tuple[int, int]] | None = veth_peers()
            except OSError as exc:
                log.warning("veth wall resync: listing links: %s", exc)
                peers = None
            for container_id in running:
                self._try(container_id, "resync", peers)
            try:
                self._scan_bridge()
            except (OSError, DockerError, BpfError) as exc:
                log.warning("veth wall resync of the bridge: %s", exc)
            with self._lock:
                gone = set(self.guarded) - set(running)
                for container_id in gone:  # Docker deleted their veths, and the filters with them
                    self.guarded.pop(container_id, None)
                    self._warned.discard(container_id)
            self._stop.wait(self._resync)

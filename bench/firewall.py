"""The egress firewall's costs: connect() with and without the programs, DNS through the
resolver, and how long after a container's start event its cgroup is enrolled.

    .venv/bin/python bench/firewall.py                      # 20 batches of 500 connects, ...
    .venv/bin/python bench/firewall.py --batches 4 --restarts 3 --no-write

Timed:
- connect(): inside a container, a TCP connect()+close() to a listener in the same container,
  timed one by one with perf_counter_ns; a sample is the median of one batch. "firewall" is the
  clawker agent (under the attached parent cgroup, enrolled); "no firewall" a plain container
  of the same image on the same network (no cgroup parent: no programs run). Two targets: the
  container's own address (the program's full path: policy and allow-map lookups; the address
  was allowed by resolving a name for it) and 127.0.0.1 (the loopback shortcut).
- DNS: from inside the agent, a UDP query to 127.0.0.11:53 (redirected to the control plane's
  resolver) for an allowed name (forwarded to a stub upstream on the host's loopback) and for a
  name off the allowlist (NXDOMAIN, nothing forwarded); the stub asked directly from the host
  is the baseline.
- start → enrolled: `docker restart` of the agent; from the engine's `start` event (its
  timeNano) until the new cgroup id appears in the pinned policy map (polled every 0.5 ms).
- the packet wall (cgroup_skb/egress): in the same enrolled agent, with the wall's link and
  without it (its pin removed, then attached again), alternating batch by batch: connect() to
  the container's own address as above, and a TCP transfer of --transfer-mb MB (default 100) to
  a listener on that address, timed from connect() until the receiver has every byte.
Requires root (cgroup-BPF). Everything made carries dev.clawker.test=bench-<id> and is removed
at the end, with the bench's own parent cgroup and pin directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Run as a script (`python bench/firewall.py`): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker
from dnslib import DNSRecord

from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import Ratio, Series
from bench.reporting import ScenarioResult, render_table, write_json
from bpf.loader import attach_egress, cgroup2_root, cgroup_id
from bpf.maps import PinnedMaps
from tests.cleanup import TEST_LABEL
from tests.integration.testhosts import UpstreamStub

__all__ = ["run"]

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python bench/firewall.py"
NAME = "self.bench.clawker-test.invalid"
OFF_LIST = "other.bench.clawker-test.invalid"

CONNECT_PROBE = textwrap.dedent("""\
    import json, socket, statistics, sys, time
    target, batch = sys.argv[1], int(sys.argv[2])
    if target == "self":  # the container's own address, from /etc/hosts (no DNS)
        target = socket.gethostbyname(socket.gethostname())
    listener = socket.socket()
    listener.bind((target, 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    times = []
    for _ in range(batch):
        s = socket.socket()
        start = time.perf_counter_ns()
        s.connect((target, port))
        times.append(time.perf_counter_ns() - start)
        s.close()
        listener.accept()[0].close()
    print(json.dumps({"target": target, "median_ns": statistics.median(times)}))
""")

TRANSFER_PROBE = textwrap.dedent("""\
    import json, socket, sys, threading, time
    total = int(sys.argv[1]) << 20
    target = socket.gethostbyname(socket.gethostname())
    listener = socket.socket()
    listener.bind((target, 0))
    listener.listen(1)
    got = []
    def receive():
        conn, _ = listener.accept()
        n = 0
        while chunk := conn.recv(1 << 20):
            n += len(chunk)
        got.append(n)
    reader = threading.Thread(target=receive)
    reader.start()
    block = b"x" * (1 << 20)
    start = time.perf_counter_ns()
    with socket.create_connection((target, listener.getsockname()[1])) as s:
        for _ in range(total >> 20):
            s.sendall(block)
    reader.join()
    elapsed = time.perf_counter_ns() - start
    assert got == [total], got
    print(json.dumps({"ns": elapsed}))
""")

DNS_PROBE = textwrap.dedent("""\
    import json, socket, statistics, sys, time
    query, count = bytes.fromhex(sys.argv[1]), int(sys.argv[2])
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        for i in range(count):
            q = bytes([i >> 8 & 0xFF, i & 0xFF]) + query[2:]
            start = time.perf_counter_ns()
            s.sendto(q, ("127.0.0.11", 53))
            s.recvfrom(4096)
            times.append(time.perf_counter_ns() - start)
    print(json.dumps(times))
""")

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {{name: {project}}}
spec:
  workspace: {{path: {workspace}, mode: bind}}
  build: {{harness: none}}
  security: {{firewall: {{add_domains: [{name}]}}}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {{name: bench, project: {project}}}
spec:
  command: [sleep, infinity]
"""


def _exec(api: docker.APIClient, container: str, *argv: str) -> str:
    exec_id = str(api.exec_create(container, list(argv))["Id"])
    out: bytes = api.exec_start(exec_id)
    if api.exec_inspect(exec_id)["ExitCode"] != 0:
        raise BenchError(f"{argv[0]} in {container} failed: {out.decode(errors='replace')}")
    return out.decode().strip().splitlines()[-1]


def _connect_batch(api: docker.APIClient, container: str, target: str, size: int) -> float:
    """Seconds: the median of `size` connects in one exec."""
    raw = json.loads(_exec(api, container, "python3", "-c", CONNECT_PROBE, target, str(size)))
    return float(raw["median_ns"]) / 1e9


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result


def run(
    scope: BenchScope,
    *,
    batches: int,
    batch_size: int,
    queries: int,
    restarts: int,
    transfers: int,
    transfer_mb: int,
    log: Callable[[str], None],
) -> ScenarioResult:
    api = docker.APIClient(version="auto")
    parent = scope.cgroup_parent
    pin_dir = scope.pin_dir
    upstream = UpstreamStub({NAME: "127.0.0.2"})
    env = scope.clawker_env()  # with the scope's parent cgroup and pins
    env.update(
        CLAWKER_DNS_UPSTREAM=f"{upstream.address[0]}:{upstream.address[1]}",
    )
    workspace = scope.state_dir.parent / f"clawker-{scope.run_id}-ws"
    workspace.mkdir(exist_ok=True)
    project = scope.run_id.replace("-", "")
    spec = workspace.parent / f"clawker-{scope.run_id}.yaml"
    spec.write_text(SPEC.format(project=project, workspace=workspace, name=NAME))
    agent = f"clawker.{project}.bench"
    plain = f"clawker-{scope.run_id}-plain"
    try:
        log("apply: one agent (harness none) under the bench's own parent cgroup")
        subprocess.run(
            clawker_argv("apply", "-f", str(spec)),
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        info = api.inspect_container(agent)
        image = info["Config"]["Image"]
        own_ip = info["NetworkSettings"]["Networks"][scope.network]["IPAddress"]
        upstream.records[NAME] = own_ip  # resolving NAME allows the agent's own address
        api.create_container(
            image,
            ["sleep", "infinity"],
            name=plain,
            entrypoint=[],
            labels=scope.labels("container"),
            host_config=api.create_host_config(network_mode=scope.network),
        )
        api.start(plain)

        series: dict[str, list[float]] = {}
        contenders = [
            ("connect own address, firewall", agent, "self"),
            ("connect own address, no firewall", plain, "self"),
            ("connect 127.0.0.1, firewall", agent, "127.0.0.1"),
            ("connect 127.0.0.1, no firewall", plain, "127.0.0.1"),
        ]
        log(f"connect(): {batches} batches of {batch_size} per contender, interleaved")
        for i in range(batches):
            _exec(api, agent, "getent", "hosts", NAME)  # keep the own address allowed (TTL)
            for name, container, target in contenders[i % 4 :] + contenders[: i % 4]:
                series.setdefault(name, []).append(
                    _connect_batch(api, container, target, batch_size)
                )

        log(f"DNS: {queries} queries each")
        for name, qname in (
            ("DNS allowed name via resolver", NAME),
            ("DNS NXDOMAIN via resolver", OFF_LIST),
        ):
            query = DNSRecord.question(qname).pack().hex()
            times = json.loads(_exec(api, agent, "python3", "-c", DNS_PROBE, query, str(queries)))
            series[name] = [t / 1e9 for t in times]
        series["DNS stub upstream, from the host"] = _ask_directly(upstream.address, queries)

        log(f"packet wall: {batches} connect batches and {transfers} transfers, with and without")
        wall_link = pin_dir / "link_egress_skb"
        for i in range(max(batches, transfers)):
            _exec(api, agent, "getent", "hosts", NAME)
            for on in (True, False) if i % 2 == 0 else (False, True):
                if on:
                    attach_egress(cgroup2_root() / parent.strip("/"), pin_dir)
                else:
                    wall_link.unlink(missing_ok=True)  # the pin was its only reference
                label = "wall" if on else "no wall"
                if i < batches:
                    series.setdefault(f"connect own address, {label}", []).append(
                        _connect_batch(api, agent, "self", batch_size)
                    )
                if i < transfers:
                    raw = _exec(api, agent, "python3", "-c", TRANSFER_PROBE, str(transfer_mb))
                    series.setdefault(f"{transfer_mb} MB TCP, {label}", []).append(
                        json.loads(raw)["ns"] / 1e9
                    )
        attach_egress(cgroup2_root() / parent.strip("/"), pin_dir)

        log(f"start -> enrolled: {restarts} restarts")
        series["start event -> enrolled"] = _enrolment_latency(
            api, agent, parent, pin_dir, restarts
        )
    finally:
        subprocess.run(
            clawker_argv("controlplane", "down"), env=env, capture_output=True, check=False
        )
        upstream.close()
        spec.unlink(missing_ok=True)
        workspace.rmdir()
    what = {
        "connect own address, firewall": f"median connect() of {batch_size}, to a listener on "
        "the container's own address; enrolled, address allowed by resolving a name",
        "connect own address, no firewall": "the same in a plain container (no programs)",
        "connect 127.0.0.1, firewall": "the same to 127.0.0.1 (loopback shortcut)",
        "connect 127.0.0.1, no firewall": "the same to 127.0.0.1 in the plain container",
        "DNS allowed name via resolver": "UDP query to 127.0.0.11:53 -> CP resolver -> stub",
        "DNS NXDOMAIN via resolver": "UDP query for a name off the allowlist (not forwarded)",
        "DNS stub upstream, from the host": "UDP query from the host straight to the stub",
        "start event -> enrolled": "docker `start` event timeNano -> cgroup id in policy map",
        "connect own address, wall": f"median connect() of {batch_size} in the agent, with the "
        "packet wall (all programs)",
        "connect own address, no wall": "the same, the packet wall detached (other programs on)",
        f"{transfer_mb} MB TCP, wall": f"one {transfer_mb} MB transfer to the agent's own "
        "address, connect() to the last byte received, with the packet wall",
        f"{transfer_mb} MB TCP, no wall": "the same, the packet wall detached",
    }
    result_series = tuple(Series(n, what[n], tuple(v)) for n, v in series.items())
    by_name = {s.name: s for s in result_series}
    ratios = (
        Ratio.of(by_name, "connect own address, firewall", "connect own address, no firewall"),
        Ratio.of(by_name, "connect 127.0.0.1, firewall", "connect 127.0.0.1, no firewall"),
        Ratio.of(by_name, "DNS allowed name via resolver", "DNS stub upstream, from the host"),
        Ratio.of(by_name, "connect own address, wall", "connect own address, no wall"),
        Ratio.of(by_name, f"{transfer_mb} MB TCP, wall", f"{transfer_mb} MB TCP, no wall"),
    )
    return ScenarioResult(
        scenario="firewall",
        title="Egress firewall: connect(), DNS and enrolment latency",
        command=COMMAND,
        parameters={
            "batches": batches,
            "batch_size": batch_size,
            "queries": queries,
            "restarts": restarts,
            "transfers": transfers,
            "transfer_mb": transfer_mb,
        },
        series=result_series,
        ratios=ratios,
        notes={"cleanup": {"parent_cgroup": parent, "pin_dir": str(pin_dir)}},
    )


def _ask_directly(address: tuple[str, int], count: int) -> list[float]:
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for _ in range(count):
            query = DNSRecord.question(NAME).pack()
            start = time.perf_counter_ns()
            sock.sendto(query, address)
            sock.recvfrom(4096)
            times.append((time.perf_counter_ns() - start) / 1e9)
    return times


def _enrolment_latency(
    api: docker.APIClient, container: str, parent: str, pin_dir: Path, restarts: int
) -> list[float]:
    cid = api.inspect_container(container)["Id"]
    path = cgroup2_root() / parent.strip("/") / cid
    maps = PinnedMaps(pin_dir)
    samples = []
    try:
        for _ in range(restarts):
            before = cgroup_id(path)
            seen: dict[str, int] = {}
            stop = threading.Event()

            def watch(
                old: int = before, found: dict[str, int] = seen, stop: threading.Event = stop
            ) -> None:
                while not stop.is_set():
                    try:
                        current = cgroup_id(path)
                    except OSError:
                        current = old
                    if current != old and maps.policy(current) is not None:
                        found["at"] = time.time_ns()
                        return
                    time.sleep(0.0005)

            watcher = threading.Thread(target=watch, daemon=True)
            since = int(time.time()) - 1
            watcher.start()
            api.restart(container, timeout=1)
            watcher.join(timeout=30)
            stop.set()
            if "at" not in seen:
                raise BenchError(f"{container} was not enrolled within 30s of its restart")
            events = api.events(
                since=since,
                until=int(time.time()) + 1,
                filters={"container": cid, "event": "start"},
                decode=True,
            )
            started = [e["timeNano"] for e in events]
            if not started:
                raise BenchError("no start event from the engine")
            samples.append((seen["at"] - started[-1]) / 1e9)
            _wait(lambda: api.inspect_container(container)["State"]["Running"], 30, "running")
    finally:
        maps.close()
    return samples


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the egress firewall.")
    parser.add_argument("--batches", type=int, default=20, help="connect batches (default 20)")
    parser.add_argument("--batch-size", type=int, default=500, help="connects per batch")
    parser.add_argument("--queries", type=int, default=500, help="DNS queries per kind")
    parser.add_argument("--restarts", type=int, default=10, help="restarts timed (default 10)")
    parser.add_argument("--transfers", type=int, default=10, help="transfers timed per side")
    parser.add_argument("--transfer-mb", type=int, default=100, help="MB per transfer")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}/")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (cgroup-BPF)")
    scope = BenchScope.new()
    _log(f"bench scope: {TEST_LABEL}={scope.run_id}")
    host = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_engine": docker.APIClient(version="auto").version().get("Version", "?"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    try:
        result = run(
            scope,
            batches=args.batches,
            batch_size=args.batch_size,
            queries=args.queries,
            restarts=args.restarts,
            transfers=args.transfers,
            transfer_mb=args.transfer_mb,
            log=_log,
        )
    except (BenchError, subprocess.CalledProcessError) as exc:
        _log(f"error: {exc}")
        return 1
    finally:
        scope.remove_everything()  # its pins and parent cgroup too
    print(render_table(result, unit="us"), flush=True)
    if not args.no_write:
        host["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
        _log(f"wrote {write_json(result, host, RESULTS, unit='us')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How far ahead of a container's first instruction the veth wall can be attached.

For N containers started on a bridge network this script creates (and removes), it records
when the host end of the container's veth joins the bridge (rtnetlink, as the control plane's
veth guard sees it) and when the container's process first runs (`date +%s%N` as its command),
and prints the margin's median and minimum. A positive margin is the time the guard has to
attach the wall before the container can send anything.

    .venv/bin/python bench/veth_window.py --runs 10      (as root)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time
import uuid

import docker

from bpf.tc import LinkMonitor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    api = docker.APIClient(version="auto")
    run = uuid.uuid4().hex[:8]
    labels = {"dev.clawker.managed": "true", "dev.clawker.test": f"bench-{run}"}
    net = api.create_network(f"clawker-bench-{run}", driver="bridge", labels=labels)["Id"]
    bridge = f"br-{net[:12]}"
    joined: list[float] = []
    monitor = LinkMonitor()
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            for _ifindex, master in monitor.next_batch():
                try:
                    if socket.if_indextoname(master) == bridge:
                        joined.append(time.time())
                except OSError:
                    pass

    threading.Thread(target=follow, daemon=True).start()
    margins = []
    try:
        for _ in range(args.runs):
            before = len(joined)
            c = api.create_container(
                "clawker-base:bookworm",
                ["date", "+%s%N"],
                entrypoint=[],
                labels=labels,
                host_config=api.create_host_config(network_mode=f"clawker-bench-{run}"),
            )["Id"]
            api.start(c)
            api.wait(c, timeout=60)
            first = int(bytes(api.logs(c)).decode().strip()) / 1e9
            api.remove_container(c, force=True)
            time.sleep(0.2)
            if len(joined) > before:
                margins.append((first - joined[before]) * 1000)
    finally:
        stop.set()
        api.remove_network(net)
    load = os.getloadavg()[0]
    print(f"runs {len(margins)}  load {load:.2f}")
    print(
        f"veth joins the bridge -> container's first instruction: median "
        f"{statistics.median(margins):.1f} ms, min {min(margins):.1f} ms"
    )


if __name__ == "__main__":
    main()

"""The control plane process (`python -m reconciler.controlplane serve`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from reconciler import naming
from reconciler.controlplane.api.channel import ApiServer
from reconciler.controlplane.api.firewall_handlers import firewall_handlers
from reconciler.controlplane.bridge.api_relay import ApiUpstream, UpstreamError
from reconciler.controlplane.identity.pki import ClawkerPKI
from reconciler.controlplane.paths import StatePaths, state_paths
from reconciler.controlplane.registry import AgentRuntimeSpec, Registry
from reconciler.controlplane.runtime.controller import RuntimeController
from reconciler.docker.engine import DockerEngine
from reconciler.firewall.enforcement import Firewall, FirewallConfig, FirewallError

__all__ = ["serve"]

log = logging.getLogger("clawker.controlplane")


def serve(paths: StatePaths | None = None) -> int:
    paths = paths or state_paths()
    paths.ensure()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    try:
        api_upstream = ApiUpstream.from_env(os.environ)
    except UpstreamError as exc:
        log.error("%s", exc)
        return 1
    pki = ClawkerPKI.load_or_create(paths.pki)
    registry = Registry(paths.registry)
    # No firewall, no control plane: an agent must never start unfiltered.
    firewall = Firewall(FirewallConfig.from_env(), registry)
    try:
        firewall.install()
    except FirewallError as exc:
        log.error("%s", exc)
        registry.close()
        return 1
    controller = RuntimeController(
        DockerEngine(),
        registry,
        pki,
        network=naming.network_name(),
        resync_interval=float(os.environ.get("CLAWKER_RESYNC_SECONDS", "30")),
        firewall=firewall,
        api_upstream=api_upstream,
    )
    started = time.time()

    def put_runtime(params: dict[str, Any]) -> None:
        for spec in params.get("agents", []):
            runtime = AgentRuntimeSpec(**spec)
            registry.put_runtime(runtime)
            if "allow_domains" in spec:  # apply makes the spec's allowlist the live one
                firewall.set_allowlist(runtime.agent_key, runtime.allow_domains)

    def status(params: dict[str, Any]) -> dict[str, Any]:
        ids = params.get("containers", [])
        for cid in ids:  # asking about a container is also a trigger: no waiting for an event
            controller.queue.put(cid)
        return {cid: (s.as_dict() if (s := registry.status(cid)) else None) for cid in ids}

    def ping(_params: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "uptime": time.time() - started}

    api = ApiServer(
        paths.socket,
        {"ping": ping, "put_runtime": put_runtime, "status": status, **firewall_handlers(firewall)},
    )
    controller.start()
    api.start()
    paths.pid_file.write_text(f"{os.getpid()}\n")
    log.info("control plane up (pid %d, state %s)", os.getpid(), paths.root)
    try:
        stop.wait()
    finally:
        log.info("control plane stopping")
        api.stop()
        controller.stop()
        firewall.close()  # the programs and maps stay pinned: enforcement outlives the CP
        registry.close()
        for path in (paths.pid_file, paths.socket):
            path.unlink(missing_ok=True)
    return 0

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
from reconciler.controlplane.identity.pki import ClawkerPKI
from reconciler.controlplane.paths import StatePaths, state_paths
from reconciler.controlplane.registry import Registry
from reconciler.controlplane.runtime.controller import RuntimeController
from reconciler.controlplane.runtime_spec import AgentRuntimeSpec, AgentRuntimeState
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
    )
    started = time.time()

    def runtime_state(_params: dict[str, Any]) -> dict[str, Any]:
        """What `diff` compares with the specs: every agent's runtime spec, enforced allowlist
        and whether post_init ran on its config volume."""
        specs, allowlists, done = (
            registry.runtimes(),
            firewall.allowlists(),
            registry.post_init_done(),
        )
        return {
            key: AgentRuntimeState(
                key,
                specs.get(key),
                tuple(allowlists[key]) if key in allowlists else None,
                key in done,
            ).as_dict()
            for key in sorted(specs.keys() | allowlists.keys())
        }

    def runtime_put(params: dict[str, Any]) -> None:
        """apply's UpdateRuntime step: the spec the agent's next start runs with."""
        spec = AgentRuntimeSpec.from_dict(params["spec"])
        registry.put_runtime(spec)
        if params.get("fresh_config"):
            registry.forget_post_init(spec.agent_key)

    def status(params: dict[str, Any]) -> dict[str, Any]:
        ids = params.get("containers", [])
        for cid in ids:  # asking about a container is also a trigger: no waiting for an event
            controller.queue.put(cid)
        return {cid: (s.as_dict() if (s := registry.status(cid)) else None) for cid in ids}

    def ping(_params: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "uptime": time.time() - started}

    api = ApiServer(
        paths.socket,
        {
            "ping": ping,
            "runtime_state": runtime_state,
            "runtime_put": runtime_put,
            "status": status,
            **firewall_handlers(firewall),
        },
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

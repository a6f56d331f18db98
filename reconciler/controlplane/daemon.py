"""The control plane process (`python -m reconciler.controlplane serve`).

It serves the typed API of api/messages.py: one handler per call, each taking the call's
parameters as the client's methods send them and answering with that call's reply dataclass."""

from __future__ import annotations

import base64
import faulthandler
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
from reconciler.controlplane.api.messages import (
    AgentRuntimeSpec,
    AgentRuntimeState,
    Bootstrap,
    Hello,
    from_wire,
    to_wire,
)
from reconciler.controlplane.bridge.api_relay import ApiRelayConfig, ApiUpstream, UpstreamError
from reconciler.controlplane.host_dirs import HostDirs
from reconciler.controlplane.identity.bootstrap import bootstrap_archive, bootstrap_files
from reconciler.controlplane.identity.pki import ClawkerPKI
from reconciler.controlplane.paths import StatePaths
from reconciler.controlplane.registry import Registry
from reconciler.controlplane.runtime.controller import RuntimeController
from reconciler.controlplane.verify import verify_agents
from reconciler.docker.engine import DockerEngine, DockerError, DockerPort
from reconciler.docker.placement import PlacementWatch
from reconciler.firewall.enforcement import Firewall, FirewallConfig, FirewallError
from reconciler.firewall.veth_guard import VethGuard
from reconciler.settings import Settings, code_identity

__all__ = ["STOP_BUDGET", "run", "serve", "stop_on_signal"]

log = logging.getLogger("clawker.controlplane")


def serve(settings: Settings) -> int:
    paths = StatePaths(settings.state_dir)
    paths.ensure()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    stop_on_signal(stop)
    _quiet_grpc_waits()
    code = run(settings, stop)
    log.info("control plane stopped")
    return code


# How long a stop may take, from the signal to the process's end; `controlplane down` waits 15 s.
STOP_BUDGET = 10.0


def stop_on_signal(stop: threading.Event, budget: float = STOP_BUDGET) -> None:
    """SIGTERM and SIGINT set `stop`, and arm a watchdog: a process still alive `budget` seconds
    later (a thread that will not let go, in the CP's own shutdown or the interpreter's) writes
    every thread's stack to its log and exits with status 1. A stop is then bounded, and a hung
    one says where it hung. The state it would lose is none: the registry commits each write,
    and the filters and pinned maps outlive the CP by design."""

    def handle(_signum: int, _frame: object) -> None:
        if not stop.is_set():
            faulthandler.dump_traceback_later(budget, exit=True, file=sys.stderr)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)


# How often a thread blocked reading a gRPC stream wakes to look again (gRPC's own is 0.1 s).
GRPC_WAIT_SLICE = 2.0


def _quiet_grpc_waits() -> None:
    """Let the CP's threads that wait on a gRPC stream sleep GRPC_WAIT_SLICE at a time.

    gRPC's blocking calls wait in slices of `grpc._common.MAXIMUM_WAIT_TIMEOUT` (0.1 s) so that
    a signal handler on the main thread runs within 0.1 s; a response still wakes the waiter at
    once (the condition is notified). The CP's main thread waits on its stop event, never on
    gRPC, so the slices only cost: each agent's socket bridge holds a stream open for the
    container's life, and 100 idle agents woke the CP 1000 times a second (5% of a core,
    bench/README.md, "The control plane at rest"). A gRPC without the knob is left as it is."""
    import grpc._common as grpc_common  # noqa: PLC0415  # the CP's process only

    if isinstance(getattr(grpc_common, "MAXIMUM_WAIT_TIMEOUT", None), float):
        grpc_common.MAXIMUM_WAIT_TIMEOUT = GRPC_WAIT_SLICE


def run(
    settings: Settings,
    stop: threading.Event,
    *,
    port: DockerPort | None = None,
    workers: int = 4,
) -> int:
    """Serve until `stop` is set. Tests run it in their own process to put a fault at the
    Docker port's edge (`port`) or to give the controller fewer workers."""
    paths = StatePaths(settings.state_dir)
    paths.ensure()
    try:
        # from_env keys are variables of this process's own environment, read when needed.
        api_relay = ApiRelayConfig(ApiUpstream.from_settings(settings), os.environ)
    except UpstreamError as exc:
        log.error("%s", exc)
        return 1
    pki = ClawkerPKI.load_or_create(paths.pki)
    registry = Registry(paths.registry)
    # No firewall, no control plane: an agent must never start unfiltered.
    firewall = Firewall(FirewallConfig.from_settings(settings), registry)
    try:
        firewall.install()
    except FirewallError as exc:
        log.error("%s", exc)
        registry.close()
        return 1
    try:
        # The veth wall on every container under the parent, clawker's or not.
        veth_guard = VethGuard(
            PlacementWatch(),
            settings.cgroup_parent,
            settings.network,
            firewall.config.pin_dir,
            settings.resync_seconds,
        )
    except DockerError as exc:
        log.error("%s", exc)
        firewall.close()
        registry.close()
        return 1
    host_dirs = HostDirs(paths.containers)
    controller = RuntimeController(
        port or DockerEngine(scope=settings),
        registry,
        pki,
        network=settings.network,
        resync_interval=settings.resync_seconds,
        workers=workers,
        firewall=firewall,
        api_relay=api_relay,
        host_dirs=host_dirs,
    )
    started = time.time()

    def runtime_state(_params: dict[str, Any]) -> dict[str, Any]:
        """What `diff` compares with the specs: every agent's runtime spec, enforced allowlist
        and whether post_init ran on its config volume."""
        specs, allowlists = registry.runtimes(), firewall.allowlists()
        done = registry.post_init_done()
        states = {
            key: AgentRuntimeState(
                key,
                specs.get(key),
                tuple(allowlists[key]) if key in allowlists else None,
                key in done,
            )
            for key in sorted(specs.keys() | allowlists.keys())
        }
        return to_wire(states)  # type: ignore[no-any-return]

    def runtime_put(params: dict[str, Any]) -> None:
        """apply's UpdateRuntime step: the spec the agent's next start runs with."""
        spec = from_wire(AgentRuntimeSpec, params["spec"])
        registry.put_runtime(spec)
        if params.get("fresh_config"):
            registry.forget_post_init(spec.agent_key)

    def forget_agents(params: dict[str, Any]) -> None:
        for key in params.get("agents", []):
            firewall.forget(str(key))
            registry.forget_runtime(str(key))
        forget_pending()

    def forget_pending() -> None:
        """Agents deleted while the CP was down: the CLI left their keys in forget.pending.
        A key that has a container again (made since) is alive and kept."""
        taking = paths.forget_pending.with_suffix(".taking")
        try:
            os.replace(paths.forget_pending, taking)  # an append from now on makes a new file
        except FileNotFoundError:
            return
        keys = {line.strip() for line in taking.read_text().splitlines() if line.strip()}
        alive = {
            naming.agent_key(c.labels[naming.PROJECT], c.labels[naming.AGENT])
            for c in controller.port.list_containers()
            if naming.PROJECT in c.labels and naming.AGENT in c.labels
        }
        for key in sorted(keys - alive):
            log.info("forgetting agent %s (deleted while the control plane was down)", key)
            firewall.forget(key)
            registry.forget_runtime(key)
        taking.unlink(missing_ok=True)

    def status(params: dict[str, Any]) -> dict[str, Any]:
        ids = [str(cid) for cid in params.get("containers", [])]
        reports = controller.start_reports(ids, firewall=bool(params.get("firewall", True)))
        return to_wire(reports)  # type: ignore[no-any-return]

    def issue_bootstrap(params: dict[str, Any]) -> dict[str, Any]:
        """A new container's identity: into its host directory when it has one bound, else
        as an archive for the CLI to copy in (a container made without a directory)."""
        agent = str(params["agent"])
        found = controller.port.container_mounts(str(params["container"]))
        labels = found.labels
        owner = naming.agent_key(labels.get(naming.PROJECT, ""), labels.get(naming.AGENT, ""))
        if owner != agent:
            raise ValueError(f"container {found.id[:12]} is agent {owner!r}'s, not {agent!r}'s")
        files = bootstrap_files(pki, agent, found.id)
        directory = host_dirs.bound(labels, found.mounts)
        if directory is not None:
            host_dirs.write(directory, files)
            return to_wire(Bootstrap(found.id))  # type: ignore[no-any-return]
        archive = base64.b64encode(bootstrap_archive(files)).decode()
        return to_wire(Bootstrap(found.id, archive))  # type: ignore[no-any-return]

    verifying = threading.Lock()  # one run at a time: its targets have one interface name

    def verify(params: dict[str, Any]) -> list[dict[str, Any]]:
        key = firewall.resolve_agent(str(params["agent"])) if params.get("agent") else None
        with verifying:
            results = verify_agents(controller.port, firewall, controller.network, key)
        return [r.as_dict() for r in results]

    def ping(_params: dict[str, Any]) -> dict[str, Any]:
        hello = Hello(
            pid=os.getpid(),
            uptime=time.time() - started,
            version=code_identity(),
            settings=settings.agreement(),
            busy=controller.busy(),
        )
        return to_wire(hello)  # type: ignore[no-any-return]

    api = ApiServer(
        paths.socket,
        {
            "ping": ping,
            "runtime_state": runtime_state,
            "runtime_put": runtime_put,
            "forget_agents": forget_agents,
            "status": status,
            "issue_bootstrap": issue_bootstrap,
            "verify": verify,
            **firewall_handlers(firewall),
        },
    )
    veth_guard.start()
    forget_pending()  # before the API answers: an apply's runtime_put must come after it
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
        veth_guard.stop()  # the filters stay on the veths: enforcement outlives the CP
        firewall.close()  # the programs and maps stay pinned: enforcement outlives the CP
        registry.close()
        for path in (paths.pid_file, paths.socket):
            path.unlink(missing_ok=True)
    return 0

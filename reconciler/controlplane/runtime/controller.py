"""The runtime controller: every start of an agent container, whoever caused it, goes through
here: enrol the firewall, dial clawkerd with backoff, drive the Session to AgentReady.

Level-triggered: Docker `start` events and a periodic resync only enqueue container ids; each
pass inspects the container afresh and compares its StartedAt with what the registry recorded,
so a missed event, a duplicate event or a CP restart all end in the same state.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import grpc
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from proto import CLAWKERD_PORT
from reconciler import naming
from reconciler.controller.backoff import Backoff
from reconciler.controller.controller import Controller
from reconciler.controller.sources import Cause, DockerEventSource, ResyncTimer, Trigger
from reconciler.controlplane.api.messages import StartReport
from reconciler.controlplane.bridge.api_relay import ApiKeyError, ApiKeySource, ApiRelayConfig
from reconciler.controlplane.host_dirs import HostDirs
from reconciler.controlplane.identity.pki import (
    ClawkerPKI,
    RegistrationTokenError,
    RegistrationTokenReplayedError,
)
from reconciler.controlplane.registry import (
    AgentRuntimeSpec,
    Phase,
    Registry,
    StartStatus,
    StepRecord,
)
from reconciler.controlplane.runtime.bridge_stream import Bridges
from reconciler.controlplane.runtime.cancellation import Cancellation, StartCancelledError
from reconciler.controlplane.runtime.session import (
    SessionError,
    StartPlan,
    StartSupersededError,
    StepFailedError,
    close_channel,
    drive_start,
    in_background,
    open_channel,
)
from reconciler.docker.engine import ContainerEvent, DockerError, DockerPort, RuntimeInfo
from reconciler.firewall.enforcement import Firewall, FirewallError

__all__ = ["RuntimeController"]

log = logging.getLogger("clawker.controlplane.runtime")

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Docker events that end a container's start: its work is cancelled at once.
_ENDS_A_START = {"die", "destroy"}


# A pass that raised (a bug, a daemon hiccup) is retried apart from the others.
_RETRY = Backoff(initial=0.5, cap=30.0)
# Before each gRPC dial, a plain TCP connect every PROBE_INTERVAL tells when clawkerd's port
# accepts, for up to PROBE_WINDOW. A refused connect costs microseconds; a refused gRPC connect
# costs its reconnect backoff (50 ms, then growing), which was most of the dial's wait on
# every start. A connect is bounded by PROBE_CONNECT_TIMEOUT (an address nobody answers).
PROBE_INTERVAL = 0.005
PROBE_WINDOW = 2.0
PROBE_CONNECT_TIMEOUT = 0.25
# A replaced container stops beside its successor's start (docs/reconciler.md, the swap): the
# successor's steps wait until no other container of the agent runs, looking every
# ALONE_POLL, for up to ALONE_WINDOW (Docker's stop sends SIGKILL after 10 s; then the start
# fails and says which container still runs).
ALONE_POLL = 0.02
ALONE_WINDOW = 60.0
# `status` (get agents, the readiness wait) re-checks a container it is asked about at most
# once in this many seconds.
ASK_INTERVAL = 5.0


class _NotListeningError(Exception):
    """clawkerd's port did not accept the mTLS handshake yet (or the peer there is not the
    container we dial: TLS refuses another container's leaf, which looks the same)."""


class _NotAloneError(Exception):
    """Another container of the agent kept running: this start's steps never began."""


class _StartGoneError(Exception):
    """Re-read between dial attempts: the container is gone, stopped or in another start."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _NotListeningError):
        return True
    return isinstance(exc, grpc.RpcError) and exc.code() in _TRANSIENT


class RuntimeController:
    def __init__(
        self,
        port: DockerPort,
        registry: Registry,
        pki: ClawkerPKI,
        *,
        network: str,
        resync_interval: float = 30.0,
        dial_timeout: float = 60.0,
        workers: int = 4,
        sleep: Callable[[float], None] | None = None,  # None: the real, interruptible sleep
        firewall: Firewall | None = None,
        api_relay: ApiRelayConfig | None = None,
        host_dirs: HostDirs | None = None,
    ) -> None:
        self.port, self.registry, self.pki = port, registry, pki
        self.host_dirs = host_dirs  # each container's bootstrap directory, removed with it
        self.firewall = firewall  # None only where no container may start (unit tests)
        self.network = network
        self.resync_interval = resync_interval
        self.dial_timeout = dial_timeout
        # The same controller as watch mode's, keyed by container id: the event stream and a
        # resync only enqueue, workers drive one start at a time, a pass that raised backs off.
        self.controller = Controller("cp", self._reconcile, workers=workers, backoff=_RETRY)
        # Starts to enrol at once, even while a worker still drives this container's previous
        # start (a queued key waits for that pass to end, which may take the dial timeout).
        self.enroller = Controller("cp-enrol", self._reconcile_enrol, workers=1, backoff=_RETRY)
        self._stop = self.controller.stopping
        # The cancellation switch of each pass in progress, by container id.
        self._passes: dict[str, tuple[Cancellation, list[str]]] = {}
        self._passes_lock = threading.Lock()
        # When `status` last made a pass of each container (see start_reports), by id.
        self._asked: dict[str, float] = {}
        self._asked_lock = threading.Lock()
        self._sleep = sleep
        # ssh/gpg agents, git credentials and the API relay, per container start
        self.api_relay = api_relay or ApiRelayConfig()
        self.bridges = Bridges(self.api_relay)

    def _allowlist(self, key: str) -> Callable[[], Iterable[str]] | None:
        """The agent's live firewall allowlist, read each time (`firewall add` changes it)."""
        firewall = self.firewall
        if firewall is None:
            return None
        return lambda: firewall.state(key).domains

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        events = DockerEventSource(
            self.port, self._on_event, lambda _first: self._resync_logged(), self._lost, self._stop
        )
        self.controller.add_source("events", events.run)  # its first connect re-lists
        self.controller.add_source(
            "resync", ResyncTimer(self.resync_interval, self.resync, self._stop).run
        )
        self.enroller.start_workers()
        self.controller.start_workers()

    def stop(self) -> None:
        self.controller.stop()
        self.enroller.stop()
        self.bridges.close_all()

    def poke(self, container_id: str, why: str = "asked") -> None:
        """Look at this container again now (the CLI asking about it is also a trigger)."""
        self.controller.enqueue(container_id, Trigger(Cause.CONTAINER, why))

    # -- triggers -----------------------------------------------------------------------------
    def resync(self) -> None:
        """Enqueue every running agent container: the periodic safety net for lost events."""
        alive, dirs = set(), set()
        for c in self.port.list_containers():
            alive.add(c.id)
            dirs.add(c.labels.get(naming.HOST_DIR, ""))
            if c.state == "running" and c.labels.get(naming.PURPOSE) == "agent":
                self.controller.enqueue(c.id, Trigger(Cause.RESYNC))
        self.registry.forget_containers_except(alive)
        with self._asked_lock:
            self._asked = {cid: at for cid, at in self._asked.items() if cid in alive}
        if self.host_dirs is not None:
            for token in self.host_dirs.sweep(dirs):
                log.info("removed host directory %s: no container has it", token)
        if self.firewall is not None:
            self.firewall.sweep()

    def _resync_logged(self) -> None:
        try:
            self.resync()
        except DockerError as exc:
            log.warning("resync failed: %s", exc)

    def _on_event(self, event: ContainerEvent) -> None:
        if event.action == "start":
            self.enroller.enqueue(event.id, Trigger(Cause.CONTAINER, "start"))
            self.controller.enqueue(event.id, Trigger(Cause.CONTAINER, "start"))
        elif event.action in _ENDS_A_START:
            if event.action == "destroy" and self.host_dirs is not None:
                self.host_dirs.remove(event.labels.get(naming.HOST_DIR, ""))
            self._cancel_pass(event)
            # Re-read: what is left of it, if anything.
            self.controller.enqueue(event.id, Trigger(Cause.CONTAINER, event.action))

    def _lost(self, why: str, delay: float) -> None:
        log.warning("%s; reconnecting in %.1fs", why, delay)

    def _cancel_pass(self, event: ContainerEvent) -> None:
        """End the work of the start `event` ended: a `destroy`, or a `die` no older than the
        start the pass drives (a late `die` of the previous start must not end this one)."""
        with self._passes_lock:
            current = self._passes.get(event.id)
        if current is None:
            return
        cancellation, started_at = current
        if event.action == "die":
            if not started_at:  # the pass has not read its start yet: its inspect will tell
                return
            if event.time_nano and event.time_nano < _rfc3339_ns(started_at[0]):
                return
        what = "was removed" if event.action == "destroy" else "died"
        cancellation.cancel(f"the container {what} during its start")

    def _begin_pass(self, container_id: str) -> tuple[Cancellation, list[str]]:
        # Registered before the pass inspects the container: a death after this is an event
        # that cancels it, a death before it is what the inspect sees.
        entry: tuple[Cancellation, list[str]] = (Cancellation(), [])
        with self._passes_lock:
            self._passes[container_id] = entry
        return entry

    def _end_pass(self, container_id: str, entry: tuple[Cancellation, list[str]]) -> None:
        with self._passes_lock:
            if self._passes.get(container_id) is entry:
                del self._passes[container_id]

    # -- work ---------------------------------------------------------------------------------
    def _reconcile_enrol(self, cid: str, _triggers: tuple[Trigger, ...]) -> bool:
        try:
            info = self.port.inspect_runtime(cid, self.network)
            if info is not None and info.running and _is_agent(info):
                self._enrol_firewall(info)
        except (FirewallError, DockerError) as exc:  # handle() retries and reports it
            log.warning("enrolling container %s failed: %s", cid[:12], exc)
        return True

    def _reconcile(self, cid: str, _triggers: tuple[Trigger, ...]) -> bool:
        self.handle(cid)
        return True  # a start that failed is recorded as failed; a pass that raised retries

    def busy(self) -> int:
        """Starts being driven right now (a CP restart for a new version waits for 0)."""
        return self.controller.busy()

    def firewall_enrolled(self, container_id: str) -> bool:
        """FirewallEnrolled: the container's current cgroup is on the kernel's policy map."""
        if self.firewall is None:
            return False
        info = self.port.inspect_runtime(container_id, self.network)
        return info is not None and info.running and self.firewall.is_enrolled(info.id, info.pid)

    def start_reports(
        self, container_ids: Sequence[str], *, firewall: bool = True
    ) -> dict[str, StartReport]:
        """The API's `status`: each container's latest start, for all of them at once (one
        registry query, one look at the firewall; no Docker call). Asking is also a trigger,
        except about a start a worker is driving now (the readiness wait polls, and each poke
        costs a pass, an inspect and an enrolment, that competes with the starts being driven)
        and about a recorded start asked about within ASK_INTERVAL."""
        starts = self.registry.statuses(container_ids)
        enrolled = self.firewall_enrolled_all(container_ids) if firewall else set()
        reports = {}
        for cid in container_ids:
            start = starts.get(cid)
            if start is None or (start.phase.final and self._ask_due(cid)):
                self.poke(cid)
            reports[cid] = StartReport(
                cid,
                start,
                firewall_enrolled=cid in enrolled,
                initialized=bool(start and start.initialized),
            )
        return reports

    def _ask_due(self, container_id: str) -> bool:
        """Whether asking about this container's recorded start makes a pass now: at most one
        per ASK_INTERVAL. Asking is the safety net for a lost event, not how starts are seen
        (the event stream and the resync are); without the limit a `get agents` of N Ready
        agents cost N passes, each an inspect and an enrolment, and a terminal polling it kept
        the CP busy. A container the CP has no record of is looked at on every ask."""
        now = time.monotonic()
        with self._asked_lock:
            if now - self._asked.get(container_id, -ASK_INTERVAL) < ASK_INTERVAL:
                return False
            self._asked[container_id] = now
            return True

    def firewall_enrolled_all(self, container_ids: Sequence[str]) -> set[str]:
        """FirewallEnrolled of many containers: those whose current cgroup is on the map."""
        if self.firewall is None:
            return set()
        return self.firewall.enrolled_containers(container_ids)

    def handle(self, container_id: str) -> StartStatus | None:
        """Bring one running container to AgentReady, unless this start was already handled."""
        entry = self._begin_pass(container_id)
        try:
            return self._handle(container_id, *entry)
        finally:
            self._end_pass(container_id, entry)

    def _handle(
        self, container_id: str, cancellation: Cancellation, started_at: list[str]
    ) -> StartStatus | None:
        info = self.port.inspect_runtime(container_id, self.network)
        if info is None or not info.running:
            return None
        started_at.append(info.started_at)
        project, agent = info.labels.get(naming.PROJECT), info.labels.get(naming.AGENT)
        if not project or not agent or info.labels.get(naming.PURPOSE) != "agent":
            return None
        key = naming.agent_key(project, agent)
        # First, before anything slower: until its cgroup is enrolled the start gets nothing.
        # Also on every pass over a start already handled: a restarted CP re-adopts it.
        enrol_began = time.monotonic()
        enrol_error: FirewallError | None = None
        try:
            self._enrol_firewall(info)
        except FirewallError as exc:
            enrol_error = exc
        enrolled_in = time.monotonic() - enrol_began
        known = self.registry.status(info.id)
        this_start = known is not None and known.started_at == info.started_at
        # Read once per start: it runs with it, and its status records it (`get agents` shows
        # what a later UpdateRuntime changed as pending until the next start).
        runtime = (known.runtime if this_start and known else None) or self.registry.runtime(key)
        # The bridge rides on the CP's connection to clawkerd: opened on the dial's channel
        # before the Session's steps (they may use it), or, for a start already handled (a
        # restarted CP re-adopting it, a resync noticing a broken bridge), on a dial of its own.
        user = naming.AgentUser.from_label(info.labels.get(naming.AGENT_USER))

        def bridge_up(channel: grpc.Channel | None = None) -> bool:
            return self.bridges.ensure(
                info.id,
                info.started_at,
                info.name,
                runtime,
                self._allowlist(key),
                user,
                channel=channel,
                dial=lambda: self._dial_for_bridge(info),
            )

        if known and this_start and known.phase.final:
            if known.phase == Phase.READY:
                bridge_up()
            if enrol_error is not None:
                log.error("%s: re-enrolling in the firewall failed: %s", info.name, enrol_error)
            return known
        status = StartStatus(info.id, key, info.started_at, Phase.INITIALIZING, runtime=runtime)
        self.registry.put_status(status)
        steps: list[StepRecord] = []
        key_error = _api_key_problem(runtime, self.api_relay)

        initialized = False

        def put_progress(detail: str) -> None:
            self.registry.put_status(
                StartStatus(
                    info.id,
                    key,
                    info.started_at,
                    Phase.INITIALIZING,
                    detail,
                    tuple(steps),
                    initialized=initialized,
                    runtime=runtime,
                )
            )

        def record_step(record: StepRecord) -> None:
            steps.append(record)
            if record.name == "post_init" and record.ok:  # its marker is on the volume now
                self.registry.mark_post_init_done(key)
            put_progress(f"step {record.name} done")

        def record_initialized() -> None:
            nonlocal initialized
            initialized = True
            put_progress("initialized")

        began = time.monotonic()
        timings: dict[str, float] = {"enrol": enrolled_in}
        try:
            if enrol_error is not None:
                raise enrol_error
            if key_error is not None:
                raise key_error
            # Looked up while the dial waits for clawkerd; waited for before the first step.
            alone = self._alone_in_background(info, project, agent, put_progress, cancellation)
            result = self._dial_and_drive(
                info,
                key,
                runtime,
                record_step,
                record_initialized,
                timings,
                cancellation,
                bridge_up,
                alone,
            )
        except (StartCancelledError, StartSupersededError, _StartGoneError) as exc:
            return self._abandon(info, key, tuple(steps), str(exc))
        except StepFailedError as exc:
            final = StartStatus(
                info.id,
                key,
                info.started_at,
                Phase.FAILED,
                f"step {exc.record.name} failed with exit code {exc.record.exit_code}",
                tuple(steps),
            )
        except _NotAloneError as exc:
            final = StartStatus(info.id, key, info.started_at, Phase.FAILED, str(exc), tuple(steps))
        except (SessionError, RegistrationTokenError, grpc.RpcError) as exc:
            if cancellation.cancelled:  # the stream ended because the start did
                return self._abandon(info, key, tuple(steps), cancellation.reason)
            final = StartStatus(
                info.id,
                key,
                info.started_at,
                Phase.FAILED,
                f"session with clawkerd failed: {_describe(exc)}",
                tuple(steps),
            )
        except ApiKeyError as exc:
            final = StartStatus(
                info.id,
                key,
                info.started_at,
                Phase.FAILED,
                f"the API key for agent.claude_code.api_key cannot be read: {exc}",
                tuple(steps),
            )
        except FirewallError as exc:
            final = StartStatus(
                info.id,
                key,
                info.started_at,
                Phase.FAILED,
                f"firewall enrolment failed: {exc}",
                tuple(steps),
            )
        except RetryError:
            final = StartStatus(
                info.id,
                key,
                info.started_at,
                Phase.FAILED,
                f"clawkerd of container {info.id[:12]} did not answer at {info.ip}:7700 within "
                f"{self.dial_timeout:.0f}s (a container bootstrapped by a clawker older than "
                "its control plane has no id in its certificate: recreate it)",
                tuple(steps),
            )
        else:
            timings["session"] = (
                time.monotonic() - began - timings["dial"] - timings.get("bridge", 0.0)
            )
            detail = "re-adopted: the agent was already running" if result else "ready"
            final = StartStatus(
                info.id, key, info.started_at, Phase.READY, detail, tuple(steps), timings, True
            )
            self.registry.touch(info.id)
        final = replace(final, runtime=runtime)
        self.registry.put_status(final)
        log.info("%s %s: %s (%s)", key, info.id[:12], final.phase, final.detail)
        return final

    def _enrol_firewall(self, info: RuntimeInfo) -> None:
        """Admit this start's cgroup to the firewall, before anything else talks to clawkerd:
        the agent's CMD only starts after AgentReady, so it never runs unfiltered."""
        if self.firewall is None:
            return
        key = naming.agent_key(info.labels[naming.PROJECT], info.labels[naming.AGENT])
        self.firewall.enrol(
            info.id,
            key,
            pid=info.pid,
            address=info.ip,
            gateway=info.gateway,
        )

    def _still_current(self, info: RuntimeInfo) -> bool:
        now = self.port.inspect_runtime(info.id, self.network)
        return now is not None and now.running and now.started_at == info.started_at

    def _dial_and_drive(
        self,
        info: RuntimeInfo,
        key: str,
        runtime: AgentRuntimeSpec,
        on_step: Callable[[StepRecord], None],
        on_initialized: Callable[[], None],
        timings: dict[str, float],
        cancellation: Cancellation,
        bridge_up: Callable[[grpc.Channel], bool],
        alone: Callable[[], None] = lambda: None,
    ) -> bool:
        user = naming.AgentUser.from_label(info.labels.get(naming.AGENT_USER))
        plan = StartPlan(info.id, info.name, key, runtime, user)

        def register(token: str) -> None:
            # The token is burnt in the same transaction as the registration it pays for.
            claims = self.pki.verify_registration_jwt(
                token, info.id, seen_jti=self.registry.token_used
            )
            if not self.registry.register(
                info.id, claims.agent_key, info.name, claims.cert_thumbprint, jti=claims.jti
            ):
                raise RegistrationTokenReplayedError(
                    f"registration token was already used (jti {claims.jti}); tokens are single use"
                )

        def pause(seconds: float) -> None:
            self._pause(cancellation, seconds)

        dial_began = time.monotonic()
        address = info.ip
        for attempt in Retrying(
            stop=stop_after_delay(self.dial_timeout),
            # 50 ms doubling to 2 s; tenacity's default jitter (to 1 s) would dwarf the first waits
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
            retry=retry_if_exception(_transient),
            sleep=pause,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    address = self._current_address(info)
                if not _accepting(address, PROBE_WINDOW, pause):
                    raise _NotListeningError(address)
                channel = open_channel(self.pki, address, info.id)
                ready = grpc.channel_ready_future(channel)
                try:
                    with cancellation.interrupting(ready.cancel):
                        ready.result(timeout=2.0)
                    timings["dial"] = time.monotonic() - dial_began
                except grpc.FutureTimeoutError as exc:
                    close_channel(channel)
                    raise _NotListeningError(address) from exc
                except grpc.FutureCancelledError as exc:
                    close_channel(channel)
                    raise StartCancelledError(cancellation.reason) from exc
                bridged = False
                try:
                    waited = time.monotonic()
                    bridged = bridge_up(channel)  # its listeners are up before any step
                    timings["bridge"] = time.monotonic() - waited  # beyond the dial
                    result = drive_start(
                        channel,
                        plan,
                        register=register,
                        is_registered=self.registry.is_registered(info.id),
                        on_step=on_step,
                        on_initialized=on_initialized,
                        still_current=lambda: self._still_current(info),
                        alone=alone,
                        cancellation=cancellation,
                    )
                    return result.readopted
                finally:
                    if not bridged:  # else the bridge owns the channel and closes it
                        close_channel(channel)
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _pause(self, cancellation: Cancellation, seconds: float) -> None:
        if self._sleep is None:
            cancellation.sleep(seconds)
        else:
            self._sleep(seconds)
            cancellation.check()

    def _alone_in_background(
        self,
        info: RuntimeInfo,
        project: str,
        agent: str,
        progress: Callable[[str], None],
        cancellation: Cancellation,
    ) -> Callable[[], None]:
        """List the agent's other running containers on a thread of its own from now; the
        returned call waits for that answer, and while another container runs it looks again
        every ALONE_POLL (saying so in the start's status), for up to ALONE_WINDOW."""

        def others() -> dict[str, str]:
            found = self.port.running_agent_containers(project, agent)
            return {cid: name for cid, name in found.items() if cid != info.id}

        first = in_background(others, "start-alone")

        def wait() -> None:
            running = first.result()
            if not running:
                return
            deadline = time.monotonic() + ALONE_WINDOW
            names = ", ".join(sorted(running.values()))
            log.info("%s %s: waiting for %s to stop", info.name, info.id[:12], names)
            progress(f"waiting for {names} to stop (one container per agent)")
            while running:
                if time.monotonic() >= deadline:
                    raise _NotAloneError(
                        f"another container of agent {project}/{agent} is still running "
                        f"({', '.join(sorted(running.values()))}) after {ALONE_WINDOW:.0f}s: "
                        "an agent runs in one container at a time; stop or remove the other"
                    )
                self._pause(cancellation, ALONE_POLL)
                running = others()

        return wait

    def _dial_for_bridge(self, info: RuntimeInfo, timeout: float = 5.0) -> grpc.Channel:
        """A ready channel to the clawkerd of this start (TLS pins it to the container id)."""
        channel = open_channel(self.pki, info.ip, info.id)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except BaseException:
            close_channel(channel)
            raise
        return channel

    def _current_address(self, info: RuntimeInfo) -> str:
        """Between dial attempts, re-read the container: a failed attempt may mean it is gone
        (and its address already another container's), so only its same start is dialled."""
        now = self.port.inspect_runtime(info.id, self.network)
        if now is None:
            raise _StartGoneError("the container was removed during its start")
        if not now.running or now.started_at != info.started_at:
            raise _StartGoneError("the container stopped or restarted during its start")
        return now.ip or info.ip

    def _abandon(
        self, info: RuntimeInfo, key: str, steps: tuple[StepRecord, ...], why: str
    ) -> StartStatus | None:
        """This pass's start is over: drop its work, re-read the container, record what is
        true now. A new start of the container is its own pass's (queued here)."""
        now = self.port.inspect_runtime(info.id, self.network)
        if now is None:
            log.info("%s %s: work dropped: %s", key, info.id[:12], why)
            return None
        if now.started_at != info.started_at or now.running:
            log.info("%s %s: work dropped (%s); re-reading it", key, info.id[:12], why)
            self.poke(info.id, "re-read")
            return None
        final = StartStatus(
            info.id,
            key,
            info.started_at,
            Phase.FAILED,
            f"the container stopped (exit code {now.exit_code}) before it was Ready",
            steps,
        )
        self.registry.put_status(final)
        log.info("%s %s: %s (%s)", key, info.id[:12], final.phase, final.detail)
        return final


def _accepting(
    address: str, within: float, pause: Callable[[float], None], port: int = CLAWKERD_PORT
) -> bool:
    """Whether clawkerd's port at `address` accepts a TCP connect within `within` seconds,
    trying every PROBE_INTERVAL (`pause` sleeps, and raises if the start was cancelled).

    The listener accepts as soon as clawkerd has bound it, a moment before it serves TLS; the
    gRPC dial that follows then connects on its first attempt. The probe's connection is closed
    unused (clawkerd's gRPC sees a handshake that never began, which it drops).
    """
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((address, port), timeout=PROBE_CONNECT_TIMEOUT):
                return True
        except OSError:  # refused (not listening yet), unreachable, timed out
            pass
        if time.monotonic() >= deadline:
            return False
        pause(PROBE_INTERVAL)


def _api_key_problem(runtime: AgentRuntimeSpec, relay: ApiRelayConfig) -> ApiKeyError | None:
    """Read the key once at the start (and forget it): a start whose key cannot be read fails
    loudly here, not at the agent's first API request."""
    if not runtime.api_relay:
        return None
    try:
        ApiKeySource.of(runtime).read(relay.environ)
    except ApiKeyError as exc:
        return exc
    return None


def _is_agent(info: RuntimeInfo) -> bool:
    labels = info.labels
    return (
        bool(labels.get(naming.PROJECT) and labels.get(naming.AGENT))
        and labels.get(naming.PURPOSE) == "agent"
    )


def _rfc3339_ns(stamp: str) -> int:
    """Docker's `StartedAt` (RFC 3339, nanoseconds) as ns since the epoch; 0 if unreadable."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    try:
        seconds = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return 0
    fraction = "".join(ch for ch in rest if ch.isdigit())[:9].ljust(9, "0")
    return int(seconds) * 1_000_000_000 + int(fraction)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)

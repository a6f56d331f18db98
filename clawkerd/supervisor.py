"""The container's lifecycle: the user CMD, signals, reaping and clawkerd's exit code.

clawkerd waits for the CP, runs the steps it dispatches, and forks the user CMD only on
AgentReady, as CLAWKER_USER, with the kernel dropping privileges between fork and exec. Signals
sent to clawkerd go to the CMD's process group; before AgentReady a stop signal ends clawkerd
with 1. clawkerd exits with the CMD's status once the CMD is reaped, after draining orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

from clawkerd import __version__
from clawkerd.bootstrap import BootstrapMaterial, Settings
from clawkerd.exit_status import (
    EXIT_BOOT_FAILED,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_STOPPED_BEFORE_READY,
)
from clawkerd.identity import (
    UserIdentity,
    credentials_for,
    supplementary_groups,
    user_environment,
    working_directory_for,
)
from clawkerd.logging_setup import EventLog
from clawkerd.reaping import ChildReaper, become_subreaper
from clawkerd.server import ClawkerdServicer, ListenError, start_server
from clawkerd.session import CmdSpawnError
from clawkerd.step_runner import Emit, StepOutcome, run_shell_step
from clawkerd.steps_tty import StepLineRenderer
from proto.gen import clawkerd_pb2 as pb

__all__ = ["FORWARDED_SIGNALS", "STOP_SIGNALS", "Supervisor", "container_environment", "supervise"]

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# These end clawkerd (exit 1) when no CMD runs yet to receive them.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
# How long open sessions get to flush (a fatal step's Done) when clawkerd exits.
SERVER_STOP_GRACE_SECONDS = 3.0
CMD_EXITED = "the user command exited"


def container_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the CMD and steps start from: the container's, minus clawkerd's own."""
    return {key: value for key, value in environ.items() if not key.startswith("CLAWKERD_")}


class Supervisor:
    """Owns the user CMD and the exit decision; the backend every Session talks to."""

    def __init__(
        self,
        settings: Settings,
        material: BootstrapMaterial,
        user: UserIdentity,
        *,
        log: EventLog,
        reaper: ChildReaper,
        renderer: StepLineRenderer,
        base_env: Mapping[str, str],
    ) -> None:
        self._settings = settings
        self._material = material
        self._user = user
        self._log = log
        self._reaper = reaper
        self._renderer = renderer
        self._base_env = dict(base_env)
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._cmd: subprocess.Popen[bytes] | None = None
        self._cmd_exited = False
        self.exit_reason = ""

    # -- SessionBackend ------------------------------------------------------------------------

    @property
    def register_jwt(self) -> str:
        """The registration JWT from the bootstrap material."""
        return self._material.register_jwt

    @property
    def exiting(self) -> bool:
        """clawkerd has decided to exit."""
        return self._exit.done()

    @property
    def cmd_running(self) -> bool:
        """The user CMD was started and has not exited."""
        return self._cmd is not None and not self._cmd_exited

    def hello(self) -> pb.HelloAck:
        """The state the CP needs to decide what to dispatch."""
        return pb.HelloAck(
            initialized=self._settings.initialized_marker.exists(),
            cmd_running=self.cmd_running,
            agent=self._settings.agent,
            project=self._settings.project,
            container_id=self._settings.container_id,
            clawkerd_version=__version__,
        )

    def mark_initialized(self) -> None:
        """Write the once-per-container marker into the container's writable layer."""
        marker = self._settings.initialized_marker
        marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = marker.with_name(f".{marker.name}.tmp")
        tmp.write_text(dt.datetime.now(dt.UTC).isoformat() + "\n")
        os.replace(tmp, marker)
        self._log.info("agent_initialized", marker=str(marker))

    def start_cmd(self) -> bool:
        """Fork the user CMD as CLAWKER_USER; False (a no-op) if it was already started."""
        if self._cmd is not None:
            self._log.info("agent_ready_repeated", cmd_running=self.cmd_running)
            return False
        user = self._user
        credentials = credentials_for(user.uid, user.gid, supplementary_groups(user, user.gid))
        command = list(self._settings.command)
        try:
            # stdin/stdout/stderr are inherited: the CMD gets the container's TTY.
            process = subprocess.Popen(
                command,
                cwd=working_directory_for(user, self._settings.workspace),
                env=user_environment(self._base_env, user),
                process_group=0,
                user=credentials.user,
                group=credentials.group,
                extra_groups=credentials.extra_groups,
            )
        except OSError as exc:
            code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
            what = exc.filename if exc.filename is not None else command[0]
            message = f"cannot start the user command: {exc.strerror or exc}: {what}"
            self._log.error("cmd_spawn_failed", error=message, exit_code=code)
            print(f"clawkerd: {message}", file=sys.stderr, flush=True)
            raise CmdSpawnError(message, code) from exc
        self._cmd = process
        exited = self._reaper.watch(process.pid)
        exited.add_done_callback(self._on_cmd_exit)
        self._log.info("cmd_started", pid=process.pid, program=command[0], uid=user.uid)
        if self._renderer.enabled:
            _hand_terminal_to(process.pid, self._log)
        return True

    def forward_signal(self, signum: int) -> bool:
        """Send signum to the CMD's process group; False if the CMD is not running."""
        if self._cmd is None or self._cmd_exited:
            return False
        try:
            os.killpg(self._cmd.pid, signum)
        except ProcessLookupError:
            return False
        self._log.info("signal_forwarded", signal=signal.Signals(signum).name, pid=self._cmd.pid)
        return True

    def request_exit(self, code: int, reason: str) -> None:
        """Decide clawkerd's exit code; later requests are ignored."""
        if self._exit.done():
            return
        self._log.info("exit_requested", exit_code=code, reason=reason)
        self.exit_reason = reason
        self._exit.set_result(code)

    async def run_step(self, command: pb.ShellCommand, emit: Emit) -> StepOutcome:
        """Run a dispatched ShellCommand."""
        return await run_shell_step(
            command, reaper=self._reaper, base_env=self._base_env, emit=emit
        )

    def render_step_started(self, name: str) -> None:
        """The "Active" line of a step on the container's TTY, until the CMD owns it."""
        if self._cmd is None:
            self._renderer.step_started(name)

    def render_step(self, name: str, ok: bool, detail: str, seconds: float | None = None) -> None:
        """A ✓/✗ line on the container's TTY, until the CMD owns the terminal."""
        if self._cmd is None:
            self._renderer.step_finished(name, ok, "" if ok else detail, seconds)

    # -- lifecycle -----------------------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """Handle a signal sent to clawkerd (called from the event loop)."""
        if self.forward_signal(signum):
            return
        name = signal.Signals(signum).name
        if self._cmd is None and signum in STOP_SIGNALS:
            self.request_exit(EXIT_STOPPED_BEFORE_READY, f"{name} before AgentReady")
        else:
            self._log.info("signal_ignored", signal=name, cmd_started=self._cmd is not None)

    async def wait_for_exit(self) -> int:
        """The exit code, once something decided it."""
        # Shielded: a cancelled waiter must not cancel the decision itself.
        return await asyncio.shield(self._exit)

    async def wait_until_exiting(self) -> None:
        """Return once clawkerd has decided to exit."""
        await asyncio.shield(self._exit)

    def stop_cmd(self) -> None:
        """Kill a still-running CMD when clawkerd exits for another reason (a fatal step)."""
        if self.cmd_running and self._cmd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._cmd.pid, signal.SIGKILL)

    def _on_cmd_exit(self, exited: asyncio.Future[int]) -> None:
        code = exited.result()
        self._cmd_exited = True
        if self._cmd is not None:
            # The reaper collected it; tell Popen so it never tries to wait() itself.
            self._cmd.returncode = code
        self._log.info("cmd_exited", exit_code=code)
        self.request_exit(code, CMD_EXITED)


def _hand_terminal_to(pgid: int, log: EventLog) -> None:
    """Make the CMD's process group the TTY's foreground group, so it can read the terminal.

    If the CMD touched the TTY before this, it was stopped by SIGTTIN; SIGCONT resumes it.
    """
    fd = next((fd for fd in (0, 1, 2) if _isatty(fd)), None)
    if fd is None:
        return
    # A background process changing the foreground group gets SIGTTOU unless it blocks it.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError as exc:
        log.warning("terminal_handoff_failed", error=str(exc))
        return
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGCONT)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


async def supervise(
    settings: Settings,
    material: BootstrapMaterial,
    user: UserIdentity,
    log: EventLog,
    *,
    environ: Mapping[str, str],
) -> int:
    """Run clawkerd until its exit code is decided; return it."""
    loop = asyncio.get_running_loop()
    reaper = ChildReaper(log)
    is_init = os.getpid() == 1
    if not is_init and not become_subreaper():
        log.warning("subreaper_unavailable")
    loop.add_signal_handler(signal.SIGCHLD, reaper.reap)
    supervisor = Supervisor(
        settings,
        material,
        user,
        log=log,
        reaper=reaper,
        renderer=StepLineRenderer(fallback_fd=2),
        base_env=container_environment(environ),
    )
    for signum in FORWARDED_SIGNALS:
        loop.add_signal_handler(signum, supervisor.on_signal, signum)
    reaper.reap()
    try:
        servicer = ClawkerdServicer(supervisor, log)
        server, port = await start_server(settings.listen, material, servicer)
    except ListenError as exc:
        log.error("listen_failed", address=settings.listen, error=str(exc))
        print(f"clawkerd: cannot start: {exc}", file=sys.stderr, flush=True)
        return EXIT_BOOT_FAILED
    log.info("listening", address=settings.listen, port=port, pid1=is_init)
    code = await supervisor.wait_for_exit()
    if supervisor.exit_reason != CMD_EXITED:
        # The CMD's own exit speaks for itself; any other reason is news to `docker logs`.
        print(
            f"clawkerd: exiting with {code}: {supervisor.exit_reason}", file=sys.stderr, flush=True
        )
    # Every stream ends now, so the grace below only covers an RPC still being answered; an
    # open Bridge stream used to hold each stop (and each recreate) for the whole grace.
    await servicer.close_streams()
    await server.stop(SERVER_STOP_GRACE_SECONDS)
    supervisor.stop_cmd()
    reaper.reap()
    log.info("exit", exit_code=code)
    return code

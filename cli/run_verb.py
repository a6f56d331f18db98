"""`clawker run|create|start|attach|exec`: sitting down at an agent.

`run` and `create` build the agent from the project's defaults plus flags and go through the
same observe → plan → execute → Ready path as `apply` (reconciler.imperative). Attached, the
CLI attaches *before* the start, shows the boot log (cli.boot_log), hands the terminal to the
CMD and exits with its code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from cli.agent_verbs import UsageError, _ensure_controlplane
from cli.boot_log import BootLog
from cli.image_verbs import build_progress
from cli.style import Style, fail_mark
from cli.terminal import Terminal, flush_std, pump_multiplexed, pump_raw
from reconciler import naming
from reconciler.controlplane import lifecycle
from reconciler.controlplane.api.channel import ApiError
from reconciler.controlplane.paths import StatePaths
from reconciler.docker.engine import ContainerInfo, DockerEngine, DockerError, ExecRequest
from reconciler.loop.converge import apply_plan
from reconciler.loop.desired import RunOptions
from reconciler.loop.imperative import (
    IMAGE_SHORTHAND,
    PROJECT_FILES,
    AgentFlags,
    TargetError,
    find_project_file,
    prepare_run,
    resolve_container,
    resolve_new_agent,
    run_agent,
)
from reconciler.loop.observe import observe
from reconciler.loop.plan import Action, Plan, plan_start
from reconciler.loop.ready import wait_ready
from reconciler.settings import Settings
from specs import DesiredAgent, SpecSet, WorkspaceMode, load_specs

__all__ = [
    "cmd_attach",
    "cmd_create",
    "cmd_exec",
    "cmd_run",
    "cmd_start",
    "load_project",
    "target_container",
]

EXIT_OK, EXIT_FAIL = 0, 1


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the project and the agent ---------------------------------------------------------------


def load_project(files: Sequence[str], *, required: bool = True) -> SpecSet | None:
    """`-f` as elsewhere, else the first project file in the current directory or a parent."""
    if not files:
        found = find_project_file(os.getcwd())
        if found is None:
            if not required:
                return None
            raise UsageError(
                f"no {', '.join(PROJECT_FILES)} in {os.getcwd()} or its parents; "
                "pass -f FILE, or run from inside a project"
            )
        files = [found]
    specset = load_specs(files)
    for warning in specset.warnings:
        _err(f"warning: {warning}")
    return specset


def target_container(args: argparse.Namespace, ref: str | None = None) -> ContainerInfo:
    """The existing agent a verb names (positional AGENT or --agent)."""
    ref = ref or getattr(args, "agent_ref", None) or getattr(args, "agent", None)
    if not ref:
        raise UsageError("name the agent: AGENT, PROJECT/AGENT or its container name")
    specset = _quiet_project(args)
    hint = specset.projects[0] if specset is not None and len(specset.projects) == 1 else None
    try:
        return resolve_container(observe(DockerEngine(scope=args.settings)), ref, project=hint)
    except TargetError as exc:
        raise UsageError(str(exc)) from exc


def _quiet_project(args: argparse.Namespace) -> SpecSet | None:
    try:
        return load_project(getattr(args, "filename", []) or [], required=False)
    except Exception:  # a broken project file must not stop `clawker stop dev`
        return None


def _env_flags(items: Sequence[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"-e {item!r}: give KEY=VALUE")
        env[key] = value if sep else os.environ.get(key, "")
    return env


def _command(raw: Sequence[str]) -> tuple[str, ...]:
    items = list(raw)
    if items and items[0] == "--":
        items = items[1:]
    return tuple(items)


def _desired(args: argparse.Namespace) -> DesiredAgent:
    if args.image != IMAGE_SHORTHAND:
        raise UsageError(
            f"image {args.image!r}: agents run their project's image; write @ "
            "(clawker-<project>:default, built from the project's `build`)"
        )
    specset = load_project(args.filename)
    assert specset is not None
    try:
        project, name = resolve_new_agent(specset, args.agent)
        flags = AgentFlags(
            env=_env_flags(args.env),
            mode=WorkspaceMode(args.mode) if args.mode else None,
            workdir=args.workdir,
            worktree=args.worktree,
            command=_command(args.command),
        )
        return run_agent(specset, project, name, flags)
    except TargetError as exc:
        raise UsageError(str(exc)) from exc


def _phase_details(agent: DesiredAgent, network: str) -> dict[str, str]:
    return {
        "image": f"clawker-{agent.project}:default",
        "workspace": f"{agent.workspace.path} ({agent.workspace.mode.value})",
        "config": naming.volume_name(agent.project, agent.name, "config"),
        "environment": f"network {network}"
        + (f", {len(agent.agent.env)} env vars" if agent.agent.env else ""),
        "container": agent.container_name,
    }


# -- run / create ----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    return _run(args, create_only=False)


def cmd_create(args: argparse.Namespace) -> int:
    return _run(args, create_only=True)


def _run(args: argparse.Namespace, *, create_only: bool) -> int:
    began = time.monotonic()
    detach = create_only or getattr(args, "detach", False)
    terminal = Terminal()
    if args.tty and args.interactive and not detach and not os.isatty(0):
        raise UsageError("-t: the input is not a TTY; leave out -t to pipe stdin and stdout")
    if getattr(args, "rm", False) and create_only:
        raise UsageError("--rm is for run")
    agent = _desired(args)
    port = DockerEngine(scope=args.settings)
    options = RunOptions(tty=args.tty, stdin_open=args.interactive, auto_remove=args.rm)
    try:
        prepared = prepare_run(port, agent, options, settings=args.settings)
    except TargetError as exc:
        raise UsageError(str(exc)) from exc
    the_plan = prepared.plan
    if create_only:
        the_plan = _without_start(the_plan)
    style = Style(sys.stderr)
    _ensure_controlplane(args.settings, style)
    log = BootLog(the_plan, _phase_details(agent, args.settings.network), style=style)
    log.timed("plan", f"{len(the_plan.steps)} steps", time.monotonic() - began)
    attachment = (
        None if detach else Attachment(port, agent.container_name, options, terminal, args.settings)
    )
    _, outcomes = apply_plan(
        port,
        the_plan,
        agents=[agent],
        controlplane=StatePaths(args.settings.state_dir),
        settings=args.settings,
        wait=detach and not create_only,
        timeout=args.timeout,
        on_event=log.on_event,
        on_build_line=build_progress("project image", style, False),
        on_step=lambda _c, record: log.on_cp_step(record),
        before_start=attachment.before_start if attachment else None,
    )
    log.finish_phases()
    failed = [o for o in outcomes if not o.ok]
    if failed:
        if attachment is not None:
            attachment.close()
        for outcome in failed:
            _err(f"{fail_mark(style)} {outcome.key}: {outcome.detail}")
        return EXIT_FAIL
    if create_only:
        print(agent.container_name, flush=True)
        return EXIT_OK
    if attachment is None:
        print(agent.container_name, flush=True)
        return EXIT_OK
    return attachment.run(log)


def _without_start(the_plan: Plan) -> Plan:
    return Plan(
        tuple(s for s in the_plan.steps if s.action is not Action.START_CONTAINER),
        the_plan.changes,
    )


# -- attached: the boot log, then the CMD --------------------------------------------------


@dataclass
class _Waiter:
    result: Callable[[], int]
    code: int | None = None
    error: str = ""

    def start(self) -> threading.Thread:
        def wait() -> None:
            try:
                self.code = self.result()
            except Exception as exc:  # the engine went away: reported as exit 1
                self.error = str(exc)

        thread = threading.Thread(target=wait, name="container-wait", daemon=True)
        thread.start()
        return thread


class Attachment:
    """One attached start: the attach and the exit-code wait are opened before the start."""

    def __init__(
        self,
        port: DockerEngine,
        container: str,
        options: RunOptions,
        terminal: Terminal,
        settings: Settings,
    ) -> None:
        self.settings = settings
        self.port, self.container, self.options, self.terminal = (
            port,
            container,
            options,
            terminal,
        )
        self._sock: socket.socket | None = None
        self._waiter: _Waiter | None = None
        self._thread: threading.Thread | None = None
        self.container_id = ""

    def before_start(self, target: str) -> None:
        """Attach and register the wait for the exit (Docker's start comes right after)."""
        self._sock = self.port.attach_socket(target, stdin=self.options.stdin_open)
        condition = "removed" if self.options.auto_remove else "next-exit"
        self._waiter = _Waiter(self.port.begin_wait(target, condition))
        self._thread = self._waiter.start()
        info = self.port.inspect_runtime(target, self.settings.network)
        self.container_id = info.id if info else ""

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    def run(self, log: BootLog) -> int:
        """Pump the terminal until the CMD exits or the person detaches; the exit code."""
        sock = self._sock
        assert sock is not None and self._waiter is not None
        stdin_fd = self.terminal.stdin_fd if self.options.stdin_open else None
        flush_std()
        try:
            if self.options.tty:
                with self._raw_if_tty(log), self.terminal.resizes(self._resize):
                    pump_raw(sock, stdin_fd, self.terminal.stdout_fd)
            else:
                pump_multiplexed(sock, stdin_fd)
        finally:
            self.close()
        return self._exit_code(log)

    @contextlib.contextmanager
    def _raw_if_tty(self, log: BootLog) -> Iterator[None]:
        if not (self.options.stdin_open and self.terminal.is_tty):
            yield
            return
        with self.terminal.raw():
            log.raw = True
            try:
                yield
            finally:
                log.raw = False

    def _resize(self, rows: int, columns: int) -> None:
        self.port.resize_tty(self.container, rows, columns)

    def _exit_code(self, log: BootLog) -> int:
        assert self._thread is not None and self._waiter is not None
        deadline = time.monotonic() + 5.0
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(timeout=0.2)
            if self._thread.is_alive() and self._still_running():
                log.note(
                    f"detached from {self.container} (still running); "
                    f"`clawker attach {self.container}` returns to it",
                    own_line=True,
                )
                return EXIT_OK
        if self._waiter.code is None:
            log.note(f"error: lost the exit code of {self.container}: {self._waiter.error}")
            return EXIT_FAIL
        code = self._waiter.code
        if code != 0:
            self._show_failed_step(log)
        return code

    def _still_running(self) -> bool:
        try:
            return self.port.terminal_config(self.container).running
        except DockerError:
            return False

    def _show_failed_step(self, log: BootLog) -> None:
        """A failed init step: clawkerd drew its ✗ line (the container's output); the step's
        output, which only the CP has, follows it."""
        if not self.container_id:
            return
        for _ in range(20):
            cp = lifecycle.client(StatePaths(self.settings.state_dir))
            try:
                report = cp.start_reports([self.container_id]).get(self.container_id)
            except ApiError:
                return
            status = report.status if report is not None else None
            if status is not None and status.phase == "failed":
                failed = [s for s in status.steps if not s.ok]
                if failed:
                    log.failed_step_output(failed[-1])
                else:
                    log.note(f"{fail_mark(Style(sys.stderr))} {status.detail}")
                return
            if status is not None and status.phase == "ready":
                return
            time.sleep(0.1)


# -- start / attach / exec -------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    container = target_container(args)
    port = DockerEngine(scope=args.settings)
    key = naming.agent_key(
        container.labels.get(naming.PROJECT, ""), container.labels.get(naming.AGENT, "")
    )
    if container.state == "running":
        raise UsageError(
            f"{container.name} is already running; `clawker attach {container.name}` reaches it"
        )
    config = port.terminal_config(container.id)
    style = Style(sys.stderr)
    _ensure_controlplane(args.settings, style)
    the_plan = plan_start(key, container.name, container.state)
    log = BootLog(the_plan, {"container": container.name}, style=style)
    attached = args.attach
    options = RunOptions(
        tty=config.tty,
        stdin_open=args.interactive and config.stdin_open,
        auto_remove=config.auto_remove,
    )
    attachment = (
        Attachment(port, container.name, options, Terminal(), args.settings) if attached else None
    )
    _, outcomes = apply_plan(
        port,
        the_plan,
        settings=args.settings,
        wait=False,
        on_event=log.on_event,
        before_start=attachment.before_start if attachment else None,
    )
    failed = [o for o in outcomes if not o.ok]
    if failed:
        for outcome in failed:
            _err(f"{fail_mark(style)} {outcome.key}: {outcome.detail}")
        return EXIT_FAIL
    if attachment is not None:
        return attachment.run(log)
    verdicts = wait_ready(
        port,
        lifecycle.client(StatePaths(args.settings.state_dir)),
        [container.name],
        network=args.settings.network,
        timeout=args.timeout,
        on_step=lambda _c, record: log.on_cp_step(record),
    )
    verdict = verdicts.get(container.name)
    if verdict is not None and not verdict.ready:
        _err(f"{fail_mark(style)} {container.name}: not ready: {verdict.detail}")
        return EXIT_FAIL
    print(container.name, flush=True)
    return EXIT_OK


def cmd_attach(args: argparse.Namespace) -> int:
    container = target_container(args)
    port = DockerEngine(scope=args.settings)
    config = port.terminal_config(container.id)
    if not config.running:
        raise UsageError(
            f"{container.name} is not running; `clawker start -a -i {container.name}` starts it"
        )
    terminal = Terminal()
    options = RunOptions(
        tty=config.tty,
        stdin_open=config.stdin_open and not args.no_stdin,
        auto_remove=config.auto_remove,
    )
    attachment = Attachment(port, container.name, options, terminal, args.settings)
    attachment.before_start(container.name)  # a running container: its next exit is the one
    log = BootLog(Plan((), ()), {}, style=Style(sys.stderr))
    return attachment.run(log)


def cmd_exec(args: argparse.Namespace) -> int:
    container = target_container(args)
    argv = _command(args.command)
    if not argv:
        raise UsageError("give the command after --, e.g. clawker exec dev -- bash")
    port = DockerEngine(scope=args.settings)
    terminal = Terminal()
    if args.tty and args.interactive and not terminal.is_tty:
        raise UsageError("-t: the input is not a TTY; leave out -t to pipe stdin and stdout")
    request = ExecRequest(
        argv=argv,
        user=args.user,
        workdir=args.workdir or "",
        env=_env_flags(args.env),
        tty=args.tty,
        stdin=args.interactive,
    )
    exec_id, sock = port.open_exec(container.id, request)
    stdin_fd = terminal.stdin_fd if args.interactive else None
    try:
        if args.tty:
            raw: contextlib.AbstractContextManager[None] = (
                terminal.raw() if args.interactive and terminal.is_tty else contextlib.nullcontext()
            )
            with raw, terminal.resizes(lambda h, w: port.resize_exec(exec_id, h, w)):
                pump_raw(sock, stdin_fd, terminal.stdout_fd)
        else:
            pump_multiplexed(sock, stdin_fd)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return port.exec_exit_code(exec_id)

"""Run one ShellCommand the CP dispatched: spawn it as its uid/gid, stream its output, time it.

The step runs in its own process group so a timeout (or a vanished CP) kills everything it
started, not just its first process. Its output is read until both pipes close; if the step
exits but something it left behind keeps a pipe open, reading stops once the pipes stay idle
for DRAIN_IDLE_SECONDS, so a stray background process cannot hold the step's Done forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO

from clawkerd.exit_status import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_STEP_TIMED_OUT
from clawkerd.identity import (
    credentials_for,
    lookup_uid,
    supplementary_groups,
    user_environment,
    working_directory_for,
)
from clawkerd.reaping import ChildReaper
from proto.gen import clawkerd_pb2 as pb

__all__ = ["CHUNK_BYTES", "DRAIN_IDLE_SECONDS", "Emit", "StepOutcome", "run_shell_step"]

CHUNK_BYTES = 32 * 1024
DRAIN_IDLE_SECONDS = 2.0

Emit = Callable[[pb.Response], Awaitable[None]]


@dataclass(frozen=True)
class StepOutcome:
    """The step's terminal response, and the code clawkerd exits with if the step is fatal."""

    response: pb.Response
    exit_code: int
    summary: str

    @property
    def ok(self) -> bool:
        """The step exited 0."""
        return self.exit_code == 0


@dataclass
class _PipeActivity:
    chunks: int = 0
    emitting: int = 0


async def run_shell_step(
    command: pb.ShellCommand,
    *,
    reaper: ChildReaper,
    base_env: Mapping[str, str],
    emit: Emit,
) -> StepOutcome:
    """Run `command` to its end; Output responses go to `emit`, the terminal one is returned."""
    user = lookup_uid(command.uid)
    credentials = credentials_for(command.uid, command.gid, supplementary_groups(user, command.gid))
    env = user_environment(base_env, user, command.uid)
    env.update(command.env)
    try:
        process = subprocess.Popen(
            list(command.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=working_directory_for(user, command.cwd or None),
            env=env,
            process_group=0,
            user=credentials.user,
            group=credentials.group,
            extra_groups=credentials.extra_groups,
        )
    except OSError as exc:
        return _spawn_failed(command, exc)
    exited = reaper.watch(process.pid)
    # Popen must never wait() itself (the reaper owns waitpid); give it the status we got.
    exited.add_done_callback(lambda done: setattr(process, "returncode", done.result()))

    activity = _PipeActivity()
    assert process.stdout is not None and process.stderr is not None
    pumps = [
        asyncio.create_task(
            _pump(process.stdout, pb.OUTPUT_STREAM_STDOUT, command.id, emit, activity)
        ),
        asyncio.create_task(
            _pump(process.stderr, pb.OUTPUT_STREAM_STDERR, command.id, emit, activity)
        ),
    ]
    timeout = float(command.timeout_seconds) if command.timeout_seconds else None
    try:
        try:
            code = await asyncio.wait_for(asyncio.shield(exited), timeout)
            timed_out = False
        except TimeoutError:
            _kill_group(process.pid)
            code = await exited
            timed_out = True
        await _drain(pumps, activity)
    except asyncio.CancelledError:
        # The session went away mid-step: leave nothing of the step running.
        _kill_group(process.pid)
        for pump in pumps:
            pump.cancel()
        raise

    if timed_out:
        message = (
            f"step {_label(command)} timed out after {command.timeout_seconds}s; "
            "its process group was killed"
        )
        return StepOutcome(
            response=pb.Response(
                error=pb.Error(id=command.id, code=pb.ERROR_CODE_TIMEOUT, message=message)
            ),
            exit_code=EXIT_STEP_TIMED_OUT,
            summary=f"timed out after {command.timeout_seconds}s",
        )
    return StepOutcome(
        response=pb.Response(done=pb.Done(id=command.id, exit_code=code)),
        exit_code=code,
        summary=f"exit {code}",
    )


def _spawn_failed(command: pb.ShellCommand, exc: OSError) -> StepOutcome:
    code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
    what = exc.filename if exc.filename is not None else command.argv[0]
    message = f"step {_label(command)} could not start: {exc.strerror or exc}: {what}"
    return StepOutcome(
        response=pb.Response(
            error=pb.Error(id=command.id, code=pb.ERROR_CODE_SPAWN_FAILED, message=message)
        ),
        exit_code=code,
        summary=f"could not start: {exc.strerror or exc}",
    )


def _label(command: pb.ShellCommand) -> str:
    return repr(command.name or command.id)


async def _pump(
    pipe: IO[bytes],
    stream: pb.OutputStream.ValueType,
    step_id: str,
    emit: Emit,
    activity: _PipeActivity,
) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=4 * CHUNK_BYTES)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while data := await reader.read(CHUNK_BYTES):
            activity.chunks += 1
            activity.emitting += 1
            try:
                await emit(pb.Response(output=pb.Output(id=step_id, stream=stream, data=data)))
            finally:
                activity.emitting -= 1
    finally:
        transport.close()


async def _drain(pumps: list[asyncio.Task[None]], activity: _PipeActivity) -> None:
    """Wait for the pipes to close, giving up once they stay idle (see the module doc)."""
    pending = set(pumps)
    while pending:
        seen = activity.chunks
        _, pending = await asyncio.wait(pending, timeout=DRAIN_IDLE_SECONDS)
        if pending and activity.chunks == seen and not activity.emitting:
            for pump in pending:
                pump.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            break
    for pump in pumps:
        if not pump.cancelled() and pump.exception() is not None:
            raise RuntimeError("reading step output failed") from pump.exception()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)

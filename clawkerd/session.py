"""One Session stream with the CP: dispatch each Command, stream the Responses back.

Commands are handled as they arrive; a ShellCommand runs in the background so the CP can still
talk (Hello, Signal) while a long step runs, and its Output and terminal response carry its id.
Responses from all of them leave through one queue, so only one coroutine ever writes to the
stream. A fatal step (exit_on_non_zero and a non-zero result) asks clawkerd to exit once its
terminal response has been handed to gRPC, or at once if the CP disconnects first.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from clawkerd.logging_setup import EventLog
from clawkerd.step_runner import Emit, StepOutcome
from proto.gen import clawkerd_pb2 as pb

__all__ = ["CmdSpawnError", "Session", "SessionBackend"]

# Bounded so a CP that reads slowly slows the steps' pipes down instead of growing memory.
OUTBOX_SIZE = 256
_INTERNAL_ERROR_EXIT_CODE = 1


class CmdSpawnError(Exception):
    """The user CMD could not be started; `exit_code` is 126 or 127 like a shell's."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class SessionBackend(Protocol):
    """What a session needs from the supervisor (the seam that keeps this module testable)."""

    @property
    def register_jwt(self) -> str:
        """The registration JWT from the bootstrap material."""
        ...

    @property
    def exiting(self) -> bool:
        """clawkerd has decided to exit; no new work is started."""
        ...

    def hello(self) -> pb.HelloAck:
        """The current state, for HelloAck."""
        ...

    async def wait_until_exiting(self) -> None:
        """Return once clawkerd has decided to exit."""
        ...

    def mark_initialized(self) -> None:
        """Write the once-per-container marker (raises OSError if it cannot)."""
        ...

    def start_cmd(self) -> bool:
        """Fork the user CMD; False if it already runs. Raises CmdSpawnError."""
        ...

    def forward_signal(self, signum: int) -> bool:
        """Send signum to the CMD's process group; False if the CMD is not running."""
        ...

    def request_exit(self, code: int, reason: str) -> None:
        """Make clawkerd exit with `code` (the first request wins)."""
        ...

    async def run_step(self, command: pb.ShellCommand, emit: Emit) -> StepOutcome:
        """Run a ShellCommand to its end."""
        ...

    def render_step_started(self, name: str) -> None:
        """Show a step's "Active" line on the container's TTY."""
        ...

    def render_step(self, name: str, ok: bool, detail: str, seconds: float | None = None) -> None:
        """Show a ✓/✗ line (with its duration) for a finished step on the container's TTY."""
        ...


@dataclass(frozen=True)
class _FatalExit:
    code: int
    reason: str


class _EndOfStream:
    pass


_END = _EndOfStream()
_Outgoing = pb.Response | _FatalExit | _EndOfStream


class Session:
    """Serves one CP connection."""

    def __init__(self, backend: SessionBackend, log: EventLog, peer: str) -> None:
        self._backend = backend
        self._log = log
        self._peer = peer
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self._steps: dict[str, asyncio.Task[None]] = {}
        self._fatal: _FatalExit | None = None

    async def responses(self, commands: AsyncIterator[pb.Command]) -> AsyncIterator[pb.Response]:
        """The Response stream for a Command stream; ends when the CP half-closes."""
        dispatcher = asyncio.create_task(self._dispatch_all(commands))
        # When clawkerd exits (the CMD ended, a stop signal), end the stream after what is queued.
        closer = asyncio.create_task(self._end_when_exiting())
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, pb.Response):
                    yield item
                elif isinstance(item, _FatalExit | _EndOfStream):
                    break
        finally:
            dispatcher.cancel()
            closer.cancel()
            for task in self._steps.values():
                task.cancel()
            if self._fatal is not None:
                self._backend.request_exit(self._fatal.code, self._fatal.reason)

    async def _end_when_exiting(self) -> None:
        await self._backend.wait_until_exiting()
        await self._outbox.put(_END)

    async def _dispatch_all(self, commands: AsyncIterator[pb.Command]) -> None:
        try:
            async for command in commands:
                await self._dispatch(command)
            # The CP half-closed: finish the running steps, then end the stream.
            await asyncio.gather(*self._steps.values(), return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.exception("session_failed", peer=self._peer)
            await self._send_error("", pb.ERROR_CODE_INTERNAL, f"clawkerd session failed: {exc}")
        await self._outbox.put(_END)

    async def _dispatch(self, command: pb.Command) -> None:
        kind = command.WhichOneof("kind")
        if kind == "hello":
            self._log.info("hello", peer=self._peer, cp_version=command.hello.cp_version)
            await self._send(pb.Response(hello_ack=self._backend.hello()))
        elif kind == "register_required":
            token = pb.RegisterToken(jwt=self._backend.register_jwt)
            await self._send(pb.Response(register_token=token))
        elif kind == "shell_command":
            await self._start_step(command.shell_command)
        elif kind == "signal":
            await self._forward_signal(command.signal.signum)
        elif kind == "agent_initialized":
            await self._agent_initialized()
        elif kind == "agent_ready":
            await self._agent_ready()
        else:
            await self._send_error("", pb.ERROR_CODE_INVALID_ARGUMENT, "empty Command")

    async def _start_step(self, command: pb.ShellCommand) -> None:
        if not command.id:
            await self._send_error("", pb.ERROR_CODE_INVALID_ARGUMENT, "ShellCommand without id")
        elif not command.argv:
            await self._send_error(
                command.id, pb.ERROR_CODE_INVALID_ARGUMENT, "ShellCommand with an empty argv"
            )
        elif command.id in self._steps:
            await self._send_error(
                command.id,
                pb.ERROR_CODE_INVALID_ARGUMENT,
                f"a ShellCommand with id {command.id!r} is already running",
            )
        elif self._backend.exiting or self._fatal is not None:
            await self._send_error(
                command.id, pb.ERROR_CODE_SHUTTING_DOWN, "clawkerd is exiting; step not run"
            )
        else:
            self._steps[command.id] = asyncio.create_task(self._run_step(command))

    async def _run_step(self, command: pb.ShellCommand) -> None:
        self._log.info(
            "step_started",
            id=command.id,
            name=command.name,
            program=command.argv[0],
            uid=command.uid,
            gid=command.gid,
            timeout_seconds=command.timeout_seconds,
        )
        began = time.monotonic()
        if command.tty_render:
            self._backend.render_step_started(command.name or command.id)
        try:
            outcome = await self._backend.run_step(command, self._send)
        except asyncio.CancelledError:
            self._log.warning("step_cancelled", id=command.id, name=command.name)
            raise
        except Exception as exc:
            self._log.exception("step_failed_internally", id=command.id, name=command.name)
            outcome = StepOutcome(
                response=pb.Response(
                    error=pb.Error(id=command.id, code=pb.ERROR_CODE_INTERNAL, message=str(exc))
                ),
                exit_code=_INTERNAL_ERROR_EXIT_CODE,
                summary="internal error",
            )
        finally:
            self._steps.pop(command.id, None)
        self._log.info(
            "step_finished",
            id=command.id,
            name=command.name,
            exit_code=outcome.exit_code,
            summary=outcome.summary,
        )
        if command.tty_render:
            self._backend.render_step(
                command.name or command.id,
                outcome.ok,
                outcome.summary,
                time.monotonic() - began,
            )
        await self._send(outcome.response)
        if command.exit_on_non_zero and not outcome.ok:
            label = command.name or command.id
            await self._exit_after_flush(
                outcome.exit_code, f"step {label!r} failed ({outcome.summary})"
            )

    async def _forward_signal(self, signum: int) -> None:
        try:
            signal.Signals(signum)
        except ValueError:
            await self._send_error("", pb.ERROR_CODE_INVALID_ARGUMENT, f"no signal {signum}")
            return
        if self._backend.forward_signal(signum):
            await self._send(pb.Response(ack=pb.Ack()))
        else:
            await self._send_error("", pb.ERROR_CODE_NO_CMD, "the user command is not running")

    async def _agent_initialized(self) -> None:
        try:
            self._backend.mark_initialized()
        except OSError as exc:
            self._log.error("marker_write_failed", error=str(exc))
            await self._send_error("", pb.ERROR_CODE_INTERNAL, f"cannot write marker: {exc}")
            return
        await self._send(pb.Response(ack=pb.Ack()))

    async def _agent_ready(self) -> None:
        if self._backend.exiting or self._fatal is not None:
            await self._send_error("", pb.ERROR_CODE_SHUTTING_DOWN, "clawkerd is exiting")
            return
        try:
            self._backend.start_cmd()
        except CmdSpawnError as exc:
            await self._send_error("", pb.ERROR_CODE_SPAWN_FAILED, str(exc))
            await self._exit_after_flush(exc.exit_code, str(exc))
            return
        await self._send(pb.Response(ack=pb.Ack()))

    async def _exit_after_flush(self, code: int, reason: str) -> None:
        self._fatal = _FatalExit(code, reason)
        await self._outbox.put(self._fatal)

    async def _send(self, response: pb.Response) -> None:
        await self._outbox.put(response)

    async def _send_error(self, command_id: str, code: pb.ErrorCode.ValueType, text: str) -> None:
        await self._send(pb.Response(error=pb.Error(id=command_id, code=code, message=text)))

"""The CP's half of the Session protocol: dial clawkerd over mTLS and drive one container start.

Per start: Hello → (register once per container) → once-per-container steps (prepare-volumes,
git-setup, git-config) → AgentInitialized → post_init once per agent → pre_run → AgentReady.
A container whose CMD already runs (the CP restarted) only gets the no-op AgentReady: nothing it
already did runs again.
"""

from __future__ import annotations

import queue
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import grpc

from proto import CLAWKERD_PORT
from proto.gen import clawkerd_pb2 as pb
from proto.gen import clawkerd_pb2_grpc as pb_grpc
from reconciler import naming
from reconciler.controlplane.identity.pki import ClawkerPKI, container_tls_name
from reconciler.controlplane.registry import AgentRuntimeSpec, StepRecord
from reconciler.controlplane.runtime.cancellation import Cancellation
from reconciler.images.dockerfile import VENV
from reconciler.in_container import gitconfig_filter

__all__ = [
    "SessionError",
    "StartPlan",
    "StartSupersededError",
    "StepFailedError",
    "close_channel",
    "drive_start",
    "in_background",
    "once_script",
    "open_channel",
]

POST_INIT_MARKER = f"{naming.CONFIG_MOUNT}/post-initialized"

# Hands each volume's root to the agent user and, when the volume was last handed to another
# uid/gid (its root's owner: a change of workspace owner), what that one owned in it too; what
# root or anyone else owns stays theirs. Nothing is removed or re-seeded. One `stat` and one
# `chown` for all the volumes (each is a process in the container, on every new container's
# first start); a missing volume root fails the `chown`, and so the step.
PREPARE_VOLUMES = """\
uid=$1 gid=$2; shift 2
stat -c '%u %g %n' -- "$@" | while read -r old_uid old_gid dir; do
  if [ "$old_uid" != 0 ] && [ "$old_uid" != "$uid" ]; then
    echo "clawker: $dir: files of uid $old_uid now belong to uid $uid"
    find "$dir" -xdev -uid "$old_uid" -exec chown -h "$uid" {} +
  fi
  if [ "$old_gid" != 0 ] && [ "$old_gid" != "$gid" ]; then
    echo "clawker: $dir: files of gid $old_gid now belong to gid $gid"
    find "$dir" -xdev -gid "$old_gid" -exec chgrp -h "$gid" {} +
  fi
done
chown "$uid:$gid" -- "$@"
"""
OUTPUT_TAIL_BYTES = 4000
CP_VERSION = "clawker-cp/0.1"


class SessionError(Exception):
    """The session broke off or clawkerd answered out of protocol."""


class StartSupersededError(SessionError):
    """The container is no longer in the start this session was for (it restarted): nothing
    more is done for that start, and the new one is driven by its own pass."""


class StepFailedError(Exception):
    def __init__(self, record: StepRecord) -> None:
        super().__init__(f"step {record.name} failed with exit code {record.exit_code}")
        self.record = record


@dataclass(frozen=True)
class StartPlan:
    container_id: str
    container_name: str
    agent_key: str
    runtime: AgentRuntimeSpec
    user: naming.AgentUser = naming.DEFAULT_AGENT_USER  # the container's agent user (its label)


@dataclass(frozen=True)
class StartResult:
    readopted: bool
    registered: bool
    steps: tuple[StepRecord, ...]


def open_channel(pki: ClawkerPKI, address: str, container_id: str) -> grpc.Channel:
    """A channel to clawkerd at `address` that only ever talks to container `container_id`:
    the TLS handshake (every connect, reconnects too) requires the leaf's DNS SAN for that id,
    so a successor that inherited the address is refused by TLS, not by our goodwill."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem,
        private_key=pki.controlplane_key_pem,
        certificate_chain=pki.controlplane_cert_pem,
    )
    return grpc.secure_channel(
        f"{address}:{CLAWKERD_PORT}",
        credentials,
        options=[
            ("grpc.ssl_target_name_override", container_tls_name(container_id)),
            # clawkerd listens within a few hundred ms of the start; gRPC's default 1 s
            # reconnect backoff would add most of a second to every start.
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 500),
        ],
    )


def close_channel(channel: grpc.Channel) -> None:
    """Close `channel` without waiting for gRPC to finish closing it.

    `grpc.channel_ready_future` leaves a connectivity watch on the channel that only ends at its
    0.2 s poll tick, and `close()` waits for it (grpc/grpc#3064): done inline, that added a
    steady 0.2 s to every start's session.
    """
    threading.Thread(target=channel.close, name="grpc-channel-close", daemon=True).start()


class _Conversation:
    """Request/response over one bidirectional stream, in lockstep."""

    def __init__(self, stub: pb_grpc.ClawkerdStub, timeout: float) -> None:
        self._outbox: queue.Queue[pb.Command | None] = queue.Queue()
        call = stub.Session(self._requests(), timeout=timeout)
        self._call = cast("grpc.Future[pb.Response]", call)  # a streaming call is a Future too
        self._responses: Iterator[pb.Response] = iter(call)

    def cancel(self) -> None:
        """End the stream now (a blocked `receive` raises CANCELLED)."""
        self._call.cancel()

    def _requests(self) -> Iterator[pb.Command]:
        while (item := self._outbox.get()) is not None:
            yield item

    def send(self, command: pb.Command) -> None:
        self._outbox.put(command)

    def receive(self) -> pb.Response:
        try:
            return next(self._responses)
        except StopIteration as exc:
            raise SessionError("clawkerd closed the session") from exc

    def close(self) -> None:
        self._outbox.put(None)

    def ask(self, command: pb.Command, expect: str) -> pb.Response:
        self.send(command)
        reply = self.receive()
        kind = reply.WhichOneof("kind")
        if kind == "error":
            raise SessionError(
                f"clawkerd refused {command.WhichOneof('kind')}: {reply.error.message}"
            )
        if kind != expect:
            raise SessionError(f"expected {expect}, clawkerd sent {kind}")
        return reply

    def run(
        self,
        name: str,
        argv: list[str],
        *,
        uid: int,
        gid: int,
        cwd: str = "",
        step_id: str,
        on_output: Callable[[str], None] = lambda _s: None,
    ) -> StepRecord:
        self.send(
            pb.Command(
                shell_command=pb.ShellCommand(
                    id=step_id,
                    argv=argv,
                    uid=uid,
                    gid=gid,
                    cwd=cwd,
                    name=name,
                    exit_on_non_zero=True,
                    tty_render=True,
                )
            )
        )
        output = bytearray()
        began = time.monotonic()
        while True:
            reply = self.receive()
            kind = reply.WhichOneof("kind")
            if kind == "output" and reply.output.id == step_id:
                output += reply.output.data
                on_output(reply.output.data.decode(errors="replace"))
                del output[:-OUTPUT_TAIL_BYTES]
            elif kind == "done" and reply.done.id == step_id:
                tail = output.decode(errors="replace")
                return StepRecord(
                    name,
                    reply.done.exit_code == 0,
                    reply.done.exit_code,
                    tail,
                    time.monotonic() - began,
                )
            elif kind == "error" and reply.error.id == step_id:
                code = 124 if reply.error.code == pb.ERROR_CODE_TIMEOUT else 127
                tail = (output.decode(errors="replace") + reply.error.message)[-OUTPUT_TAIL_BYTES:]
                return StepRecord(name, False, code, tail, time.monotonic() - began)
            else:
                raise SessionError(f"unexpected {kind} while running step {name}")


def _require_current(still_current: Callable[[], bool]) -> None:
    if not still_current():
        raise StartSupersededError(
            "the container restarted during the session; its new start is next"
        )


T = TypeVar("T")


def in_background(ask: Callable[[], T], name: str) -> Future[T]:
    """`ask()` on a daemon thread of its own from now: its answer, or what it raised, is the
    future's (a Docker round trip that then overlaps the Session's own)."""
    answer: Future[T] = Future()

    def run() -> None:
        try:
            answer.set_result(ask())
        except BaseException as exc:  # handed to the waiter, which raises it on its thread
            answer.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return answer


def _current_in_background(still_current: Callable[[], bool]) -> Callable[[], None]:
    """Ask `still_current()` (a Docker inspect) in the background from now; the returned call
    waits for the answer and raises StartSupersededError if it is no."""
    answer = in_background(still_current, "start-current")
    return lambda: _require_current(answer.result)


def _release(talk: _Conversation, current: Callable[[], None]) -> None:
    current()
    talk.ask(pb.Command(agent_ready=pb.AgentReady()), "ack")


def drive_start(
    channel: grpc.Channel,
    plan: StartPlan,
    *,
    register: Callable[[str], None],
    is_registered: bool,
    on_step: Callable[[StepRecord], None] = lambda _r: None,
    on_initialized: Callable[[], None] = lambda: None,
    still_current: Callable[[], bool] = lambda: True,
    alone: Callable[[], None] = lambda: None,
    cancellation: Cancellation | None = None,
    timeout: float = 3600.0,
) -> StartResult:
    """Drive one container start to AgentReady; raise StepFailedError when a step fails.

    `register(jwt)` verifies and records the registration token (raising to refuse it).
    `on_initialized()` is called once the init steps and post_init are done (Initialized).
    `still_current()` is asked as Hello is sent (answered before registration or any step)
    and again as pre_run begins (answered before AgentReady): a container restarted since this
    pass read it has a new clawkerd at the same address, whose own start must be driven (and
    enrolled) by its own pass, never by this one. `alone()` returns once no other container of
    the agent runs (a replaced one stops beside its successor's start, docs/reconciler.md) and
    is called before the first step: no step, and so no command, shares the agent's volumes
    with another agent. `cancellation` ends the stream at once when Docker says the container
    died.
    """
    talk = _Conversation(pb_grpc.ClawkerdStub(channel), timeout)
    with (cancellation or Cancellation()).interrupting(talk.cancel):
        return _drive(
            talk, plan, register, is_registered, on_step, on_initialized, still_current, alone
        )


def _drive(
    talk: _Conversation,
    plan: StartPlan,
    register: Callable[[str], None],
    is_registered: bool,
    on_step: Callable[[StepRecord], None],
    on_initialized: Callable[[], None],
    still_current: Callable[[], bool],
    alone: Callable[[], None],
) -> StartResult:
    steps: list[StepRecord] = []
    uid, gid = plan.user.uid, plan.user.gid
    counter = iter(range(1, 1000))

    def step(name: str, argv: list[str], *, as_root: bool = False, cwd: str = "") -> StepRecord:
        record = talk.run(
            name,
            argv,
            uid=0 if as_root else uid,
            gid=0 if as_root else gid,
            cwd=cwd,
            step_id=f"{name}-{next(counter)}",
        )
        steps.append(record)
        on_step(record)
        if not record.ok:
            raise StepFailedError(record)
        return record

    # The connection is up (the dial waited for it), so an inspect from now on that still
    # shows this start proves the clawkerd at the other end is this start's; it runs while Hello
    # makes its round trip, and nothing (registration, a step) happens before its answer.
    current = _current_in_background(still_current)
    try:
        ack = talk.ask(pb.Command(hello=pb.Hello(cp_version=CP_VERSION)), "hello_ack").hello_ack
        # TLS proved which container answered; this proves it is still the start we drive.
        current()
        registered = False
        if not is_registered:
            token = talk.ask(
                pb.Command(register_required=pb.RegisterRequired()), "register_token"
            ).register_token.jwt
            register(token)
            registered = True
        if ack.cmd_running:
            _release(talk, lambda: _require_current(still_current))
            return StartResult(readopted=True, registered=registered, steps=())
        alone()

        if not ack.initialized:
            owned = [naming.CONFIG_MOUNT, naming.HISTORY_MOUNT]
            if plan.runtime.snapshot and plan.runtime.workspace:
                owned.append(plan.runtime.workspace)
            step(
                "prepare-volumes",
                ["sh", "-ec", PREPARE_VOLUMES, "prepare-volumes", str(uid), str(gid), *owned],
                as_root=True,
            )
            step("git-setup", ["sh", "-ec", git_setup_script(plan.runtime)], as_root=True)
            if plan.runtime.copy_git_config:
                step("git-config", git_config_argv())
            talk.ask(pb.Command(agent_initialized=pb.AgentInitialized()), "ack")

        workdir = plan.runtime.workspace
        if plan.runtime.post_init.strip():
            script = once_script(POST_INIT_MARKER, plan.runtime.post_init)
            step("post_init", ["sh", "-c", script], cwd=workdir)
        on_initialized()
        # Asked as the last step begins and answered before AgentReady: the stream is this
        # start's clawkerd's (checked after Hello), so the inspect need not wait for the step.
        current = _current_in_background(still_current)
        if plan.runtime.pre_run.strip():
            step("pre_run", ["sh", "-ec", plan.runtime.pre_run], cwd=workdir)
        _release(talk, current)
        return StartResult(readopted=False, registered=registered, steps=tuple(steps))
    finally:
        talk.close()


# The user's script runs as a process of its own (whatever it does, `exit 0` included, the
# marker is written after its exit status is known) in a session of its own, so a vanished CP,
# which kills the step's process group, does not cut it short: it finishes and writes the
# marker. It holds a lock while it runs, so a dispatch by the next CP waits for it and then
# finds the marker instead of running the script a second time.
_ONCE = r"""marker=$1 script=$2
[ -e "$marker" ] && exit 0
log=$(mktemp)
setsid sh -c '
  exec 9>"$1.lock"; flock 9
  [ -e "$1" ] && exit 0
  sh -ec "$2"; rc=$?
  if [ "$rc" -eq 0 ]; then touch "$1"; fi
  exit "$rc"' once "$marker" "$script" >"$log" 2>&1 </dev/null &
pid=$!
tail -n +1 -s 0.1 --pid="$pid" -f "$log"
wait "$pid"; rc=$?
rm -f "$log"
exit "$rc"
"""


def once_script(marker: str, script: str) -> str:
    """A `sh -c` program that runs `script` unless `marker` exists, and creates `marker`
    once `script` has exited 0 (see _ONCE)."""
    return f"set -- {shlex.quote(marker)} {shlex.quote(script)}\n{_ONCE}"


def git_setup_script(runtime: AgentRuntimeSpec) -> str:
    """The container's system git config (/etc/gitconfig, in its writable layer): any owner's
    repository is safe (a bind-mounted worktree's main repository may have another owner), and
    with forward_https git asks git-credential-clawker, which asks the host."""
    lines = ["git config --system --replace-all safe.directory '*'"]
    if runtime.forward_https:
        lines.append("git config --system --replace-all credential.helper clawker")
    return "\n".join(lines) + "\n"


def git_config_argv() -> list[str]:
    """Copy the host's ~/.gitconfig (mounted read-only) without credentials: gitconfig_filter."""
    source = Path(gitconfig_filter.__file__).read_text(encoding="utf-8")
    target = f"{naming.AGENT_HOME}/.gitconfig"
    return [f"{VENV}/bin/python", "-I", "-S", "-c", source, naming.HOST_GITCONFIG_MOUNT, target]

"""A start's work ends when Docker says its container died or was removed, and only then:
the cancellation switch, and which events flip it (a late `die` of the previous start must not
end the pass that drives the new one), and the dial's port probe, which a cancellation also ends."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import cast

import pytest

from reconciler.controlplane.identity.pki import ClawkerPKI
from reconciler.controlplane.registry import Registry
from reconciler.controlplane.runtime.cancellation import Cancellation, StartCancelledError
from reconciler.controlplane.runtime.controller import RuntimeController, _accepting, _rfc3339_ns
from reconciler.docker.engine import ContainerEvent, DockerPort

CID = "ab" * 32
STARTED = "2026-12-02T01:00:00.500000000Z"
STARTED_NS = _rfc3339_ns(STARTED)


def test_a_cancelled_sleep_ends_at_once_and_raises() -> None:
    switch = Cancellation()
    threading.Timer(0.05, switch.cancel, args=("the container died",)).start()
    began = time.monotonic()
    with pytest.raises(StartCancelledError, match="died"):
        switch.sleep(30)
    assert time.monotonic() - began < 10  # far from the 30 s it was asked to sleep


def test_the_blocking_call_in_progress_is_interrupted_and_a_late_one_at_once() -> None:
    switch = Cancellation()
    interrupted: list[str] = []
    with switch.interrupting(lambda: interrupted.append("stream")):
        switch.cancel("removed")
    assert interrupted == ["stream"]
    with switch.interrupting(lambda: interrupted.append("handshake")):
        pass
    assert interrupted == ["stream", "handshake"]  # already cancelled: run on entry
    with pytest.raises(StartCancelledError, match="removed"):
        switch.check()


def test_a_hook_left_behind_is_not_run() -> None:
    switch = Cancellation()
    ran: list[int] = []
    with switch.interrupting(lambda: ran.append(1)):
        pass
    switch.cancel("died")
    assert ran == []


def test_dockers_timestamps_read_to_the_nanosecond() -> None:
    assert STARTED_NS == 1796173200_500000000
    assert _rfc3339_ns("2026-12-02T01:00:00Z") == 1796173200_000000000
    assert _rfc3339_ns("not a time") == 0


def _controller(tmp_path: Path) -> RuntimeController:
    registry = Registry(tmp_path / "registry.sqlite")
    pki = ClawkerPKI.load_or_create(tmp_path / "pki")
    return RuntimeController(cast(DockerPort, object()), registry, pki, network="net")


def _event(action: str, at_ns: int) -> ContainerEvent:
    return ContainerEvent(CID, action, {}, time_nano=at_ns)


@pytest.mark.parametrize(
    ("action", "at_ns", "cancels"),
    [
        ("die", STARTED_NS + 1_000_000, True),  # this start died
        ("die", STARTED_NS - 1_000_000, False),  # the previous start's die, read late
        ("destroy", STARTED_NS - 1_000_000, True),  # gone is gone
        ("die", 0, True),  # no time given: believe Docker
    ],
)
def test_which_events_end_the_pass_of_a_start(
    tmp_path: Path, action: str, at_ns: int, cancels: bool
) -> None:
    controller = _controller(tmp_path)
    switch, started = controller._begin_pass(CID)
    started.append(STARTED)
    controller._cancel_pass(_event(action, at_ns))
    assert switch.cancelled is cancels


def test_a_die_before_the_pass_read_its_start_is_left_to_its_inspect(tmp_path: Path) -> None:
    controller = _controller(tmp_path)
    switch, _started = controller._begin_pass(CID)
    controller._cancel_pass(_event("die", STARTED_NS))
    assert not switch.cancelled
    controller._cancel_pass(_event("destroy", STARTED_NS))
    assert switch.cancelled


def test_an_event_for_a_container_without_a_pass_changes_nothing(tmp_path: Path) -> None:
    controller = _controller(tmp_path)
    entry = controller._begin_pass(CID)
    switch, started = entry
    started.append(STARTED)
    controller._end_pass(CID, entry)
    controller._cancel_pass(_event("destroy", STARTED_NS))
    assert not switch.cancelled


def test_the_dial_probe_answers_once_the_port_listens_and_not_before() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, not listening: a connect is refused
        port = reserved.getsockname()[1]
        assert not _accepting("127.0.0.1", 0.03, time.sleep, port=port)
        reserved.listen()
        assert _accepting("127.0.0.1", 0.03, time.sleep, port=port)


def test_a_cancelled_start_ends_the_dial_probe() -> None:
    cancellation = Cancellation()
    cancellation.cancel("the container died")
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        with pytest.raises(StartCancelledError):
            _accepting("127.0.0.1", 5.0, cancellation.sleep, port=reserved.getsockname()[1])

"""The CP runs no step of a start while another container of the agent runs (the swap,
docs/reconciler.md): the check over a port that answers as Docker would, with a fake only at
the port's edge (its list), and the real controller's code around it."""

from __future__ import annotations

import pytest

from reconciler.controlplane.runtime import controller as controller_module
from reconciler.controlplane.runtime.cancellation import Cancellation
from reconciler.controlplane.runtime.controller import RuntimeController
from reconciler.docker.engine import RuntimeInfo

ME = "a" * 64
OLD = "b" * 64


class ListingPort:
    """`running_agent_containers` answers from a script: one answer per call, the last kept."""

    def __init__(self, *answers: dict[str, str]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str]] = []

    def running_agent_containers(self, project: str, agent: str) -> dict[str, str]:
        self.asked.append((project, agent))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _controller(port: ListingPort) -> RuntimeController:
    ctrl = RuntimeController.__new__(RuntimeController)  # only the parts the check uses
    ctrl.port = port  # type: ignore[assignment]
    ctrl._sleep = lambda _seconds: None
    return ctrl


def _info() -> RuntimeInfo:
    return RuntimeInfo(ME, "clawker.p.a", {}, True, "2026-12-03T12:00:00Z", "172.20.0.2", 0)


def test_a_start_alone_goes_on_at_once_and_ignores_itself() -> None:
    port = ListingPort({ME: "clawker.p.a"})
    said: list[str] = []
    wait = _controller(port)._alone_in_background(_info(), "p", "a", said.append, Cancellation())
    wait()
    assert port.asked == [("p", "a")] and said == []


def test_a_start_waits_for_the_replaced_container_to_stop_and_says_so() -> None:
    stopping = {ME: "clawker.p.a", OLD: "clawker.p.a.old"}
    port = ListingPort(stopping, stopping, stopping, {ME: "clawker.p.a"})
    said: list[str] = []
    wait = _controller(port)._alone_in_background(_info(), "p", "a", said.append, Cancellation())
    wait()
    assert len(port.asked) == 4  # looked until the old one was gone, not once more
    assert said == ["waiting for clawker.p.a.old to stop (one container per agent)"]


def test_another_container_that_keeps_running_fails_the_start_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(controller_module, "ALONE_WINDOW", 0.05)
    port = ListingPort({OLD: "clawker.p.a.old"})
    wait = _controller(port)._alone_in_background(
        _info(), "p", "a", lambda _s: None, Cancellation()
    )
    with pytest.raises(
        controller_module._NotAloneError, match=r"clawker\.p\.a\.old.*stop or remove"
    ):
        wait()

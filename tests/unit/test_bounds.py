"""Durations and seconds are parsed and bounded where they enter: the CLI's flags and the
control plane's firewall (which must refuse whoever asks, and never let a deadline wrap)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from bpf.maps import Policy
from cli.durations import MAX_BYPASS_SECONDS, bypass_duration, seconds_flag
from cli.main import build_parser
from reconciler.firewall import state as firewall_state
from reconciler.firewall.enforcement import Firewall, FirewallConfig, FirewallError
from reconciler.firewall.state import AgentFirewall, BootInstant, bypass_seconds
from tests.unit.test_firewall import MemoryStore

U64_MAX = 2**64 - 1


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("720h", 2592000.0), ("30s", 30.0)])
def test_a_bypass_of_up_to_30_days_parses(text: str, seconds: float) -> None:
    assert bypass_duration(text) == seconds


@pytest.mark.parametrize("text", ["721h", "720h1s", "999999999999999999999999h"])
def test_a_longer_bypass_is_refused_naming_the_limit(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"at most 30 days \(720h\)"):
        bypass_duration(text)


def test_the_cli_refuses_a_huge_bypass_before_asking_the_control_plane(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _usage_error(["firewall", "bypass", "999999999999999999999999h", "--agent", "x"], capsys)
    assert "at most 30 days (720h)" in err


def test_the_cli_and_the_control_plane_agree_on_the_limit() -> None:
    assert MAX_BYPASS_SECONDS == firewall_state.MAX_BYPASS_SECONDS == 30 * 24 * 3600


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 30 * 24 * 3600 + 1.0, 1e30])
def test_the_control_plane_refuses_a_bypass_out_of_bounds(value: float) -> None:
    store = MemoryStore(AgentFirewall("p/dev"))
    config = FirewallConfig("/clawker", Path("/sys/fs/bpf/unused"), ("127.0.0.1", 53))
    fw = Firewall(config, store, clock=lambda: 1000.0)
    with pytest.raises(FirewallError, match="30 days"):
        fw.bypass("p/dev", value)
    assert store.firewalls() == [AgentFirewall("p/dev")]  # nothing changed
    with pytest.raises(ValueError, match="30 days"):
        bypass_seconds(value)


def test_a_stored_deadline_beyond_the_limit_never_wraps_the_kernels_u64() -> None:
    """A registry written before the limit existed may hold any deadline: it is capped."""
    config = FirewallConfig("/clawker", Path("/sys/fs/bpf/unused"), ("127.0.0.1", 53))
    fw = Firewall(config, MemoryStore(), boot_clock=lambda: BootInstant("b1", 1000.0))
    policy = fw._policy(AgentFirewall("p/dev", bypass_until=1e30, bypass_boot="b1"), None)
    packed = Policy(bypass_until=policy.bypass_until).bypass_until
    assert packed == policy.bypass_until  # what the kernel reads is what was meant
    assert 0 < policy.bypass_until < U64_MAX
    assert policy.bypass_until == (1000 + MAX_BYPASS_SECONDS) * 10**9  # on CLOCK_BOOTTIME


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-5", "0", "86401", "soon"])
def test_seconds_flags_refuse_what_is_not_a_bounded_finite_number(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="seconds"):
        seconds_flag(0, 86400)(text)


def test_seconds_flags_take_a_finite_number_in_range() -> None:
    assert seconds_flag(0, 86400)("0.5") == 0.5
    assert seconds_flag(0, 86400)("86400") == 86400.0


@pytest.mark.parametrize(
    "argv",
    [
        ["apply", "-f", "x.yaml", "--watch", "--resync", "nan"],
        ["apply", "-f", "x.yaml", "--timeout", "inf"],
        ["apply", "-f", "x.yaml", "--timeout", "-1"],
    ],
)
def test_apply_refuses_nan_and_unbounded_seconds(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(argv, capsys)
    assert "seconds" in err and ("--resync" in err or "--timeout" in err)

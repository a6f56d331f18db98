"""What the CLI loads before a verb does its work: `clawker --help` only the parsers, `diff` the
specs, docker-py and the planner but not the PKI, the firewall, watch mode or the validators.
Which modules load, not how long they take (bench/README.md times that). Each check runs a
fresh interpreter."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import EXIT_FAIL, EXIT_USAGE, main


def loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    listing = "import sys; print('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{listing}"], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_help_loads_neither_the_specs_nor_docker_nor_the_reconciler() -> None:
    loaded = loaded_by(
        "import contextlib, io\nimport cli.main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main.main(['--help'])"
    )
    assert "cli.main" in loaded
    heavy = {"specs", "pydantic", "ruamel", "docker", "requests", "cryptography", "jwt", "grpc"}
    assert roots(loaded) & heavy == set()
    assert {m for m in loaded if m.startswith("reconciler.")} <= {"reconciler.naming"}


def test_diff_loads_no_pki_firewall_or_watch_mode() -> None:
    loaded = loaded_by("import cli.main, cli.agent_verbs")
    assert {"specs", "docker", "reconciler"} <= roots(loaded)
    assert "reconciler.loop.converge" in loaded
    unused = {"cryptography", "jwt", "grpc", "bpf", "pyroute2", "dnslib", "watchfiles"}
    assert roots(loaded) & unused == set()
    # Validation (pydantic, the public suffix list) loads only for specs not in the cache.
    assert roots(loaded) & {"pydantic", "pydantic_core", "publicsuffixlist"} == set()
    assert {
        "reconciler.controlplane.identity.pki",
        "reconciler.watch",
        "reconciler.firewall.enforcement",
    }.isdisjoint(loaded)


def test_invalid_specs_exit_2_with_every_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "-f", "/nonexistent/agents.yaml"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: /nonexistent/agents.yaml: no such file or directory" in err
    assert err.endswith("1 error(s); nothing was changed.\n")


def test_a_firewall_verb_without_a_control_plane_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLAWKER_STATE_DIR", str(tmp_path))
    assert main(["firewall", "status"]) == EXIT_FAIL
    assert capsys.readouterr().err.startswith("error: the control plane is not running")


def test_calling_main_in_process_leaves_sigpipe_alone() -> None:
    # Python ignores SIGPIPE (a broken pipe is an exception); only the program resets it.
    before = signal.getsignal(signal.SIGPIPE)
    main(["diff", "-f", "/nonexistent/agents.yaml"])
    assert signal.getsignal(signal.SIGPIPE) == before

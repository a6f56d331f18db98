"""What the CLI loads before a verb does its work: `clawker --help` only the parsers, `diff` the
specs, docker-py and the planner but not the PKI, the firewall, watch mode or the validators.
Which modules load, not how long they take (bench/README.md times that). Each check runs a
fresh interpreter."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import EXIT_FAIL, EXIT_USAGE, main
from reconciler.images import project_image_inputs
from reconciler.settings import Settings
from specs import load_specs


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


# What only a verb that changes things needs: the executor and what drives it (converge), the
# readiness wait, the control plane's lifecycle and host directories, the apply lock, the image
# builder and listing, the profile's timeline, apply's own CLI module, and stdlib modules only
# those need.
NOT_FOR_DIFF = {
    "cli.agent_verbs",
    "reconciler.loop.converge",
    "reconciler.loop.execute",
    "reconciler.loop.ready",
    "reconciler.loop.apply_lock",
    "reconciler.loop.imperative",
    "reconciler.loop.timeline",
    "reconciler.controlplane.lifecycle",
    "reconciler.controlplane.host_dirs",
    "reconciler.images.building",
    "reconciler.images.listing",
    "concurrent.futures",
    "reconciler.host.config_seed",
    "reconciler.docker.records",
    "cli.firewall_verbs",
    "cli.image_verbs",
    "cli.imperative_parsers",
    "cli.verify_verb",
    "socketserver",  # the control plane's server side
    "platform",  # os.uname() tells the architecture
}


def test_diff_loads_no_pki_firewall_or_watch_mode() -> None:
    loaded = loaded_by("import cli.main, cli.diff_verb")
    assert {"specs", "docker", "reconciler"} <= roots(loaded)
    assert {"reconciler.loop.prepare", "reconciler.loop.plan", "cli.render"} <= loaded
    assert loaded & NOT_FOR_DIFF == set()
    unused = {"cryptography", "jwt", "grpc", "bpf", "pyroute2", "dnslib", "watchfiles"}
    assert roots(loaded) & unused == set()
    # Validation (pydantic, the public suffix list) loads only for specs not in the cache.
    assert roots(loaded) & {"pydantic", "pydantic_core", "publicsuffixlist"} == set()
    assert {
        "reconciler.controlplane.identity.pki",
        "reconciler.watch",
        "reconciler.firewall.enforcement",
    }.isdisjoint(loaded)


# A diff run through against a stand-in for the Docker port: the project image built (its
# labels match the specs) and the agent's volumes kept, so the plan creates its container and
# builds and seeds nothing.
DIFF_RUN = """
import json, sys
from reconciler import naming
from reconciler.docker import engine

class UpToDateImage:
    def __init__(self, scope):
        pass

    def list_images(self):
        ref, labels = json.loads(sys.argv[2])
        return [engine.ImageInfo("sha256:" + "a" * 64, (ref,), labels, 0, 0)]

    def list_containers(self):
        return []

    list_networks = list_containers

    def list_volumes(self):  # kept from an earlier container: nothing to seed
        return [
            engine.VolumeInfo(
                naming.volume_name("demo", "a", role),
                {naming.PROJECT: "demo", naming.AGENT: "a", naming.PURPOSE: "agent",
                 naming.VOLUME_ROLE: role},
            )
            for role in ("config", "history")
        ]

    def image_id(self, ref):
        raise AssertionError("an image inspect, with nothing to build")

engine.DockerEngine = UpToDateImage
import cli.main
assert cli.main.main(["diff", "-f", sys.argv[1]]) == cli.main.EXIT_FAIL
print("\\n".join(sys.modules))
"""


def test_a_cached_diff_runs_without_the_executor_the_builder_or_the_validators(
    tmp_path: Path,
) -> None:
    """A diff run through (specs loaded, Docker observed, planned, rendered) with its spec set
    in the resolved cache, as on every diff after the first: no module only the verbs that
    change things need loads, at start-up or later, and neither do pydantic and the public
    suffix list."""
    (tmp_path / "ws").mkdir()
    cache = tmp_path / "cache"
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: demo}\n"
        "spec: {workspace: {path: ./ws}}\n---\n"
        "apiVersion: clawker.dev/v1alpha1\nkind: Agent\nmetadata: {name: a, project: demo}\n"
    )
    env = {
        **os.environ,
        "CLAWKER_STATE_DIR": str(tmp_path / "state"),  # no control plane runs there
        "CLAWKER_CACHE_DIR": str(cache),
    }

    (inputs,) = project_image_inputs(load_specs([str(spec)]).agents, Settings(cache_dir=cache))
    image = json.dumps([inputs.ref, inputs.labels()])

    def diff() -> set[str]:
        result = subprocess.run(
            [sys.executable, "-c", DIFF_RUN, str(spec), image],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        assert "will be created" in result.stdout
        return set(result.stdout.split())

    assert "pydantic" in roots(diff())  # the first validates, and fills the resolved cache
    loaded = diff()
    assert {"reconciler.loop.prepare", "reconciler.loop.plan", "cli.render"} <= loaded
    assert loaded & NOT_FOR_DIFF == set()
    assert roots(loaded) & {"pydantic", "pydantic_core", "publicsuffixlist"} == set()


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


@pytest.mark.parametrize(
    "argv",
    [
        ["diff", "-f", "a.yaml", "-f", "b.yaml", "--prune", "-o", "json"],
        ["diff", "-f", "-", "--show-secrets", "--restart-if-needed"],
        ["apply", "-f", "a.yaml", "-y", "--watch", "--resync", "5", "--timeout", "9"],
        ["get", "agents", "-o", "json"],
        ["delete", "-f", "a.yaml", "--volumes", "-y", "--no-wait-lock"],
    ],
)
def test_a_verbs_own_parser_parses_as_the_whole_cli_does(argv: list[str]) -> None:
    """Start-up builds only the named verb's parser (cli.main._OWN_VERBS): same arguments,
    same help, same errors as from the parser of every verb."""
    from cli.main import build_parser  # noqa: PLC0415

    whole, own = build_parser(), build_parser(argv[0])
    assert vars(own.parse_args(argv)) == vars(whole.parse_args(argv))
    helps = []
    for parser in (whole, own):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            parser.parse_args([argv[0], "--help"])
        helps.append(out.getvalue())
    assert helps[0] == helps[1]
    assert "usage: clawker " + argv[0] in helps[1]
    errors = []
    for parser in (whole, own):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
            parser.parse_args([argv[0], "--no-such-flag"])
        errors.append(err.getvalue())
    assert errors[0] == errors[1]


def test_no_verb_or_another_verb_gets_the_whole_parser() -> None:
    from cli.main import _OWN_VERBS, build_parser  # noqa: PLC0415

    assert set(_OWN_VERBS) == {"diff", "apply", "get", "delete"}
    whole = build_parser("run")  # not one of them: every verb
    assert whole.format_help() == build_parser().format_help()
    assert "controlplane" in whole.format_help()

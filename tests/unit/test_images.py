"""Agent images without Docker: the rendered Dockerfile, input hashing, and the credential
helper's protocol (against a unix socket the test owns)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.images import (
    INPUT_GROUPS,
    REQUIREMENTS,
    ImageError,
    agent_image_ref,
    build_reason,
    image_inputs,
    is_progress_line,
    project_image_inputs,
    project_image_ref,
    render_dockerfile,
)
from reconciler.images import harness as harness_module
from reconciler.images import wheelhouse as wheelhouse_module
from reconciler.images.agent_prompt import AGENT_PROMPT
from reconciler.images.base import BASE_PACKAGES, base_image_is_current
from reconciler.images.building import _lost_cache_layer
from reconciler.images.inputs import clawkerd_sources
from reconciler.settings import Settings
from specs import BuildSpec, DesiredAgent, ResolvedWorkspace, SourceRef
from specs.resolved import from_plain

REPO = Path(__file__).resolve().parents[2]
HELPER = REPO / "reconciler" / "in_container" / "git_credential_clawker.py"


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path) -> Path:
    """Every test sees its own empty clawker cache and the pinned harness version."""
    return tmp_path / "cache"


@pytest.fixture
def settings(empty_cache: Path) -> Settings:
    return Settings(cache_dir=empty_cache)


def agent(
    name: str = "dev", project: str = "myapp", line: int = 1, **build: object
) -> DesiredAgent:
    return DesiredAgent(
        project=project,
        name=name,
        source=SourceRef("agents.yaml", line, 1),
        workspace=ResolvedWorkspace(path="/work/myapp"),
        build=from_plain(BuildSpec, build),
    )


# -- the Dockerfile ------------------------------------------------------------------------------


def test_declared_packages_are_installed_once_in_sorted_order() -> None:
    text = render_dockerfile(
        base_image="debian:bookworm", packages=["ripgrep", "jq", "ripgrep"], harness="none"
    )
    assert "apt-get install -y -qq --no-install-recommends jq ripgrep \\" in text
    assert text.count("ripgrep") == 1


def test_without_packages_apt_runs_only_for_what_a_base_lacks() -> None:
    text = render_dockerfile(base_image="clawker-base:bookworm", packages=[], harness="none")
    assert "# 2. No build.packages." in text
    assert text.count("apt-get update") == 1  # the conditional run-time step
    assert 'if [ -n "$missing" ]' in text
    assert f"for p in {' '.join(BASE_PACKAGES)}; do" in text


def test_the_base_is_a_build_argument_defaulting_to_the_declared_image() -> None:
    text = render_dockerfile(base_image="debian:bookworm", packages=[], harness="none")
    assert text.splitlines()[1:3] == [
        "ARG CLAWKER_BASE_IMAGE=debian:bookworm",
        "FROM ${CLAWKER_BASE_IMAGE}",
    ]


def test_python_dependencies_come_from_the_wheelhouse_only() -> None:
    text = render_dockerfile(base_image="b", packages=[], harness="none")
    assert "COPY wheels/ /tmp/clawker-wheels/" in text
    assert "--no-index" in text
    assert "--find-links /tmp/clawker-wheels" in text
    for requirement in REQUIREMENTS:
        assert requirement in text
    assert "python3 -m venv --without-pip /opt/clawker/venv" in text
    assert "import clawkerd, proto.gen.clawkerd_pb2_grpc, cryptography" in text


def test_the_image_runs_clawkerd_and_makes_the_claude_user() -> None:
    text = render_dockerfile(base_image="b", packages=[], harness="claude")
    assert 'ENTRYPOINT ["/usr/local/bin/clawkerd"]' in text
    assert 'useradd --uid "$uid" --gid "$gid" --create-home --home-dir /home/claude' in text
    assert "RUN uid=1001 gid=1001;" in text
    assert "NOPASSWD: ALL" in text
    assert "install -d -o claude -g claude -m 0755 /home/claude/.claude /commandhistory" in text
    assert "/var/log/clawker /run/clawker" in text
    assert "COPY files/CLAUDE.md /etc/claude-code/CLAUDE.md" in text
    assert "files/git-credential-clawker /usr/local/bin/" in text


def test_harness_claude_copies_the_binary_and_none_installs_nothing() -> None:
    with_claude = render_dockerfile(base_image="b", packages=[], harness="claude")
    without = render_dockerfile(base_image="b", packages=[], harness="none")
    assert "COPY harness/claude /usr/local/bin/claude" in with_claude
    assert 'CMD ["claude"]' in with_claude
    assert "/usr/local/bin/claude" not in without
    assert "DISABLE_AUTOUPDATER" not in without
    assert 'CMD ["bash"]' in without


def test_a_package_name_that_could_reach_the_shell_is_refused() -> None:
    with pytest.raises(ValueError, match="not Debian package names"):
        render_dockerfile(base_image="b", packages=["jq; rm -rf /"], harness="none")


# -- input hashing -------------------------------------------------------------------------------


def test_refs_name_the_project_image() -> None:
    assert project_image_ref("myapp") == "clawker-myapp:default"
    assert agent_image_ref(agent(harness="none")) == "clawker-myapp:default"


def test_inputs_are_computed_offline_and_deterministically(
    monkeypatch: pytest.MonkeyPatch, empty_cache: Path, settings: Settings
) -> None:
    def no_subprocess(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("computing inputs must not run pip, npm or anything else")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    first, second = image_inputs(agent(), settings), image_inputs(agent(), settings)
    assert first == second
    assert re.fullmatch(r"[0-9a-f]{64}", first.digest)
    assert [g for g, _ in first.groups] == list(INPUT_GROUPS)
    assert not empty_cache.exists()  # nothing was fetched or written


def test_an_image_stamped_with_its_inputs_is_up_to_date(settings: Settings) -> None:
    inputs = image_inputs(agent(packages=["jq"]), settings)
    assert build_reason(inputs, inputs.labels()) is None
    assert build_reason(inputs, None) == "not found"


@pytest.mark.parametrize(
    ("change", "group"),
    [
        ({"packages": ["jq", "ripgrep"]}, "packages"),
        ({"harness": "none"}, "harness"),
        ({"base_image": "debian:bookworm"}, "base_image"),
    ],
)
def test_a_changed_input_is_named_by_its_group(
    change: dict[str, Any], group: str, settings: Settings
) -> None:
    old = image_inputs(agent(packages=["jq"]), settings)
    new = image_inputs(agent(**{"packages": ["jq"], **change}), settings)
    assert build_reason(new, old.labels()) == f"inputs changed: {group}"


def test_several_changed_groups_are_all_named(settings: Settings) -> None:
    old = image_inputs(agent(), settings)
    new = image_inputs(agent(packages=["jq"], harness="none"), settings)
    assert build_reason(new, old.labels()) == "inputs changed: packages, harness"


def test_labels_without_per_group_hashes_still_force_a_build(settings: Settings) -> None:
    inputs = image_inputs(agent(), settings)
    assert build_reason(inputs, {"dev.clawker.image-inputs": "0" * 64}) == (
        "inputs changed: " + ", ".join(INPUT_GROUPS)
    )


def test_package_order_and_repeats_do_not_change_the_digest(settings: Settings) -> None:
    a = image_inputs(agent(packages=["ripgrep", "jq"]), settings)
    b = image_inputs(agent(packages=["jq", "ripgrep", "jq"]), settings)
    assert a.digest == b.digest


def test_a_fetched_wheelhouse_is_identified_by_its_files(
    empty_cache: Path, settings: Settings
) -> None:
    before = image_inputs(agent(), settings)
    directory = wheelhouse_module._directory(empty_cache)
    directory.mkdir(parents=True)
    (directory / "grpcio-1-cp311.whl").write_bytes(b"wheel")
    manifest = {"files": [{"name": "grpcio-1-cp311.whl", "sha256": "ab" * 32}]}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    after = image_inputs(agent(), settings)
    assert build_reason(after, before.labels()) == "inputs changed: wheels"
    assert image_inputs(agent(), settings) == after  # and stays so


def test_a_fetched_harness_is_identified_by_its_binary_hash(
    empty_cache: Path, settings: Settings
) -> None:
    before = image_inputs(agent(harness="claude"), settings)
    directory = empty_cache / "harness" / harness_module.HARNESS_VERSION
    directory.mkdir(parents=True)
    (directory / "claude").write_bytes(b"\x7fELF")
    manifest = {"package": harness_module.harness_package(), "sha256": "cd" * 32}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    after = image_inputs(agent(harness="claude"), settings)
    assert build_reason(after, before.labels()) == "inputs changed: harness"
    assert image_inputs(agent(harness="none"), settings).harness_version == ""


def test_the_harness_version_can_be_overridden_but_must_look_like_one(settings: Settings) -> None:
    inputs = image_inputs(agent(harness="claude"), replace(settings, harness_version="2.1.0"))
    assert inputs.harness_version == "2.1.0"
    assert inputs.labels()["dev.clawker.harness-version"] == "2.1.0"
    bad = replace(settings, harness_version="latest; rm -rf /")
    with pytest.raises(harness_module.HarnessError, match="is not a version"):
        image_inputs(agent(harness="claude"), bad)


def test_one_image_per_project_and_agents_must_agree_on_build(settings: Settings) -> None:
    same = [agent("dev", packages=["jq"]), agent("test", packages=["jq"]), agent(project="b")]
    assert [i.ref for i in project_image_inputs(same, settings)] == [
        "clawker-myapp:default",
        "clawker-b:default",
    ]
    differing = [agent("dev", line=1), agent("test", line=9, packages=["jq"])]
    with pytest.raises(ImageError, match=r"dev \(agents.yaml:1:1\) and test \(agents.yaml:9:1\)"):
        project_image_inputs(differing, settings)


def test_clawkerd_sources_include_the_generated_protocol_and_no_bytecode() -> None:
    names = [rel for rel, _ in clawkerd_sources()]
    assert "clawkerd/__init__.py" in names
    assert "proto/gen/clawkerd_pb2.py" in names
    assert "proto/gen/clawkerd_pb2_grpc.py" in names
    assert not [n for n in names if "__pycache__" in n or not n.endswith(".py")]


def _pin(name: str) -> tuple[int, ...]:
    (version,) = [r.split("==")[1] for r in REQUIREMENTS if r.startswith(f"{name}==")]
    return tuple(int(part) for part in version.split("."))


def test_the_pinned_wheels_can_run_the_generated_protocol_modules() -> None:
    gen = REPO / "proto" / "gen"
    pb2 = (gen / "clawkerd_pb2.py").read_text()
    grpc_gen = (gen / "clawkerd_pb2_grpc.py").read_text()
    protobuf_made = re.search(r"Protobuf Python Version: ([\d.]+)", pb2)
    grpc_made = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_gen)
    assert protobuf_made and grpc_made
    assert _pin("protobuf") >= tuple(int(p) for p in protobuf_made.group(1).split("."))
    assert _pin("grpcio") >= tuple(int(p) for p in grpc_made.group(1).split("."))
    assert any(r.startswith("cryptography==") for r in REQUIREMENTS)


def test_base_image_currency_is_read_from_its_label() -> None:
    assert base_image_is_current({"dev.clawker.base-packages": ",".join(BASE_PACKAGES)})
    assert not base_image_is_current({"dev.clawker.base-packages": "ca-certificates"})
    assert not base_image_is_current(None)


def test_progress_shows_steps_and_clawkers_lines_but_not_label_steps() -> None:
    assert is_progress_line("Step 3/20 : RUN apt-get update")
    assert is_progress_line("clawker: fetching Claude Code 2.1.0")
    assert not is_progress_line("Step 21/29 : LABEL dev.clawker.managed=true")
    assert not is_progress_line(" ---> Running in 0123456789ab")


def test_the_prompt_explains_the_firewall_and_the_environment() -> None:
    for needle in (
        "denied by default",
        "NXDOMAIN",
        "EPERM",
        "clawker firewall add DOMAIN --agent $CLAWKER_AGENT",
        "CLAWKER_PROJECT",
        "CLAWKER_AGENT",
        "CLAWKER_WORKSPACE",
        "CLAWKER_WORKSPACE_MODE",
        "sudo",
    ):
        assert needle in AGENT_PROMPT


# -- git-credential-clawker ----------------------------------------------------------------------


def run_helper(
    *args: str, stdin: str = "protocol=https\nhost=github.com\n\n", proxy: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLAWKER_CREDENTIAL_PROXY"}
    if proxy is not None:
        env["CLAWKER_CREDENTIAL_PROXY"] = proxy
    return subprocess.run(
        [sys.executable, "-I", str(HELPER), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A one-shot credential proxy on a unix socket: records the request, answers a login."""
    path = str(tmp_path / "proxy.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            seen.append(data)
            conn.sendall(b"username=agent\npassword=s3cret\n\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path, seen
    finally:
        server.close()
        thread.join(timeout=5)


def test_without_a_proxy_the_helper_prints_nothing_so_git_falls_through() -> None:
    proc = run_helper("get")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_the_helper_forwards_the_request_and_prints_the_proxys_answer(
    proxy: tuple[str, list[bytes]],
) -> None:
    path, seen = proxy
    proc = run_helper("get", proxy=path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "username=agent\npassword=s3cret\n"
    assert seen == [b"get\nprotocol=https\nhost=github.com\n\n"]


def test_an_unreachable_proxy_is_reported_but_does_not_fail_git(tmp_path: Path) -> None:
    proc = run_helper("get", proxy=str(tmp_path / "absent.sock"))
    assert (proc.returncode, proc.stdout) == (0, "")
    assert "did not answer" in proc.stderr


def test_unknown_operations_are_ignored() -> None:
    proc = run_helper("capability", stdin="")
    assert (proc.returncode, proc.stdout) == (0, "")


def test_a_build_is_retried_only_when_dockerd_lost_a_cached_layer_under_it() -> None:
    assert _lost_cache_layer(
        "build image x: failed to get digest sha256:ab: open /var/lib/docker/...: no such file"
    )
    assert _lost_cache_layer("build image x: unknown parent image ID sha256:cd")
    assert not _lost_cache_layer("build image x: E: Unable to locate package clawker-no-such")

"""Agent images built for real (offline but for apt's Debian mirrors and the npm registry
through npm), checked by running them.

Builds are slow, so one image with the Claude Code harness is shared by the checks that only
read it, and a second project (no harness) carries the rebuild scenario. Every image and
container made here carries `dev.clawker.test=<run id>`; teardown removes exactly those.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from cli.image_verbs import add_image_verbs
from reconciler.docker.engine import DockerEngine
from reconciler.images import (
    HARNESS_VERSION,
    BuildResult,
    ImageError,
    build_reason,
    ensure_project_image,
    image_inputs,
    observed_image_labels,
    project_image_inputs,
    resolve_base_image,
)
from reconciler.images.base import BASE_PACKAGES, base_image_is_current, build_base_image
from reconciler.settings import settings_from_env
from specs import DesiredAgent, load_specs
from tests.cleanup import TEST_LABEL, remove_test_objects

pytestmark = pytest.mark.docker

SHARED_BASE = "clawker-base:bookworm"


@dataclass
class ImageScope:
    run_id: str
    api: docker.APIClient
    workdir: Path
    port: DockerEngine
    refs: list[str] = field(default_factory=list)

    def project(self, name: str) -> str:
        return f"t{self.run_id}{name}"

    def spec(self, project: str, build: str, name: str | None = None) -> Path:
        path = self.workdir / (name or f"{project}.yaml")
        path.write_text(
            textwrap.dedent(f"""\
            apiVersion: clawker.dev/v1alpha1
            kind: Project
            metadata: {{name: {project}}}
            spec:
              workspace: {{path: ./ws}}
              build: {build}
            ---
            apiVersion: clawker.dev/v1alpha1
            kind: Agent
            metadata: {{name: dev, project: {project}}}
            spec: {{command: [bash]}}
            """)
        )
        self.refs.append(f"clawker-{project}:default")
        return path

    def agent(self, spec: Path) -> DesiredAgent:
        (agent,) = load_specs([str(spec)]).agents
        return agent

    def run(self, image: str, script: str, user: str = "root") -> tuple[int, str]:
        """Run `sh -c script` in `image` (entrypoint bypassed, no network); exit code, output."""
        container = self.api.create_container(
            image=image,
            entrypoint=["/bin/sh", "-c"],
            command=[script],
            user=user,
            labels={"dev.clawker.managed": "true", TEST_LABEL: self.run_id},
            network_disabled=True,
        )
        try:
            self.api.start(container)
            code = self.api.wait(container, timeout=120)["StatusCode"]
            output = self.api.logs(container).decode(errors="replace")
        finally:
            self.api.remove_container(container, force=True)
        return int(code), output

    def remove_images(self) -> None:
        """The images this run tagged, then any it left untagged (all carry its label)."""
        for ref in self.refs:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_image(ref)
        for image in self.api.images(filters={"label": [f"{TEST_LABEL}={self.run_id}"]}):
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_image(image["Id"])


@pytest.fixture(scope="module")
def images(
    docker_api: docker.APIClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageScope]:
    run_id = uuid.uuid4().hex[:10]
    workdir = tmp_path_factory.mktemp("images")
    (workdir / "ws").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAWKER_SCOPE_LABELS", f"{TEST_LABEL}={run_id}")
        mp.setenv("NO_COLOR", "1")
        mp.delenv("CLAWKER_ALLOW_PULL", raising=False)
        mp.delenv("CLAWKER_HARNESS_VERSION", raising=False)
        # The port of this run's scope: it stamps and lists only this run's objects.
        scope = ImageScope(run_id, docker_api, workdir, DockerEngine(scope=settings_from_env()))
        try:
            yield scope
        finally:
            remove_test_objects(run_id)
            scope.remove_images()


@pytest.fixture(scope="module")
def base_ref(images: ImageScope) -> str:
    """clawker-base:bookworm when it is there with today's BASE_PACKAGES (`make setup` builds
    it); otherwise a base of this run's own, removed with the run."""
    try:
        inspect: Any = images.api.inspect_image  # untyped in types-docker
        labels = inspect(SHARED_BASE)["Config"].get("Labels")
    except docker.errors.ImageNotFound:
        labels = None
    if labels is not None and base_image_is_current(labels):
        return SHARED_BASE
    ref = f"clawker-base:t{images.run_id}"
    images.refs.append(ref)
    build_base_image(images.port, ref=ref)
    return ref


@dataclass(frozen=True)
class Built:
    ref: str
    result: BuildResult
    lines: list[str]
    agent: DesiredAgent


@pytest.fixture(scope="module")
def claude_image(images: ImageScope, base_ref: str) -> Built:
    """One project image with the Claude Code harness, shared by every read-only check."""
    spec = images.spec(images.project("claude"), f"{{base_image: '{base_ref}', harness: claude}}")
    agent = images.agent(spec)
    lines: list[str] = []
    result = ensure_project_image(images.port, image_inputs(agent), on_line=lines.append)
    return Built(result.ref, result, lines, agent)


def image_cli(*argv: str) -> int:
    """`clawker image ...` through the verbs' own parser (cli.main registers the same)."""
    parser = argparse.ArgumentParser(prog="clawker")
    image = parser.add_subparsers(required=True).add_parser("image")
    add_image_verbs(image.add_subparsers(dest="image_verb", required=True))
    args = parser.parse_args(["image", *argv])
    args.settings = settings_from_env()  # what cli.main reads once for every verb
    code: int = args.func(args)
    return code


# -- what an agent image holds -------------------------------------------------------------------


def test_the_image_runs_clawkerd_as_its_entrypoint_and_carries_its_inputs(
    images: ImageScope, claude_image: Built
) -> None:
    assert claude_image.result.reason == "not found"
    inspect: Any = images.api.inspect_image  # untyped in types-docker
    config = inspect(claude_image.ref)["Config"]
    assert config["Entrypoint"] == ["/usr/local/bin/clawkerd"]
    labels = config["Labels"]
    assert labels["dev.clawker.managed"] == "true"
    assert labels[TEST_LABEL] == images.run_id
    assert labels["dev.clawker.project"] == claude_image.agent.project
    # The build fetched wheels and harness; a diff computed now agrees with the image.
    assert build_reason(image_inputs(claude_image.agent), labels) is None
    code, out = images.run(claude_image.ref, "cat /usr/local/bin/clawkerd")
    assert code == 0
    assert 'exec /opt/clawker/venv/bin/python -I -m clawkerd "$@"' in out


def test_the_base_already_had_every_run_time_package(
    images: ImageScope, claude_image: Built
) -> None:
    assert not [line for line in claude_image.lines if line.startswith("clawker: installing")]
    code, out = images.run(
        claude_image.ref, f"dpkg-query -W -f='${{Status}}\\n' {' '.join(BASE_PACKAGES)}"
    )
    assert code == 0, out
    assert out.count("install ok installed") == len(BASE_PACKAGES)


def test_the_user_claude_has_uid_1001_and_passwordless_sudo(
    images: ImageScope, claude_image: Built
) -> None:
    # (sudo's stderr would only warn that this network-less container's hostname has no address)
    script = "id -u; id -g; echo $HOME; sudo -n true 2>/dev/null && echo sudo=ok"
    code, out = images.run(claude_image.ref, script, "claude")
    assert (code, out.split()) == (0, ["1001", "1001", "/home/claude", "sudo=ok"]), out


def test_volume_mount_points_and_clawkerd_dirs_exist_with_their_owners(
    images: ImageScope, claude_image: Built
) -> None:
    code, out = images.run(
        claude_image.ref,
        "stat -c '%n %U' /commandhistory /home/claude/.claude /var/log/clawker /run/clawker",
    )
    assert code == 0, out
    assert out.split("\n")[:4] == [
        "/commandhistory claude",
        "/home/claude/.claude claude",
        "/var/log/clawker root",
        "/run/clawker root",
    ]


def test_the_prompt_and_the_credential_helper_are_installed(
    images: ImageScope, claude_image: Built
) -> None:
    code, out = images.run(
        claude_image.ref,
        "grep -c 'clawker firewall add DOMAIN --agent' /etc/claude-code/CLAUDE.md;"
        " command -v git-credential-clawker;"
        " printf 'protocol=https\\nhost=example.com\\n\\n' | git-credential-clawker get;"
        " echo helper-exit=$?",
        "claude",
    )
    assert code == 0, out
    assert out.split() == ["1", "/usr/local/bin/git-credential-clawker", "helper-exit=0"]


def test_clawkerds_python_imports_grpc_cryptography_and_the_protocol(
    images: ImageScope, claude_image: Built
) -> None:
    code, out = images.run(
        claude_image.ref,
        "/opt/clawker/venv/bin/python -I -c 'import grpc, cryptography, clawkerd,"
        " proto.gen.clawkerd_pb2_grpc; print(grpc.__version__, cryptography.__version__)'",
    )
    assert code == 0, out


def test_the_harness_is_the_real_claude_code_cli(images: ImageScope, claude_image: Built) -> None:
    code, out = images.run(claude_image.ref, "claude --version", "claude")
    assert code == 0, out
    assert f"{HARNESS_VERSION} (Claude Code)" in out


# -- when images are built -----------------------------------------------------------------------


def test_an_unchanged_project_is_not_rebuilt_and_a_package_change_rebuilds_once(
    images: ImageScope, base_ref: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = images.project("plain")
    spec = images.spec(project, f"{{base_image: '{base_ref}', harness: none}}")
    ref = f"clawker-{project}:default"

    assert image_cli("build", "-f", str(spec)) == 0
    assert f"✓ image {ref} built (not found)" in capsys.readouterr().out
    first = images.port.image_id(ref)

    again = ensure_project_image(images.port, image_inputs(images.agent(spec)))
    assert (again.built, again.image_id) == (False, first)
    assert image_cli("build", "-f", str(spec)) == 0
    assert f"✓ image {ref} up to date" in capsys.readouterr().out

    images.spec(project, f"{{base_image: '{base_ref}', harness: none, packages: [jq]}}")
    inputs = image_inputs(images.agent(spec))
    observed = observed_image_labels(images.port.list_images(), ref)
    assert build_reason(inputs, observed) == "inputs changed: packages"
    rebuilt = ensure_project_image(images.port, inputs)
    assert rebuilt.reason == "inputs changed: packages"
    assert rebuilt.image_id != first
    assert ensure_project_image(images.port, inputs).built is False
    code, out = images.run(ref, "jq --version")
    assert (code, out.startswith("jq-")) == (0, True), out

    assert image_cli("ls", "-o", "json") == 0
    listed = {item["ref"]: item for item in json.loads(capsys.readouterr().out)["items"]}
    assert listed[ref]["project"] == project
    assert listed[ref]["inputs"] == inputs.digest
    assert listed[ref]["id"] == rebuilt.image_id


def test_a_failing_build_reports_the_builders_error_and_last_lines(
    images: ImageScope, base_ref: str
) -> None:
    spec = images.spec(
        images.project("broken"),
        f"{{base_image: '{base_ref}', harness: none, packages: [clawker-no-such-package]}}",
    )
    (inputs,) = project_image_inputs([images.agent(spec)])
    with pytest.raises(ImageError) as failure:
        ensure_project_image(images.port, inputs)
    message = str(failure.value)
    assert f"build image {inputs.ref}" in message
    assert "clawker-no-such-package" in message
    assert images.port.image_id(inputs.ref) is None


def test_the_default_base_falls_back_and_other_bases_are_never_pulled(
    images: ImageScope, base_ref: str
) -> None:
    absent = f"clawker-absent-{images.run_id}:never"
    with pytest.raises(ImageError, match=rf"base image {absent} .* not present locally"):
        resolve_base_image(images.port, absent)
    if images.port.image_id("buildpack-deps:bookworm-scm") is None:
        if images.port.image_id(SHARED_BASE) is not None:
            assert resolve_base_image(images.port, "buildpack-deps:bookworm-scm") == SHARED_BASE
        else:
            with pytest.raises(ImageError, match="clawker image base"):
                resolve_base_image(images.port, "buildpack-deps:bookworm-scm")

"""`agent.claude_code.api_key` in the spec: where the key is read, never the key; what the agent
gets instead (a placeholder, the relay's URL); and the mistakes that would let the key in."""

from __future__ import annotations

import json
import tarfile
import textwrap
from pathlib import Path

import pytest

from cli.render import render_plan
from cli.style import Style
from reconciler import naming
from reconciler.controlplane.runtime_spec import desired_runtime
from reconciler.host.config_seed import ConfigSeed, seed_archive
from reconciler.host.host_state import HostContext
from reconciler.images.agent_prompt import AGENT_PROMPT
from reconciler.loop.desired import desired_container
from reconciler.loop.plan import plan
from specs import DesiredAgent, SpecErrors, load_specs
from tests.unit.test_planning import images_of, observed_from

PROJECT = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {{name: p}}
spec:
  workspace: {{path: {workspace}}}
  agent:
{project_agent}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {{name: a}}
spec:
  agent:
{agent}
"""


def load(tmp_path: Path, project_agent: str, agent: str = "    env: {}") -> list[DesiredAgent]:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    path = tmp_path / "agents.yaml"
    path.write_text(PROJECT.format(workspace=workspace, project_agent=project_agent, agent=agent))
    return list(load_specs([str(path)]).agents)


def errors(tmp_path: Path, project_agent: str, agent: str = "    env: {}") -> list[str]:
    with pytest.raises(SpecErrors) as raised:
        load(tmp_path, project_agent, agent)
    return [str(e) for e in raised.value.errors]


def test_an_agent_replaces_its_projects_source_whole(tmp_path: Path) -> None:
    (agent,) = load(
        tmp_path,
        "    claude_code: {api_key: {from_env: PROJECT_KEY}}",
        "    claude_code: {api_key: {from_file: ~/.config/anthropic/key}}",
    )

    source = agent.agent.claude_code.api_key
    assert source is not None
    assert (source.from_env, source.from_file) == (None, "~/.config/anthropic/key")
    assert source.describe() == "file ~/.config/anthropic/key"


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("{}", "api_key needs exactly one source"),
        ("{from_env: A, from_file: /k}", "api_key needs exactly one source"),
        ("{from_file: key.txt}", "key file 'key.txt' is not an absolute path"),
        ("{from_env: 'not a name'}", "invalid environment variable name"),
        ("{from_env: A, key: sk-ant-123}", "unknown key 'key'"),
    ],
)
def test_a_bad_source_is_an_error_at_its_line(tmp_path: Path, written: str, message: str) -> None:
    found = errors(tmp_path, f"    claude_code: {{api_key: {written}}}")

    assert any(message in e and "agents.yaml:7:" in e for e in found), found


def test_a_key_file_inside_the_workspace_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "ws" / ".anthropic-key"

    (found,) = errors(tmp_path, f"    claude_code: {{api_key: {{from_file: {key}}}}}")

    assert "lies inside the workspace" in found and "agents.yaml:7:" in found


@pytest.mark.parametrize(
    "name", ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"]
)
def test_the_relays_variables_cannot_also_be_set_in_env(tmp_path: Path, name: str) -> None:
    (found,) = errors(
        tmp_path, "    claude_code: {api_key: {from_env: K}}", f"    env: {{{name}: x}}"
    )

    assert f"spec.agent.env.{name}" in found and "agents.yaml:14:" in found


def test_host_auth_and_an_api_key_exclude_each_other(tmp_path: Path) -> None:
    (found,) = errors(tmp_path, "    claude_code: {use_host_auth: true, api_key: {from_env: K}}")

    assert "spec.agent.claude_code.use_host_auth" in found and "choose one" in found


def test_the_agent_gets_the_relay_and_a_placeholder_and_the_cp_gets_only_the_source(
    tmp_path: Path,
) -> None:
    (agent,) = load(tmp_path, "    claude_code: {api_key: {from_env: MY_KEY}}")

    env = desired_container(agent, image="img").env
    runtime = desired_runtime(agent, HostContext(0, 0, str(tmp_path), str(tmp_path / "share")))

    assert env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{naming.API_RELAY_PORT}"
    assert env["ANTHROPIC_API_KEY"] == naming.API_KEY_PLACEHOLDER
    assert env["CLAWKER_API_RELAY"] == naming.API_RELAY_URL
    assert env["CLAWKER_FIREWALL_ENABLED"] == "true"
    assert (runtime.api_key_env, runtime.api_key_file, runtime.api_relay) == ("MY_KEY", "", True)


def test_without_an_api_key_nothing_of_the_relay_is_set(tmp_path: Path) -> None:
    (agent,) = load(tmp_path, "    env: {}")

    env = desired_container(agent, image="img").env

    assert not {"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAWKER_API_RELAY"} & set(env)


def test_a_new_config_volume_has_the_placeholder_approved(tmp_path: Path) -> None:
    archive = seed_archive(ConfigSeed("fresh", False, "/ws", api_relay=True))

    with tarfile.open(fileobj=archive) as tar:
        member = tar.extractfile(".claude.json")
        assert member is not None
        state = json.load(member)
    assert state["customApiKeyResponses"]["approved"] == [naming.API_KEY_PLACEHOLDER[-20:]]


def test_the_prompt_names_the_variables_the_container_gets() -> None:
    for name in ("CLAWKER_FIREWALL_ENABLED", "CLAWKER_API_RELAY", "ANTHROPIC_BASE_URL"):
        assert f"`{name}`" in AGENT_PROMPT
    assert "placeholder" in textwrap.dedent(AGENT_PROMPT)


def test_diff_names_the_changed_source_and_recreates(tmp_path: Path) -> None:
    (before,) = load(tmp_path, "    claude_code: {api_key: {from_env: OLD_KEY}}")
    (after,) = load(tmp_path, "    claude_code: {api_key: {from_file: /etc/anthropic/key}}")

    p = plan((after,), observed_from((before,)), images=images_of((after,)))

    rendered = render_plan(p, Style.plain())  # a source is no secret: shown unmasked
    assert "agent.claude_code changed" in str(p)
    assert '~ agent.claude_code.api_key.from_env: "OLD_KEY" -> (absent)' in rendered, rendered
    assert '~ agent.claude_code.api_key.from_file: (absent) -> "/etc/anthropic/key"' in rendered
    assert p.counts() == (1, 0, 1)

"""The spec hash: it changes exactly when an agent's container must be recreated."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from specs import HASH_VERSION, DesiredAgent, load_specs, recreate_view, spec_hash
from specs.canonical import (
    LIVE_FIELDS,
    RECREATE_FIELDS,
    RECREATE_WHEN_SET_FIELDS,
    UNHASHED_FIELDS,
)

BASE_SPEC: dict[str, Any] = {
    "build": {"packages": ["ripgrep"]},
    "agent": {"env": {"EDITOR": "vim", "LANG": "C.UTF-8"}, "post_init": "make", "pre_run": ""},
    "security": {"firewall": {"add_domains": ["github.com", "pypi.org"]}},
}


def load_agent(tmp_path: Path, spec: dict[str, Any], name: str = "a.yaml") -> DesiredAgent:
    """Load one agent whose spec is `spec` (JSON is YAML), written to `tmp_path/name`."""
    documents = [
        {"apiVersion": "clawker.dev/v1alpha1", "kind": "Project", "metadata": {"name": "myapp"}},
        {"apiVersion": "clawker.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "dev"}}
        | {"spec": spec},
    ]
    path = tmp_path / name
    path.write_text("\n---\n".join(json.dumps(document) for document in documents))
    (agent,) = load_specs([str(path)]).agents
    return agent


def changed(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `spec` with the dotted `path` set to `value`."""
    copy: dict[str, Any] = json.loads(json.dumps(spec))
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return copy


def test_the_hash_is_the_sha256_of_the_compact_sorted_view(tmp_path: Path) -> None:
    agent = load_agent(tmp_path, BASE_SPEC)

    text = json.dumps(recreate_view(agent), sort_keys=True, separators=(",", ":"))

    assert spec_hash(agent) == hashlib.sha256(text.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", spec_hash(agent))


def test_the_view_carries_the_hash_version(tmp_path: Path) -> None:
    view = recreate_view(load_agent(tmp_path, BASE_SPEC))

    assert HASH_VERSION == "1"
    assert view["hash_version"] == HASH_VERSION


def test_the_view_holds_exactly_the_recreate_fields(tmp_path: Path) -> None:
    view = recreate_view(load_agent(tmp_path, BASE_SPEC))

    assert set(view) == {"hash_version", *RECREATE_FIELDS}
    assert json.loads(json.dumps(view)) == view  # JSON-able as it is


def test_equal_specs_hash_equal_whatever_the_order_they_are_written_in(tmp_path: Path) -> None:
    reordered = changed(BASE_SPEC, "agent.env", {"LANG": "C.UTF-8", "EDITOR": "vim"})
    reordered = changed(reordered, "security.firewall.add_domains", ["pypi.org", "github.com"])

    first = load_agent(tmp_path, BASE_SPEC, "a.yaml")
    second = load_agent(tmp_path, reordered, "b.yaml")

    assert first.source != second.source  # where it is written does not matter
    assert spec_hash(first) == spec_hash(second)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("agent.env", {"EDITOR": "nano", "LANG": "C.UTF-8"}),
        ("command", ["bash"]),
        ("workspace.mode", "snapshot"),
        ("build.packages", ["ripgrep", "jq"]),
        ("build.base_image", "debian:bookworm"),
        ("build.harness", "none"),
        ("security.cap_add", ["SYS_NICE"]),
        ("security.git_credentials.forward_ssh", False),
        ("agent.enable_shared_dir", True),
    ],
)
def test_a_change_that_needs_a_new_container_changes_the_hash(
    tmp_path: Path, path: str, value: Any
) -> None:
    before = load_agent(tmp_path, BASE_SPEC, "a.yaml")
    after = load_agent(tmp_path, changed(BASE_SPEC, path, value), "b.yaml")

    assert spec_hash(before) != spec_hash(after)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("security.firewall.add_domains", ["github.com", "pypi.org", ".example.com"]),
        ("agent.post_init", "npm ci"),
        ("agent.pre_run", "echo starting"),
        ("agent.claude_code", {"config": {"strategy": "fresh"}, "use_host_auth": True}),
    ],
)
def test_a_change_applied_live_keeps_the_hash(tmp_path: Path, path: str, value: Any) -> None:
    before = load_agent(tmp_path, BASE_SPEC, "a.yaml")
    after = load_agent(tmp_path, changed(BASE_SPEC, path, value), "b.yaml")

    assert spec_hash(before) == spec_hash(after)


def test_a_new_workspace_path_changes_the_hash(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()

    before = load_agent(tmp_path, BASE_SPEC, "a.yaml")
    after = load_agent(tmp_path, changed(BASE_SPEC, "workspace.path", "other"), "b.yaml")

    assert spec_hash(before) != spec_hash(after)


def leaf_fields(record: type, prefix: str = "") -> list[str]:
    fields = []
    for name, nested in typing.get_type_hints(record).items():
        path = prefix + name
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            fields += leaf_fields(nested, path + ".")
        else:
            fields.append(path)
    return fields


def test_every_field_of_an_agent_is_classified_exactly_once() -> None:
    """A new field must be placed on purpose: recreate, live, or not part of the spec at all."""
    groups = [*RECREATE_FIELDS, *RECREATE_WHEN_SET_FIELDS, *LIVE_FIELDS, *UNHASHED_FIELDS]

    for leaf in leaf_fields(DesiredAgent):
        covering = [g for g in groups if leaf == g or leaf.startswith(g + ".")]
        assert len(covering) == 1, (leaf, covering)
    assert len(groups) == len(set(groups))


def test_an_agent_without_an_api_key_keeps_the_hash_it_had_before_the_field_existed(
    tmp_path: Path,
) -> None:
    view = recreate_view(load_agent(tmp_path, BASE_SPEC))

    assert "agent.claude_code.api_key" not in view  # version 1's view, unchanged


def test_the_api_key_source_is_hashed_and_named_but_no_key_is_in_the_view(tmp_path: Path) -> None:
    before = load_agent(tmp_path, BASE_SPEC, "a.yaml")
    from_env = changed(BASE_SPEC, "agent.claude_code", {"api_key": {"from_env": "MY_KEY"}})
    with_env = load_agent(tmp_path, from_env, "b.yaml")
    from_file = changed(BASE_SPEC, "agent.claude_code", {"api_key": {"from_file": "~/k"}})
    with_file = load_agent(tmp_path, from_file, "c.yaml")

    assert len({spec_hash(before), spec_hash(with_env), spec_hash(with_file)}) == 3
    assert recreate_view(with_env)["agent.claude_code.api_key"] == {"from_env": "MY_KEY"}
    assert recreate_view(with_file)["agent.claude_code.api_key"] == {"from_file": "~/k"}


def test_the_hash_of_a_fixed_agent_is_pinned_at_version_1() -> None:
    """Hashes that containers carry today: any change to how the view is walked or written
    (to_plain, recreate_view) would recreate every agent, so it must come with a new
    HASH_VERSION, not by accident."""
    from specs.errors import SourceRef  # noqa: PLC0415
    from specs.resolved import (  # noqa: PLC0415
        AgentRuntime,
        ApiKeySource,
        BuildSpec,
        ClaudeCodeSpec,
        FirewallSpec,
        ResolvedWorkspace,
        SecuritySpec,
        WorkspaceMode,
    )

    source = SourceRef("/specs/a.yaml", 3, 1)
    plain = DesiredAgent(
        project="myapp", name="dev", source=source, workspace=ResolvedWorkspace("/srv/ws")
    )
    full = DesiredAgent(
        project="myapp",
        name="dev",
        source=source,
        workspace=ResolvedWorkspace("/srv/ws", WorkspaceMode.SNAPSHOT),
        labels={"team": "infra"},
        command=("claude", "--verbose"),
        build=BuildSpec(packages=("jq", "ripgrep")),
        agent=AgentRuntime(
            env={"EDITOR": "vim"},
            post_init="make",
            claude_code=ClaudeCodeSpec(api_key=ApiKeySource(from_env="MY_KEY")),
        ),
        security=SecuritySpec(
            firewall=FirewallSpec(add_domains=("github.com",)), cap_add=("NET_ADMIN",)
        ),
    )
    assert spec_hash(plain) == "0953352c2e40b23753095febed60d374453f075cb9d66d4238421b15ba971700"
    assert spec_hash(full) == "cc7cbe83eed89f41ec688a3488b33f3059523297de3ddbe9f2379d1fa9bfab80"

"""The resolved agent (specs.resolved) and the resolved cache (specs.setcache).

The resolved types mirror the document models field for field and default for default; a set
of texts resolved before comes back equal from the cache, without pydantic, and only while
everything it was resolved from (the texts, `~`, the workspaces on disk) is as it was."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from specs import DesiredAgent, SpecErrors, SpecSet, load_specs, models, resolved, spec_hash
from specs.resolved import from_plain, to_plain

ROOT = Path(__file__).resolve().parents[2]
DESIGN_EXAMPLE = Path(__file__).parent / "fixtures" / "specs" / "design-example.yaml"

# Each resolved section and the document model whose complete value it holds.
MIRRORS: list[tuple[type, type[BaseModel]]] = [
    (resolved.BuildSpec, models.BuildSpec),
    (resolved.ClaudeCodeConfig, models.ClaudeCodeConfig),
    (resolved.ApiKeySource, models.ApiKeySource),
    (resolved.ClaudeCodeSpec, models.ClaudeCodeSpec),
    (resolved.AgentRuntime, models.AgentRuntime),
    (resolved.FirewallSpec, models.FirewallSpec),
    (resolved.GitCredentials, models.GitCredentials),
    (resolved.SecuritySpec, models.SecuritySpec),
    (resolved.DesiredAgent, models.MergedAgent),
]


@pytest.mark.parametrize(("record", "model"), MIRRORS, ids=lambda m: m.__name__)
def test_a_resolved_section_has_its_document_models_fields_and_defaults(
    record: type, model: type[BaseModel]
) -> None:
    fields = {f.name: f for f in dataclasses.fields(record)}
    assert set(fields) == set(model.model_fields)
    for name, info in model.model_fields.items():
        if info.is_required():
            assert fields[name].default is dataclasses.MISSING, name
            continue
        default = info.get_default(call_default_factory=True)
        factory = fields[name].default_factory
        mine = fields[name].default if factory is dataclasses.MISSING else factory()
        assert to_plain(mine) == to_plain(_plain_model(default)), name


def _plain_model(value: object) -> object:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _design_example(tmp_path: Path) -> Path:
    spec = tmp_path / "agents.yaml"
    spec.write_text(DESIGN_EXAMPLE.read_text())
    return spec


def test_plain_data_gives_back_the_same_agents(tmp_path: Path) -> None:
    specset = load_specs([str(_design_example(tmp_path))])
    for agent in (*specset.agents, *specset.defaults.values()):
        again = from_plain(DesiredAgent, to_plain(agent))
        assert again == agent
        assert spec_hash(again) == spec_hash(agent)


def _counting_resolves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import specs.resolving  # noqa: PLC0415

    calls: list[int] = []
    real = specs.resolving.resolve

    def counting(*args: typing.Any) -> typing.Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(specs.resolving, "resolve", counting)
    return calls


def _same(a: SpecSet, b: SpecSet) -> None:
    assert a.agents == b.agents and dict(a.defaults) == dict(b.defaults)
    assert (a.projects, a.files, a.warnings) == (b.projects, b.files, b.warnings)


def test_a_set_resolved_before_is_not_validated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, cache = _design_example(tmp_path), str(tmp_path / "cache")
    resolves = _counting_resolves(monkeypatch)
    first = load_specs([str(spec)], cache_dir=cache)
    second = load_specs([str(spec)], cache_dir=cache)
    assert len(resolves) == 1
    _same(first, second)
    assert [spec_hash(a) for a in first.agents] == [spec_hash(a) for a in second.agents]

    spec.write_text(spec.read_text().replace("team: infra", "team: core"))  # a new text
    third = load_specs([str(spec)], cache_dir=cache)
    assert len(resolves) == 2
    assert third.agents[0].labels == {"team": "core"}


def test_a_cached_load_does_not_import_pydantic(tmp_path: Path) -> None:
    spec, cache = _design_example(tmp_path), str(tmp_path / "cache")
    expected = load_specs([str(spec)], cache_dir=cache)
    program = (
        "import sys\nfrom specs import load_specs\n"
        f"s = load_specs([{str(spec)!r}], cache_dir={cache!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'ruamel')))\n"
        "print([a.key for a in s.agents])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["[]", str([a.key for a in expected.agents])]


def test_a_workspace_that_is_gone_is_an_error_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = tmp_path / "agents.yaml"
    spec.write_text(DESIGN_EXAMPLE.read_text().replace("path: .", f"path: {ws}"))
    cache = str(tmp_path / "cache")
    load_specs([str(spec)], cache_dir=cache)
    ws.rmdir()
    with pytest.raises(SpecErrors, match="does not exist"):
        load_specs([str(spec)], cache_dir=cache)
    ws.mkdir()
    assert load_specs([str(spec)], cache_dir=cache).agents


def test_a_workspace_that_now_links_elsewhere_resolves_to_its_new_place(tmp_path: Path) -> None:
    first, second, link = tmp_path / "one", tmp_path / "two", tmp_path / "ws"
    first.mkdir()
    second.mkdir()
    link.symlink_to(first)
    spec = tmp_path / "agents.yaml"
    spec.write_text(DESIGN_EXAMPLE.read_text().replace("path: .", f"path: {link}"))
    cache = str(tmp_path / "cache")
    assert load_specs([str(spec)], cache_dir=cache).agents[0].workspace.path == str(first)
    link.unlink()
    link.symlink_to(second)
    assert load_specs([str(spec)], cache_dir=cache).agents[0].workspace.path == str(second)


def test_a_key_file_that_now_lies_in_the_workspace_is_refused_again(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "keys"
    ws.mkdir()
    outside.mkdir()
    key = tmp_path / "key"  # a link: where it points decides
    key.symlink_to(outside / "k")
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: p}\n"
        f"spec:\n  workspace: {{path: {ws}}}\n"
        f"  agent: {{claude_code: {{api_key: {{from_file: {key}}}}}}}\n"
    )
    cache = str(tmp_path / "cache")
    load_specs([str(spec)], cache_dir=cache)
    key.unlink()
    key.symlink_to(ws / "k")
    with pytest.raises(SpecErrors, match="lies inside the workspace"):
        load_specs([str(spec)], cache_dir=cache)


def test_a_new_home_is_a_new_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A workspace that is `~` is refused: a set resolved under another `~` is not reused."""
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = tmp_path / "agents.yaml"
    spec.write_text(DESIGN_EXAMPLE.read_text().replace("path: .", f"path: {ws}"))
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_specs([str(spec)], cache_dir=cache)
    monkeypatch.setenv("HOME", str(ws))
    with pytest.raises(SpecErrors, match="home"):
        load_specs([str(spec)], cache_dir=cache)


def test_a_load_with_errors_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "agents.yaml"
    spec.write_text(DESIGN_EXAMPLE.read_text().replace("path: .", "path: ./missing"))
    cache = tmp_path / "cache"
    for _ in range(2):
        with pytest.raises(SpecErrors, match="does not exist"):
            load_specs([str(spec)], cache_dir=str(cache))
    assert not [n for n in os.listdir(cache) if n.startswith("set-")]


def test_a_set_entry_others_can_write_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, cache = _design_example(tmp_path), tmp_path / "cache"
    load_specs([str(spec)], cache_dir=str(cache))
    (entry,) = [n for n in os.listdir(cache) if n.startswith("set-")]
    (cache / entry).chmod(0o666)
    resolves = _counting_resolves(monkeypatch)
    load_specs([str(spec)], cache_dir=str(cache))
    assert len(resolves) == 1

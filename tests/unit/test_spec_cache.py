"""The parse cache of spec texts (specs.documents): a text read from the cache gives the same
documents, the same positions and therefore the same errors as parsing it; what cannot be kept
exactly (invalid YAML, dates) is parsed every time."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from specs import SpecErrors, documents, load_specs
from specs.documents import SpecText, read_documents
from specs.workspace_policy import WorkspaceRefusal, workspace_refusal
from tests.unit.test_specs_errors import BAD_INPUTS, Bad

VARIED = """\
list: [x, {y: 1}, 2.5, true, null]
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
defaults: &defaults
  env: {A: "1", B: two}
metadata:
  name: dev
  labels: {team: core}
spec:
  <<: *defaults
  empty:
  command:
    - sleep
    - infinity
---
"""

PATHS = [
    ("defaults",),
    ("defaults", "env", "B"),
    ("list", 1, "y"),
    ("list", 4),
    ("metadata", "labels", "team"),
    ("spec", "env"),
    ("spec", "empty"),
    ("spec", "command", 1),
    ("spec", "missing", "deeper"),
    ("kind",),
]


def _text(content: str) -> SpecText:
    return SpecText("a.yaml", "/x/a.yaml", "/x", content)


def _never_parse(_source: SpecText) -> None:
    raise AssertionError("parsed although the text is cached")


def test_a_cached_text_gives_the_same_documents_and_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = read_documents(_text(VARIED))
    first = read_documents(_text(VARIED), str(tmp_path))  # a miss: parsed, then kept
    assert len(os.listdir(tmp_path)) == 1
    monkeypatch.setattr(documents, "_parse", _never_parse)
    cached = read_documents(_text(VARIED), str(tmp_path))
    assert [d.data for d in cached] == [d.data for d in parsed] == [d.data for d in first]
    assert [d.start for d in cached] == [d.start for d in parsed]
    for got, want in zip(cached, parsed, strict=True):
        for path in PATHS:
            for key in (False, True):
                assert got.locate(path, key=key) == want.locate(path, key=key), path


def test_another_text_is_another_entry(tmp_path: Path) -> None:
    read_documents(_text("a: 1\n"), str(tmp_path))
    read_documents(_text("a: 2\n"), str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2
    assert read_documents(_text("a: 2\n"), str(tmp_path))[0].data == {"a": 2}


def test_invalid_yaml_is_never_cached_and_fails_the_same_each_time(tmp_path: Path) -> None:
    messages = []
    for _ in range(2):
        with pytest.raises(SpecErrors) as raised:
            read_documents(_text("a: [1, 2\n"), str(tmp_path))
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert os.listdir(tmp_path) == []


def test_a_date_is_not_kept_but_still_read(tmp_path: Path) -> None:
    (doc,) = read_documents(_text("when: 2026-12-02\n"), str(tmp_path))
    assert str(doc.data["when"]) == "2026-12-02"
    assert os.listdir(tmp_path) == []


def test_an_unreadable_entry_means_parsing_again(tmp_path: Path) -> None:
    read_documents(_text("a: 1\n"), str(tmp_path))
    (entry,) = os.listdir(tmp_path)
    (tmp_path / entry).write_bytes(b"not marshal")
    assert read_documents(_text("a: 1\n"), str(tmp_path))[0].data == {"a": 1}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_errors_of_a_cached_text_are_the_same(
    case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name, text in case.files.items():
        (work / name).write_text(text)
    cache = str(tmp_path / "cache")
    failures = []
    for use in (None, cache, cache):  # uncached, a miss, a hit
        with pytest.raises(SpecErrors) as raised:
            load_specs(sorted(case.files), cache_dir=use)
        failures.append([str(e) for e in raised.value.errors])
    assert failures[0] == failures[1] == failures[2]


def test_a_valid_spec_set_is_the_same_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: p}\n"
        f"spec:\n  workspace: {{path: {ws}}}\n  agent: {{env: {{A: b}}}}\n---\n"
        "apiVersion: clawker.dev/v1alpha1\nkind: Agent\nmetadata: {name: a1}\n"
        "spec: {command: [sleep, infinity]}\n"
    )
    cache = str(tmp_path / "cache")
    plain = load_specs([str(spec)])
    load_specs([str(spec)], cache_dir=cache)
    monkeypatch.setattr(documents, "_parse", _never_parse)
    assert load_specs([str(spec)], cache_dir=cache) == plain


def test_a_cached_text_loads_without_importing_ruamel(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: p}\n"
        f"spec: {{workspace: {{path: {ws}}}}}\n---\n"
        "apiVersion: clawker.dev/v1alpha1\nkind: Agent\nmetadata: {name: a1}\n"
    )
    code = (
        "import sys\nfrom specs import load_specs\n"
        f"s = load_specs([{str(spec)!r}], cache_dir={str(tmp_path / 'cache')!r})\n"
        "print(len(s.agents), 'ruamel.yaml' in sys.modules)"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs == [["1", "True"], ["1", "False"]]  # a miss parses; a hit needs no parser


def test_one_load_looks_a_shared_workspace_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = tmp_path / "agents.yaml"
    agents = "".join(
        f"---\napiVersion: clawker.dev/v1alpha1\nkind: Agent\nmetadata: {{name: a{i}}}\n"
        for i in range(3)
    )
    spec.write_text(
        "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: p}\n"
        f"spec: {{workspace: {{path: {ws}}}}}\n" + agents
    )
    asked: list[str] = []

    def counting(path: str, protected: Sequence[str] = ()) -> WorkspaceRefusal | None:
        asked.append(path)
        return workspace_refusal(path, protected)

    monkeypatch.setattr("specs.workspace_policy.workspace_refusal", counting)
    specset = load_specs([str(spec)])
    assert len(specset.agents) == 3
    assert asked == [str(ws)]  # three agents and the project's defaults share one look
    load_specs([str(spec)])
    assert len(asked) == 2  # a new load looks again: the directory may have changed


def test_an_entry_others_can_write_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_documents(_text("a: 1\n"), str(tmp_path))
    (entry,) = os.listdir(tmp_path)
    (tmp_path / entry).chmod(0o666)
    parsed: list[str] = []
    real = documents._parse

    def counting(source: SpecText) -> list[tuple[int, int, object, object]]:
        parsed.append(source.name)
        return real(source)

    monkeypatch.setattr(documents, "_parse", counting)
    assert read_documents(_text("a: 1\n"), str(tmp_path))[0].data == {"a": 1}
    assert parsed == ["a.yaml"]  # parsed again, not taken from the entry

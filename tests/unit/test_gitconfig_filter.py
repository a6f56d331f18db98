"""The host ~/.gitconfig goes into the agent without credentials: the filter, with real git."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.in_container import gitconfig_filter
from reconciler.in_container.gitconfig_filter import (
    filter_entries,
    keep_entry,
    main,
    parse_listing,
    render_config,
)

HOST_CONFIG = """\
[user]
    name = Ada Lovelace
    email = ada@example.invalid
[credential]
    helper = store
[credential "https://github.com"]
    username = ada
[Credential "https://example.invalid"]
    helper = !f() { echo password=hunter2; }; f
[http]
    sslVerify = true
[http "https://git.example.invalid/"]
    extraHeader = Authorization: Bearer abc
[include]
    path = ~/.gitconfig.local
[includeIf "gitdir:~/work/"]
    path = ~/.gitconfig.work
[alias]
    lg = log --graph --format=\\"%h %s\\"
    co = checkout
[url "git@github.com:"]
    insteadOf = https://github.com/
[core]
    quotepath
"""


def git_list(path: Path) -> list[tuple[str, str | None]]:
    out = subprocess.run(
        ["git", "config", "--file", str(path), "--null", "--list"],
        capture_output=True,
        check=True,
    ).stdout
    return parse_listing(out)


@pytest.mark.parametrize(
    ("key", "kept"),
    [
        ("user.name", True),
        ("credential.helper", False),
        ("credential.https://github.com.username", False),
        ("Credential.helper", False),
        ("http.extraheader", False),
        ("http.https://git.example.invalid/.extraheader", False),
        ("http.sslverify", True),
        ("include.path", False),
        ("includeif.gitdir:~/work/.path", False),
        ("url.git@github.com:.insteadof", True),
    ],
)
def test_credentials_extra_headers_and_includes_are_left_out(key: str, kept: bool) -> None:
    assert keep_entry(key) is kept


def test_the_listing_is_parsed_with_bare_keys_and_multiline_values() -> None:
    data = b"user.name\nAda\x00core.quotepath\x00alias.x\nline1\nline2\x00"

    assert parse_listing(data) == [
        ("user.name", "Ada"),
        ("core.quotepath", None),
        ("alias.x", "line1\nline2"),
    ]


def test_what_is_rendered_reads_back_as_the_filtered_entries(tmp_path: Path) -> None:
    source = tmp_path / "host.gitconfig"
    source.write_text(HOST_CONFIG)
    entries = filter_entries(git_list(source))
    rendered = tmp_path / "agent.gitconfig"
    rendered.write_text(render_config(entries))

    assert git_list(rendered) == entries
    text = rendered.read_text().lower()
    assert "credential" not in text and "hunter2" not in text and "bearer" not in text
    assert "include" not in text
    assert ("alias.lg", 'log --graph --format="%h %s"') in entries
    assert ("url.git@github.com:.insteadof", "https://github.com/") in entries
    assert ("core.quotepath", None) in entries


def test_the_program_writes_the_filtered_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "host", tmp_path / "home" / ".gitconfig"
    target.parent.mkdir()
    source.write_text(HOST_CONFIG)

    assert main(["gitconfig_filter", str(source), str(target)]) == 0

    assert "without credential sections" in capsys.readouterr().out
    assert git_list(target) == filter_entries(git_list(source))
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_nothing_is_copied_when_git_cannot_read_the_host_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "host", tmp_path / ".gitconfig"
    source.write_text("[user\n    name = broken\n[credential]\n    helper = store\n")

    assert main(["gitconfig_filter", str(source), str(target)]) == 0

    assert "not copied" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [source]  # no target, no temporary file left behind


def test_a_missing_host_file_copies_nothing(tmp_path: Path) -> None:
    assert main(["gitconfig_filter", str(tmp_path / "absent"), str(tmp_path / "t")]) == 0
    assert not (tmp_path / "t").exists()


def test_the_step_as_the_control_plane_runs_it_imports_nothing_heavy(tmp_path: Path) -> None:
    """`python -I -S -c <file>`: the copy is made, and neither subprocess nor tempfile (two
    thirds of the step's time in an agent container) is imported on the way."""
    source, target = tmp_path / "host", tmp_path / ".gitconfig"
    source.write_text(HOST_CONFIG)
    program = Path(gitconfig_filter.__file__).read_text(encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", program, str(source), str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "select" in imported  # the listing really went through -X importtime
    assert not imported & {"subprocess", "tempfile", "shutil", "random", "threading"}
    assert git_list(target) == filter_entries(git_list(source))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gitconfig.")] == []

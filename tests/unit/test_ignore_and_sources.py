"""`.clawkerignore` matching (gitignore syntax) and reading the host's apt sources."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from reconciler.host.ignore_rules import IgnoreRules
from reconciler.host.workspace import snapshot_archive
from reconciler.images.base import host_apt_sources


@pytest.mark.parametrize(
    ("patterns", "path", "is_dir", "ignored"),
    [
        (["*.log"], "a.log", False, True),
        (["*.log"], "deep/dir/a.log", False, True),
        (["*.log", "!keep.log"], "keep.log", False, False),
        (["/build"], "build", True, True),
        (["/build"], "src/build", True, False),
        (["node_modules/"], "web/node_modules", True, True),
        (["node_modules/"], "node_modules", False, False),
        (["docs/**/*.tmp"], "docs/a/b/c.tmp", False, True),
        (["docs/**/*.tmp"], "docs/c.tmp", False, True),
        (["**/cache"], "x/y/cache", True, True),
        (["a/**"], "a/b/c", False, True),
        (["# comment", ""], "# comment", False, False),
        (["file?.txt"], "file1.txt", False, True),
        (["file[0-2].txt"], "file3.txt", False, False),
    ],
)
def test_gitignore_semantics(patterns: list[str], path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules(patterns).ignored(path, is_dir=is_dir) is ignored


def test_snapshot_archive_skips_ignored_paths_and_owns_files_by_the_agent(tmp_path: Path) -> None:
    (tmp_path / ".clawkerignore").write_text("*.log\nsecrets/\n")
    (tmp_path / "a.log").write_text("x")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "k").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x")
    with snapshot_archive(str(tmp_path)) as f, tarfile.open(fileobj=f) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {".clawkerignore", ".git", ".git/HEAD", "src", "src/m.py"}
    assert {m.uid for m in members.values()} == {1001}


def test_host_apt_sources_reads_one_line_and_deb822_files(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "deb http://mirror/debian bookworm main contrib # comment\n"
        "deb http://other/ cloud-sdk-bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
        "Components: main\n"
    )
    assert host_apt_sources("bookworm", tmp_path) == [
        "deb http://mirror/debian bookworm main contrib",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://deb.debian.org/debian bookworm main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://deb.debian.org/debian bookworm-updates main",
    ]

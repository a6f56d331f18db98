"""What a new config volume starts with: onboarding state, host settings, rewritten paths."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from reconciler.host.config_seed import (
    ConfigSeed,
    onboarding_state,
    rewrite_paths,
    rewrite_text,
    seed_archive,
)

CONTAINER = "/home/claude/.claude"


def test_a_path_is_rewritten_only_at_a_path_boundary() -> None:
    old = "/home/ada/.claude"

    assert rewrite_text("/home/ada/.claude", old, CONTAINER) == CONTAINER
    assert rewrite_text("node /home/ada/.claude/hooks/x.js --flag", old, CONTAINER) == (
        f"node {CONTAINER}/hooks/x.js --flag"
    )
    assert rewrite_text('"/home/ada/.claude"', old, CONTAINER) == f'"{CONTAINER}"'
    assert rewrite_text("/home/ada/.claude-other/x", old, CONTAINER) == "/home/ada/.claude-other/x"
    assert rewrite_text("/home/ada/.claudex", old, CONTAINER) == "/home/ada/.claudex"
    assert rewrite_text("~/.claude/x", old, CONTAINER) == "~/.claude/x"


def test_every_string_of_a_json_value_is_rewritten_keys_included() -> None:
    old = "/home/ada/.claude"
    value = {
        "hooks": [{"command": f"{old}/hooks/a.sh", "timeout": 5}],
        f"{old}/plugins/p": {"installPath": f"{old}/plugins/p", "enabled": True},
    }

    assert rewrite_paths(value, old, CONTAINER) == {
        "hooks": [{"command": f"{CONTAINER}/hooks/a.sh", "timeout": 5}],
        f"{CONTAINER}/plugins/p": {"installPath": f"{CONTAINER}/plugins/p", "enabled": True},
    }


def test_the_onboarding_state_trusts_the_workspace_and_takes_only_the_account() -> None:
    host = {"oauthAccount": {"emailAddress": "a@example.invalid"}, "numStartups": 3}

    assert onboarding_state("/ws", host, use_host_auth=False) == {
        "hasCompletedOnboarding": True,
        "projects": {"/ws": {"hasTrustDialogAccepted": True}},
    }
    assert onboarding_state("/ws", host, use_host_auth=True)["oauthAccount"] == {
        "emailAddress": "a@example.invalid"
    }


def host_claude(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    claude = home / ".claude"
    (claude / "agents").mkdir(parents=True)
    (claude / "projects" / "p").mkdir(parents=True)
    (claude / "settings.json").write_text(json.dumps({"statusLine": f"{claude}/status.sh"}))
    (claude / "agents" / "a.md").write_text("agent\n")
    (claude / "projects" / "p" / "s.jsonl").write_text("{}\n")
    (claude / ".credentials.json").write_text('{"token": "t"}')
    (claude / "history.jsonl").write_text("{}\n")
    dotfiles = tmp_path / "dotfiles" / "skills"
    (dotfiles / "tidy").mkdir(parents=True)
    (dotfiles / "tidy" / "SKILL.md").write_text("tidy\n")
    (dotfiles / "loop").symlink_to(dotfiles)  # a symlink loop must end
    os.symlink(dotfiles, claude / "skills")  # settings kept in a dotfiles repository
    (home / ".claude.json").write_text(json.dumps({"oauthAccount": {"id": 1}}))
    return claude


def members(seed: ConfigSeed) -> dict[str, tarfile.TarInfo]:
    """The seed's content, without its progress marker."""
    with seed_archive(seed) as archive, tarfile.open(fileobj=archive) as tar:
        return {m.name: m for m in tar.getmembers() if not m.name.startswith(".clawker-progress")}


def test_the_seed_ends_with_its_progress_marker(tmp_path: Path) -> None:
    claude = host_claude(tmp_path)
    seed = ConfigSeed("copy", True, "/ws", str(claude), str(claude.parent / ".claude.json"))
    with seed_archive(seed) as archive, tarfile.open(fileobj=archive) as tar:
        names = tar.getnames()
    assert names[-1] == ".clawker-progress/config-seeded"


def content(seed: ConfigSeed, name: str) -> bytes:
    with seed_archive(seed) as archive, tarfile.open(fileobj=archive) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_copy_takes_the_listed_entries_following_symlinks_and_rewrites_paths(
    tmp_path: Path,
) -> None:
    claude = host_claude(tmp_path)
    seed = ConfigSeed("copy", False, "/ws", str(claude), str(claude.parent / ".claude.json"))

    found = members(seed)

    assert sorted(found) == [
        ".claude.json",
        "agents",
        "agents/a.md",
        "settings.json",
        "skills",
        "skills/tidy",
        "skills/tidy/SKILL.md",
    ]
    assert all((m.uid, m.gid) == (1001, 1001) for m in found.values())
    assert found[".claude.json"].mode == 0o600
    assert json.loads(content(seed, "settings.json")) == {"statusLine": f"{CONTAINER}/status.sh"}
    assert "oauthAccount" not in json.loads(content(seed, ".claude.json"))


def test_host_auth_adds_the_credentials_and_the_account(tmp_path: Path) -> None:
    claude = host_claude(tmp_path)
    seed = ConfigSeed("copy", True, "/ws", str(claude), str(claude.parent / ".claude.json"))

    found = members(seed)

    assert found[".credentials.json"].mode == 0o600
    assert content(seed, ".credentials.json") == b'{"token": "t"}'
    assert json.loads(content(seed, ".claude.json"))["oauthAccount"] == {"id": 1}


def test_fresh_copies_nothing_but_the_onboarding_state(tmp_path: Path) -> None:
    claude = host_claude(tmp_path)

    assert sorted(members(ConfigSeed("fresh", False, "/ws", str(claude)))) == [".claude.json"]
    assert sorted(members(ConfigSeed("copy", False, "/ws"))) == [".claude.json"]  # no host

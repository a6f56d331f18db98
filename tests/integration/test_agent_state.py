"""What an agent keeps: its config volume (seeded once from the host) and its shell history,
across `docker restart` and a recreate (docs/workspace.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Scope
from tests.integration.dockerexec import exec_id
from tests.integration.test_workspace_git import agent_exec

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
  agent:
    env: {ROUND: "1"}
    claude_code: {config: {strategy: STRATEGY}, use_host_auth: AUTH}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""

CONFIG = "/home/claude/.claude"


def _name(scope: Scope) -> str:
    return f"clawker.{scope.project}.dev"


def _spec(scope: Scope, strategy: str = "copy", auth: bool = False, round_: int = 1) -> Path:
    body = (
        SPEC.replace("STRATEGY", strategy)
        .replace("AUTH", "true" if auth else "false")
        .replace('ROUND: "1"', f'ROUND: "{round_}"')
    )
    return scope.write_spec(body)


def _host_claude(scope: Scope) -> Path:
    """A host ~/.claude with one of everything, in the test's own host home."""
    home = Path(scope.env["CLAWKER_HOST_HOME"])
    claude = home / ".claude"
    for sub in ("agents", "skills/tidy", "commands", "plugins", "projects/old", "hooks"):
        (claude / sub).mkdir(parents=True)
    hook = f"{claude}/hooks/done.sh"
    (claude / "settings.json").write_text(
        json.dumps({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": hook}]}]}})
    )
    (claude / "agents" / "reviewer.md").write_text("# reviewer\n")
    (claude / "skills" / "tidy" / "SKILL.md").write_text("# tidy\n")
    (claude / "commands" / "hi.md").write_text("say hi\n")
    (claude / "plugins" / "installed_plugins.json").write_text(
        json.dumps({"plugins": {"p@m": [{"installPath": f"{claude}/plugins/cache/p"}]}})
    )
    (claude / "projects" / "old" / "session.jsonl").write_text("{}\n")
    (claude / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "tok"}}')
    (home / ".claude.json").write_text(
        json.dumps({"oauthAccount": {"emailAddress": "dev@example.invalid"}, "numStartups": 9})
    )
    return claude


def _read(scope: Scope, path: str) -> str:
    code, out = agent_exec(scope, _name(scope), "cat", path)
    assert code == 0, out
    return out


def _type_into_bash(scope: Scope, line: str, timeout: float = 20.0) -> None:
    """Type `line` into an interactive bash of the agent user, as a person at a terminal would,
    and wait until bash has written it to the history file."""
    ident = exec_id(scope.api, _name(scope), ["bash", "-i"], stdin=True, tty=True, user="claude")
    sock = scope.api.exec_start(ident, socket=True, tty=True)
    raw: Any = getattr(sock, "_sock", sock)  # the socket under docker-py's wrapper
    try:
        raw.sendall(line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while (
            line not in agent_exec(scope, _name(scope), "cat", "/commandhistory/.bash_history")[1]
        ):
            assert time.monotonic() < deadline, f"{line!r} never reached the history file"
            time.sleep(0.1)
    finally:
        raw.close()


def _wait_running(scope: Scope, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not scope.inspect(_name(scope))["State"]["Running"]:
        assert time.monotonic() < deadline, "the agent did not come back"
        time.sleep(0.1)


def test_a_new_config_volume_is_seeded_once_and_what_the_agent_keeps_survives(
    scope: Scope,
) -> None:
    host_claude = _host_claude(scope)
    ws = str((scope.workdir / "ws").resolve())
    proc = scope.clawker("apply", "-f", str(_spec(scope, auth=True)), check=0)
    assert "SeedConfig" not in proc.stdout  # the plan shows agents, not steps

    state = json.loads(_read(scope, f"{CONFIG}/.claude.json"))
    assert state["hasCompletedOnboarding"] is True
    assert state["projects"][ws]["hasTrustDialogAccepted"] is True
    assert state["oauthAccount"] == {"emailAddress": "dev@example.invalid"}
    assert "numStartups" not in state
    settings = json.loads(_read(scope, f"{CONFIG}/settings.json"))
    assert settings["hooks"]["Stop"][0]["hooks"][0]["command"] == f"{CONFIG}/hooks/done.sh"
    plugins = json.loads(_read(scope, f"{CONFIG}/plugins/installed_plugins.json"))
    assert plugins["plugins"]["p@m"][0]["installPath"] == f"{CONFIG}/plugins/cache/p"
    assert _read(scope, f"{CONFIG}/agents/reviewer.md") == "# reviewer\n"
    assert _read(scope, f"{CONFIG}/skills/tidy/SKILL.md") == "# tidy\n"
    assert _read(scope, f"{CONFIG}/commands/hi.md") == "say hi\n"
    assert agent_exec(scope, _name(scope), "test", "-e", f"{CONFIG}/projects")[0] == 1
    assert agent_exec(
        scope, _name(scope), "stat", "-c", "%a %u", f"{CONFIG}/.credentials.json"
    ) == (
        0,
        "600 1001\n",
    )
    assert "CLAUDE_CONFIG_DIR=/home/claude/.claude" in scope.inspect(_name(scope))["Config"]["Env"]

    # What the agent does from now on is its own.
    assert agent_exec(scope, _name(scope), "sh", "-c", f"echo kept > {CONFIG}/mine.txt")[0] == 0
    assert (
        agent_exec(scope, _name(scope), "sh", "-c", f"echo '{{}}' > {CONFIG}/settings.json")[0] == 0
    )
    _type_into_bash(scope, "echo typed-before-restart")

    scope.api.restart(_name(scope), timeout=2)
    _wait_running(scope)
    assert _read(scope, f"{CONFIG}/mine.txt") == "kept\n"
    assert "echo typed-before-restart" in _read(scope, "/commandhistory/.bash_history")
    _type_into_bash(scope, "echo typed-after-restart")

    # An env change recreates the container; the volumes, and nothing seeded again, stay.
    (host_claude / "settings.json").write_text('{"changed": "on the host"}')
    old_id = scope.inspect(_name(scope))["Id"]
    proc = scope.clawker("apply", "-f", str(_spec(scope, auth=True, round_=2)), check=0)
    assert f"agent/{scope.project}/dev recreated" in proc.stdout
    assert scope.inspect(_name(scope))["Id"] != old_id
    assert _read(scope, f"{CONFIG}/mine.txt") == "kept\n"
    assert _read(scope, f"{CONFIG}/settings.json") == "{}\n"
    history = _read(scope, "/commandhistory/.bash_history")
    assert "echo typed-before-restart" in history and "echo typed-after-restart" in history


def test_the_fresh_strategy_seeds_only_the_onboarding_state(scope: Scope) -> None:
    _host_claude(scope)
    scope.clawker("apply", "-f", str(_spec(scope, strategy="fresh")), check=0)

    code, out = agent_exec(scope, _name(scope), "ls", "-A", CONFIG)
    assert code == 0
    assert sorted(out.split()) == [".claude.json", ".clawker-progress"]  # + the seed's marker
    state = json.loads(_read(scope, f"{CONFIG}/.claude.json"))
    assert state["hasCompletedOnboarding"] is True and "oauthAccount" not in state

"""The harness's API key stays on the host (docs/credentials.md): the agent reaches the API
through the relay on its own 127.0.0.1, with a placeholder; the control plane adds the key and
forwards to the upstream, here a stub Messages API on a test host of the test's own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler import naming
from reconciler.images.dockerfile import VENV
from tests.integration.conftest import Scope
from tests.integration.messages_stub import ANSWER, MessagesStub, start_messages_stub
from tests.integration.test_workspace_git import agent_exec
from tests.integration.testhosts import HostNamespace, UpstreamStub, make_test_hosts

pytestmark = [pytest.mark.docker, pytest.mark.root]

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
  agent:
    claude_code: {api_key: {from_file: KEYFILE}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""

# Runs inside the agent: one raw HTTP/1.1 request to the relay; prints what came back and when
# the first piece of streamed text arrived.
CLIENT = textwrap.dedent("""\
    import json, socket, sys, time
    request = json.loads(sys.argv[1]).encode("latin-1")
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=30)
    s.sendall(request)
    answer, first_delta = b"", None
    while chunk := s.recv(65536):
        answer += chunk
        if first_delta is None and b"text_delta" in answer:
            first_delta = time.time()
    print(json.dumps({"answer": answer.decode("latin-1"), "first_delta_at": first_delta}))
""")


def messages_request(
    credential: str = f"x-api-key: {naming.API_KEY_PLACEHOLDER}",
    host: str = f"127.0.0.1:{naming.API_RELAY_PORT}",
    target: str = "/v1/messages?beta=true",
    method: str = "POST",
) -> str:
    body = json.dumps(
        {
            "model": "claude-test",
            "max_tokens": 32,
            "stream": True,
            "messages": [{"role": "user", "content": "say hi"}],
        }
    )
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{credential}\r\n"
        "anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
        f"Connection: keep-alive\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


@dataclass
class Relayed:
    scope: Scope
    hosts: HostNamespace
    stub: MessagesStub
    key_file: Path
    container: str

    def ask(self, request: str) -> dict[str, Any]:
        code, out = agent_exec(
            self.scope,
            self.container,
            f"{VENV}/bin/python",
            "-c",
            CLIENT,
            json.dumps(request),
            str(naming.API_RELAY_PORT),
        )
        assert code == 0, out
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def status_of(answer: str) -> int:
    return int(answer.split(" ", 2)[1])


def wait_answered(relayed: Relayed, timeout: float = 60.0) -> dict[str, Any]:
    """The relay's answer to a Messages request, once the relay is (back) up."""
    deadline = time.monotonic() + timeout
    while True:
        code, out = agent_exec(
            relayed.scope,
            relayed.container,
            f"{VENV}/bin/python",
            "-c",
            CLIENT,
            json.dumps(messages_request()),
            str(naming.API_RELAY_PORT),
        )
        if code == 0:
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
            if result["answer"].startswith("HTTP/1.1 200"):
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"the relay did not answer within {timeout}s: {out[-500:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def relay_setup(scope: Scope, tmp_path: Path, spec: str) -> Iterator[Relayed]:
    """A stub Messages API on a test host, the CP's API upstream pointed at it, a key file on
    the host, and `spec` (KEYFILE in it names that file) applied."""
    hosts = make_test_hosts(scope.run_id, ("api",))
    try:
        stub = start_messages_stub(hosts.netns, hosts.addresses["api"], tmp_path)
        try:
            key_dir = tmp_path / "host-secrets"  # outside the workspace, as the spec requires
            key_dir.mkdir(mode=0o700)
            key_file = key_dir / "anthropic-key"
            key_file.write_text("sk-ant-api03-test-" + secrets.token_hex(16) + "\n")
            key_file.chmod(0o600)
            scope.env.update(
                CLAWKER_API_UPSTREAM=stub.url,
                CLAWKER_API_UPSTREAM_CA=str(stub.ca),
                CLAWKER_RESYNC_SECONDS="2",
            )
            path = scope.write_spec(spec.replace("KEYFILE", str(key_file)))
            scope.clawker("apply", "-f", str(path), check=0)
            yield Relayed(scope, hosts, stub, key_file, f"clawker.{scope.project}.dev")
        finally:
            stub.close()
    finally:
        hosts.close()


@pytest.fixture
def relayed(scope: Scope, tmp_path: Path) -> Iterator[Relayed]:
    with relay_setup(scope, tmp_path, SPEC) as setup:
        yield setup


def test_a_request_with_the_placeholder_reaches_the_api_with_the_real_key_and_streams_back(
    relayed: Relayed,
) -> None:
    key = relayed.key_file.read_text().strip()

    result = relayed.ask(messages_request())

    answer = result["answer"]
    assert answer.startswith("HTTP/1.1 200"), answer[:300]
    assert "text/event-stream" in answer and "Connection: close" in answer
    text = "".join(
        json.loads(line[6:])["delta"].get("text", "")
        for line in answer.splitlines()
        if line.startswith("data: ") and '"content_block_delta"' in line
    )
    assert text == ANSWER
    # Streamed as produced: the first words were inside before the stub wrote its last event.
    assert result["first_delta_at"] is not None
    assert result["first_delta_at"] < relayed.stub.last_event_at
    (seen,) = relayed.stub.requests
    assert (seen.method, seen.path) == ("POST", "/v1/messages?beta=true")
    assert seen.headers["x-api-key"] == key
    assert "authorization" not in seen.headers
    assert seen.headers["host"] == relayed.stub.address
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert json.loads(seen.body)["messages"][0]["content"] == "say hi"
    assert key not in answer

    # A bearer placeholder is answered in kind; a rotated file is used from the next request on.
    relayed.key_file.write_text("sk-ant-api03-rotated-" + secrets.token_hex(8))
    result = relayed.ask(messages_request(f"Authorization: Bearer {naming.API_KEY_PLACEHOLDER}"))
    assert result["answer"].startswith("HTTP/1.1 200")
    rotated = relayed.stub.requests[-1]
    assert rotated.headers["authorization"] == f"Bearer {relayed.key_file.read_text()}"
    assert "x-api-key" not in rotated.headers


def test_the_key_is_nowhere_inside_the_agent(relayed: Relayed) -> None:
    scope, name = relayed.scope, relayed.container
    key = relayed.key_file.read_text().strip()
    assert status_of(relayed.ask(messages_request())["answer"]) == 200  # the key was used

    code, env = agent_exec(scope, name, "env")
    assert code == 0
    assert f"ANTHROPIC_API_KEY={naming.API_KEY_PLACEHOLDER}" in env.splitlines()
    assert f"ANTHROPIC_BASE_URL={naming.API_RELAY_URL}" in env.splitlines()
    # The environment of every process in the container (root's relay and clawkerd included).
    code, out = agent_exec(
        scope, name, "sh", "-c", f"grep -lsF '{key}' /proc/[0-9]*/environ; echo done", user="root"
    )
    assert (code, out) == (0, "done\n")
    # The writable layer, the config and history volumes and every other mount.
    code, out = agent_exec(
        scope,
        name,
        "grep",
        "-rlsF",
        "--exclude-dir=proc",
        "--exclude-dir=sys",
        "--exclude-dir=dev",
        key,
        "/",
        naming.CONFIG_MOUNT,
        naming.HISTORY_MOUNT,
        user="root",
    )
    assert (code, out) == (1, "")
    assert key not in json.dumps(scope.inspect(name))
    # Nor in what the host shows or keeps: the plan, the CP's log and its registry.
    assert key not in scope.clawker("diff", "-f", str(scope.workdir / "agents.yaml")).stdout
    state = Path(scope.env["CLAWKER_STATE_DIR"])
    assert key not in (state / "controlplane.log").read_text()
    assert key.encode() not in (state / "registry.sqlite").read_bytes()


def test_other_paths_and_other_hosts_are_refused_with_the_rule_named(relayed: Relayed) -> None:
    key = relayed.key_file.read_text().strip()
    refused = {
        "path": messages_request(target="/api/oauth/token"),
        "dot-segments": messages_request(target="/v1/messages/../../admin"),
        "other host": messages_request(host="evil.example:443"),
        "absolute form": messages_request(target="http://evil.example/v1/messages"),
        "tunnel": messages_request(method="CONNECT", target="evil.example:443"),
    }
    for what, request in refused.items():
        answer = relayed.ask(request)["answer"]
        assert status_of(answer) == 403, (what, answer[:300])
        error = json.loads(answer.split("\r\n\r\n", 1)[1])["error"]
        assert error["type"] == "permission_error"
        assert error["message"].startswith("clawker API relay: only "), (what, error)
        assert key not in answer
    assert (
        "API's paths"
        in json.loads(relayed.ask(refused["path"])["answer"].split("\r\n\r\n")[1])["error"][
            "message"
        ]
    )
    assert relayed.stub.requests == []  # none of them left the host


def test_the_relay_comes_back_after_a_container_restart_and_a_control_plane_restart(
    relayed: Relayed,
) -> None:
    scope = relayed.scope
    assert status_of(relayed.ask(messages_request())["answer"]) == 200

    scope.api.restart(relayed.container, timeout=2)
    wait_answered(relayed)

    scope.clawker("controlplane", "down", check=0)
    scope.clawker("controlplane", "up", check=0)
    wait_answered(relayed)  # the new CP re-creates the bridge on its first pass (resync)
    key = relayed.key_file.read_text().strip()
    assert relayed.stub.requests[-1].headers["x-api-key"] == key


def test_a_key_that_cannot_be_read_fails_the_start_loudly(relayed: Relayed) -> None:
    relayed.key_file.unlink()

    relayed.scope.api.restart(relayed.container, timeout=2)
    out = relayed.scope.clawker("get", "agents", "-o", "json", check=0).stdout
    deadline = time.monotonic() + 60
    while "cannot be read" not in out and time.monotonic() < deadline:
        time.sleep(0.5)
        out = relayed.scope.clawker("get", "agents", "-o", "json", check=0).stdout
    assert f"cannot read the key file {relayed.key_file}" in out, out


REAL_HARNESS_SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: claude}
  agent:
    claude_code:
      config: {strategy: fresh}
      api_key: {from_file: KEYFILE}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""
# Claude Code's own switches for traffic that is not the API (telemetry, error reports,
# updates, surveys): off, so that the run asks the network for as little as it can.
QUIET = (
    "DISABLE_TELEMETRY=1",
    "DISABLE_ERROR_REPORTING=1",
    "DISABLE_AUTOUPDATER=1",
    "DISABLE_BUG_COMMAND=1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY=1",
)


def test_real_claude_code_answers_with_the_stub_through_the_relay_offline(
    scope: Scope, tmp_path: Path
) -> None:
    """The one test that starts the real `claude` (everywhere else: `claude --version` at
    most). It may do so only because both ways out are the test's own: the firewall's DNS
    upstream is a resolver that knows no name (every other host Claude Code tries is NXDOMAIN),
    and the API upstream is the stub."""
    nowhere = UpstreamStub({})
    scope.env["CLAWKER_DNS_UPSTREAM"] = f"{nowhere.address[0]}:{nowhere.address[1]}"
    try:
        with relay_setup(scope, tmp_path, REAL_HARNESS_SPEC) as relayed:
            assert agent_exec(scope, relayed.container, "claude", "--version")[0] == 0
            code, out = agent_exec(
                scope,
                relayed.container,
                "env",
                *QUIET,
                "timeout",
                "180",
                "claude",
                "-p",
                "say hi",
            )
            key = relayed.key_file.read_text().strip()
            seen = [(r.method, r.path.split("?")[0]) for r in relayed.stub.requests]
            assert code == 0, (out[-2000:], seen, nowhere.queries)
            assert ANSWER in out, (out[-2000:], seen)
            assert ("POST", "/v1/messages") in seen
            assert all(r.headers.get("x-api-key") == key for r in relayed.stub.requests)
            # Whatever else it looked up got NXDOMAIN from the test's resolver; nothing left.
            print("claude asked the API for", seen, "and the resolver for", nowhere.queries)
    finally:
        nowhere.close()

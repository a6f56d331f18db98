"""A streamed Messages answer's first byte through the API relay vs straight to the API.

One agent with `agent.claude_code.api_key` is applied (untimed) next to a stub Messages API on a
test host in a network namespace of the bench's own (tests/integration/messages_stub.py, HTTPS
with its own CA; the CP's `CLAWKER_API_UPSTREAM` points at it). Inside the agent, one script
times, alternating run by run, from before the connect to the first byte of the answer:

- relay: a plain connection to 127.0.0.1:7711 with the placeholder key; the request crosses the
  socket bridge (clawkerd's Bridge stream to the CP), the CP adds the key and opens TLS to the stub;
- straight: TLS from the container to the stub itself (its name on the agent's allowlist,
  resolved once through the firewall's resolver before the runs), with a key in the request.

Both pay one TLS handshake per request (the relay opens a new upstream connection per request).
The stub answers with its headers at once and sends no pause before the first event.
"""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import docker

from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import Ratio, Series, time_command
from bench.reporting import ScenarioResult
from reconciler import naming
from reconciler.images.dockerfile import VENV
from tests.integration.messages_stub import start_messages_stub
from tests.integration.testhosts import UpstreamStub, make_test_hosts

__all__ = ["run"]

RELAY = "through the relay"
STRAIGHT = "straight to the API"

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {{name: {project}}}
spec:
  workspace: {{path: {workspace}}}
  build: {{harness: none}}
  agent:
    claude_code: {{api_key: {{from_file: {key_file}}}}}
  security:
    firewall: {{add_domains: [{api_name}]}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {{name: dev, project: {project}}}
spec: {{command: [sleep, infinity]}}
"""

# Inside the agent: `runs` alternating pairs; prints {"relay": [...], "straight": [...]} (s).
CLIENT = textwrap.dedent("""\
    import json, socket, ssl, sys, time
    cfg = json.loads(sys.argv[1])
    socket.getaddrinfo(cfg["name"], 443)  # through the firewall's resolver: opens the address
    tls = ssl.create_default_context(cafile=cfg["ca"])
    def ask(relay):
        began = time.perf_counter()
        if relay:
            s = socket.create_connection(("127.0.0.1", cfg["port"]))
            host, key = "127.0.0.1:%d" % cfg["port"], cfg["placeholder"]
        else:
            s = socket.create_connection((cfg["ip"], 443))
            s = tls.wrap_socket(s, server_hostname=cfg["ip"])
            host, key = cfg["ip"], "sk-ant-bench"
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = cfg["body"].encode()
        head = ("POST /v1/messages HTTP/1.1\\r\\nHost: %s\\r\\nx-api-key: %s\\r\\n"
                "anthropic-version: 2023-06-01\\r\\ncontent-type: application/json\\r\\n"
                "Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % (host, key, len(body)))
        s.sendall(head.encode() + body)
        first = s.recv(1)
        took = time.perf_counter() - began
        answer = first
        while chunk := s.recv(65536):
            answer += chunk
        s.close()
        assert answer.startswith(b"HTTP/1.1 200") and b"message_stop" in answer, answer[:200]
        return took
    ask(True); ask(False)  # warm: the first of each pays for imports and the first resolve
    out = {"relay": [], "straight": []}
    for i in range(cfg["runs"]):
        for relay in ((True, False) if i % 2 == 0 else (False, True)):
            out["relay" if relay else "straight"].append(ask(relay))
    print(json.dumps(out))
""")


def run(scope: BenchScope, *, runs: int, agents: int, log: Callable[[str], None]) -> ScenarioResult:
    del agents  # one agent: this measures a request, not a fleet
    if os.geteuid() != 0:
        raise BenchError("api_relay needs root (a network namespace for the stub API)")
    api = docker.APIClient(version="auto")
    project = f"r{scope.run_id.removeprefix('bench-')}"
    name = f"clawker.{project}.dev"
    hosts = make_test_hosts(scope.run_id.removeprefix("bench-"), ("api",))
    resolver: UpstreamStub | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="clawker-bench-") as tmp:
            root = Path(tmp)
            stub = start_messages_stub(hosts.netns, hosts.addresses["api"], root)
            stub.event_gap = 0.0
            try:
                api_name = f"api.{scope.run_id}.bench.invalid"
                resolver = UpstreamStub({api_name: stub.address})
                (root / "ws").mkdir()
                (root / "ws" / "ca.pem").write_bytes(stub.ca.read_bytes())
                key_file = root / "key"
                key_file.write_text("sk-ant-bench-key\n")
                spec = root / "agents.yaml"
                spec.write_text(
                    SPEC.format(
                        project=project,
                        workspace=root / "ws",
                        key_file=key_file,
                        api_name=api_name,
                    )
                )
                env = scope.clawker_env()
                env.update(
                    CLAWKER_API_UPSTREAM=stub.url,
                    CLAWKER_API_UPSTREAM_CA=str(stub.ca),
                    CLAWKER_DNS_UPSTREAM=f"{resolver.address[0]}:{resolver.address[1]}",
                )
                log("api_relay: applying one agent (untimed)")
                time_command(clawker_argv("apply", "-f", str(spec), "-y"), env=env, cwd=REPO)
                config = {
                    "runs": runs,
                    "port": naming.API_RELAY_PORT,
                    "placeholder": naming.API_KEY_PLACEHOLDER,
                    "ip": stub.address,
                    "name": api_name,
                    "ca": str((root / "ws" / "ca.pem").resolve()),
                    "body": json.dumps(
                        {"model": "m", "max_tokens": 8, "stream": True, "messages": []}
                    ),
                }
                exec_id = api.exec_create(
                    name, [f"{VENV}/bin/python", "-c", CLIENT, json.dumps(config)], user="claude"
                )
                out = api.exec_start(exec_id).decode(errors="replace")
                if api.exec_inspect(exec_id)["ExitCode"] != 0:
                    raise BenchError(f"the client inside {name} failed:\n{out[-2000:]}")
                samples = json.loads(out.strip().splitlines()[-1])
            finally:
                stub.close()
    finally:
        if resolver is not None:
            resolver.close()
        hosts.close()
    log(f"api_relay: {runs} pairs timed")
    series = {
        RELAY: Series(
            RELAY,
            "in the agent: connect to 127.0.0.1:7711 → bridge → CP adds the key → TLS to the "
            "stub; until the answer's first byte",
            tuple(samples["relay"]),
        ),
        STRAIGHT: Series(
            STRAIGHT,
            "in the agent: TLS to the stub itself (allowed by the firewall); until the "
            "answer's first byte",
            tuple(samples["straight"]),
        ),
    }
    return ScenarioResult(
        scenario="api_relay",
        title=f"streamed Messages answer, first byte, {runs} runs",
        command=f".venv/bin/python bench/run.py --only api_relay --runs {runs}",
        parameters={"runs": runs},
        series=tuple(series.values()),
        ratios=(Ratio.of(series, RELAY, STRAIGHT),),
    )

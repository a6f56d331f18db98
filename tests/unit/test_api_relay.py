"""The API relay's host half (docs/credentials.md): what it forwards, how it rewrites a request,
where it reads the key; and one request end to end against the stub Messages API on loopback
(real TLS with the stub's own CA; the bridge's frames are the edge)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import naming
from reconciler.controlplane.bridge.api_relay import (
    ApiKeyError,
    ApiKeySource,
    ApiRelayConfig,
    ApiRelayTarget,
    ApiUpstream,
    UpstreamError,
    check_request,
    parse_request_head,
    upstream_head,
)
from reconciler.controlplane.bridge.frames import DATA
from reconciler.controlplane.bridge.socket_bridge import bridge_listeners
from reconciler.controlplane.registry import AgentRuntimeSpec
from tests.integration.messages_stub import ANSWER, MessagesStub, start_loopback_stub

KEY = "sk-ant-api03-unit-0123456789abcdef"
RELAY_HOST = f"127.0.0.1:{naming.API_RELAY_PORT}"
UPSTREAM = ApiUpstream("https://api.example.test")


def head(target: str = "/v1/messages", host: str = RELAY_HOST, *extra: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    "target",
    ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens", "/v1/models"],
)
def test_the_api_paths_on_the_relay_or_the_upstream_are_forwarded(target: str) -> None:
    check_request(parse_request_head(head(target)), UPSTREAM)
    check_request(parse_request_head(head(target, "api.example.test")), UPSTREAM)


@pytest.mark.parametrize(
    ("request_head", "rule"),
    [
        (head("/api/oauth/token"), "only the API's paths"),
        (head("/v1/messagesX"), "only the API's paths"),
        (head("/v1/messages/../../admin"), "only the API's paths"),
        (head("/v1/messages/%2e%2e/admin"), "only the API's paths"),
        (head("/v1/models", "evil.example"), "Host 'evil.example' is another host"),
        (head("http://evil.example/v1/messages"), "asks for another host"),
        (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", "another host"),
    ],
)
def test_anything_else_is_refused_naming_the_rule(request_head: bytes, rule: str) -> None:
    with pytest.raises(Exception) as refused:
        check_request(parse_request_head(request_head), UPSTREAM)
    assert getattr(refused.value, "status", None) == 403
    assert rule in str(refused.value)
    assert "https://api.example.test" in str(refused.value)


def test_the_placeholder_is_replaced_and_hop_by_hop_headers_go() -> None:
    request = parse_request_head(
        head(
            "/v1/messages?beta=true",
            RELAY_HOST,
            f"x-api-key: {naming.API_KEY_PLACEHOLDER}",
            "Connection: keep-alive, X-Drop",
            "X-Drop: 1",
            "Keep-Alive: timeout=5",
            "anthropic-version: 2023-06-01",
            "Content-Length: 2",
        )
    )

    sent = upstream_head(request, ApiUpstream("https://api.example.test:8443/base/"), KEY)

    lines = sent.decode().split("\r\n")
    assert lines[0] == "POST /base/v1/messages?beta=true HTTP/1.1"
    assert "Host: api.example.test:8443" in lines
    assert f"x-api-key: {KEY}" in lines and "Connection: close" in lines
    assert "anthropic-version: 2023-06-01" in lines and "Content-Length: 2" in lines
    assert not [line for line in lines if line.lower().startswith(("x-drop", "keep-alive"))]
    assert naming.API_KEY_PLACEHOLDER not in sent.decode()
    assert sent.endswith(b"\r\n\r\n")


def test_a_bearer_placeholder_gets_the_key_as_a_bearer() -> None:
    request = parse_request_head(
        head("/v1/messages", RELAY_HOST, f"Authorization: Bearer {naming.API_KEY_PLACEHOLDER}")
    )

    lines = upstream_head(request, UPSTREAM, KEY).decode().split("\r\n")

    assert f"Authorization: Bearer {KEY}" in lines
    assert not [line for line in lines if line.lower().startswith("x-api-key")]


def test_the_key_is_read_from_the_environment_given_or_a_file(tmp_path: Path) -> None:
    assert ApiKeySource(env="K").read({"K": f"  {KEY}\n"}) == KEY
    (tmp_path / "key").write_text(KEY + "\n")
    assert ApiKeySource(file=str(tmp_path / "key")).read({}) == KEY
    assert ApiKeySource(file="~/key", home=str(tmp_path)).read({}) == KEY


@pytest.mark.parametrize(
    ("source", "content", "message"),
    [
        (ApiKeySource(env="MISSING"), None, "environment variable MISSING is not set"),
        (ApiKeySource(file="/nonexistent/key"), None, "cannot read the key file /nonexistent"),
        (ApiKeySource(file="FILE"), f"{KEY}\nHost: evil", "does not hold a key"),
        (ApiKeySource(file="FILE"), "two words", "does not hold a key"),
        (ApiKeySource(file="FILE"), "", "does not hold a key"),
    ],
)
def test_a_key_that_cannot_be_used_is_an_error_naming_the_source_never_the_content(
    tmp_path: Path, source: ApiKeySource, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "key").write_text(content)
        source = ApiKeySource(file=str(tmp_path / "key"))
    with pytest.raises(ApiKeyError) as error:
        source.read({})
    assert message in str(error.value)
    assert KEY not in str(error.value) and "evil" not in str(error.value)


def test_the_upstream_must_be_https() -> None:
    with pytest.raises(UpstreamError, match="not an https:// URL"):
        ApiUpstream("http://api.example.test")


def test_an_agent_with_an_api_key_gets_the_relay_port_and_one_without_does_not() -> None:
    with_key = AgentRuntimeSpec("p/a", api_key_env="K")

    (listener,) = bridge_listeners(with_key)

    assert listener.message().tcp_port == naming.API_RELAY_PORT
    assert not listener.message().path
    assert bridge_listeners(AgentRuntimeSpec("p/a")) == []


# -- one request end to end, against the stub on loopback -----------------------------------


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[MessagesStub]:
    server = start_loopback_stub(tmp_path)
    try:
        yield server
    finally:
        server.close()


def relay(stub: MessagesStub, request: bytes, environ: dict[str, str]) -> bytes:
    """Feed `request` to one relay channel as the bridge would; the bytes it answered."""
    answer: list[bytes] = []
    dropped = threading.Event()

    def send(kind: int, _channel: int, payload: bytes) -> None:
        assert kind == DATA
        answer.append(payload)

    config = ApiRelayConfig(ApiUpstream(stub.url, str(stub.ca)), environ)
    channel = ApiRelayTarget(config, ApiKeySource(env="K"), "unit").open(
        7, send, lambda _c: dropped.set()
    )
    for start in range(0, len(request), 10):  # in pieces, as frames may cut it
        channel.data(request[start : start + 10])
    assert dropped.wait(30)
    return b"".join(answer)


def messages_request(host: str) -> bytes:
    body = json.dumps({"model": "m", "stream": True, "messages": []}).encode()
    return (
        head(
            "/v1/messages",
            host,
            f"x-api-key: {naming.API_KEY_PLACEHOLDER}",
            f"Content-Length: {len(body)}",
        )[:-2]
        + b"\r\n"
        + body
    )


def test_a_request_is_forwarded_with_the_key_and_streamed_back(stub: MessagesStub) -> None:
    answer = relay(stub, messages_request(RELAY_HOST), {"K": KEY})

    assert answer.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in answer and ANSWER.split()[0].encode() in answer
    (seen,) = stub.requests
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["host"] == f"127.0.0.1:{stub.port}"
    assert json.loads(seen.body)["model"] == "m"


def test_a_refused_request_never_reaches_the_upstream(stub: MessagesStub) -> None:
    answer = relay(stub, messages_request("evil.example"), {"K": KEY})

    status, body = answer.split(b"\r\n", 1)[0], answer.split(b"\r\n\r\n", 1)[1]
    assert status == b"HTTP/1.1 403 Forbidden"
    assert json.loads(body)["error"]["type"] == "permission_error"
    assert stub.requests == [] and KEY.encode() not in answer


def test_without_a_key_the_answer_says_where_it_was_looked_for(stub: MessagesStub) -> None:
    answer = relay(stub, messages_request(RELAY_HOST), {})

    assert answer.startswith(b"HTTP/1.1 502")
    assert b"environment variable K is not set" in answer
    assert stub.requests == []


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:7711\r\nX-A: 1\nHost: evil\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:7711\r\nX-A: 1\rX\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\n Folded: line\r\n\r\n",
        b"POST /v1/messages\r\nHost: 127.0.0.1:7711\r\n\r\n",
    ],
)
def test_a_malformed_head_is_a_400(raw: bytes) -> None:
    with pytest.raises(Exception) as refused:
        parse_request_head(raw)
    assert getattr(refused.value, "status", None) == 400


def test_expect_100_continue_is_answered_by_the_relay_and_not_forwarded(
    stub: MessagesStub,
) -> None:
    request = messages_request(RELAY_HOST).replace(
        b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n", 1
    )

    answer = relay(stub, request, {"K": KEY})

    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert "expect" not in stub.requests[0].headers

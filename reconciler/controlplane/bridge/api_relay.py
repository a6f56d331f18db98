"""The API relay: the harness's API key stays on the host (docs/credentials.md).

Inside the agent, Claude Code's `ANTHROPIC_BASE_URL` is `http://127.0.0.1:<port>`, where
clawkerd listens and carries each connection here over its Bridge stream (socket_bridge.py).
Here each connection is one HTTP/1.1 request: it is checked (only the configured upstream, only
the API's paths), its placeholder credential is replaced with the real key, read on the host at
that moment, and it is forwarded over TLS to the upstream; the answer streams back as it arrives
(server-sent events are not buffered). Every answer closes its connection, so no second request
can ride on one that was checked already.

The key is never logged, never put in an error, and never sent anywhere but the upstream.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from reconciler import naming
from reconciler.controlplane.api.messages import AgentRuntimeSpec
from reconciler.controlplane.bridge.frames import DATA, MAX_PAYLOAD, Send
from reconciler.settings import Settings

__all__ = [
    "ALLOWED_PATHS",
    "ApiKeyError",
    "ApiKeySource",
    "ApiRelayConfig",
    "ApiRelayTarget",
    "ApiUpstream",
    "UpstreamError",
]

log = logging.getLogger("clawker.controlplane.api_relay")

DEFAULT_UPSTREAM = "https://api.anthropic.com"
# The Messages API (with count_tokens and batches under it) and the model list: what Claude Code
# asks its base URL for. Anything else through the relay is refused.
ALLOWED_PATHS = ("/v1/messages", "/v1/models")
MAX_HEAD_BYTES = 64 * 1024
MAX_KEY_BYTES = 4096
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 600.0  # a long generation streams pings; silence this long is a dead upstream
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    }
)
_CREDENTIAL_HEADERS = frozenset({"x-api-key", "authorization"})


class UpstreamError(ValueError):
    """The configured upstream is not an https URL the relay can forward to."""


class ApiKeyError(Exception):
    """The key cannot be read from its source; the message names the source, never a key."""


@dataclass(frozen=True)
class ApiUpstream:
    """Where the relay forwards (a CP setting: tests point it at a host of their own), and the
    CA bundle it trusts for that host ("" = the system's)."""

    url: str = DEFAULT_UPSTREAM
    ca_file: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            raise UpstreamError(
                f"API upstream {self.url!r} is not an https:// URL; set CLAWKER_API_UPSTREAM "
                f"to one such as {DEFAULT_UPSTREAM}"
            )
        if parts.query or parts.fragment or parts.username:
            raise UpstreamError(f"API upstream {self.url!r} may hold only a host, port and path")

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiUpstream:
        """CLAWKER_API_UPSTREAM (default https://api.anthropic.com), CLAWKER_API_UPSTREAM_CA."""
        return cls(settings.api_upstream or DEFAULT_UPSTREAM, settings.api_upstream_ca)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443

    @property
    def authority(self) -> str:
        return self.host if self.port == 443 else f"{self.host}:{self.port}"

    @property
    def base_path(self) -> str:
        return urlsplit(self.url).path.rstrip("/")

    @functools.cached_property
    def tls_context(self) -> ssl.SSLContext:
        """Built once per CP: loading the system's trust store costs milliseconds."""
        context = ssl.create_default_context(cafile=self.ca_file or None)
        context.set_alpn_protocols(["http/1.1"])
        return context


@dataclass(frozen=True)
class ApiKeySource:
    """Where the key is read on the host: a variable of the CP's environment, or a file (a
    leading `~/` is the home of the host user who applied)."""

    env: str = ""
    file: str = ""
    home: str = ""

    @classmethod
    def of(cls, runtime: AgentRuntimeSpec) -> ApiKeySource:
        return cls(runtime.api_key_env, runtime.api_key_file, runtime.host_home)

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.path}"

    @property
    def path(self) -> str:
        if self.file.startswith("~/") and self.home:
            return str(Path(self.home) / self.file[2:])
        return self.file

    def read(self, environ: Mapping[str, str]) -> str:
        """The key, read now (a rotated file is used from the next request on)."""
        if self.env:
            raw = environ.get(self.env)
            if raw is None:
                raise ApiKeyError(
                    f"environment variable {self.env} is not set in the control plane's "
                    f"environment (pid {os.getpid()}); stop it (`clawker controlplane down`) "
                    f"and apply again with {self.env} exported (under sudo: "
                    f"`sudo --preserve-env={self.env} clawker apply ...`)"
                )
        else:
            try:
                with open(self.path, "rb") as handle:
                    data = handle.read(MAX_KEY_BYTES + 1)
            except OSError as exc:
                raise ApiKeyError(
                    f"cannot read the key file {self.path}: {exc.strerror or exc}"
                ) from None
            if len(data) > MAX_KEY_BYTES:
                raise ApiKeyError(f"the key file {self.path} is over {MAX_KEY_BYTES} bytes")
            raw = data.decode("utf-8", errors="replace")
        key = raw.strip()
        # One header value: printable ASCII without spaces (nothing that could end the header).
        if not key or not all(33 <= ord(c) <= 126 for c in key):
            raise ApiKeyError(
                f"the {self.describe()} does not hold a key (one line of printable characters "
                "without spaces)"
            )
        return key


@dataclass(frozen=True)
class ApiRelayConfig:
    """The CP's side of every relay: where it forwards, and the environment `from_env` keys
    are read from (the CP's own, passed down from its entry point)."""

    upstream: ApiUpstream = field(default_factory=ApiUpstream)
    environ: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiRelayTarget:
    """What answers the connections to the API relay's port inside one container."""

    config: ApiRelayConfig
    key: ApiKeySource
    container: str = ""  # for the log

    def open(self, channel: int, send: Send, drop: Callable[[int], None]) -> _ApiChannel:
        relayed = _ApiChannel(self, channel, send, drop)
        threading.Thread(target=relayed.run, name=f"api-relay-ch{channel}", daemon=True).start()
        return relayed


class _Inbox:
    """Bytes from the container for one channel, read by the channel's thread."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ended = False
        self._ready = threading.Condition()

    def put(self, data: bytes) -> None:
        with self._ready:
            self._buffer += data
            self._ready.notify()

    def end(self) -> None:
        with self._ready:
            self._ended = True
            self._ready.notify()

    def read(self, limit: int = MAX_PAYLOAD) -> bytes:
        """Up to `limit` bytes, waiting for some; b"" once the client sent all it will."""
        with self._ready:
            self._ready.wait_for(lambda: self._buffer or self._ended)
            data = bytes(self._buffer[:limit])
            del self._buffer[:limit]
            return data

    def read_until(self, marker: bytes, limit: int) -> bytes | None:
        """Everything up to and including `marker`; None when the client ends first or sends
        `limit` bytes without it."""
        with self._ready:
            while True:
                end = self._buffer.find(marker)
                if end >= 0:
                    data = bytes(self._buffer[: end + len(marker)])
                    del self._buffer[: end + len(marker)]
                    return data
                if self._ended or len(self._buffer) > limit:
                    return None
                self._ready.wait()

    def read_exact(self, count: int) -> bytes | None:
        chunks, left = [], count
        while left:
            data = self.read(min(left, MAX_PAYLOAD))
            if not data:
                return None
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)


class _RelayError(Exception):
    """A request the relay answers itself, with this status and an API-shaped error."""

    def __init__(self, status: int, reason: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.kind, self.message = status, reason, kind, message


def _refused(rule: str) -> _RelayError:
    return _RelayError(403, "Forbidden", "permission_error", f"clawker API relay: {rule}")


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


def parse_request_head(head: bytes) -> _Request:
    """The request line and headers of one HTTP/1.1 request (the head, CRLF CRLF included)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise _RelayError(400, "Bad Request", "invalid_request_error", str(exc)) from None
    lines = text[:-4].split("\r\n")
    if any(c in text[:-4].replace("\r\n", "") for c in "\r\n\0"):
        # A bare CR or LF could end a header upstream that ended nowhere here (smuggling).
        raise _RelayError(
            400,
            "Bad Request",
            "invalid_request_error",
            "clawker API relay: a bare CR, LF or NUL in the request head",
        )
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _RelayError(
            400,
            "Bad Request",
            "invalid_request_error",
            "clawker API relay: not an HTTP/1.1 request",
        )
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[:1] in (" ", "\t"):
            raise _RelayError(
                400, "Bad Request", "invalid_request_error", "clawker API relay: malformed header"
            )
        headers.append((name, value.strip()))
    return _Request(parts[0], parts[1], tuple(headers))


def check_request(request: _Request, upstream: ApiUpstream) -> None:
    """Raise _RelayError (403, naming the rule) unless the request is for the API on the
    configured upstream."""
    if request.method == "CONNECT" or not request.target.startswith("/"):
        raise _refused(
            f"only requests for {upstream.url} are forwarded; "
            f"{request.method} {request.target[:200]} asks for another host"
        )
    host = (request.header("host") or "").lower()
    relay = {f"127.0.0.1:{naming.API_RELAY_PORT}", f"localhost:{naming.API_RELAY_PORT}"}
    if host not in relay | {upstream.authority.lower()}:
        raise _refused(
            f"only requests for {upstream.url} are forwarded; Host {host[:200]!r} is another host"
        )
    path = request.target.split("?", 1)[0]
    plain = "%" not in path and "//" not in path and "/." not in path and "\\" not in path
    if not plain or not any(path == p or path.startswith(p + "/") for p in ALLOWED_PATHS):
        raise _refused(
            f"only the API's paths ({', '.join(ALLOWED_PATHS)} and below) are forwarded to "
            f"{upstream.url}; {request.method} {path[:200]} is not one of them"
        )


def upstream_head(request: _Request, upstream: ApiUpstream, key: str) -> bytes:
    """The head sent upstream: the placeholder credential replaced with `key` (in the header
    the client used), the upstream's Host, no hop-by-hop headers, and Connection: close."""
    named = {token.strip().lower() for token in (request.header("connection") or "").split(",")}
    bearer = (request.header("authorization") or "").lower().startswith("bearer ")
    bearer = bearer and request.header("x-api-key") is None
    lines = [f"{request.method} {upstream.base_path}{request.target} HTTP/1.1"]
    lines.append(f"Host: {upstream.authority}")
    for name, value in request.headers:
        lower = name.lower()
        if lower in _HOP_BY_HOP or lower in named or lower in _CREDENTIAL_HEADERS:
            continue
        if lower in ("host", "expect"):  # the relay answers 100-continue itself
            continue
        lines.append(f"{name}: {value}")
    lines.append(f"Authorization: Bearer {key}" if bearer else f"x-api-key: {key}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(status: int, reason: str, kind: str, message: str) -> bytes:
    """An answer in the API's own error shape, so Claude Code shows the message as it is."""
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def response_head(head: bytes) -> bytes:
    """The upstream's response head with its connection headers replaced by Connection: close
    (the relay ends every connection after one answer)."""
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]]
    kept += [
        line
        for line in lines[1:]
        if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")
    ]
    kept.append(b"Connection: close")
    return b"\r\n".join(kept) + b"\r\n\r\n"


class _ApiChannel:
    """One connection to the relay's port: one request, one streamed answer."""

    def __init__(
        self, target: ApiRelayTarget, channel: int, send: Send, drop: Callable[[int], None]
    ) -> None:
        self._target, self._channel, self._send, self._drop = target, channel, send, drop
        self._inbox = _Inbox()
        self._upstream: socket.socket | None = None
        self._closed = threading.Event()

    # -- from the bridge's reader thread --------------------------------------------------
    def data(self, payload: bytes) -> None:
        self._inbox.put(payload)

    def eof(self) -> None:
        self._inbox.end()

    def close(self) -> None:
        self._closed.set()
        self._inbox.end()
        if self._upstream is not None:
            with contextlib.suppress(OSError):
                self._upstream.shutdown(socket.SHUT_RDWR)

    # -- the channel's own thread ---------------------------------------------------------
    def _reply(self, data: bytes) -> None:
        for start in range(0, len(data), MAX_PAYLOAD):
            self._send(DATA, self._channel, data[start : start + MAX_PAYLOAD])

    def run(self) -> None:
        try:
            self._relay()
        except _RelayError as exc:
            log.warning(
                "API request from %s answered %d: %s",
                self._target.container,
                exc.status,
                exc.message,
            )
            self._reply(error_response(exc.status, exc.reason, exc.kind, exc.message))
        except OSError as exc:  # the upstream broke off mid-answer: nothing more to send
            if not self._closed.is_set():
                log.warning("API request from %s broke off: %s", self._target.container, exc)
        finally:
            if self._upstream is not None:
                self._upstream.close()
            self._drop(self._channel)

    def _relay(self) -> None:
        head = self._inbox.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        if head is None:
            return  # the client left (or sent no HTTP); nothing to answer
        request = parse_request_head(head)
        upstream = self._target.config.upstream
        check_request(request, upstream)
        try:
            key = self._target.key.read(self._target.config.environ)
        except ApiKeyError as exc:
            raise _RelayError(
                502, "Bad Gateway", "api_error", f"clawker API relay: no API key: {exc}"
            ) from None
        outgoing = upstream_head(request, upstream, key)
        body = self._body_reader(request)
        if (request.header("expect") or "").lower() == "100-continue":
            self._reply(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._closed.is_set():
            return  # the client left while its request was checked
        try:
            raw = socket.create_connection((upstream.host, upstream.port), CONNECT_TIMEOUT)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._upstream = upstream.tls_context.wrap_socket(raw, server_hostname=upstream.host)
        except (OSError, ssl.SSLError) as exc:
            raise _RelayError(
                502,
                "Bad Gateway",
                "api_error",
                f"clawker API relay: cannot reach {upstream.url}: {exc}",
            ) from None
        self._upstream.settimeout(READ_TIMEOUT)
        self._upstream.sendall(outgoing)
        del key, outgoing
        for chunk in body:
            self._upstream.sendall(chunk)
        self._stream_answer(self._upstream)
        log.info(
            "API %s %s from %s forwarded",
            request.method,
            request.target.split("?", 1)[0],
            self._target.container,
        )

    def _body_reader(self, request: _Request) -> list[bytes] | _BodyStream:
        chunked = (request.header("transfer-encoding") or "").lower()
        length = request.header("content-length")
        if chunked and length is not None:
            raise _RelayError(
                400,
                "Bad Request",
                "invalid_request_error",
                "clawker API relay: both Content-Length and Transfer-Encoding",
            )
        if chunked:
            if chunked != "chunked":
                raise _RelayError(
                    400,
                    "Bad Request",
                    "invalid_request_error",
                    f"clawker API relay: Transfer-Encoding {chunked[:40]!r} is not supported",
                )
            return _BodyStream(self._inbox, chunked=True)
        if length is None:
            return []
        if not length.isdigit():
            raise _RelayError(
                400, "Bad Request", "invalid_request_error", "clawker API relay: bad Content-Length"
            )
        return _BodyStream(self._inbox, length=int(length))

    def _stream_answer(self, upstream: socket.socket) -> None:
        """Upstream → container as it arrives; the head gets Connection: close."""
        pending = b""
        while (chunk := upstream.recv(MAX_PAYLOAD)) or pending:
            if not chunk:  # the upstream closed before its head ended
                self._reply(pending)
                return
            pending += chunk
            end = pending.find(b"\r\n\r\n")
            if end >= 0:
                self._reply(response_head(pending[: end + 4]) + pending[end + 4 :])
                break
            if len(pending) > MAX_HEAD_BYTES:
                self._reply(pending)
                break
        while chunk := upstream.recv(MAX_PAYLOAD):
            self._send(DATA, self._channel, chunk)


class _BodyStream:
    """The request body, as the client sends it: exactly Content-Length bytes, or chunks up to
    and including the last one (its framing forwarded as it is)."""

    def __init__(self, inbox: _Inbox, *, length: int = 0, chunked: bool = False) -> None:
        self._inbox, self._left, self._chunked = inbox, length, chunked
        self._done = False

    def __iter__(self) -> _BodyStream:
        return self

    def __next__(self) -> bytes:
        if self._chunked:
            return self._next_chunk()
        if self._left <= 0:
            raise StopIteration
        data = self._inbox.read(min(self._left, MAX_PAYLOAD))
        if not data:
            raise OSError("the client ended its request body early")
        self._left -= len(data)
        return data

    def _next_chunk(self) -> bytes:
        if self._done:
            raise StopIteration
        line = self._inbox.read_until(b"\r\n", 1024)
        if line is None:
            raise OSError("the client ended its chunked body early")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise OSError("bad chunk size in the request body") from None
        if size == 0:  # the last chunk: trailer lines, then an empty line
            self._done = True
            trailers = b""
            while (field := self._inbox.read_until(b"\r\n", MAX_HEAD_BYTES)) is not None:
                trailers += field
                if field == b"\r\n":
                    return line + trailers
            raise OSError("the client ended its chunked body early")
        data = self._inbox.read_exact(size + 2)
        if data is None:
            raise OSError("the client ended its chunked body early")
        return line + data

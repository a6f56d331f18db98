"""The git credential proxy: answers `git-credential-clawker` inside an agent with the host's
`git credential fill|approve|reject`, run as the host user with the host user's git config.

A request arrives over the agent's socket bridge (docs/credentials.md), so it can come only from
the managed container the CP bridged. It is checked before git sees it: one operation line
(`get`, `store` or `erase`), then `key=value` lines; a line without `=`, a NUL, an unknown-looking
key, a request over 64 KiB or anything but `protocol=https` is refused, so an agent can neither
smuggle extra attributes into the host's helpers nor get credentials for plain-text protocols.
The `host` must be on the agent's live firewall allowlist: an agent can only ask for the
credentials of a server it may reach, not probe the host's helpers for any name it likes.
The host's answer is checked the same way before it goes back, and must be about the same
protocol and host.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler.firewall.allowlist import domain_allowed

__all__ = [
    "MAX_REQUEST_BYTES",
    "CredentialRequest",
    "CredentialRequestError",
    "HostGit",
    "answer",
    "host_name",
    "parse_answer",
    "parse_request",
]

MAX_REQUEST_BYTES = 64 * 1024
GIT_OPERATIONS = {"get": "fill", "store": "approve", "erase": "reject"}
_KEY = re.compile(r"^[a-z][a-z0-9_]*(\[\])?$")
GIT_TIMEOUT_SECONDS = 30.0


class CredentialRequestError(ValueError):
    """The request is refused; the message says why (it goes to the CP's log, not the agent)."""


@dataclass(frozen=True)
class CredentialRequest:
    operation: str  # get | store | erase
    fields: tuple[tuple[str, str], ...]

    def field(self, key: str) -> str | None:
        return next((value for name, value in self.fields if name == key), None)


def _fields(lines: list[str]) -> tuple[tuple[str, str], ...]:
    fields = []
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            raise CredentialRequestError(f"line without '=': {line[:40]!r}")
        if not _KEY.match(key):
            raise CredentialRequestError(f"invalid attribute name {key[:40]!r}")
        if "\r" in value:
            raise CredentialRequestError(f"attribute {key} holds a carriage return")
        fields.append((key, value))
    return tuple(fields)


def _lines(raw: bytes) -> list[str]:
    if len(raw) > MAX_REQUEST_BYTES:
        raise CredentialRequestError(f"over {MAX_REQUEST_BYTES} bytes")
    if b"\0" in raw:
        raise CredentialRequestError("holds a NUL byte")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CredentialRequestError("not UTF-8") from exc
    lines = text.split("\n")
    if "" in lines:  # everything after the first empty line is not part of the request
        lines = lines[: lines.index("")]
    return lines


def parse_request(raw: bytes) -> CredentialRequest:
    """The operation line and attributes the in-container helper sent; raises when refused.

    Newlines end attributes on this wire, so a value cannot carry one: a continuation of a value
    shows up as a line without '=' and is refused, as is a NUL anywhere."""
    lines = _lines(raw)
    if not lines:
        raise CredentialRequestError("empty request")
    operation, fields = lines[0], _fields(lines[1:])
    if operation not in GIT_OPERATIONS:
        raise CredentialRequestError(f"unknown operation {operation[:20]!r}")
    request = CredentialRequest(operation, fields)
    if request.field("url") is not None:
        raise CredentialRequestError("url= is not accepted: send protocol, host and path")
    if request.field("protocol") != "https":
        raise CredentialRequestError("only protocol=https is answered")
    if not request.field("host"):
        raise CredentialRequestError("no host")
    return request


def host_name(host: str) -> str:
    """The name in git's `host` attribute, without its port: `h:8443` and `[::1]:8443` too."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def parse_answer(raw: bytes) -> tuple[tuple[str, str], ...]:
    """The attributes of `git credential fill`'s answer, checked like a request's."""
    return _fields(_lines(raw))


@dataclass(frozen=True)
class HostGit:
    """Who runs the host's git: the host user (dropped to from root), with their home."""

    uid: int
    gid: int
    home: str

    def run(self, operation: str, request: bytes) -> subprocess.CompletedProcess[bytes]:
        env = {
            "HOME": self.home,
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "GIT_TERMINAL_PROMPT": "0",  # nobody is at the CP's terminal to answer
        }
        switch = os.geteuid() == 0 and self.uid >= 0 and self.uid != 0
        return subprocess.run(
            ["git", "credential", operation],
            input=request,
            capture_output=True,
            env=env,
            cwd=self.home if os.path.isdir(self.home) else "/",
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
            user=self.uid if switch else None,
            group=self.gid if switch else None,
            extra_groups=[] if switch else None,
        )


def answer(host: HostGit, raw: bytes, allowlist: Callable[[], Iterable[str]]) -> bytes:
    """The bytes to send back for one request: for `get`, the host's credential lines (or
    nothing); for `store`/`erase`, nothing. Raises CredentialRequestError when refused.

    `allowlist` gives the agent's live firewall allowlist, read at each request."""
    request = parse_request(raw)
    server = request.field("host") or ""
    if not domain_allowed(host_name(server), allowlist()):
        raise CredentialRequestError(f"host {server[:80]!r} is not on the agent's allowlist")
    body = "".join(f"{key}={value}\n" for key, value in request.fields).encode() + b"\n"
    result = host.run(GIT_OPERATIONS[request.operation], body)
    if request.operation != "get" or result.returncode != 0:
        return b""
    fields = parse_answer(result.stdout)
    for key in ("protocol", "host"):  # an answer about another server is not passed on
        given = next((value for name, value in fields if name == key), None)
        if given is not None and given != request.field(key):
            raise CredentialRequestError(f"the host's helper answered for another {key}")
    return "".join(f"{key}={value}\n" for key, value in fields).encode()

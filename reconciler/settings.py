"""Settings: everything clawker takes from its environment, read once at each entry point.

The CLI, the control plane, the benchmarks and the tests each call `settings_from_env()` once
and pass the result down; nothing below an entry point reads `os.environ` (clawkerd does the
same with its own `settings_from_env`). The control plane records the settings it runs with and
reports them on `ping`; a CLI whose `agreement()` differs is refused, because the two would
otherwise plan, enrol and label with different values (a CP started under `sudo`, which resets
the environment, is the classic case). The CLI starts the CP with its own settings, serialised,
so the CP never depends on what survived `sudo`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from reconciler import naming
from reconciler.errors import UsageError

__all__ = ["Settings", "SettingsError", "code_identity", "settings_from_env"]

STATE_DIR_DEFAULT = Path("/var/lib/clawker")
PIN_DIR_DEFAULT = Path("/sys/fs/bpf/clawker")

# The environment variables, one place: name → Settings field (docs/development.md lists them).
ENVIRONMENT = {
    "CLAWKER_NETWORK": "network",
    "CLAWKER_CGROUP_PARENT": "cgroup_parent",
    "CLAWKER_SCOPE_LABELS": "scope_labels",
    "CLAWKER_STATE_DIR": "state_dir",
    "CLAWKER_BPF_PIN_DIR": "bpf_pin_dir",
    "CLAWKER_BPF_OBJECT": "bpf_object",
    "CLAWKER_DNS_PORT": "dns_port",
    "CLAWKER_DNS_UPSTREAM": "dns_upstream",
    "CLAWKER_DNS_SUBDOMAIN_LIMIT": "dns_subdomain_limit",
    "CLAWKER_RESYNC_SECONDS": "resync_seconds",
    "CLAWKER_CACHE_DIR": "cache_dir",
    "CLAWKER_HARNESS_VERSION": "harness_version",
    "CLAWKER_ALLOW_PULL": "allow_pull",
    "CLAWKER_API_UPSTREAM": "api_upstream",
    "CLAWKER_API_UPSTREAM_CA": "api_upstream_ca",
}


@functools.cache
def code_identity() -> str:
    """This clawker: its version and where its code lives. A control plane started from one
    checkout must not keep serving the CLI of another (they may disagree on every message).

    Worked out once per process: it names the code this process loaded, and looking the
    version up scans the installed distributions (~3 ms, paid by every CP call before)."""
    # Imported here: importlib.metadata (and the email package it loads) costs the verbs that
    # never talk to the control plane ~15 ms of start-up.
    import importlib.metadata  # noqa: PLC0415

    try:
        version = importlib.metadata.version("clawker")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"{version} ({Path(__file__).resolve().parents[1]})"


class SettingsError(UsageError, ValueError):
    """An environment variable has a value clawker cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """What this clawker installation runs with (defaults: a normal host installation)."""

    network: str = naming.NETWORK_NAME_DEFAULT
    cgroup_parent: str = naming.CGROUP_PARENT_DEFAULT
    # Extra labels stamped on everything created and required on everything listed:
    # `CLAWKER_SCOPE_LABELS="dev.clawker.test=abc"` isolates a test run from every other object.
    scope_labels: tuple[tuple[str, str], ...] = ()
    state_dir: Path = STATE_DIR_DEFAULT
    bpf_pin_dir: Path = PIN_DIR_DEFAULT
    bpf_object: Path | None = None  # None: bpf/build/egress.bpf.o
    dns_port: int = 0  # 0: a free port per resolver
    dns_upstream: str = ""  # ip[:port]; "": the host's first IPv4 nameserver
    dns_subdomain_limit: int = 20  # new names per leading-dot entry, agent and minute
    resync_seconds: float = 30.0
    cache_dir: Path | None = None  # None: $XDG_CACHE_HOME/clawker or ~/.cache/clawker
    harness_version: str = ""  # "": the pinned default
    allow_pull: bool = False
    # Only tests set it (CLAWKER_TEST_KILL_AFTER=CreateContainer): the CLI SIGKILLs itself
    # right after the first step of that action, as a user's worst day would.
    test_kill_after: str = ""
    # Where the API relay forwards the agents' API requests ("": https://api.anthropic.com),
    # and the CA bundle it trusts there ("": the system's); tests point both at a stub.
    api_upstream: str = ""
    api_upstream_ca: str = ""
    # The host user's side (forwarded files and agents): read by host_context from here.
    host_environment: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.scope_labels)

    @property
    def scope_id(self) -> str:
        """The value of `dev.clawker.scope`: every object records the scope that made it, and
        each scope lists only its own, so a default installation never sees a test run's
        objects (nor the other way round)."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.scope_labels)) or "default"

    def agreement(self) -> dict[str, str]:
        """The settings a CLI and the control plane it drives must share."""
        keep = ("network", "cgroup_parent", "scope_labels", "state_dir", "bpf_pin_dir")
        return {name: str(getattr(self, name)) for name in keep}

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in {"state_dir", "bpf_pin_dir"}:
                value = Path(value)
            elif f.name in {"bpf_object", "cache_dir"}:
                value = Path(value) if value else None
            elif f.name in {"scope_labels", "host_environment"}:
                value = tuple((str(k), str(v)) for k, v in value)
            kwargs[f.name] = value
        return cls(**kwargs)


# Variables of the host user's side that host_context reads (and the git/ssh/gpg ones it needs).
_HOST_KEYS = (
    "CLAWKER_HOST_HOME",
    "CLAWKER_SHARE_DIR",
    "CLAWKER_HOST_SSH_AUTH_SOCK",
    "CLAWKER_HOST_GPG_SOCKET",
    "SSH_AUTH_SOCK",
    "SUDO_USER",
    "HOME",
    "GNUPGHOME",
)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every CLAWKER_* setting once; a bad value is a SettingsError naming the variable."""
    env = os.environ if environ is None else environ

    def text(name: str) -> str:
        return env.get(name, "").strip()

    def number(name: str, default: float, *, integer: bool = False) -> float:
        raw = text(name)
        if not raw:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise SettingsError(f"{name}={raw!r} must be a finite number ≥ 0")
        return value

    labels: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text("CLAWKER_SCOPE_LABELS").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"CLAWKER_SCOPE_LABELS: {item!r} is not KEY=VALUE")
        labels.append((key.strip(), value.strip()))
    dns_port = int(number("CLAWKER_DNS_PORT", 0, integer=True))
    if dns_port > 65535:
        raise SettingsError(f"CLAWKER_DNS_PORT={dns_port} is not a port")
    cache = text("CLAWKER_CACHE_DIR")
    if not cache and text("XDG_CACHE_HOME"):
        cache = str(Path(text("XDG_CACHE_HOME")) / "clawker")
    resync = number("CLAWKER_RESYNC_SECONDS", 30.0)
    if resync == 0:
        raise SettingsError("CLAWKER_RESYNC_SECONDS must be more than 0")
    if text("CLAWKER_API_UPSTREAM") and not text("CLAWKER_API_UPSTREAM").startswith("https://"):
        raise SettingsError(
            f"CLAWKER_API_UPSTREAM={text('CLAWKER_API_UPSTREAM')!r} is not an https:// URL"
        )
    return Settings(
        network=text("CLAWKER_NETWORK") or naming.NETWORK_NAME_DEFAULT,
        cgroup_parent=text("CLAWKER_CGROUP_PARENT") or naming.CGROUP_PARENT_DEFAULT,
        scope_labels=tuple(labels),
        state_dir=Path(text("CLAWKER_STATE_DIR") or STATE_DIR_DEFAULT),
        bpf_pin_dir=Path(text("CLAWKER_BPF_PIN_DIR") or PIN_DIR_DEFAULT),
        bpf_object=Path(text("CLAWKER_BPF_OBJECT")) if text("CLAWKER_BPF_OBJECT") else None,
        dns_port=dns_port,
        dns_upstream=text("CLAWKER_DNS_UPSTREAM"),
        dns_subdomain_limit=int(number("CLAWKER_DNS_SUBDOMAIN_LIMIT", 20, integer=True)),
        resync_seconds=resync,
        cache_dir=Path(cache) if cache else None,
        harness_version=text("CLAWKER_HARNESS_VERSION"),
        allow_pull=text("CLAWKER_ALLOW_PULL") == "1",
        test_kill_after=text("CLAWKER_TEST_KILL_AFTER"),
        api_upstream=text("CLAWKER_API_UPSTREAM"),
        api_upstream_ca=text("CLAWKER_API_UPSTREAM_CA"),
        host_environment=tuple((k, env[k]) for k in _HOST_KEYS if k in env),
    )

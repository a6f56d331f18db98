"""clawkerd's configuration (environment and argv) and its bootstrap material.

The CP streams the bootstrap material into the stopped container before its first start
(DESIGN §6): the leaf certificate and key, the CA, and the single-use registration JWT. Anything
missing here is a container clawker did not prepare, so clawkerd refuses to start (exit 2) with
a message that says what is missing and what to do.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BOOTSTRAP_FILES",
    "BootError",
    "BootstrapMaterial",
    "Settings",
    "read_bootstrap",
    "settings_from_env",
]

DEFAULT_BOOTSTRAP_DIR = "/run/clawker/bootstrap"
DEFAULT_LISTEN = "0.0.0.0:7700"
DEFAULT_LOG = "/var/log/clawker/clawkerd.log"
DEFAULT_LOG_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_STATE_DIR = "/var/lib/clawker"
DEFAULT_USER = "claude"
BOOTSTRAP_FILES = ("cert.pem", "key.pem", "ca.pem", "register.jwt")

_RECREATE_HINT = (
    "clawker writes it when it creates the container; start agents with `clawker apply` or "
    "`clawker run`, or recreate this container with `clawker apply` if it was made by hand"
)


class BootError(Exception):
    """clawkerd cannot start; the message is for the person reading `docker logs`."""


@dataclass(frozen=True)
class Settings:
    """Everything clawkerd reads from its environment and argv, validated."""

    agent: str
    project: str
    user: str
    bootstrap_dir: Path
    listen: str
    log_path: Path
    log_max_bytes: int
    state_dir: Path
    workspace: str | None
    container_id: str
    command: tuple[str, ...]

    @property
    def initialized_marker(self) -> Path:
        """Exists once the CP sent AgentInitialized to this container (any earlier start)."""
        return self.state_dir / "initialized"


@dataclass(frozen=True)
class BootstrapMaterial:
    """The files of /run/clawker/bootstrap/, read once at boot."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    register_jwt: str


def settings_from_env(environ: Mapping[str, str], args: Sequence[str]) -> Settings:
    """Build Settings from CLAWKER_* / CLAWKERD_* variables and the user CMD in `args`.

    The user CMD is everything after an optional leading `--` (Docker passes CMD as the
    ENTRYPOINT's arguments).
    """
    agent = environ.get("CLAWKER_AGENT", "").strip()
    if not agent:
        raise BootError(f"CLAWKER_AGENT is not set; {_RECREATE_HINT}")
    command = tuple(args[1:] if args and args[0] == "--" else args)
    if not command:
        raise BootError(
            "no user command: clawkerd runs the command given as its arguments "
            '(ENTRYPOINT ["clawkerd"], CMD ["claude"]); set `command:` in the agent spec'
        )
    raw_max = environ.get("CLAWKERD_LOG_MAX_BYTES", "")
    try:
        log_max_bytes = int(raw_max) if raw_max else DEFAULT_LOG_MAX_BYTES
    except ValueError:
        raise BootError(f"CLAWKERD_LOG_MAX_BYTES={raw_max!r} is not a number of bytes") from None
    if log_max_bytes <= 0:
        raise BootError(f"CLAWKERD_LOG_MAX_BYTES={raw_max!r} must be positive")
    return Settings(
        agent=agent,
        project=environ.get("CLAWKER_PROJECT", "").strip(),
        user=environ.get("CLAWKER_USER", "").strip() or DEFAULT_USER,
        bootstrap_dir=Path(environ.get("CLAWKERD_BOOTSTRAP_DIR") or DEFAULT_BOOTSTRAP_DIR),
        listen=environ.get("CLAWKERD_LISTEN") or DEFAULT_LISTEN,
        log_path=Path(environ.get("CLAWKERD_LOG") or DEFAULT_LOG),
        log_max_bytes=log_max_bytes,
        state_dir=Path(environ.get("CLAWKERD_STATE_DIR") or DEFAULT_STATE_DIR),
        workspace=environ.get("CLAWKER_WORKSPACE") or None,
        container_id=socket.gethostname(),
        command=command,
    )


def read_bootstrap(directory: Path) -> BootstrapMaterial:
    """Read cert.pem, key.pem, ca.pem and register.jwt; BootError names every missing file."""
    missing = [name for name in BOOTSTRAP_FILES if not (directory / name).is_file()]
    if missing:
        raise BootError(
            f"bootstrap material missing in {directory}: {', '.join(missing)}; {_RECREATE_HINT}"
        )
    try:
        cert, key, ca, token = ((directory / name).read_bytes() for name in BOOTSTRAP_FILES)
    except OSError as exc:
        raise BootError(f"cannot read bootstrap material in {directory}: {exc}") from exc
    register_jwt = token.decode("ascii", errors="replace").strip()
    empty = [
        name
        for name, data in zip(BOOTSTRAP_FILES, (cert, key, ca, register_jwt), strict=True)
        if not data
    ]
    if empty:
        raise BootError(f"bootstrap material in {directory} is empty: {', '.join(empty)}")
    # gRPC's own complaint about a bad PEM is a bind failure; name the file instead.
    for name, data, marker in (
        ("cert.pem", cert, b"-----BEGIN CERTIFICATE-----"),
        ("ca.pem", ca, b"-----BEGIN CERTIFICATE-----"),
        ("key.pem", key, b"PRIVATE KEY-----"),
    ):
        if marker not in data:
            raise BootError(f"{directory / name} is not PEM ({marker.decode()} expected)")
    return BootstrapMaterial(cert_pem=cert, key_pem=key, ca_pem=ca, register_jwt=register_jwt)

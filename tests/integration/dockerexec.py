"""`docker exec` for tests, typed: docker-py's stubs disagree with docker-py about exec ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import docker


def exec_id(
    api: docker.APIClient,
    container: str,
    argv: Sequence[str],
    *,
    user: str = "",
    environment: Mapping[str, str] | None = None,
    tty: bool = False,
    stdin: bool = False,
) -> str:
    created: Any = api.exec_create(
        container, list(argv), user=user, environment=dict(environment or {}), tty=tty, stdin=stdin
    )
    return str(created["Id"])


def exec_in(
    api: docker.APIClient,
    container: str,
    argv: Sequence[str],
    *,
    user: str = "",
    environment: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run `argv` in `container`; its exit code and output (stdout and stderr, decoded)."""
    ident = exec_id(api, container, argv, user=user, environment=environment)
    out: bytes = api.exec_start(ident)
    code: Any = api.exec_inspect(ident)["ExitCode"]
    return int(code), out.decode(errors="replace")

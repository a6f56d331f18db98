"""`clawkerd [--] CMD...`: boot, then supervise the container (`python -m clawkerd` runs it)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Mapping, Sequence

from clawkerd import CONTAINER_ENVIRONMENT, __version__
from clawkerd.bootstrap import BootError, read_bootstrap, settings_from_env
from clawkerd.exit_status import EXIT_BOOT_FAILED
from clawkerd.identity import UnknownUserError, resolve_user
from clawkerd.logging_setup import configure_logging
from clawkerd.supervisor import supervise

__all__ = ["main", "run"]


def run(args: Sequence[str], environ: Mapping[str, str]) -> int:
    """Boot clawkerd and supervise the container; return the exit code."""
    try:
        settings = settings_from_env(environ, args)
    except BootError as exc:
        print(f"clawkerd: cannot start: {exc}", file=sys.stderr, flush=True)
        return EXIT_BOOT_FAILED
    log = configure_logging(settings.log_path, settings.log_max_bytes)
    log.info(
        "boot",
        version=__version__,
        agent=settings.agent,
        project=settings.project,
        user=settings.user,
        pid=os.getpid(),
    )
    try:
        material = read_bootstrap(settings.bootstrap_dir)
        user = resolve_user(settings.user)
    except (BootError, UnknownUserError) as exc:
        message = str(exc)
        if isinstance(exc, UnknownUserError):
            message += "; set CLAWKER_USER to a user of the image (default: claude)"
        log.error("boot_failed", error=message)
        print(f"clawkerd: cannot start: {message}", file=sys.stderr, flush=True)
        return EXIT_BOOT_FAILED
    return asyncio.run(supervise(settings, material, user, log, environ=environ))


def main() -> None:
    """Console entry point: `clawkerd [--] CMD...`."""
    # `python -m clawkerd` imports with the collector off (see __main__); the imports' objects
    # live as long as clawkerd, so they leave the collector's generations for good.
    gc.freeze()
    gc.enable()
    sys.exit(run(sys.argv[1:], CONTAINER_ENVIRONMENT))

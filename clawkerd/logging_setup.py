"""clawkerd's log: JSON lines in /var/log/clawker/clawkerd.log, rotated at 50 MB x 3.

The container's stdout/stderr belong to the user CMD (and its TTY), so clawkerd writes its own
record to a file; only boot failures also go to stderr, where `docker logs` shows them.
Never log step output, env values or tokens: the log outlives the session and is not a secret.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path

__all__ = ["LOG_BACKUPS", "EventLog", "JsonLineFormatter", "configure_logging"]

LOG_BACKUPS = 3
_LOGGER_NAME = "clawkerd"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class EventLog:
    """A logger that takes an event name and keyword fields: `log.info("cmd_started", pid=7)`."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def info(self, event: str, **fields: object) -> None:
        """Record a normal event."""
        self._logger.info(event, extra={"fields": fields})

    def warning(self, event: str, **fields: object) -> None:
        """Record something unexpected that clawkerd handled."""
        self._logger.warning(event, extra={"fields": fields})

    def error(self, event: str, **fields: object) -> None:
        """Record a failure."""
        self._logger.error(event, extra={"fields": fields})

    def exception(self, event: str, **fields: object) -> None:
        """Record a failure with the current exception's traceback."""
        self._logger.error(event, exc_info=True, extra={"fields": fields})


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates each log file 0640 rather than by the umask (which the CMD inherits, so
    clawkerd does not change it)."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def configure_logging(path: Path, max_bytes: int, backups: int = LOG_BACKUPS) -> EventLog:
    """Log JSON lines to `path`, rotated at `max_bytes`, keeping `backups` old files.

    If the file cannot be opened (a read-only or foreign image layout), log to stderr instead
    rather than refuse to supervise the agent.
    """
    logger = logging.getLogger(_LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        handler = _PrivateRotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        fallback_reason = None
    except OSError as exc:
        handler = logging.StreamHandler(sys.stderr)
        fallback_reason = str(exc)
    handler.setFormatter(JsonLineFormatter())
    logger.addHandler(handler)
    log = EventLog(logger)
    if fallback_reason is not None:
        log.warning("log_file_unusable", path=str(path), error=fallback_reason)
    return log

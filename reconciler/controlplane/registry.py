"""The control plane's sqlite registry: registrations, used tokens, agent runtime specs and the
per-start status the CLI waits on. One connection, one lock: the CP's threads are few."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from reconciler.controlplane.api.messages import AgentRuntimeSpec, Phase, StartStatus, StepRecord
from reconciler.firewall.state import AgentFirewall

# The wire types are the API's (api/messages.py); re-exported for the modules that store them.
__all__ = ["AgentRuntimeSpec", "Phase", "Registry", "StartStatus", "StepRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    container_id TEXT PRIMARY KEY, agent_key TEXT NOT NULL, container_name TEXT NOT NULL,
    thumbprint TEXT NOT NULL, registered_at REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS used_tokens (jti TEXT PRIMARY KEY, used_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS firewall (
    agent_key TEXT PRIMARY KEY, domains TEXT NOT NULL, disabled INTEGER NOT NULL,
    bypass_until REAL NOT NULL, bypass_boot TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS agent_runtime (agent_key TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS post_init_done (agent_key TEXT PRIMARY KEY, done_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS start_status (
    container_id TEXT PRIMARY KEY, agent_key TEXT NOT NULL, started_at TEXT NOT NULL,
    phase TEXT NOT NULL, detail TEXT NOT NULL, steps TEXT NOT NULL, updated_at REAL NOT NULL,
    timings TEXT NOT NULL DEFAULT '{}');
"""


class Registry:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(start_status)")}
        if "timings" not in columns:  # a registry written before timings were recorded
            self._db.execute(
                "ALTER TABLE start_status ADD COLUMN timings TEXT NOT NULL DEFAULT '{}'"
            )
        if "initialized" not in columns:  # a registry written before Initialized was recorded
            self._db.execute(
                "ALTER TABLE start_status ADD COLUMN initialized INTEGER NOT NULL DEFAULT 0"
            )
        if "runtime" not in columns:  # ... or before each start recorded its runtime spec
            self._db.execute("ALTER TABLE start_status ADD COLUMN runtime TEXT NOT NULL DEFAULT ''")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(firewall)")}
        if "bypass_boot" not in columns:  # wall-clock deadlines of old: read as no bypass
            self._db.execute("ALTER TABLE firewall ADD COLUMN bypass_boot TEXT NOT NULL DEFAULT ''")
        path.chmod(0o600)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- registrations ---------------------------------------------------------------------
    def is_registered(self, container_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM registrations WHERE container_id=?", (container_id,)
            ).fetchone()
        return row is not None

    def register(
        self,
        container_id: str,
        agent_key: str,
        container_name: str,
        thumbprint: str,
        jti: str = "",
    ) -> bool:
        """Record a registration and, with `jti`, its token as used, in one transaction: a CP
        killed in between never leaves a token burnt without the registration it paid for
        (which would refuse the container forever). False when the token was used before."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if jti:
                    self._db.execute("INSERT INTO used_tokens VALUES (?,?)", (jti, now))
                self._db.execute(
                    "INSERT OR REPLACE INTO registrations VALUES (?,?,?,?,?,?)",
                    (container_id, agent_key, container_name, thumbprint, now, now),
                )
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                return False
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return True

    def touch(self, container_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE registrations SET last_seen=? WHERE container_id=?",
                (time.time(), container_id),
            )

    def thumbprint(self, container_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT thumbprint FROM registrations WHERE container_id=?", (container_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def use_token(self, jti: str) -> bool:
        """Record a registration token as used; False when it was used before (a replay)."""
        with self._lock:
            try:
                self._db.execute("INSERT INTO used_tokens VALUES (?,?)", (jti, time.time()))
            except sqlite3.IntegrityError:
                return False
        return True

    def token_used(self, jti: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM used_tokens WHERE jti=?", (jti,)).fetchone()
        return row is not None

    # -- agent runtime specs -----------------------------------------------------------------
    def put_runtime(self, spec: AgentRuntimeSpec) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO agent_runtime VALUES (?,?)",
                (spec.agent_key, json.dumps(asdict(spec))),
            )

    def runtime(self, agent_key: str) -> AgentRuntimeSpec:
        """The agent's runtime spec; the defaults (no steps) when apply never wrote one."""
        with self._lock:
            row = self._db.execute(
                "SELECT spec FROM agent_runtime WHERE agent_key=?", (agent_key,)
            ).fetchone()
        return _runtime_row(json.loads(row[0])) if row else AgentRuntimeSpec(agent_key)

    def runtimes(self) -> dict[str, AgentRuntimeSpec]:
        """Every runtime spec apply wrote, by agent key."""
        with self._lock:
            rows = self._db.execute("SELECT agent_key, spec FROM agent_runtime").fetchall()
        return {str(key): _runtime_row(json.loads(spec)) for key, spec in rows}

    # -- post_init (its marker lives on the config volume; this is the CP's record of it) ---
    def mark_post_init_done(self, agent_key: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO post_init_done VALUES (?,?)", (agent_key, time.time())
            )

    def forget_post_init(self, agent_key: str) -> None:
        """A new config volume has no marker: post_init runs again at its first start."""
        with self._lock:
            self._db.execute("DELETE FROM post_init_done WHERE agent_key=?", (agent_key,))

    def post_init_done(self) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT agent_key FROM post_init_done").fetchall()
        return {str(row[0]) for row in rows}

    # -- firewall policies (reconciler.firewall.state.FirewallStore) ------------------------
    def firewall(self, agent_key: str) -> AgentFirewall | None:
        with self._lock:
            row = self._db.execute(
                "SELECT agent_key, domains, disabled, bypass_until, bypass_boot FROM firewall "
                "WHERE agent_key=?",
                (agent_key,),
            ).fetchone()
        return _firewall_row(row) if row else None

    def put_firewall(self, state: AgentFirewall) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO firewall VALUES (?,?,?,?,?)",
                (
                    state.agent_key,
                    json.dumps(list(state.domains)),
                    int(state.disabled),
                    state.bypass_until,
                    state.bypass_boot,
                ),
            )

    def forget_firewall(self, agent_key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM firewall WHERE agent_key=?", (agent_key,))

    def forget_runtime(self, agent_key: str) -> None:
        """Drop a deleted agent's runtime spec: the registry follows the objects."""
        with self._lock:
            self._db.execute("DELETE FROM agent_runtime WHERE agent_key=?", (agent_key,))

    def firewalls(self) -> list[AgentFirewall]:
        with self._lock:
            rows = self._db.execute(
                "SELECT agent_key, domains, disabled, bypass_until, bypass_boot FROM firewall "
                "ORDER BY agent_key"
            ).fetchall()
        return [_firewall_row(row) for row in rows]

    # -- start status ------------------------------------------------------------------------
    def put_status(self, status: StartStatus) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO start_status (container_id, agent_key, started_at, phase, "
                "detail, steps, updated_at, timings, initialized, runtime) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    status.container_id,
                    status.agent_key,
                    status.started_at,
                    status.phase,
                    status.detail,
                    json.dumps([asdict(s) for s in status.steps]),
                    time.time(),
                    json.dumps(dict(status.timings)),
                    int(status.initialized),
                    json.dumps(asdict(status.runtime)) if status.runtime else "",
                ),
            )

    def status(self, container_id: str) -> StartStatus | None:
        with self._lock:
            row = self._db.execute(
                "SELECT container_id, agent_key, started_at, phase, detail, steps, timings, "
                "initialized, runtime FROM start_status WHERE container_id=?",
                (container_id,),
            ).fetchone()
        return None if row is None else _status_row(row)

    def statuses(self, container_ids: Iterable[str]) -> dict[str, StartStatus]:
        """`status` of many containers in one query: those with a record, by id."""
        ids = list(dict.fromkeys(container_ids))
        found: dict[str, StartStatus] = {}
        for begin in range(0, len(ids), 500):  # under SQLite's limit of bound parameters
            chunk = ids[begin : begin + 500]
            with self._lock:
                rows = self._db.execute(
                    "SELECT container_id, agent_key, started_at, phase, detail, steps, timings, "
                    "initialized, runtime FROM start_status WHERE container_id IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
            found.update((row[0], _status_row(row)) for row in rows)
        return found

    def forget_containers_except(self, alive: set[str]) -> None:
        """Drop status rows of containers that no longer exist (registrations are kept)."""
        with self._lock:
            rows = self._db.execute("SELECT container_id FROM start_status").fetchall()
            for (cid,) in rows:
                if cid not in alive:
                    self._db.execute("DELETE FROM start_status WHERE container_id=?", (cid,))


def _status_row(row: tuple[Any, ...]) -> StartStatus:
    return StartStatus(
        row[0],
        row[1],
        row[2],
        Phase(row[3]),
        row[4],
        tuple(StepRecord(**s) for s in json.loads(row[5])),
        json.loads(row[6]),
        bool(row[7]),
        _runtime_row(json.loads(row[8])) if row[8] else None,
    )


def _runtime_row(data: dict[str, Any]) -> AgentRuntimeSpec:
    # A row written by another clawker version may lack fields (defaults) or carry others.
    known = {f.name for f in fields(AgentRuntimeSpec)}
    return AgentRuntimeSpec(**{k: v for k, v in data.items() if k in known})


def _firewall_row(row: tuple[Any, ...]) -> AgentFirewall:
    return AgentFirewall(
        str(row[0]), tuple(json.loads(row[1])), bool(row[2]), float(row[3]), str(row[4])
    )

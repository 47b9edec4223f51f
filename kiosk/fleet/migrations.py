"""Versioned schema migrations, run by the product on start (one transaction, under a lock).

Versions:
1. the collector's first store: one `events` table (id, site, device, seq, ts, received_at, event JSON),
   no version table;
2. the console's tables (sites, devices, checkins, counts, users, roles, audit, settings, staff, roster
   pushes and results); version-1 events are copied into `checkins` and `counts`, then `events` is dropped;
3. `bundles` (offline bundles imported by hand).

A migration is a function of the connection. Until a table changes shape, its migration creates it from
`schema.py`; the migration that changes it writes the old shape here first, so every step stays what it was.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Callable

from sqlalchemy import Connection, Engine, inspect, select, text

from kiosk.fleet import schema
from kiosk.fleet.db import IMMEDIATE

log = logging.getLogger("kiosk.fleet.migrations")

LEGACY_EVENTS = "events"


def _v2(conn: Connection) -> None:
    for table in (schema.sites, schema.devices, schema.checkins, schema.counts, schema.users, schema.roles,
                  schema.audit, schema.settings, schema.staff, schema.roster_pushes, schema.roster_results):
        table.create(conn)
    if inspect(conn).has_table(LEGACY_EVENTS):
        _copy_legacy_events(conn)
        conn.execute(text(f"DROP TABLE {LEGACY_EVENTS}"))


def _copy_legacy_events(conn: Connection) -> None:
    from kiosk.fleet.events import normalise, store_rows  # the one definition of a stored check-in

    copied = 0
    result = conn.execute(text(f"SELECT event, received_at FROM {LEGACY_EVENTS}"))
    while True:
        chunk = result.fetchmany(5000)
        if not chunk:
            break
        rows = []
        for event_json, received_at in chunk:
            try:
                row, _ = normalise(json.loads(event_json), received_ms=int(received_at * 1000))
            except ValueError:
                continue
            if row is not None:
                rows.append(row)
        copied += store_rows(conn, rows)
    log.info("copied %d check-ins from the collector's version-1 table", copied)


def _v3(conn: Connection) -> None:
    schema.bundles.create(conn)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(2, _v2), (3, _v3)]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    """0: an empty database; 1: the collector's first store; else the recorded version."""
    inspector = inspect(conn)
    if inspector.has_table("schema_version"):
        return int(conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() or 0)
    return 1 if inspector.has_table(LEGACY_EVENTS) else 0


def upgrade(engine: Engine, target: int = LATEST) -> int:
    """Bring the database to `target`; returns the version it had. Safe to call from several processes."""
    with engine.connect().execution_options(**{IMMEDIATE: True}) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(727001)"))   # one migrating process at a time
            else:
                # take SQLite's write lock now, so a second process waits instead of migrating too
                conn.execute(text("CREATE TABLE IF NOT EXISTS schema_lock (x INTEGER)"))
                conn.execute(text("DELETE FROM schema_lock"))
            before = current_version(conn)
            if before > LATEST:
                from kiosk.errors import StorageError

                raise StorageError(f"the console database is at schema version {before}, newer than this "
                                   f"program ({LATEST}): upgrade the program")
            if before < target and not inspect(conn).has_table("schema_version"):
                conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ms BIGINT)"))
            for version, step in MIGRATIONS:
                if before < version <= target:
                    step(conn)
                    conn.execute(text("INSERT INTO schema_version (version, applied_ms) VALUES (:v, :t)"),
                                 {"v": version, "t": int(time.time() * 1000)})
                    log.info("console database upgraded to schema version %d", version)
    return before


def applied(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(text("version")).select_from(text("schema_version"))
                                           .order_by(text("version")))]

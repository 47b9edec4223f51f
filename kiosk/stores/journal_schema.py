"""Creating and migrating the journal file's schema, in place, on open.

Schema 1 (kept here verbatim: the migration reads it and the tests build journals with it) had
`seq AUTOINCREMENT`, a random `id UNIQUE` and indexes on time, upload state and subject_ref, on 4 KB pages.
Schema 2 is described in `kiosk.stores.checkins`. Migration keeps every row, its seq, its id (stored, since
consumers already hold it) and its upload state, then indexes the rows in segments and, when the disk has
room for a second copy, rewrites the file with 1 KB pages.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from kiosk.errors import StorageError
from kiosk.stores import journal_index
from kiosk.stores.checkins import DDL, PAGE_SIZE, PENDING, QUEUED_SQL, SCHEMA_VERSION, TABLE_DDL, UID_HEX

log = logging.getLogger(__name__)

# Schema 1 verbatim, never derived from today's table: a migration must read exactly what was written.
V1_DDL = """
CREATE TABLE IF NOT EXISTS checkins (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  ts TEXT NOT NULL,
  ts_epoch REAL NOT NULL,
  clock_synced INTEGER NOT NULL,
  site TEXT NOT NULL, device TEXT NOT NULL,
  direction TEXT NOT NULL, mode TEXT NOT NULL,
  kind TEXT, verdict TEXT NOT NULL, reason TEXT NOT NULL,
  subject TEXT NOT NULL,
  subject_ref TEXT,
  override INTEGER NOT NULL DEFAULT 0,
  latency_ms REAL,
  up_state TEXT NOT NULL DEFAULT 'pending',
  up_published_at REAL,
  up_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS checkins_ts ON checkins(ts_epoch);
CREATE INDEX IF NOT EXISTS checkins_up ON checkins(up_state, seq);
CREATE INDEX IF NOT EXISTS checkins_ref ON checkins(subject_ref, ts_epoch);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
V1_INSERT_COLUMNS = ("id", "ts", "ts_epoch", "clock_synced", "site", "device", "direction", "mode", "kind",
                     "verdict", "reason", "subject", "subject_ref", "override", "latency_ms")
V1_INSERT = (f"INSERT INTO checkins ({', '.join(V1_INSERT_COLUMNS)}) "
             f"VALUES ({', '.join('?' * len(V1_INSERT_COLUMNS))})")

_COLUMNS = ("seq, id, ts, ts_epoch, clock_synced, site, device, direction, mode, kind, verdict, reason, subject, "
            "subject_ref, override, latency_ms, up_state, up_published_at, up_attempts")


def new_uid(site: str, device: str) -> str:
    """A journal's random id, mixed with the device's name (a copied SD card still gets its own on restore)."""
    digest = hashlib.blake2b(f"{site}/{device}".encode() + os.urandom(16), digest_size=UID_HEX // 2)
    return digest.hexdigest()


def statements(ddl: str) -> list[str]:
    # One statement at a time: executescript() would COMMIT behind our transaction.
    return [s.strip() for s in ddl.split(";") if s.strip()]


def prepare_new_file(db: sqlite3.Connection) -> None:
    """Before the first table exists: 1 KB pages (fixed once WAL is on, or after a VACUUM)."""
    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")


def migrate(db: sqlite3.Connection, path: Path, site: str, device: str) -> bool:
    """Bring the schema to SCHEMA_VERSION inside the caller's write transaction. True when schema 1 was
    migrated (the caller may then rewrite the file with 1 KB pages: `repage`)."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StorageError(f"the journal {path} has schema version {version}, newer than this "
                           f"software ({SCHEMA_VERSION}): update the kiosk software")
    if version == SCHEMA_VERSION:
        return False
    had_v1 = version == 1
    if had_v1:
        log.warning("journal %s: migrating schema 1 to %d in place (once)", path, SCHEMA_VERSION)
        _v1_to_v2(db)
    else:
        for statement in statements(DDL):
            db.execute(statement)
    last = db.execute("SELECT coalesce(max(seq), 0) FROM checkins").fetchone()[0]
    floor = int(db.execute("SELECT coalesce((SELECT value FROM meta WHERE key = 'seq_floor'), 0)").fetchone()[0])
    db.execute("INSERT INTO id_epochs (first_seq, uid) VALUES (?, ?)", (max(last, floor) + 1, new_uid(site, device)))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return had_v1


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """Rebuild `checkins` without AUTOINCREMENT and its per-insert indexes; keep ids, seqs and states."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'checkins'").fetchone()
    last_given = row[0] if row else 0
    # Floors from schema 1's state index, before it goes.
    pending_floor = db.execute("SELECT min(seq) FROM checkins WHERE up_state = ?", (PENDING,)).fetchone()[0]
    queued_floor = db.execute(f"SELECT min(seq) FROM checkins WHERE up_state IN {QUEUED_SQL}").fetchone()[0]
    db.execute(TABLE_DDL.replace("CREATE TABLE IF NOT EXISTS checkins", "CREATE TABLE checkins_v2"))
    db.execute(f"INSERT INTO checkins_v2 ({_COLUMNS}) SELECT {_COLUMNS} FROM checkins ORDER BY seq")
    db.execute("DROP TABLE checkins")  # its indexes go with it
    db.execute("ALTER TABLE checkins_v2 RENAME TO checkins")
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'checkins'")
    for statement in statements(DDL):
        db.execute(statement)
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_floor', ?)", (last_given,))
    end = last_given + 1
    db.executemany("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES (?, ?)",
                   (("pending_floor", pending_floor or end), ("queued_floor", queued_floor or end)))
    while journal_index.catch_up(db):
        pass


def repage(db: sqlite3.Connection, path: Path) -> None:
    """Rewrite the file with 1 KB pages (VACUUM, outside WAL) when the disk holds a second copy; else keep
    the old page size: the schema is migrated either way, only the write saving waits."""
    if db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE:
        return
    log.warning("journal %s: rewriting it with %d-byte pages (once)", path, PAGE_SIZE)
    size = path.stat().st_size
    if shutil.disk_usage(path.parent).free < 2 * size + (16 << 20):
        log.warning("journal %s: not enough free space to rewrite it with %d-byte pages; keeping its page size",
                    path, PAGE_SIZE)
        return
    db.execute("PRAGMA busy_timeout = 0")
    try:
        db.execute("PRAGMA journal_mode = DELETE")  # needs every other connection closed
    except sqlite3.OperationalError as exc:
        log.warning("journal %s: another connection has it open (%s); its page size changes at a later start",
                    path, exc)
        return
    finally:
        db.execute("PRAGMA busy_timeout = 30000")
    try:
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        db.execute("VACUUM")
    finally:
        db.execute("PRAGMA journal_mode = WAL")

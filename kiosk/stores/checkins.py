"""The `checkins` table of the journal file: its one definition, used by the journal and the outbox.

One row per check-in, never rewritten except for its upload state (`up_*`), which only moves forward:
pending -> published (broker PUBACK) -> confirmed (consumer ack), or pending/published -> dropped.

Schema 2 is shaped by SD-card wear (issue 13; `bench/journal.py` measures it): an insert, one fsynced
transaction, dirties one table page and nothing else. Measured on ext4 with 1 KB pages, per check-in through
`/proc/self/io` write_bytes: the bare table 6.0 KB, plus an appended index 7.9 KB, plus a random-key index
(subject_ref, a uuid `id UNIQUE`) 17.6 KB; schema 1 (4 KB pages, AUTOINCREMENT, four indexes) 45 KB. So:
- `seq` is the row id without AUTOINCREMENT (no sqlite_sequence page per insert); `seq_floor` in `meta`
  keeps it monotonic when a purge takes the newest rows;
- the event id is derived, not stored: the journal's random id (`id_epochs`, made when the file is created,
  and again for a backup copy, so a new or restored journal never reuses an id) and the seq in hex.
  `id` holds only the random ids of rows migrated from schema 1 (a partial index, untouched by new rows);
- no secondary index on the insert path: time ranges, trace and counts go through `segments`,
  `segment_refs` and `tallies`, written for a few hundred rows at a time (`kiosk.stores.journal_index`);
- the outbox keeps its state in the row (no index on it) and two floors in `outbox_meta`: every row below
  `pending_floor` has left `pending`, every row below `queued_floor` is confirmed or dropped.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable

SCHEMA_VERSION = 2
PAGE_SIZE = 1024  # a commit writes whole pages: 1 KB pages write a quarter of the default's 4 KB
# Version of the masking rules the stored subjects follow (meta key `masking`); older rows are re-masked once.
MASKING_VERSION = 2

PENDING, PUBLISHED, CONFIRMED, DROPPED = "pending", "published", "confirmed", "dropped"
UPLOAD_STATES = (PENDING, PUBLISHED, CONFIRMED, DROPPED)
QUEUED_STATES = (PENDING, PUBLISHED)  # not yet stored by the consumer: still to be sent, or sent again
QUEUED_SQL = "(" + ", ".join(f"'{s}'" for s in QUEUED_STATES) + ")"

TABLE_DDL = f"""
CREATE TABLE IF NOT EXISTS checkins (
  seq INTEGER PRIMARY KEY,
  id TEXT,
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
  up_state TEXT NOT NULL DEFAULT '{PENDING}',
  up_published_at REAL,
  up_attempts INTEGER NOT NULL DEFAULT 0
)"""

DDL = TABLE_DDL + f""";
CREATE UNIQUE INDEX IF NOT EXISTS checkins_legacy_id ON checkins(id) WHERE id IS NOT NULL;
CREATE INDEX IF NOT EXISTS checkins_dropped ON checkins(seq) WHERE up_state = '{DROPPED}';
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value REAL);
CREATE TABLE IF NOT EXISTS id_epochs (first_seq INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS segments (
  segment INTEGER PRIMARY KEY, seq_lo INTEGER NOT NULL, seq_hi INTEGER NOT NULL,
  ts_min REAL NOT NULL, ts_max REAL NOT NULL, rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS segment_refs (
  segment INTEGER NOT NULL, subject_ref TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (segment, subject_ref, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tallies (
  bucket INTEGER NOT NULL, direction TEXT NOT NULL, verdict TEXT NOT NULL, kind TEXT NOT NULL,
  n INTEGER NOT NULL, PRIMARY KEY (bucket, direction, verdict, kind)) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS checkin_events AS
  SELECT c.*, coalesce(c.id, (SELECT e.uid FROM id_epochs e WHERE e.first_seq <= c.seq
                              ORDER BY e.first_seq DESC LIMIT 1) || printf('%016x', c.seq)) AS event_id
  FROM checkins c
"""

# The next seq: above every row and every purged row (no AUTOINCREMENT, see the module docstring).
NEXT_SEQ = ("(SELECT max(coalesce((SELECT max(seq) FROM checkins), 0), "
            "coalesce((SELECT value FROM meta WHERE key = 'seq_floor'), 0)) + 1)")

# The columns a new check-in is written with (the rest take their defaults), in INSERT order.
INSERT_COLUMNS = ("ts", "ts_epoch", "clock_synced", "site", "device", "direction", "mode", "kind", "verdict",
                  "reason", "subject", "subject_ref", "override", "latency_ms")
INSERT = (f"INSERT INTO checkins (seq, {', '.join(INSERT_COLUMNS)}) "
          f"VALUES ({NEXT_SEQ}, {', '.join('?' * len(INSERT_COLUMNS))})")

# Rows as events: every column of `checkins`, with `id` the event id (stored or derived).
EVENT_COLUMNS = ", ".join(["seq", "event_id AS id", "ts", "ts_epoch", "clock_synced", "site", "device", "direction",
                           "mode", "kind", "verdict", "reason", "subject", "subject_ref", "override", "latency_ms",
                           "up_state", "up_published_at", "up_attempts"])
SELECT_EVENTS = f"SELECT {EVENT_COLUMNS} FROM checkin_events"

UID_HEX = 16  # the journal's random id: 64 bits, hex; with 16 hex digits of seq an id is 32 hex like a uuid


def event_id(uid: str, seq: int) -> str:
    """The event id of `seq` in the journal epoch `uid` (what `checkin_events.event_id` computes)."""
    return f"{uid}{seq:016x}"


def event_from_row(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """The MQTT / export form of one journal row (`v` 1)."""
    return {
        "v": 1,
        "id": row["id"],
        "seq": row["seq"],
        "ts": row["ts"],
        "clock_synced": bool(row["clock_synced"]),
        "site": row["site"],
        "device": row["device"],
        "direction": row["direction"],
        "mode": row["mode"],
        "kind": row["kind"],
        "verdict": row["verdict"],
        "reason": row["reason"],
        "subject": json.loads(row["subject"]),
        "subject_ref": row["subject_ref"],
        "override": bool(row["override"]),
    }


def remask_rows(db: sqlite3.Connection, remask: Callable[[str | None, dict[str, Any]], dict[str, Any]]) -> int:
    """Bring subjects stored under older masking rules to today's (once per journal, noted in `meta`); rows changed.

    Run inside the caller's write transaction. At 10,000 check-ins a day and 21 days kept, that is one pass over
    about 210,000 small JSON objects, on the first start after the upgrade only."""
    row = db.execute("SELECT value FROM meta WHERE key = 'masking'").fetchone()
    if row is not None and int(row[0]) >= MASKING_VERSION:
        return 0
    changed = []
    for seq, kind, text in db.execute("SELECT seq, kind, subject FROM checkins"):
        subject = json.loads(text)
        current = remask(kind, subject)
        if current != subject:
            changed.append((json.dumps(current, ensure_ascii=False, sort_keys=True), seq))
    db.executemany("UPDATE checkins SET subject = ? WHERE seq = ?", changed)
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('masking', ?)", (str(MASKING_VERSION),))
    return len(changed)

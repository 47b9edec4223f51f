"""The `checkins` table of the journal file: its one definition, used by the journal and the outbox.

One row per check-in, never rewritten except for its upload state (`up_*`), which only moves forward:
pending -> published (broker PUBACK) -> confirmed (consumer ack), or pending/published -> dropped.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable

SCHEMA_VERSION = 1
# Version of the masking rules the stored subjects follow (meta key `masking`); older rows are re-masked once.
MASKING_VERSION = 2

PENDING, PUBLISHED, CONFIRMED, DROPPED = "pending", "published", "confirmed", "dropped"
UPLOAD_STATES = (PENDING, PUBLISHED, CONFIRMED, DROPPED)
QUEUED_STATES = (PENDING, PUBLISHED)  # not yet stored by the consumer: still to be sent, or sent again
QUEUED_SQL = "(" + ", ".join(f"'{s}'" for s in QUEUED_STATES) + ")"

DDL = f"""
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
  up_state TEXT NOT NULL DEFAULT '{PENDING}',
  up_published_at REAL,
  up_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS checkins_ts ON checkins(ts_epoch);
CREATE INDEX IF NOT EXISTS checkins_up ON checkins(up_state, seq);
CREATE INDEX IF NOT EXISTS checkins_ref ON checkins(subject_ref, ts_epoch);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

# The columns a new check-in is written with (the rest take their defaults), in INSERT order.
INSERT_COLUMNS = ("id", "ts", "ts_epoch", "clock_synced", "site", "device", "direction", "mode", "kind", "verdict",
                  "reason", "subject", "subject_ref", "override", "latency_ms")
INSERT = (f"INSERT INTO checkins ({', '.join(INSERT_COLUMNS)}) "
          f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))})")


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

"""The fleet's event store: every check-in once, keyed by its event id (SQLite, WAL)."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from kiosk.errors import StorageError

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT,
    received_at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_device_seq ON events (site, device, seq);
"""


class EventStore:
    """Check-ins by event id; `add` is idempotent, so a re-sent event is stored once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # made on one thread, then used only by the thread that runs the collector
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.executescript(_DDL)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the collector database {self.path}: {exc}") from None

    def add(self, events: list[dict]) -> int:
        """Store in one committed transaction; returns how many were new."""
        now = time.time()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO events (id, site, device, seq, ts, received_at, event) VALUES (?,?,?,?,?,?,?)",
                [(e["id"], e["site"], e["device"], e["seq"], e["ts"], now, json.dumps(e, ensure_ascii=False))
                 for e in events])
            added = self.db.total_changes - before
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StorageError(f"collector database write failed: {exc} (check free disk space)") from None
        return added

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM events")]

    def close(self) -> None:
        self.db.close()



"""The durable check-in journal: one SQLite file (WAL), one row per check-in, never rewritten.

The same rows are the upload queue (`up_*` columns, see `kiosk.stores.outbox`); the table is defined in
`kiosk.stores.checkins`. A `Journal` holds one SQLite
connection and belongs to the thread that made it (the pipeline thread); other threads open their own
connection to the same file (busy_timeout lets them write concurrently).
"""
from __future__ import annotations

import csv
import json
import sqlite3
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO, TypeVar
from zoneinfo import ZoneInfo

from kiosk import inert, masking
from kiosk.errors import StorageError
from kiosk.model import DIRECTIONS, Decision
from kiosk.stores.checkins import (DDL, INSERT, INSERT_COLUMNS, QUEUED_STATES, SCHEMA_VERSION, event_from_row,
                                   remask_rows)

BUSY_TIMEOUT_MS = 30_000
EXPORT_FORMATS = ("csv", "jsonl")
SUBJECT_FIELDS = ("id", "name", "birth", "gender")  # flattened into CSV as subject_<field>
CSV_COLUMNS = ("seq", "id", "ts", "clock_synced", "site", "device", "direction", "mode", "kind", "verdict",
               "reason", *(f"subject_{f}" for f in SUBJECT_FIELDS), "subject_ref", "override")
T = TypeVar("T")


def _storage_error(action: str, path: Path, exc: sqlite3.Error) -> StorageError:
    """A StorageError whose message names the likely fix for the SQLite error code."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_FULL"):
        hint = "the disk (or the journal's size limit) is full: free space on the SD card, then it resumes"
    elif name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_AUTH")):
        hint = "the journal is read-only or cannot be opened: check the file system is mounted read-write " \
               "and the service user can write the folder"
    elif name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        hint = "the file is damaged or not a journal: move it aside (keep it for recovery) and restart"
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        hint = "another process holds the journal locked: stop it (is a second kiosk service running?)"
    else:
        hint = "check free disk space, permissions and the SD card's health"
    return StorageError(f"cannot {action} the journal {path}: {exc} ({hint})")


class Journal:
    """The check-in journal of one device. Owned by one thread (the pipeline's); not shared across threads."""

    def __init__(self, path: str | Path, *, site: str, device: str):
        self.path = Path(path)
        self.site = site
        self.device = device
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder for the journal {self.path}: {exc.strerror} "
                               "(check journal.path and permissions)") from None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each insert is exactly one transaction.
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise _storage_error("open", self.path, exc) from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"the journal {self.path} cannot use WAL mode (got {mode}); "
                                   "put it on a local file system (not NFS or a FAT card without locking)")
            # FULL: the WAL is fsynced at every commit, so a shown check-in survives a power cut.
            self._db.execute("PRAGMA synchronous = FULL")
            self._transaction(self._migrate)
            self._transaction(lambda: remask_rows(self._db, masking.remask))
        except (sqlite3.Error, StorageError) as exc:
            self._db.close()
            if isinstance(exc, StorageError):
                raise
            raise _storage_error("open", self.path, exc) from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(f"the journal {self.path} has schema version {version}, newer than this "
                               f"software ({SCHEMA_VERSION}): update the kiosk software")
        if version == SCHEMA_VERSION:
            return
        # One statement at a time: executescript() would COMMIT behind our transaction.
        for statement in filter(None, (s.strip() for s in DDL.split(";"))):
            self._db.execute(statement)
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _transaction(self, work: Callable[[], T]) -> T:
        """Run `work` in one write transaction (BEGIN IMMEDIATE: waits for other writers via busy_timeout)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ writing
    def append(self, decision: Decision) -> dict[str, Any]:
        """Store one check-in durably (committed and fsynced on return); its event dict.

        Raises StorageError (disk full, read-only, ...) with nothing written: the caller keeps the decision.
        """
        at = decision.at or datetime.now(timezone.utc).astimezone()
        if at.tzinfo is None:
            at = at.astimezone()  # a naive time is the system's local time
        values = (uuid.uuid4().hex, at.isoformat(), at.timestamp(), int(decision.clock_synced), self.site,
                  self.device, decision.direction, decision.mode, decision.kind, decision.verdict,
                  decision.reason, json.dumps(decision.subject, ensure_ascii=False, sort_keys=True),
                  decision.subject_ref, int(decision.override), decision.latency_ms)
        try:
            seq = self._transaction(lambda: self._db.execute(INSERT, values).lastrowid)
        except sqlite3.Error as exc:
            raise _storage_error("write a check-in to", self.path, exc) from None
        return event_from_row({**dict(zip(INSERT_COLUMNS, values)), "seq": seq})

    def purge(self, older_than: datetime, keep_unsent: bool = True) -> int:
        """Delete rows before `older_than`; with keep_unsent, rows not yet at the collector stay. Rows deleted."""
        sql = "DELETE FROM checkins WHERE ts_epoch < ?"
        if keep_unsent:
            sql += f" AND up_state NOT IN ({','.join('?' * len(QUEUED_STATES))})"
        params = (older_than.timestamp(), *(QUEUED_STATES if keep_unsent else ()))
        try:
            return self._transaction(lambda: self._db.execute(sql, params).rowcount)
        except sqlite3.Error as exc:
            raise _storage_error("purge", self.path, exc) from None

    # ------------------------------------------------------------------ reading
    def count(self) -> int:
        rows: int = self._db.execute("SELECT COUNT(*) FROM checkins").fetchone()[0]
        return rows

    def last_seq(self) -> int:
        """The highest seq ever given (AUTOINCREMENT keeps it across purges); 0 for a new journal."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'checkins'").fetchone()
        return row[0] if row else 0

    def _rows(self, since: datetime | None, until: datetime | None, where: str = "",
              params: tuple[Any, ...] = (), order: str = "seq") -> Iterator[sqlite3.Row]:
        """Rows with since <= ts < until (either bound optional), in `order`."""
        clauses, values = ([where] if where else []), list(params)
        if since is not None:
            clauses.append("ts_epoch >= ?")
            values.append(since.timestamp())
        if until is not None:
            clauses.append("ts_epoch < ?")
            values.append(until.timestamp())
        sql = "SELECT * FROM checkins" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY " + order
        return iter(self._db.execute(sql, values))

    def export(self, fmt: str, out: TextIO, since: datetime | None = None, until: datetime | None = None) -> int:
        """Write events as CSV (with a header, subject flattened) or JSON lines. Rows written.

        CSV is opened by people in spreadsheets: every cell is made inert (controls and bidi characters shown
        as escapes, a leading `=`, `+`, `-` or `@` quoted), since a name from a signed certificate is free text.
        JSON lines stay exact JSON (its consumers are programs)."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}")
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS) if fmt == "csv" else None
        if writer:
            writer.writeheader()
        written = 0
        for row in self._rows(since, until):
            event = event_from_row(row)
            if writer:
                subject = event.pop("subject")
                cells = {**{k: event[k] for k in CSV_COLUMNS if k in event},
                         **{f"subject_{f}": subject.get(f) for f in SUBJECT_FIELDS}}
                writer.writerow({k: inert.cell(v) for k, v in cells.items()})
            else:
                out.write(json.dumps(event, ensure_ascii=False) + "\n")
            written += 1
        return written

    def stats(self, since: datetime | None = None, until: datetime | None = None,
              tz: str | tzinfo = "UTC") -> dict[str, Any]:
        """Counts in/out per local day and per local hour, per verdict and per kind."""
        zone = ZoneInfo(tz) if isinstance(tz, str) else tz
        days: dict[str, Counter[str]] = defaultdict(Counter)
        hours: dict[str, Counter[str]] = defaultdict(Counter)
        verdicts: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        total = 0
        for row in self._rows(since, until):
            local = datetime.fromtimestamp(row["ts_epoch"], zone)
            days[local.strftime("%Y-%m-%d")][row["direction"]] += 1
            hours[local.strftime("%Y-%m-%dT%H")][row["direction"]] += 1
            verdicts[row["verdict"]] += 1
            kinds[row["kind"] or "none"] += 1
            total += 1

        def in_out(c: Counter[str]) -> dict[str, int]:
            return {direction: c[direction] for direction in DIRECTIONS}

        return {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "timezone": str(zone),
            "total": total,
            "verdicts": {v: verdicts[v] for v in ("green", "black", "invalid")} | dict(verdicts),
            "kinds": dict(sorted(kinds.items())),
            "days": {d: in_out(c) for d, c in sorted(days.items())},
            "hours": {h: in_out(c) for h, c in sorted(hours.items())},
        }

    def trace(self, subject_ref: str, since: datetime | None = None,
              until: datetime | None = None) -> list[dict[str, Any]]:
        """Check-ins of one person (by keyed hash), oldest first."""
        rows = self._rows(since, until, "subject_ref = ?", (subject_ref,), order="ts_epoch, seq")
        return [event_from_row(r) for r in rows]


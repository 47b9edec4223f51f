"""The durable check-in journal: one SQLite file (WAL), one row per check-in, never rewritten.

The same rows are the upload queue (`up_*` columns, see `kiosk.stores.outbox`); the table is defined in
`kiosk.stores.checkins`, its schema made and migrated by `kiosk.stores.journal_schema`, its read side
(batched indexes, stats, trace, export, purge) is `kiosk.stores.journal_index`, and what happens to the file
itself (reserve, move-aside, restore, backup) is `kiosk.stores.journal_file`. A `Journal` holds one SQLite
connection and belongs to the thread that made it (the pipeline thread); other threads and processes open
their own connection to the same file (busy_timeout lets them write concurrently).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import time
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO, TypeVar
from zoneinfo import ZoneInfo

from kiosk import inert, masking
from kiosk.errors import StorageError
from kiosk.model import Decision
from kiosk.stores import held, journal_file, journal_index, journal_schema
from kiosk.stores.checkins import INSERT, INSERT_COLUMNS, event_from_row, event_id, remask_rows

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
REOPEN_EVERY_S = 5.0
RESERVE_CHECK_S = 60.0   # a journal that could not be opened (read-only, missing mount) is tried again this often
# A bounded WAL for an SD card. The service checkpoints between scans every CHECKPOINT_EVERY check-ins (a
# PASSIVE checkpoint in maintain(), never inside a check-in's commit: with SQLite's own autocheckpoint at 256
# pages the commit that crossed it took ~4 ms, the p95 of every insert); SQLite's autocheckpoint stays as the
# backstop at 512 pages for writers that never call maintain(), and the WAL is truncated back to 1 MB after a
# checkpoint so a burst never leaves a big file behind. Bytes per check-in measured the same with a checkpoint
# every 100 or every 1,000 pages (bench/journal.py).
CHECKPOINT_EVERY = 100
WAL_AUTOCHECKPOINT_PAGES = 512
JOURNAL_SIZE_LIMIT = 1 << 20
EXPORT_FORMATS = ("csv", "jsonl")
SUBJECT_FIELDS = ("id", "name", "birth", "gender")  # flattened into CSV as subject_<field>
CSV_COLUMNS = ("seq", "id", "ts", "clock_synced", "site", "device", "direction", "mode", "kind", "verdict",
               "reason", *(f"subject_{f}" for f in SUBJECT_FIELDS), "subject_ref", "override")
T = TypeVar("T")


def storage_error(action: str, path: Path, exc: sqlite3.Error) -> StorageError:
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


def is_corruption(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def is_full(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith("SQLITE_FULL")


class Journal:
    """The check-in journal of one device. Owned by one thread (the pipeline's); not shared across threads.

    The service opens it with `service=True`: PRAGMA quick_check (unless `quick_check=False`; a damaged file is
    moved aside and a fresh journal started, with the `journal_moved_aside` alarm), a write probe (a journal
    that cannot be written leaves the object open but `unavailable`, retried on use), and a `reserve_bytes`
    file released when the disk fills. Commands open it plainly: a damaged file is reported, never moved.
    """

    def __init__(self, path: str | Path, *, site: str, device: str, service: bool = False,
                 quick_check: bool = True, reserve_bytes: int = 0, monotonic: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.site = site
        self.device = device
        self.service = service
        self.quick_check = service and quick_check
        self.monotonic = monotonic
        self.reserve = journal_file.Reserve(journal_file.reserve_path(self.path), reserve_bytes if service else 0)
        self.quick_check_s: float | None = None
        self.restored = False       # the file was deleted or replaced while open and was put back
        self.unavailable: str | None = None   # the service's journal could not be opened (read-only, ...)
        self._next_open = 0.0
        self._next_reserve_check = 0.0
        self._next_index = 0.0
        self._identity: tuple[int, int] | None = None
        self._db: sqlite3.Connection | None = None
        self._appended = 0   # rows appended since the last catch-up (maintain() indexes them per batch)
        self._since_checkpoint = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder for the journal {self.path}: {exc.strerror} "
                               "(check journal.path and permissions)") from None
        try:
            self._db = self._open_checked()
        except StorageError as exc:
            if not service:
                raise
            # The gate keeps working: check-ins are held (and saved at stop) while the file is retried.
            self.unavailable = str(exc)
            log.error("%s", exc)
        # Damaged journals moved aside, this start or an earlier one: the alarm stays until an operator
        # has dealt with them (kept for recovery; `kiosk journal check` lists them).
        self.moved_aside = bool(journal_file.moved_aside(self.path)) if service else False
        self.reserve.ensure()

    # ------------------------------------------------------------------ opening
    def _open_checked(self) -> sqlite3.Connection:
        """Open, migrate and (for the service) quick_check; a damaged file moves aside for a fresh one."""
        try:
            db = self._open()
        except StorageError as exc:
            if not (self.service and isinstance(exc.__cause__, sqlite3.Error) and is_corruption(exc.__cause__)):
                raise
            return self._move_aside(str(exc))
        if self.quick_check:
            started = time.perf_counter()
            try:
                result = [r[0] for r in db.execute("PRAGMA quick_check(10)")]
            except sqlite3.DatabaseError as exc:
                result = [str(exc)]
            self.quick_check_s = time.perf_counter() - started
            if result != ["ok"]:
                db.close()
                return self._move_aside("; ".join(result))
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each insert is exactly one transaction.
            db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise storage_error("open", self.path, exc) from exc
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            journal_schema.prepare_new_file(db)
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"the journal {self.path} cannot use WAL mode (got {mode}); "
                                   "put it on a local file system (not NFS or a FAT card without locking)")
            # FULL: the WAL is fsynced at every commit, so a shown check-in survives a power cut.
            db.execute("PRAGMA synchronous = FULL")
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            db.execute("PRAGMA temp_store = MEMORY")
            self._transaction_on(db, lambda: journal_schema.migrate(db, self.path, self.site, self.device))
            self._transaction_on(db, lambda: remask_rows(db, masking.remask))
            journal_schema.repage(db, self.path)  # a schema-1 file, or one whose rewrite had to wait
            if self.service:
                # A writer must be able to write: a read-only file opens, then loses every check-in.
                self._probe_write(db)
        except (sqlite3.Error, StorageError) as exc:
            db.close()
            if isinstance(exc, StorageError):
                raise
            raise storage_error("open", self.path, exc) from exc
        self._identity = journal_file.identity(self.path)
        self._appended = journal_index.unindexed(db)
        self._uid, self._epoch_first = db.execute(
            "SELECT uid, first_seq FROM id_epochs ORDER BY first_seq DESC LIMIT 1").fetchone()
        return db

    def _move_aside(self, why: str) -> sqlite3.Connection:
        last_seq = journal_file.readable_last_seq(self.path)
        moved = journal_file.move_aside(self.path, "corrupt")
        log.error("journal %s is damaged (%s): moved aside to %s, starting a fresh journal from seq %d",
                  self.path, why, moved, last_seq + 1)
        db = self._open()
        if last_seq:
            # A fresh journal continues the seq: consumers keyed on (device, seq) see no repeat.
            self._transaction_on(db, lambda: db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_floor', ?)", (last_seq,)))
            db.execute("UPDATE id_epochs SET first_seq = ? WHERE uid = ?", (last_seq + 1, self._uid))
            self._epoch_first = last_seq + 1
        return db

    @staticmethod
    def _transaction_on(db: sqlite3.Connection, work: Callable[[], T]) -> T:
        """Run `work` in one write transaction (BEGIN IMMEDIATE: waits for other writers via busy_timeout)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _transaction(self, work: Callable[[], T]) -> T:
        return self._transaction_on(self.db, work)

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection; StorageError while the service's journal cannot be opened."""
        if self._db is None:
            now = self.monotonic()
            if now >= self._next_open:
                self._next_open = now + REOPEN_EVERY_S
                try:
                    self._db = self._open_checked()
                except StorageError as exc:
                    self.unavailable = str(exc)
                    raise
                log.warning("journal %s can be written again", self.path)
                self.unavailable = None
            else:
                raise StorageError(self.unavailable or f"the journal {self.path} is not open")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    # ------------------------------------------------------------------ the file under us
    def _ensure_file(self) -> None:
        """The path must still name the file we opened: a journal deleted or replaced under a running kiosk
        took every later check-in into an unlinked file. Put ours back (see journal_file.restore). A stat per
        append, and per loop round through maintain()."""
        if self._db is None or journal_file.identity(self.path) == self._identity:
            return
        replaced = self.path.exists()
        try:
            journal_file.restore(self._db, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"the journal {self.path} was {'replaced' if replaced else 'deleted'} while the "
                               f"kiosk runs; check-ins are held in memory until it can be put back ({exc})") from None
        self._db = None
        self._db = self._open()   # on failure the next use tries again (see `db`)
        self.restored = True
        log.error("journal %s was %s while the kiosk ran: put back with every row (%d)", self.path,
                  "replaced (the other file was moved aside)" if replaced else "deleted", self.count())

    def alarms(self) -> list[str]:
        out = []
        if self.unavailable:
            out.append("journal_unavailable")
        if self.restored:
            out.append("journal_restored")
        if self.moved_aside:
            out.append("journal_moved_aside")
        if self.reserve.released:
            out.append("journal_reserve_used")
        return out

    # ------------------------------------------------------------------ writing
    def _values(self, decision: Decision) -> tuple[Any, ...]:
        at = decision.at or datetime.now(timezone.utc).astimezone()
        if at.tzinfo is None:
            at = at.astimezone()  # a naive time is the system's local time
        return (at.isoformat(), at.timestamp(), int(decision.clock_synced), self.site, self.device,
                decision.direction, decision.mode, decision.kind, decision.verdict, decision.reason,
                json.dumps(decision.subject, ensure_ascii=False, sort_keys=True), decision.subject_ref,
                int(decision.override), decision.latency_ms)

    def append(self, decision: Decision) -> dict[str, Any]:
        """Store one check-in durably (committed and fsynced on return); its event dict.

        Raises StorageError (disk full, read-only, ...) with nothing written: the caller keeps the decision.
        """
        return self.append_many([decision])[0]

    def append_many(self, decisions: Iterable[Decision],
                    note: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Store check-ins in one transaction (one fsync): all of them, or none and StorageError.
        `note`: a (key, value) written to `meta` in the same transaction."""
        rows = [self._values(d) for d in decisions]
        self._ensure_file()

        def insert() -> list[int]:
            seqs = [int(self.db.execute(INSERT, values).lastrowid or 0) for values in rows]
            if note:
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", note)
            return seqs

        try:
            try:
                seqs = self._transaction(insert)
            except sqlite3.Error as exc:
                if not (is_full(exc) and self.reserve.release()):
                    raise
                log.error("journal %s: the disk is full; released the %d MB reserve so check-ins keep being "
                          "stored (free space on the SD card)", self.path, self.reserve.size >> 20)
                seqs = self._transaction(insert)
        except sqlite3.Error as exc:
            raise storage_error("write a check-in to", self.path, exc) from None
        self._appended += len(rows)
        self._since_checkpoint += len(rows)
        return [event_from_row({**dict(zip(INSERT_COLUMNS, values)), "seq": seq, "id": self._event_id(seq)})
                for seq, values in zip(seqs, rows)]

    def _event_id(self, seq: int) -> str:
        if seq < self._epoch_first:  # another process started an epoch? (a restore); ask the file
            stored: str = self.db.execute("SELECT event_id FROM checkin_events WHERE seq = ?", (seq,)).fetchone()[0]
            return stored
        return event_id(self._uid, seq)

    def maintain(self, force: bool = False) -> int:
        """Index the rows not in a segment yet once a batch is due (all of them with force), checkpoint the WAL
        every CHECKPOINT_EVERY check-ins, and put the disk reserve back when there is room (checked once a
        minute). Off the scan path: the loop calls it between scans. Rows indexed."""
        self._ensure_file()
        indexed = 0
        now = self.monotonic()
        if force or (self._appended >= journal_index.BATCH and now >= self._next_index):
            try:
                while done := self._transaction(lambda: journal_index.catch_up(self.db)):
                    indexed += done
                    if done < journal_index.BATCH and not force:
                        break
                self._appended = journal_index.unindexed(self.db)
            except sqlite3.Error as exc:
                self._next_index = now + REOPEN_EVERY_S  # a full disk: not again at every loop round
                raise storage_error("index", self.path, exc) from None
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            try:
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                raise storage_error("checkpoint", self.path, exc) from None
        if now >= self._next_reserve_check and self.reserve.released:
            self._next_reserve_check = now + RESERVE_CHECK_S
            self.reserve.ensure()
        return indexed

    def import_held(self, path: Path) -> int:
        """Journal the check-ins saved at the last stop (kiosk.stores.held), then delete the file. Rows added."""
        found = held.load(path)
        if found is None:
            return 0
        token, decisions = found
        done = token and self.db.execute("SELECT 1 FROM meta WHERE key = 'held_token' AND value = ?",
                                         (token,)).fetchone()
        if decisions and not done:
            # One transaction with the token (at most pipeline.MAX_UNWRITTEN rows, at start): all or nothing.
            self.append_many(decisions, note=("held_token", token) if token else None)
        path.unlink()
        return 0 if done else len(decisions)

    def purge(self, older_than: datetime, keep_unsent: bool = True) -> int:
        """Delete rows before `older_than`; with keep_unsent, rows not yet at the collector stay. Rows deleted."""
        try:
            return self._transaction(lambda: journal_index.purge(self.db, older_than.timestamp(), keep_unsent))
        except sqlite3.Error as exc:
            raise storage_error("purge", self.path, exc) from None

    # ------------------------------------------------------------------ reading
    def _reading(self, what: str, work: Callable[[], T]) -> T:
        try:
            return work()
        except sqlite3.Error as exc:
            raise storage_error(f"read {what} from", self.path, exc) from None

    def count(self) -> int:
        return self._reading("the row count", lambda: journal_index.count(self.db))

    def last_seq(self) -> int:
        """The highest seq ever given (kept across purges); 0 for a new journal."""
        last: int = self.db.execute("SELECT max(coalesce((SELECT max(seq) FROM checkins), 0), "
                                    "coalesce((SELECT value FROM meta WHERE key = 'seq_floor'), 0))").fetchone()[0]
        return last

    def export(self, fmt: str, out: TextIO, since: datetime | None = None, until: datetime | None = None) -> int:
        """Write events as CSV (with a header, subject flattened) or JSON lines, streamed. Rows written.

        CSV is opened by people in spreadsheets: every cell is made inert (controls and bidi characters shown
        as escapes, a leading `=`, `+`, `-` or `@` quoted), since a name from a signed certificate is free text.
        JSON lines stay exact JSON (its consumers are programs)."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}")
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS) if fmt == "csv" else None
        if writer:
            writer.writeheader()
        def write() -> int:
            written = 0
            with self._snapshot():
                for row in journal_index.events(self.db, since, until):
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

        return self._reading("check-ins", write)

    def stats(self, since: datetime | None = None, until: datetime | None = None,
              tz: str | tzinfo = "UTC") -> dict[str, Any]:
        """Counts in/out per local day and per local hour, per verdict and per kind."""
        zone = ZoneInfo(tz) if isinstance(tz, str) else tz

        def stats() -> dict[str, Any]:
            with self._snapshot():
                return journal_index.stats(self.db, since, until, zone)

        return self._reading("stats", stats)

    def trace(self, subject_ref: str, since: datetime | None = None,
              until: datetime | None = None) -> list[dict[str, Any]]:
        """Check-ins of one person (by keyed hash), oldest first."""
        def trace() -> list[dict[str, Any]]:
            with self._snapshot():
                return [event_from_row(r) for r in journal_index.trace(self.db, subject_ref, since, until)]

        return self._reading("a trace", trace)

    def _snapshot(self) -> journal_file.ReadTransaction:
        """One read transaction: a query made of several statements sees one state of the file."""
        return journal_file.ReadTransaction(self.db)

    # ------------------------------------------------------------------ the file as a whole
    def check(self) -> list[str]:
        """PRAGMA integrity_check: ["ok"] or what is wrong (at most 100 lines)."""
        try:
            return [r[0] for r in self.db.execute("PRAGMA integrity_check(100)")]
        except sqlite3.Error as exc:
            return [str(exc)]

    def backup(self, target: str | Path) -> int:
        """A consistent copy of the live journal via SQLite's online backup API (see journal_file.backup)."""
        try:
            return journal_file.backup(self.db, Path(target), self.site, self.device)
        except sqlite3.Error as exc:
            raise storage_error("back up", self.path, exc) from None
        except OSError as exc:
            raise StorageError(f"cannot write the backup {target}: {exc.strerror}") from None

    def writable(self) -> None:
        """Raise StorageError unless a check-in could be written now (file, folder and file system)."""
        self._ensure_file()
        if not os.access(self.path.parent, os.W_OK):
            raise StorageError(f"the journal folder {self.path.parent} is not writable by this user: "
                               "check its owner and mode and that the file system is mounted read-write")
        try:
            self._probe_write(self.db)
        except sqlite3.Error as exc:
            raise storage_error("write to", self.path, exc) from None

    @staticmethod
    def _probe_write(db: sqlite3.Connection) -> None:
        """Write a row and roll it back (nothing reaches the disk). BEGIN IMMEDIATE alone passes on a file
        that cannot be written (an immutable file opens read-only): the write itself fails."""
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('write_probe', ?)", (time.time(),))
        finally:
            db.execute("ROLLBACK")

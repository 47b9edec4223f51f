"""The local roster: people with doses, recovery date and staff permission (spec section 8).

An SQLite file (WAL) with one `people` table indexed by ID and by QID, and a `meta` table (version, count,
updated_at). Why not a TinyDB document like the trust list: a 50 MB roster CSV took 1.3 GB to import and made
every later command take 23 s and 1.1 GB to start, because the whole document was parsed on every open.
Here opening costs a few milliseconds whatever the size, a lookup is two index probes, and an import streams.

Every change runs in one transaction on a connection of its own, on whatever thread calls it: a replacement
writes the new people into `people_next` row by row, checks them (every bad row listed, duplicates found by
the indexes), then swaps the tables; the commit is the swap. Readers (the pipeline thread, each on its own
connection) go on reading the previous roster until that commit and see the new one on their next lookup,
in this process or another (`kiosk roster import` beside the running service). A rejected or failed change
leaves the roster as it was.

Rules of the roster itself (the MQTT `roster` command and the CSV import alike): every row has a well-formed
ID or QID (kiosk.stores.roster_rows); versions only move forward; a replacement that would remove more than
half of a roster of at least GUARDED_SIZE people needs `force`.

A roster file of an earlier version (TinyDB JSON) is migrated in place when it is first opened.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import tempfile
import threading
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from kiosk.errors import DataError, StorageError
from kiosk.model import HealthRecord, Person
from kiosk.stores import roster_apply
from kiosk.stores.documents import fsync_dir
from kiosk.stores.roster_csv import Row, RosterCsv, parse_csv
from kiosk.stores.roster_legacy import LegacyFormatError, TinyDbRoster, looks_like_tinydb
from kiosk.stores.roster_rows import RosterEntry, RowRules, Problems, collect, doses_from_text, doses_text

if TYPE_CHECKING:
    from kiosk.ports import Clock

__all__ = ["Roster", "RosterEntry", "parse_csv"]  # parse_csv: the console checks uploads with the kiosk's parser

log = logging.getLogger(__name__)

GUARDED_SIZE = 50       # "a few dozen": below this a replacement may remove anything
WRITE_WAIT_S = 60.0     # a change waits this long for another one (a million-row import takes about a minute)
DEFAULT_NAME, LEGACY_DEFAULT_NAME = "roster.sqlite", "roster.json"
SQLITE_HEADER = b"SQLite format 3\x00"
OPS = ("replace", "add", "upsert", "remove")
PEOPLE = ("CREATE TABLE {table} (line INTEGER NOT NULL, id TEXT, qid TEXT, name TEXT, doses TEXT NOT NULL, "
          "recovered TEXT, staff INTEGER)")
COLUMNS_SQL = "id, qid, name, doses, recovered, staff"
Record = tuple[int, str | None, str | None, str | None, str, str | None, int | None]


class Roster:
    """The roster file at `path`. `badge_prefix`: the site's badge prefix (badge ids are then valid IDs)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None, badge_prefix: str = ""):
        self.path = Path(path)
        self.rules = RowRules(badges=bool(badge_prefix))
        self._now: Callable[[], datetime] = clock.now if clock is not None else lambda: datetime.now(timezone.utc)
        self._local = threading.local()  # each thread reads on its own connection
        self._open()

    # ------------------------------------------------------------------ reading (any thread)
    @property
    def version(self) -> int | None:
        value = self._meta().get("version")
        return int(value) if value is not None else None

    @property
    def count(self) -> int:
        return int(self._meta().get("count") or 0)

    @property
    def updated_at(self) -> datetime | None:
        text = self._meta().get("updated_at")
        return datetime.fromisoformat(text) if text else None

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "version": self.version}

    def lookup(self, person: Person) -> RosterEntry | None:
        """By full ID number (personal QR, CCCD, badge), else by QID (a personal QR with a masked ID)."""
        conn = self._reader()
        if person.id_number and not person.id_masked:
            row = conn.execute(f"SELECT {COLUMNS_SQL} FROM people WHERE id = ?", (person.id_number,)).fetchone()
            if row is not None:
                return _entry(row)
        if person.qid:
            row = conn.execute(f"SELECT {COLUMNS_SQL} FROM people WHERE qid = ?", (person.qid,)).fetchone()
            return _entry(row) if row is not None else None
        return None

    def parse_entries(self, rows: Any) -> list[RosterEntry]:
        """Validate rows given as dicts (MQTT downlink); DataError lists every bad row (1-based)."""
        return self.rules.entries(rows)

    def close(self) -> None:
        """Close this thread's reading connection (another read opens it again)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------ changes (any thread, one transaction each)
    def apply(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The MQTT `roster` command: `op` `replace` (default) with `entries`, optional `version` and `force`;
        `add`/`upsert` with `entries`; `remove` with `keys` (IDs or QIDs). Returns count, version (and
        `removed`). Everything is checked before anything changes; DataError says why nothing changed."""
        op = payload.get("op", "replace")
        if op not in OPS:
            raise DataError(f"roster: unknown op {op!r} ({', '.join(OPS)})")
        version = payload.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise DataError("roster: 'version' must be a whole number of at least 0")
        force = payload.get("force", False)
        if not isinstance(force, bool):
            raise DataError("roster: 'force' must be true or false")
        if op == "remove":
            keys = payload.get("keys")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise DataError("roster remove: 'keys' must be a list of ID/QID strings")
            removed = self.remove(keys, version=version)
            return {"removed": removed, **self.summary()}
        rows = payload.get("entries")
        if not isinstance(rows, list):
            raise DataError("roster: 'entries' must be a list of rows (id, qid, name, doses, recovered, staff)")
        if op == "replace":
            self._replace(((n, self.rules.checked(row)) for n, row in enumerate(rows, 1)), "row",
                          "roster update rejected", version, force)
        else:
            self.upsert(self.rules.entries(rows), version=version)
        return self.summary()

    def apply_isolated(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """`apply`, a large command in a child process (kiosk.stores.roster_apply): checking its rows then never
        holds this process's interpreter, where the pipeline runs."""
        return roster_apply.apply(self, payload)

    def import_csv(self, path: str | os.PathLike[str], *, force: bool = False) -> int:
        """Replace the roster with a CSV file's rows, streamed. All or nothing: DataError lists the bad lines."""
        with RosterCsv(path, self.rules) as source:
            return self._replace(source.rows(), "line", source.rejected, None, force)

    def replace_all(self, entries: Iterable[RosterEntry], version: int | None = None, *, force: bool = False) -> int:
        """The roster becomes `entries`; version is the given one (greater than the current), else current + 1."""
        return self._replace(enumerate(entries, 1), "entry", "roster update rejected", version, force)

    def upsert(self, entries: list[RosterEntry], *, version: int | None = None) -> int:
        """Add entries, replacing existing ones with a shared ID or QID. The version stays unless one is given."""
        collect(enumerate(entries, 1), "entry", "roster update rejected")  # duplicates among them
        with self._writing() as conn:
            meta = _meta_of(conn)
            new_version = _next_version(meta, version, bump=False)
            removed = _delete(conn, "id", [e.id for e in entries if e.id])
            removed += _delete(conn, "qid", [e.qid for e in entries if e.qid])
            conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [_record(n, e) for n, e in enumerate(entries, 1)])
            count = int(meta.get("count") or 0) - removed + len(entries)
            self._set_meta(conn, new_version, count)
        return len(entries)

    def remove(self, keys: list[str], *, version: int | None = None) -> int:
        """Remove the entries whose ID or QID is one of `keys`; returns how many were removed."""
        with self._writing() as conn:
            meta = _meta_of(conn)
            new_version = _next_version(meta, version, bump=False)
            removed = _delete(conn, "id", keys) + _delete(conn, "qid", keys)
            if removed or version is not None:
                self._set_meta(conn, new_version, int(meta.get("count") or 0) - removed)
        return removed

    # ------------------------------------------------------------------ the replacement
    def _replace(self, rows: Iterable[Row], label: str, message: str, version: int | None, force: bool) -> int:
        with self._writing() as conn:
            meta = _meta_of(conn)
            new_version = _next_version(meta, version, bump=True)  # refused before any row is read
            conn.execute("DROP TABLE IF EXISTS people_next")
            conn.execute(PEOPLE.format(table="people_next"))
            problems = Problems()
            conn.executemany("INSERT INTO people_next VALUES (?, ?, ?, ?, ?, ?, ?)", _records(rows, problems))
            # Index after the rows are in: a million rows in random ID order took 7.5 s this way, 11.6 s into an
            # indexed table. The names alternate because the indexes keep theirs when the table is renamed.
            suffix = "b" if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'people_id_a'").fetchone() else "a"
            conn.execute(f"CREATE INDEX people_id_{suffix} ON people_next(id)")
            conn.execute(f"CREATE INDEX people_qid_{suffix} ON people_next(qid)")
            for column in ("id", "qid"):
                problems.extend(*_duplicates(conn, column, label))
            problems.raise_if_any(message, label)
            count = conn.execute("SELECT COUNT(*) FROM people_next").fetchone()[0]
            old = int(meta.get("count") or 0)
            if not force and old >= GUARDED_SIZE:
                removed = conn.execute(
                    "SELECT COUNT(*) FROM people p WHERE NOT EXISTS (SELECT 1 FROM people_next n WHERE n.id = p.id) "
                    "AND NOT EXISTS (SELECT 1 FROM people_next n WHERE n.qid = p.qid)").fetchone()[0]
                if 2 * removed > old:
                    raise DataError(f"roster replacement refused: it would remove {removed:,} of the {old:,} people "
                                    "on the roster (more than half). If that is intended, send it again with "
                                    "\"force\": true (kiosk roster import --force); nothing changed")
            conn.execute("DROP TABLE people")
            conn.execute("ALTER TABLE people_next RENAME TO people")
            self._set_meta(conn, new_version, count)
        self._checkpoint()
        return int(count)

    # ------------------------------------------------------------------ storage
    def _open(self) -> None:
        """Create the file, or migrate a roster of an earlier version, and check it holds a roster."""
        legacy = self.path.with_name(LEGACY_DEFAULT_NAME)
        head = _head(self.path)
        if head is None and self.path.name == DEFAULT_NAME and looks_like_tinydb(_head(legacy) or b""):
            self._migrate(legacy)  # the earlier default file name, beside the new one
        elif head is not None and looks_like_tinydb(head):
            self._migrate(self.path)
        elif head and not head.startswith(SQLITE_HEADER):
            raise StorageError(f"{self.path} does not hold a valid roster; import the roster CSV again")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=WRITE_WAIT_S)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "people" not in tables:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute("BEGIN IMMEDIATE")
                    _create(conn)
                    conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise _storage_error(self.path, exc) from None

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            conn.execute("PRAGMA query_only = 1")
            self._local.conn, self._local.meta = conn, None
        return conn

    def _meta(self) -> dict[str, str]:
        """The meta table as this thread last read it, read again when any connection has committed since."""
        try:
            conn = self._reader()
            data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            cached = self._local.meta
            if cached is None or cached[0] != data_version:
                cached = (data_version, _meta_of(conn))
                self._local.meta = cached
        except sqlite3.DatabaseError as exc:
            raise _storage_error(self.path, exc) from None
        meta: dict[str, str] = cached[1]
        return meta

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on a connection of its own; rolled back on any exception."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=WRITE_WAIT_S)
        except sqlite3.DatabaseError as exc:
            raise _storage_error(self.path, exc) from None
        try:
            conn.execute("PRAGMA synchronous = FULL")  # an import said done is kept through a power cut
            conn.execute("PRAGMA cache_size = -16384")  # 16 MB: enough to index a million rows without thrashing
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back by itself (a full disk)
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise _storage_error(self.path, exc) from None
        finally:
            conn.close()

    def _set_meta(self, conn: sqlite3.Connection, version: int | None, count: int) -> None:
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("version", None if version is None else str(version)), ("count", str(count)),
            ("updated_at", self._now().isoformat())])

    def _checkpoint(self) -> None:
        """Fold a replacement's WAL into the file and truncate it, so the WAL is not left at the size of the roster
        (waiting at most a second for readers still on the old roster; the next one tries again)."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=1.0)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            log.debug("roster checkpoint skipped", exc_info=True)

    def _migrate(self, source: Path) -> None:
        """Turn the TinyDB roster at `source` into the SQLite roster at self.path: written to a temporary file
        beside it, then renamed over it (a failure leaves the old file as it was). Two processes starting at
        once: the second waits on the lock and finds the work done."""
        try:
            f = open(source, encoding="utf-8")
        except FileNotFoundError:
            return  # migrated by another process meanwhile
        with f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                if os.stat(source).st_ino != os.fstat(f.fileno()).st_ino:
                    return
            except FileNotFoundError:
                return
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".migrating")
            os.close(fd)
            try:
                count, odd = self._write_migrated(TinyDbRoster(f), Path(tmp))
                os.replace(tmp, self.path)
                if source != self.path:
                    os.unlink(source)
                fsync_dir(self.path.parent)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        log.warning("roster migrated from the earlier file format: %d people%s", count,
                    f"; {odd} have an ID or QID a new import would refuse (import the roster again to correct them)"
                    if odd else "")

    def _write_migrated(self, legacy: TinyDbRoster, tmp: Path) -> tuple[int, int]:
        """(people written, of which with an ID or QID the current rules refuse)."""
        odd = 0

        def records() -> Iterator[Record]:
            nonlocal odd
            for number, entry in enumerate(legacy.entries(), 1):
                odd += isinstance(self.rules.checked({"id": entry.id, "qid": entry.qid}), str)
                yield _record(number, entry)

        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN")
                _create(conn, indexes=False)
                conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?)", records())
                conn.execute("CREATE INDEX people_id_a ON people(id)")
                conn.execute("CREATE INDEX people_qid_a ON people(qid)")
                count = conn.execute("SELECT COUNT(*) FROM people").fetchone()[0]
                version, updated = legacy.meta.get("version"), legacy.meta.get("updated_at")
                conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("version", None if version is None else str(int(version))), ("count", str(count)),
                    ("updated_at", str(updated) if updated else None), ("migrated_from", "tinydb")])
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
        except (LegacyFormatError, ValueError, TypeError) as exc:
            log.error("roster file %s cannot be migrated: %s", self.path, exc)
            raise StorageError(f"{self.path} does not hold a valid roster; import the roster CSV again") from None
        except sqlite3.DatabaseError as exc:
            raise _storage_error(self.path, exc) from None
        return int(count), odd


# ---------------------------------------------------------------------- helpers
def _create(conn: sqlite3.Connection, indexes: bool = True) -> None:
    """The tables of an empty roster (in the caller's transaction; a no-op where they exist)."""
    conn.execute(PEOPLE.format(table="IF NOT EXISTS people"))
    if indexes:
        conn.execute("CREATE INDEX IF NOT EXISTS people_id_a ON people(id)")
        conn.execute("CREATE INDEX IF NOT EXISTS people_qid_a ON people(qid)")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', '1')")


def _delete(conn: sqlite3.Connection, column: str, keys: list[str]) -> int:
    """Delete the people whose `column` is one of `keys`; how many were deleted."""
    return conn.executemany(f"DELETE FROM people WHERE {column} = ?", [(k,) for k in keys]).rowcount if keys else 0


def _head(path: Path) -> bytes | None:
    """The first bytes of the file, or None when there is no file."""
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror} (check permissions)") from None


def _meta_of(conn: sqlite3.Connection) -> dict[str, str]:
    return {k: v for k, v in conn.execute("SELECT key, value FROM meta") if v is not None}


def _next_version(meta: Mapping[str, str], given: int | None, *, bump: bool) -> int | None:
    """The version after a change: the given one, which must be greater than the current one; else the
    current one plus 1 (`bump`, a replacement) or the current one."""
    current = int(meta["version"]) if "version" in meta else None
    if given is None:
        return (current or 0) + 1 if bump else current
    if current is not None and given <= current:
        raise DataError(f"roster version {given} refused: this kiosk's roster is at version {current} and versions "
                        "only move forward; nothing changed")
    return given


def _records(rows: Iterable[Row], problems: Problems) -> Iterator[Record]:
    for number, item in rows:
        if isinstance(item, str):
            problems.add(number, item)
        else:
            yield _record(number, item)


def _record(number: int, entry: RosterEntry) -> Record:
    recovered = entry.health.recovered
    return (number, entry.id, entry.qid, entry.name, doses_text(entry.health),
            recovered.isoformat() if recovered else None, None if entry.staff is None else int(entry.staff))


def _entry(row: tuple[Any, ...]) -> RosterEntry:
    id_, qid, name, doses, recovered, staff = row
    return RosterEntry(id=id_, qid=qid, name=name, staff=None if staff is None else bool(staff),
                       health=HealthRecord(doses=doses_from_text(doses),
                                           recovered=date.fromisoformat(recovered) if recovered else None))


def _duplicates(conn: sqlite3.Connection, column: str, label: str) -> tuple[list[tuple[int, str]], int]:
    """The rows of people_next repeating an earlier row's `column` (the first ones by line), and how many."""
    repeated = (f"SELECT {column} AS key, MIN(line) AS first, COUNT(*) AS n FROM people_next "
                f"WHERE {column} IS NOT NULL GROUP BY {column} HAVING n > 1")
    total = conn.execute(f"SELECT COALESCE(SUM(n - 1), 0) FROM ({repeated})").fetchone()[0]
    if not total:
        return [], 0
    found = conn.execute(f"SELECT p.line, r.first FROM ({repeated}) r JOIN people_next p ON p.{column} = r.key "
                         "AND p.line > r.first ORDER BY p.line LIMIT ?", (DataError.MAX_LISTED,)).fetchall()
    return [(line, f"duplicate {column} (also on {label} {first})") for line, first in found], int(total)


def _storage_error(path: Path, exc: sqlite3.DatabaseError) -> StorageError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StorageError(f"the roster {path} is being changed by another process; try again when it is done")
    if "not a database" in text or "malformed" in text:
        return StorageError(f"{path} does not hold a valid roster; import the roster CSV again")
    return StorageError(f"cannot use the roster {path}: {text} (check free space and permissions)")

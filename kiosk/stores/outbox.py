"""The upload queue: the `up_*` columns of the journal's `checkins` table (no second copy of an event).

States only move forward: pending -> published (broker PUBACK) -> confirmed (consumer ack), or
pending or published -> dropped when the outbox overflowed. Every transition is one short transaction, so a kill at
any instant leaves each row in a state it really reached: at worst an event is sent again.

No index on the state (an insert would touch its page: see `kiosk.stores.checkins`). Two floors in
`outbox_meta` bound every query instead: no row below `pending_floor` is pending, no row below `queued_floor`
is pending or published. They only move up, in the same transaction as the transition that allows it, so
another process (the pipeline appending, a drain in a second process) always sees a floor that is true.
One Outbox (one SQLite connection) per thread; it follows the journal file if the file is put back.
"""
from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from kiosk.errors import StorageError
from kiosk.stores import journal_file, journal_index, journal_schema
from kiosk.stores.checkins import (CONFIRMED, DROPPED, PENDING, PUBLISHED, QUEUED_SQL, SCHEMA_VERSION,
                                   SELECT_EVENTS, UID_HEX)

POLICIES = ("drop_oldest", "drop_newest")
_CHUNK = 500  # seqs per UPDATE (SQLite's host parameter limit is far higher; this keeps transactions short)
_DERIVED_ID = re.compile(rf"[0-9a-f]{{{UID_HEX}}}[0-9a-f]{{16}}")
_LAST_SEQ = "(SELECT coalesce(max(seq), 0) FROM checkins)"
# The floors and the last PUBACK / ack times are kept in memory and written to `outbox_meta` with a
# transition at most this often (at once the first time, and at close): a page less per transition.
# Measured through `kiosk run`: a transition wrote its row's page and the meta page, two of the three pages a
# check-in cost on top of its insert. A floor written late is still true (it only moves up), a time written late is at most this old.
META_EVERY_S = 10.0
FLOORS = ("pending_floor", "queued_floor")
# With coalesce_published_s, PUBACKs are written as `published` at most this often (or per 500): the consumer's
# ack usually comes first and the row goes from pending to confirmed in one write. Measured through
# `kiosk run` at 20 check-ins a second: 8.3 KB a check-in with a write per PUBACK. A PUBACK lost to a kill
# means the event is sent again, which at-least-once allows (consumers de-duplicate by id).
COALESCE_MAX_ROWS = 500
COALESCE_PUBLISHED_S = 2.0   # what the uplink uses


class Outbox:
    def __init__(self, path: str | Path, *, max_rows: int = 1_000_000, full_policy: str = "drop_oldest",
                 final_on_puback: bool = False, wall: Callable[[], float] = time.time,
                 coalesce_published_s: float = 0.0):
        """`wall`: epoch seconds, for the publish and acknowledgement times (they survive restarts)."""
        if full_policy not in POLICIES:
            raise ValueError(f"outbox full policy must be one of {', '.join(POLICIES)}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.full_policy = full_policy
        self.final_on_puback = final_on_puback
        self.wall = wall
        self.full = False            # pending rows reached max_rows at the last enforce_limit()
        self.coalesce_published_s = 0.0 if final_on_puback else coalesce_published_s
        self._published: dict[int, float] = {}   # seq -> PUBACK time, not written yet (coalesce_published_s)
        self._published_since = 0.0
        self._identity: tuple[int, int] | None = None
        self._meta: dict[str, float] = {}       # floors and times newer than outbox_meta's
        self._meta_written = time.monotonic()
        self._meta_known: set[str] = set()     # keys outbox_meta has: a first value is written at once
        self._db: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=True)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
            # A lost state update after a power cut only means a re-send, so NORMAL is enough here.
            db.execute("PRAGMA synchronous = NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.execute("BEGIN IMMEDIATE")
                journal_schema.migrate(db, self.path, "", "")
                db.execute("COMMIT")
            self._identity = journal_file.identity(self.path)
            self._epochs = self._load_epochs(db)
            self._meta_known = {r[0] for r in db.execute("SELECT key FROM outbox_meta")}
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the outbox in {self.path}: {exc} "
                               "(check the journal path, permissions and free disk space)") from None
        return db

    def close(self) -> None:
        if self._db is not None:
            if (self._meta or self._published) and self._identity == journal_file.identity(self.path):
                try:
                    self._write(self._write_published, force_meta=True)
                except StorageError:
                    pass  # only floors and times: the next open starts from the written ones
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        return self._current()

    def _current(self) -> sqlite3.Connection:
        """The connection, reopened when the journal file was put back (see Journal._ensure_file): the old
        connection is closed at once, so the journal can take its file out of WAL mode and copy it."""
        now = journal_file.identity(self.path)
        if self._db is None or now != self._identity:
            self.close()
            if now is None:
                raise StorageError(f"the journal {self.path} is missing (the kiosk puts it back when it can)")
            self._db = self._open()
        return self._db

    @staticmethod
    def _load_epochs(db: sqlite3.Connection) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in db.execute("SELECT first_seq, uid FROM id_epochs ORDER BY first_seq")]

    # ------------------------------------------------------------------ reading
    def next_batch(self, limit: int, resend_before_epoch: float | None = None, *, after_seq: int = 0,
                   resend_after_seq: int = 0) -> list[sqlite3.Row]:
        """Up to `limit` rows to send, in seq order: pending rows with seq > after_seq, then (if room is
        left and resend_before_epoch is given) published-but-unconfirmed rows published before it."""
        if limit <= 0:
            return []
        self._coalesced(force=after_seq == 0)  # a new connection's first batch: PUBACKs so far count
        db = self._current()
        rows = db.execute(
            f"{SELECT_EVENTS} WHERE seq >= ? AND up_state = ? ORDER BY seq LIMIT ?",
            (max(after_seq + 1, self._floor(db, "pending_floor")), PENDING, limit)).fetchall()
        if resend_before_epoch is not None and len(rows) < limit:
            rows += db.execute(
                f"{SELECT_EVENTS} WHERE seq >= ? AND up_state = ? AND up_published_at < ? ORDER BY seq LIMIT ?",
                (max(resend_after_seq + 1, self._floor(db, "queued_floor")), PUBLISHED, resend_before_epoch,
                 limit - len(rows))).fetchall()
        return rows

    def has_pending(self) -> bool:
        """A row still to be sent (not counting those whose PUBACK is held by coalesce_published_s)."""
        self._coalesced()
        db = self._current()
        rows = db.execute("SELECT seq FROM checkins WHERE seq >= ? AND up_state = ? ORDER BY seq LIMIT ?",
                          (self._floor(db, "pending_floor"), PENDING, len(self._published) + 1)).fetchall()
        return any(seq not in self._published for seq, in rows)

    def status(self) -> dict[str, Any]:
        self._coalesced(force=True)
        db = self._current()
        with journal_file.ReadTransaction(db):
            counts = dict.fromkeys((PENDING, PUBLISHED), 0)
            for state, n in db.execute(f"SELECT up_state, count(*) FROM checkins WHERE seq >= ? "
                                       f"AND up_state IN {QUEUED_SQL} GROUP BY up_state",
                                       (self._floor(db, "queued_floor"),)):
                counts[state] = n
            dropped = db.execute("SELECT count(*) FROM checkins WHERE up_state = 'dropped'").fetchone()[0]
            total = journal_index.count(db)
            oldest = db.execute("SELECT ts, ts_epoch FROM checkins WHERE seq >= ? AND up_state = ? "
                                "ORDER BY seq LIMIT 1", (self._floor(db, "pending_floor"), PENDING)).fetchone()
            meta = dict(db.execute("SELECT key, value FROM outbox_meta").fetchall()) | self._meta
        now = self.wall()
        return {
            "pending": counts[PENDING],
            "published_unconfirmed": counts[PUBLISHED],
            "confirmed": total - counts[PENDING] - counts[PUBLISHED] - dropped,
            "dropped": dropped,
            "oldest_pending_ts": oldest["ts"] if oldest else None,
            "oldest_pending_age_s": round(max(0.0, now - oldest["ts_epoch"]), 1) if oldest else None,
            "last_puback_at": meta.get("last_puback_at"),
            "last_ack_at": meta.get("last_ack_at"),
            "max_rows": self.max_rows,
            "full_policy": self.full_policy,
            "full": counts[PENDING] + counts[PUBLISHED] >= self.max_rows,
            "final_on_puback": self.final_on_puback,
        }

    def unconfirmed(self) -> Iterable[sqlite3.Row]:
        """Every row the consumer has not stored yet, dropped ones included, in seq order (an offline bundle)."""
        self._coalesced(force=True)
        db = self._current()
        return iter(db.execute(
            f"{SELECT_EVENTS} WHERE seq IN (SELECT seq FROM checkins WHERE seq >= ? AND up_state IN {QUEUED_SQL} "
            f"UNION SELECT seq FROM checkins WHERE up_state = '{DROPPED}') ORDER BY seq",
            (self._floor(db, "queued_floor"),)))

    # ------------------------------------------------------------------ transitions (forward only)
    def mark_published(self, ids: Iterable[str]) -> int:
        """The broker acknowledged these. Final already when no consumer confirmation is configured."""
        target = CONFIRMED if self.final_on_puback else PUBLISHED
        now = self.wall()
        if self.coalesce_published_s > 0:
            seqs = self._seqs(self._current(), list(ids))
            if seqs and not self._published:
                self._published_since = time.monotonic()
            for seq in seqs:
                self._published.setdefault(seq, now)
            self._meta["last_puback_at"] = now
            self._coalesced()
            return len(seqs)
        return self._update(
            f"UPDATE checkins SET up_state = ?, up_published_at = ?, up_attempts = up_attempts + 1 "
            f"WHERE up_state IN {QUEUED_SQL} AND seq IN ({{marks}})",
            (target, now), ids, meta=("last_puback_at", now))

    def confirm(self, ids: Iterable[str]) -> int:
        """The consumer stored these end to end. A pending row may be confirmed directly (its PUBACK was lost,
        or is still held by coalesce_published_s: then it is never written as published)."""
        ids = list(ids)
        self._forget_held(ids)
        return self._update(
            f"UPDATE checkins SET up_state = '{CONFIRMED}' WHERE up_state IN {QUEUED_SQL} AND seq IN ({{marks}})",
            (), ids, meta=("last_ack_at", self.wall()))

    def confirm_bundle(self, ids: Iterable[str]) -> int:
        """A console imported these from an offline bundle (its receipt names them): dropped ones too."""
        ids = list(ids)
        self._forget_held(ids)
        return self._update(
            f"UPDATE checkins SET up_state = '{CONFIRMED}' "
            f"WHERE up_state IN ('{PENDING}', '{PUBLISHED}', '{DROPPED}') AND seq IN ({{marks}})",
            (), ids, meta=("last_ack_at", self.wall()))

    def confirm_upto(self, seq: int) -> int:
        """Watermark: the consumer stored every event up to `seq`. Only rows this kiosk published are taken;
        a pending one below the mark is sent again and confirmed by the next ack."""
        self._coalesced(force=True)
        now = self.wall()
        return self._write(lambda db: db.execute(
            "UPDATE checkins SET up_state = ? WHERE seq >= ? AND seq <= ? AND up_state = ?",
            (CONFIRMED, self._floor(db, "queued_floor"), seq, PUBLISHED)).rowcount, meta=("last_ack_at", now))

    def enforce_limit(self) -> int:
        """Apply the full policy when more than max_rows are queued (pending, or published and waiting for the
        consumer's confirmation: both would still be sent). Returns how many rows were dropped."""
        self._coalesced()
        db = self._current()
        floor = self._floor(db, "queued_floor")
        span = db.execute(f"SELECT {_LAST_SEQ} - ? + 1", (floor,)).fetchone()[0]
        if span < self.max_rows:  # fewer rows above the floor than the bound: no need to count
            self.full = False
            return 0
        queued = db.execute(f"SELECT count(*) FROM checkins WHERE seq >= ? AND up_state IN {QUEUED_SQL}",
                            (floor,)).fetchone()[0]
        excess = queued - self.max_rows
        self.full = excess >= 0
        if excess <= 0:
            return 0
        order = "ASC" if self.full_policy == "drop_oldest" else "DESC"
        return self._write(lambda db: db.execute(
            f"UPDATE checkins SET up_state = ? WHERE seq IN (SELECT seq FROM checkins WHERE seq >= ? "
            f"AND up_state IN {QUEUED_SQL} ORDER BY seq {order} LIMIT ?)",
            (DROPPED, self._floor(db, "queued_floor"), excess)).rowcount)

    # ------------------------------------------------------------------ helpers
    def _seqs(self, db: sqlite3.Connection, ids: Iterable[str]) -> list[int]:
        """The rows of these event ids: derived ids carry their seq (checked against the journal's epochs),
        ids migrated from schema 1 are looked up in their partial index. Unknown ids are left out."""
        seqs, stored = [], []
        for event_id in ids:
            if isinstance(event_id, str) and _DERIVED_ID.fullmatch(event_id):
                seq = self._epoch_seq(db, event_id)
                if seq is not None:
                    seqs.append(seq)
                    continue
            stored.append(event_id)
        for start in range(0, len(stored), _CHUNK):
            chunk = stored[start:start + _CHUNK]
            seqs += [r[0] for r in db.execute(
                f"SELECT seq FROM checkins WHERE id IN ({','.join('?' * len(chunk))})", chunk)]
        return seqs

    def _epoch_seq(self, db: sqlite3.Connection, event_id: str) -> int | None:
        uid, seq = event_id[:UID_HEX], int(event_id[UID_HEX:], 16)
        if uid not in {u for _, u in self._epochs}:
            self._epochs = self._load_epochs(db)  # a new epoch since we opened (a journal put back)
        bounds = [first for first, _ in self._epochs] + [2 ** 63]
        for (first, epoch_uid), end in zip(self._epochs, bounds[1:]):
            if epoch_uid == uid:
                return seq if first <= seq < end else None
        return None

    def _update(self, sql: str, params: tuple[Any, ...], ids: Iterable[str], meta: tuple[str, float]) -> int:
        """Update rows by event id, by seq (the row id): the cost does not grow with the backlog."""
        ids = list(ids)
        if not ids:
            return 0

        def run(db: sqlite3.Connection) -> int:
            seqs = self._seqs(db, ids)
            changed = 0
            for start in range(0, len(seqs), _CHUNK):
                chunk = seqs[start:start + _CHUNK]
                changed += db.execute(sql.format(marks=",".join("?" * len(chunk))), (*params, *chunk)).rowcount
            return changed

        return self._write(run, meta)

    def _write(self, work: Callable[[sqlite3.Connection], int], meta: tuple[str, float] | None = None,
               force_meta: bool = False) -> int:
        try:
            db = self._current()
            db.execute("BEGIN IMMEDIATE")
            try:
                changed = work(db)
                if changed:
                    self._raise_floors(db)
                    if meta:
                        self._meta[meta[0]] = meta[1]
                if self._meta and (force_meta or time.monotonic() - self._meta_written >= META_EVERY_S
                                   or not self._meta.keys() <= self._meta_known):
                    db.executemany("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES (?, ?)",
                                   self._meta.items())
                    self._meta_written = time.monotonic()
                    self._meta_known |= self._meta.keys()
                    written = dict(self._meta)
                else:
                    written = {}
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"outbox update failed in {self.path}: {exc} "
                               "(check free disk space and permissions)") from None
        for key in written:
            if self._meta.get(key) == written[key]:
                del self._meta[key]
        return changed

    def _forget_held(self, ids: list[str]) -> None:
        """Rows confirmed while their PUBACK is still held: never written as published."""
        if self._published:
            for seq in self._seqs(self._current(), ids):
                self._published.pop(seq, None)

    def _coalesced(self, force: bool = False) -> None:
        """Write the held PUBACKs once the oldest is coalesce_published_s old (or there are many, or `force`)."""
        if self._published and (force or len(self._published) >= COALESCE_MAX_ROWS
                                or time.monotonic() - self._published_since >= self.coalesce_published_s):
            self._write(self._write_published)

    def _write_published(self, db: sqlite3.Connection) -> int:
        held, self._published = self._published, {}
        return sum(db.execute(f"UPDATE checkins SET up_state = ?, up_published_at = ?, up_attempts = up_attempts + 1 "
                              f"WHERE seq = ? AND up_state IN {QUEUED_SQL}", (PUBLISHED, at, seq)).rowcount
                   for seq, at in held.items())

    def _floor(self, db: sqlite3.Connection, key: str) -> int:
        """The higher of this connection's floor and the written one (both are true: floors only go up)."""
        row = db.execute("SELECT value FROM outbox_meta WHERE key = ?", (key,)).fetchone()
        return int(max(self._meta.get(key, 0), row[0] if row else 0))

    def _raise_floors(self, db: sqlite3.Connection) -> None:
        """Move each floor up to its first row still in its states (the rows passed are the ones just moved)."""
        for key, states in zip(FLOORS, (f"('{PENDING}')", QUEUED_SQL)):
            floor = self._floor(db, key)
            first = db.execute(f"SELECT coalesce((SELECT seq FROM checkins WHERE seq >= ? AND up_state IN {states} "
                               f"ORDER BY seq LIMIT 1), {_LAST_SEQ} + 1)", (floor,)).fetchone()[0]
            if first > floor:
                self._meta[key] = first

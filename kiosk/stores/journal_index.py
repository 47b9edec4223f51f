"""The journal's read side: indexes written in batches, off the insert, and the queries that use them.

A check-in insert touches only the table (see `kiosk.stores.checkins`). Every `BATCH` rows, `catch_up`
writes, in one transaction, for the rows not indexed yet (seq above `meta.indexed_upto`):
- `segments`: one row per batch, its seq range, its min and max `ts_epoch` and its row count (a zone map:
  a time range reads only the segments that overlap it, however the clock jumped);
- `segment_refs`: the batch's (segment, subject_ref, seq), sorted, so the insert appends at the b-tree's
  right edge instead of touching a random page per check-in; trace probes it once per segment in range;
- `tallies`: counts per 15-minute bucket, direction, verdict and kind (every real time zone's offset is a
  multiple of 15 minutes, so a bucket lies in one local hour): stats add these up.
Queries read the indexed rows through these and the unindexed tail (at most about `BATCH` rows) directly,
so they are exact at any moment and bounded by an index, not by the journal's size.
"""
from __future__ import annotations

import sqlite3
import math
from collections import Counter, defaultdict
from datetime import datetime, tzinfo
from typing import Any, Iterator

from kiosk.model import DIRECTIONS
from kiosk.stores.checkins import QUEUED_SQL, SELECT_EVENTS

BATCH = 500
BUCKET_S = 900
# Open ends of a time range: far outside any clock (2^60 s), and plain floats for SQLite.
LOW, HIGH = -float(2 ** 60), float(2 ** 60)

_TALLY_KEY = "CAST(ts_epoch / 900 AS INTEGER) AS bucket, direction, verdict, coalesce(kind, '') AS kind"


def indexed_upto(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'indexed_upto'").fetchone()
    return int(row[0]) if row else 0


def unindexed(db: sqlite3.Connection) -> int:
    """Rows not in a segment yet (the tail)."""
    tail: int = db.execute("SELECT count(*) FROM checkins WHERE seq > ?", (indexed_upto(db),)).fetchone()[0]
    return tail


def catch_up(db: sqlite3.Connection, limit: int = BATCH) -> int:
    """Index up to `limit` tail rows as one segment, inside the caller's write transaction. Rows indexed."""
    upto = indexed_upto(db)
    n: int
    lo, hi, n, ts_min, ts_max = db.execute(
        "SELECT min(seq), max(seq), count(*), min(ts_epoch), max(ts_epoch) FROM "
        "(SELECT seq, ts_epoch FROM checkins WHERE seq > ? ORDER BY seq LIMIT ?)", (upto, limit)).fetchone()
    if not n:
        return 0
    segment = db.execute("SELECT coalesce(max(segment), 0) + 1 FROM segments").fetchone()[0]
    db.execute("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)", (segment, lo, hi, ts_min, ts_max, n))
    db.execute("INSERT INTO segment_refs (segment, subject_ref, seq) SELECT ?, subject_ref, seq FROM checkins "
               "WHERE seq BETWEEN ? AND ? AND subject_ref IS NOT NULL ORDER BY subject_ref, seq", (segment, lo, hi))
    db.execute(f"INSERT INTO tallies (bucket, direction, verdict, kind, n) SELECT {_TALLY_KEY}, count(*) "
               f"FROM checkins WHERE seq BETWEEN ? AND ? GROUP BY 1, 2, 3, 4 "
               f"ON CONFLICT DO UPDATE SET n = n + excluded.n", (lo, hi))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('indexed_upto', ?)", (hi,))
    return n


def count(db: sqlite3.Connection) -> int:
    indexed: int = db.execute("SELECT coalesce(sum(rows), 0) FROM segments").fetchone()[0]
    return indexed + unindexed(db)


def _bounds(since: datetime | None, until: datetime | None) -> tuple[float, float]:
    return (since.timestamp() if since else LOW), (until.timestamp() if until else HIGH)


# Indexed rows with lo <= ts < hi: the segments that overlap the range, then a seq range scan in each.
_IN_RANGE = ("SELECT c.seq FROM segments s CROSS JOIN checkins c ON c.seq BETWEEN s.seq_lo AND s.seq_hi "
             "WHERE s.ts_max >= :lo AND s.ts_min < :hi AND c.ts_epoch >= :lo AND c.ts_epoch < :hi")


def events(db: sqlite3.Connection, since: datetime | None, until: datetime | None) -> Iterator[sqlite3.Row]:
    """Rows with since <= ts < until as events, in seq order, streamed (a cursor per segment)."""
    if since is None and until is None:
        yield from db.execute(f"{SELECT_EVENTS} ORDER BY seq")
        return
    lo, hi = _bounds(since, until)
    upto = indexed_upto(db)
    segments = db.execute("SELECT seq_lo, seq_hi FROM segments WHERE ts_max >= ? AND ts_min < ? ORDER BY segment",
                          (lo, hi)).fetchall()
    for first, last in [*segments, (upto + 1, 2 ** 63 - 1)]:
        yield from db.execute(f"{SELECT_EVENTS} WHERE seq BETWEEN ? AND ? AND ts_epoch >= ? AND ts_epoch < ? "
                              f"ORDER BY seq", (first, last, lo, hi))


def trace(db: sqlite3.Connection, subject_ref: str, since: datetime | None,
          until: datetime | None) -> list[sqlite3.Row]:
    """Rows of one subject_ref with since <= ts < until, oldest first: one probe per segment in range
    (CROSS JOIN keeps that order: the planner would otherwise scan every ref)."""
    lo, hi = _bounds(since, until)
    return db.execute(
        f"{SELECT_EVENTS} WHERE seq IN (SELECT r.seq FROM segments s CROSS JOIN segment_refs r "
        f"ON r.segment = s.segment AND r.subject_ref = :ref WHERE s.ts_max >= :lo AND s.ts_min < :hi) "
        f"AND ts_epoch >= :lo AND ts_epoch < :hi "
        f"UNION ALL {SELECT_EVENTS} WHERE seq > :upto AND subject_ref = :ref AND ts_epoch >= :lo AND ts_epoch < :hi "
        f"ORDER BY ts_epoch, seq",
        {"ref": subject_ref, "lo": lo, "hi": hi, "upto": indexed_upto(db)}).fetchall()


def stats(db: sqlite3.Connection, since: datetime | None, until: datetime | None,
          zone: tzinfo) -> dict[str, Any]:
    """Counts per local day and hour (in/out), per verdict and per kind: whole 15-minute buckets from the
    tallies; the rows of the partial buckets at either end, and of the unindexed tail, counted one by one."""
    lo, hi = _bounds(since, until)
    first_whole = math.ceil(lo / BUCKET_S)   # buckets first_whole .. end_whole - 1 lie inside [lo, hi)
    end_whole = math.floor(hi / BUCKET_S)
    if first_whole < end_whole:
        groups = db.execute("SELECT bucket, direction, verdict, kind, n FROM tallies WHERE bucket >= ? AND bucket < ?",
                            (first_whole, end_whole)).fetchall()
        exact = [(lo, first_whole * BUCKET_S), (end_whole * BUCKET_S, hi)]
    else:
        groups, exact = [], [(lo, hi)]
    for edge_lo, edge_hi in exact:
        if edge_lo < edge_hi:
            groups += db.execute(f"SELECT {_TALLY_KEY}, count(*) FROM checkins WHERE seq IN ({_IN_RANGE}) "
                                 f"GROUP BY 1, 2, 3, 4", {"lo": edge_lo, "hi": edge_hi}).fetchall()
    groups += db.execute(f"SELECT {_TALLY_KEY}, count(*) FROM checkins WHERE seq > ? AND ts_epoch >= ? "
                         f"AND ts_epoch < ? GROUP BY 1, 2, 3, 4", (indexed_upto(db), lo, hi)).fetchall()
    return _summarise(groups, since, until, zone)


def _summarise(groups: list[tuple[int, str, str, str, int]], since: datetime | None, until: datetime | None, zone: tzinfo) -> dict[str, Any]:
    hours: dict[str, Counter[str]] = defaultdict(Counter)
    verdicts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    labels: dict[int, str] = {}
    for bucket, direction, verdict, kind, n in groups:
        label = labels.get(bucket)
        if label is None:
            label = labels[bucket] = datetime.fromtimestamp(bucket * BUCKET_S, zone).strftime("%Y-%m-%dT%H")
        hours[label][direction] += n
        verdicts[verdict] += n
        kinds[kind or "none"] += n
    days: dict[str, Counter[str]] = defaultdict(Counter)
    for hour, c in hours.items():
        days[hour[:10]].update(c)

    def in_out(c: Counter[str]) -> dict[str, int]:
        return {direction: c[direction] for direction in DIRECTIONS}

    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "timezone": str(zone),
        "total": sum(verdicts.values()),
        "verdicts": {v: verdicts[v] for v in ("green", "black", "invalid")} | dict(verdicts),
        "kinds": dict(sorted(kinds.items())),
        "days": {d: in_out(c) for d, c in sorted(days.items())},
        "hours": {h: in_out(c) for h, c in sorted(hours.items())},
    }


def purge(db: sqlite3.Connection, before: float, keep_unsent: bool) -> int:
    """Delete rows with ts_epoch < before (keeping queued ones when asked) with their refs and tallies,
    inside the caller's write transaction. Rows deleted."""
    while catch_up(db, 10 * BATCH):
        pass  # everything indexed: the rows to delete, their tallies and refs are found through the segments
    keep = f"AND c.up_state NOT IN {QUEUED_SQL}" if keep_unsent else ""
    db.execute("DROP TABLE IF EXISTS temp.purged")
    db.execute(f"CREATE TEMP TABLE purged AS SELECT s.segment, c.seq, c.subject_ref FROM segments s "
               f"CROSS JOIN checkins c ON c.seq BETWEEN s.seq_lo AND s.seq_hi WHERE s.ts_min < ? AND c.ts_epoch < ? {keep}",
               (before, before))
    deleted: int = db.execute("SELECT count(*) FROM temp.purged").fetchone()[0]
    if deleted:
        db.execute(f"UPDATE tallies SET n = tallies.n - p.n FROM (SELECT {_TALLY_KEY}, count(*) AS n FROM checkins "
                   f"WHERE seq IN (SELECT seq FROM temp.purged) GROUP BY 1, 2, 3, 4) AS p "
                   f"WHERE (tallies.bucket, tallies.direction, tallies.verdict, tallies.kind) "
                   f"= (p.bucket, p.direction, p.verdict, p.kind)")
        db.execute("DELETE FROM tallies WHERE n <= 0")
        db.execute("DELETE FROM segment_refs WHERE (segment, subject_ref, seq) IN "
                   "(SELECT segment, subject_ref, seq FROM temp.purged WHERE subject_ref IS NOT NULL)")
        db.execute("UPDATE segments SET rows = segments.rows - p.n FROM (SELECT segment, count(*) AS n "
                   "FROM temp.purged GROUP BY segment) AS p WHERE segments.segment = p.segment")
        db.execute("DELETE FROM segments WHERE rows <= 0")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_floor', max("
                   "coalesce((SELECT value FROM meta WHERE key = 'seq_floor'), 0), (SELECT max(seq) FROM temp.purged)))")
        db.execute("DELETE FROM checkins WHERE seq IN (SELECT seq FROM temp.purged)")
    db.execute("DROP TABLE temp.purged")
    return deleted

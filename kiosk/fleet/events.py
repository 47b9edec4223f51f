"""The fleet's event store: every check-in once (event id as key), kiosk state, and the pages' read queries.

SQLAlchemy Core on SQLite or PostgreSQL (`kiosk.fleet.db`), schema in `kiosk.fleet.schema`, upgraded by
`kiosk.fleet.migrations`. `add` stores a batch in one committed transaction and returns the rows that were
new (a re-sent event is stored once); the collector acknowledges only after it returns. Every read query
takes one site (or a list of refs for a trace), is bounded by an index and a limit, and costs the same at
10 M check-ins as at 10 k (bench/console.py measures it).
"""
from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from kiosk.config import ID_PATTERN, RESERVED_IDS
from kiosk.errors import StorageError
from kiosk.fleet import schema
from kiosk.fleet.db import IMMEDIATE, open_engine
from kiosk.fleet.migrations import upgrade
from kiosk.masking import mask_id, mask_name
from kiosk.model import BADGE, DCC, DIRECTIONS, GREEN, VERDICTS

C = schema.checkins.c

REF = re.compile(r"[0-9a-f]{8,64}")
SUBJECT_KEY = re.compile(r"[a-z_]{1,32}")
MAX_SUBJECT_KEYS, MAX_SUBJECT_VALUE = 12, 128
MASKED_FIELDS = ("id", "name", "birth", "gender")   # what a non-authorised viewer may see, masked


def now_ms() -> int:
    return int(time.time() * 1000)


def safe_id(value: Any) -> bool:
    """A site or device id as the configuration allows it (topic-safe, `all` reserved for commands)."""
    return isinstance(value, str) and bool(ID_PATTERN.fullmatch(value)) and value not in RESERVED_IDS


def _short_text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def mask_subject(subject: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """The published form of a subject (`kiosk.masking`'s rules), whether it arrived masked or full: masking
    twice changes nothing. Nothing of a signed certificate's holder or a badge; no date of birth."""
    if kind in (DCC, BADGE):
        return {}
    out: dict[str, Any] = {}
    if subject.get("id"):
        out["id"] = mask_id(str(subject["id"]))
    name = subject.get("name")
    if name:
        words = str(name).split()
        already = len(words) > 1 and all(w.endswith(".") and len(w) <= 8 for w in words[:-1])
        out["name"] = str(name) if already or len(words) == 1 else mask_name(str(name))
    if subject.get("gender"):
        out["gender"] = subject["gender"]
    return {k: v for k, v in out.items() if v}


def _subject(value: Any) -> dict[str, Any]:
    """A bounded subject: string or integer fields with short names; anything else is dropped."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in list(value.items())[:MAX_SUBJECT_KEYS]:
        if isinstance(k, str) and SUBJECT_KEY.fullmatch(k) and isinstance(v, (str, int)) and not isinstance(v, bool):
            out[k] = v[:MAX_SUBJECT_VALUE] if isinstance(v, str) else v
    return out


def parse_instant(ts: Any) -> int | None:
    """UTC milliseconds of an ISO-8601 instant with an offset; None for anything else."""
    if not isinstance(ts, str) or len(ts) > 40:
        return None
    try:
        at = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    return int(at.timestamp() * 1000)


def normalise(event: dict[str, Any], *, received_ms: int, authorised: bool = False,
              source: str = "mqtt") -> tuple[dict[str, Any] | None, str | None]:
    """(the row to store, None) or (None, the reason it is refused: a short counter name)."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= schema.ID_LEN:
        return None, "bad_id"
    if not (safe_id(event.get("site")) and safe_id(event.get("device"))):
        return None, "bad_site_or_device"
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2 ** 62:
        return None, "bad_seq"
    at_ms = parse_instant(event.get("ts"))
    if at_ms is None:
        return None, "bad_ts"
    verdict = event.get("verdict")
    if verdict not in VERDICTS:
        return None, "bad_verdict"
    direction = event.get("direction", "in")
    if direction not in DIRECTIONS:
        return None, "bad_direction"
    ref = event.get("subject_ref")
    subject = _subject(event.get("subject"))
    kind = _short_text(event.get("kind"), 32)
    return {
        "id": event_id, "site": event["site"], "device": event["device"], "seq": seq, "ts": event["ts"],
        "at_ms": at_ms, "received_ms": received_ms, "clock_synced": event.get("clock_synced") is True,
        "direction": direction, "mode": _short_text(event.get("mode"), 16), "kind": kind,
        "verdict": verdict, "reason": _short_text(event.get("reason"), 64) or "",
        "subject": json.dumps(subject if authorised else mask_subject(subject, kind), ensure_ascii=False),
        "subject_ref": ref if isinstance(ref, str) and REF.fullmatch(ref) else None,
        "override": event.get("override") is True, "source": source,
    }, None


def upsert(conn: Connection, table: Any, values: list[dict[str, Any]] | dict[str, Any], keys: Sequence[str],
           *, replace: Sequence[str] = (), add: Sequence[str] = ()) -> None:
    """INSERT, or on a key conflict set `replace` columns to the new values and add `add` columns to the old."""
    if not values:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    changes = {c: stmt.excluded[c] for c in replace}
    changes.update({c: table.c[c] + stmt.excluded[c] for c in add})
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=changes) if changes else \
        stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, values)


def stored_secret(engine: Engine, name: str) -> str:
    """A random secret kept in the database (`settings`), the same for every console process sharing it."""
    import secrets

    with engine.begin() as conn:
        upsert(conn, schema.settings, {"key": name, "value": secrets.token_hex(32)}, ("key",))
        return str(conn.execute(select(schema.settings.c.value).where(schema.settings.c.key == name)).scalar())


def store_rows(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert check-ins that are new, with their counts and their kiosks' last check-in; returns how many."""
    return len(insert_new(conn, rows))


def insert_new(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not rows:
        return []
    unique = list({r["id"]: r for r in rows}.values())
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(schema.checkins).on_conflict_do_nothing(index_elements=["id"]).returning(C.id)
    new_ids = {r[0] for r in conn.execute(stmt, unique)}
    new = [r for r in unique if r["id"] in new_ids]
    totals: dict[tuple[str, int, str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], int] = {}
    for r in new:
        totals[(r["site"], r["at_ms"] - r["at_ms"] % schema.BUCKET_MS, r["direction"], r["verdict"])] += 1
        key = (r["site"], r["device"])
        last[key] = max(last.get(key, 0), r["received_ms"])
    # sorted: two writers on PostgreSQL take the counts rows' locks in one order (no deadlock)
    upsert(conn, schema.counts, [{"site": s, "bucket_ms": b, "direction": d, "verdict": v, "n": n}
                                 for (s, b, d, v), n in sorted(totals.items())],
           ("site", "bucket_ms", "direction", "verdict"), add=("n",))
    created = now_ms()
    upsert(conn, schema.sites, [{"id": s, "name": "", "authorised": False, "created_ms": created}
                                for s in sorted({s for s, _ in last})], ("id",))
    upsert(conn, schema.devices, [{"site": s, "device": d, "last_checkin_ms": t, "last_seen_ms": t}
                                  for (s, d), t in sorted(last.items())],
           ("site", "device"), replace=("last_checkin_ms", "last_seen_ms"))
    return [{**r, "subject": json.loads(r["subject"])} for r in new]   # as the read queries give them


@dataclass(frozen=True)
class Cursor:
    """A keyset position in a newest-first list: the last row shown."""

    at_ms: int
    id: str

    def __str__(self) -> str:
        return f"{self.at_ms}:{self.id}"

    @classmethod
    def parse(cls, text: str | None) -> "Cursor | None":
        if not text or ":" not in text or len(text) > 100:
            return None
        at, _, event_id = text.partition(":")
        return cls(int(at), event_id) if at.isdigit() and event_id else None


@dataclass(frozen=True)
class Filters:
    device: str | None = None
    verdict: str | None = None
    direction: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def clauses(self) -> list[Any]:
        out = []
        for column, value in ((C.device, self.device), (C.verdict, self.verdict), (C.direction, self.direction)):
            if value:
                out.append(column == value)
        if self.since_ms is not None:
            out.append(C.at_ms >= self.since_ms)
        if self.until_ms is not None:
            out.append(C.at_ms < self.until_ms)
        return out


CHECKIN_COLUMNS = (C.id, C.site, C.device, C.seq, C.ts, C.at_ms, C.clock_synced, C.direction, C.kind, C.verdict,
                   C.reason, C.subject, C.subject_ref, C.override, C.source)


def checkin_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["subject"] = json.loads(out["subject"]) if out.get("subject") else {}
    return out


class EventStore:
    """Check-ins by event id (`add` is idempotent), kiosk status and telemetry, and the read queries."""

    def __init__(self, database: str | Path | Engine, base: Path | None = None, *, migrate: bool = True):
        try:
            self.engine = database if isinstance(database, Engine) else open_engine(str(database), base)
            if migrate:
                upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open the console database: {exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0]}") from None
        self._authorised: tuple[float, frozenset[str]] = (0.0, frozenset())

    # ------------------------------------------------------------------ writes
    def authorised_sites(self) -> frozenset[str]:
        """Sites flagged authorised (cached for 5 s: the collector asks on every batch)."""
        at, sites = self._authorised
        if time.monotonic() - at > 5.0:
            with self.engine.connect() as conn:
                sites = frozenset(r[0] for r in conn.execute(select(schema.sites.c.id)
                                                             .where(schema.sites.c.authorised.is_(True))))
            self._authorised = (time.monotonic(), sites)
        return sites

    def prepare(self, events: list[dict[str, Any]], *, source: str = "mqtt"
                ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Rows to store, and the ids refused with the reason (a time, verdict or id the store cannot keep)."""
        received, authorised = now_ms(), self.authorised_sites()
        rows, refused = [], {}
        for e in events:
            row, why = normalise(e, received_ms=received, authorised=e.get("site") in authorised, source=source)
            if row is None:
                refused[str(e.get("id"))[:64]] = why or "invalid"
            else:
                rows.append(row)
        return rows, refused

    def insert(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store in one committed transaction; returns the rows that were new (a re-send is stored once)."""
        try:
            with self.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
                return insert_new(conn, rows)
        except SQLAlchemyError as exc:
            raise StorageError(f"console database write failed: {str(exc).splitlines()[0]} "
                               "(check the database server or free disk space)") from None

    def add(self, events: list[dict[str, Any]], *, source: str = "mqtt") -> list[dict[str, Any]]:
        """prepare + insert: the new rows (refused events are left out)."""
        return self.insert(self.prepare(events, source=source)[0])

    def record_status(self, site: str, device: str, body: dict[str, Any]) -> None:
        state = body.get("state") if body.get("state") in ("online", "offline") else None
        at = now_ms()
        values = {"site": site, "device": device, "status": state, "status_ms": at, "last_seen_ms": at,
                  "status_reason": _short_text(body.get("reason"), 200),
                  "version": _short_text(body.get("version"), 64)}
        with self.engine.begin() as conn:
            self._ensure_site(conn, site)
            upsert(conn, schema.devices, values, ("site", "device"),
                   replace=("status", "status_ms", "status_reason", "last_seen_ms")
                   + (("version",) if values["version"] else ()))

    def record_telemetry(self, site: str, device: str, body: dict[str, Any]) -> None:
        at = now_ms()
        values = {"site": site, "device": device, "telemetry": json.dumps(body, ensure_ascii=False)[:65536],
                  "telemetry_ms": at, "last_seen_ms": at}
        with self.engine.begin() as conn:
            self._ensure_site(conn, site)
            upsert(conn, schema.devices, values, ("site", "device"), replace=("telemetry", "telemetry_ms",
                                                                               "last_seen_ms"))

    @staticmethod
    def _ensure_site(conn: Connection, site: str) -> None:
        upsert(conn, schema.sites, {"id": site, "name": "", "authorised": False, "created_ms": now_ms()}, ("id",))

    def set_site(self, site: str, *, name: str | None = None, authorised: bool | None = None,
                 capacity: int | None = None) -> None:
        with self.engine.begin() as conn:
            self._ensure_site(conn, site)
            changes: dict[str, Any] = {}
            if name is not None:
                changes["name"] = name
            if authorised is not None:
                changes["authorised"] = authorised
            if capacity is not None:
                changes["capacity"] = capacity or None
            if changes:
                conn.execute(update(schema.sites).where(schema.sites.c.id == site).values(**changes))
        self._authorised = (0.0, frozenset())

    def purge(self, older_than_ms: int, batch: int = 5000) -> int:
        """Delete check-ins older than the instant, site by site through (site, at_ms), in short transactions
        (the collector keeps writing meanwhile). The quarter-hour counts stay. Returns how many went."""
        s = schema.sites.c
        with self.engine.connect() as conn:
            sites = [r[0] for r in conn.execute(select(s.id))]
        removed = 0
        for site in sites:
            while True:
                old = select(C.id).where(C.site == site, C.at_ms < older_than_ms).limit(batch).scalar_subquery()
                with self.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
                    n = conn.execute(delete(schema.checkins).where(C.id.in_(old))).rowcount
                removed += n
                if n < batch:
                    break
        return removed

    # ------------------------------------------------------------------ reads
    def ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(C.id))]

    def sites(self, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
        s = schema.sites.c
        query = select(schema.sites).order_by(s.id)
        if only is not None:
            query = query.where(s.id.in_(list(only)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def site(self, site: str) -> dict[str, Any] | None:
        found = self.sites([site])
        return found[0] if found else None

    def recent(self, site: str, *, limit: int = 50, before: Cursor | None = None,
               filters: Filters = Filters()) -> list[dict[str, Any]]:
        """Newest first, `limit` rows older than `before` (keyset: the same cost on page 1 and page 10,000)."""
        where = [C.site == site, *filters.clauses()]
        if before is not None:
            where.append(tuple_(C.at_ms, C.id) < tuple_(before.at_ms, before.id))
        query = select(*CHECKIN_COLUMNS).where(and_(*where)).order_by(C.at_ms.desc(), C.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [checkin_dict(r) for r in conn.execute(query)]

    def newer(self, site: str, after: Cursor, limit: int) -> list[dict[str, Any]]:
        """Rows after `after` in time order, at most `limit` (the live feed catching up after a reconnect)."""
        query = (select(*CHECKIN_COLUMNS).where(C.site == site, tuple_(C.at_ms, C.id) > tuple_(after.at_ms, after.id))
                 .order_by(C.at_ms, C.id).limit(limit))
        with self.engine.connect() as conn:
            return [checkin_dict(r) for r in conn.execute(query)]

    def export(self, site: str, filters: Filters = Filters(), chunk: int = 2000) -> Iterator[dict[str, Any]]:
        """Every matching row, newest first, read in keyset chunks (constant memory, no long transaction)."""
        before = None
        while True:
            rows = self.recent(site, limit=chunk, before=before, filters=filters)
            yield from rows
            if len(rows) < chunk:
                return
            before = Cursor(rows[-1]["at_ms"], rows[-1]["id"])

    def buckets(self, site: str, since_ms: int, until_ms: int) -> list[tuple[int, str, str, int]]:
        """(bucket_ms, direction, verdict, n) quarter-hours in [since, until)."""
        k = schema.counts.c
        query = (select(k.bucket_ms, k.direction, k.verdict, k.n)
                 .where(k.site == site, k.bucket_ms >= since_ms, k.bucket_ms < until_ms).order_by(k.bucket_ms))
        with self.engine.connect() as conn:
            return [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in conn.execute(query)]

    def counts(self, site: str, start: datetime, days: int, zone: tzinfo) -> "Counts":
        """Per local hour and per local day from `start` (a local midnight) for `days` days."""
        since = int(start.timestamp() * 1000)
        until = int((start + timedelta(days=days)).timestamp() * 1000)
        return Counts.of(self.buckets(site, since, until), zone)

    def trace(self, refs: Sequence[str], sites: Sequence[str], since_ms: int, until_ms: int, window_ms: int, *,
              max_visits: int = 500, max_others: int = 200) -> list[dict[str, Any]]:
        """The visits of a person (any of `refs`) at `sites`, each with the others seen within `window_ms`."""
        if not refs or not sites:
            return []
        query = (select(*CHECKIN_COLUMNS)
                 .where(C.subject_ref.in_(list(refs)), C.site.in_(list(sites)), C.at_ms >= since_ms,
                        C.at_ms < until_ms)
                 .order_by(C.at_ms).limit(max_visits))
        with self.engine.connect() as conn:
            visits = [checkin_dict(r) for r in conn.execute(query)]
            for visit in visits:
                others = (select(*CHECKIN_COLUMNS)
                          .where(C.site == visit["site"], C.at_ms >= visit["at_ms"] - window_ms,
                                 C.at_ms <= visit["at_ms"] + window_ms,
                                 or_(C.subject_ref.is_(None), C.subject_ref.not_in(list(refs))))
                          .order_by(C.at_ms).limit(max_others))
                visit["others"] = [checkin_dict(r) for r in conn.execute(others)]
        return visits

    def devices(self, sites: Sequence[str]) -> list[dict[str, Any]]:
        d = schema.devices.c
        query = select(schema.devices).where(d.site.in_(list(sites))).order_by(d.site, d.device)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            try:
                row["telemetry"] = json.loads(row["telemetry"]) if row["telemetry"] else {}
            except ValueError:
                row["telemetry"] = {}
        return rows

    def total(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.checkins)).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class Counts:
    """Totals of a range of days: per local hour and per local day, by direction and verdict, and occupancy."""

    hours: dict[datetime, dict[str, int]]
    days: dict[str, dict[str, int]]
    occupancy: int

    @classmethod
    def of(cls, buckets: list[tuple[int, str, str, int]], zone: tzinfo) -> "Counts":
        hours: dict[datetime, dict[str, int]] = {}
        days: dict[str, dict[str, int]] = {}
        net: dict[int, int] = {}
        for bucket_ms, direction, verdict, n in buckets:
            local = datetime.fromtimestamp(bucket_ms / 1000, zone)
            hour = local.replace(minute=0, second=0, microsecond=0)
            for cell in (hours.setdefault(hour, _empty()), days.setdefault(local.date().isoformat(), _empty())):
                cell[verdict] += n
                if direction == "out" or verdict == GREEN:
                    cell[direction] += n      # admitted entries, and every exit
            if direction == "out" or verdict == GREEN:
                net[bucket_ms] = net.get(bucket_ms, 0) + (n if direction == "in" else -n)
        # people inside: admitted entries minus exits, quarter-hour by quarter-hour; a missed entry scan or the
        # exit of someone who came in before the day's start never takes it below zero
        occupancy = 0
        for bucket_ms in sorted(net):
            occupancy = max(0, occupancy + net[bucket_ms])
        return cls(hours=hours, days=days, occupancy=occupancy)


def _empty() -> dict[str, int]:
    return {"in": 0, "out": 0, "green": 0, "black": 0, "invalid": 0}

"""The console's event store: the same suite on a SQLite file and on a throwaway PostgreSQL."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, inspect, text

from postgres import database_url, postgres_server  # noqa: F401  (fixtures)
from kiosk.errors import StorageError
from kiosk.fleet import migrations
from kiosk.fleet.db import database_url as to_url, open_engine
from kiosk.fleet.events import Cursor, EventStore, Filters, mask_subject, normalise
from kiosk.masking import mask_id

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = datetime(2021, 11, 15, tzinfo=ZONE)
REF_A, REF_B = "a1" * 16, "b2" * 16


def event(n: int, at: datetime, *, site="s1", device="d1", direction="in", verdict="green", ref=None, **extra):
    return {"v": 1, "id": f"{site}-{device}-{n:08d}", "seq": n, "ts": at.isoformat(), "site": site,
            "device": device, "direction": direction, "verdict": verdict, "reason": "valid", "kind": "personal_qr",
            "clock_synced": True, "subject": {"id": "079090000001", "name": "NGUYEN VAN THU", "birth": "1990-12-01",
                                              "gender": "male"}, "subject_ref": ref, **extra}


@pytest.fixture
def store(database_url):
    s = EventStore(database_url)
    yield s
    s.close()


def test_add_is_idempotent_and_returns_the_new_rows(store):
    e = event(1, DAY)
    assert [r["id"] for r in store.add([e, dict(e)])] == [e["id"]]
    assert store.add([e]) == []
    assert store.ids() == [e["id"]]
    assert store.counts("s1", DAY, 1, ZONE).days["2021-11-15"]["in"] == 1   # counted once, not per re-send


def test_refused_events_name_their_reason(store):
    rows, refused = store.prepare([event(1, DAY, verdict="purple"), event(2, DAY) | {"ts": "yesterday"},
                                   event(3, DAY, site="bad site"), event(4, DAY, site="all"),
                                   event(5, DAY) | {"ts": "2021-11-15T09:00:00"}, event(6, DAY)])
    assert [r["id"] for r in rows] == ["s1-d1-00000006"]
    assert sorted(refused.values()) == ["bad_site_or_device", "bad_site_or_device", "bad_ts", "bad_ts",
                                        "bad_verdict"]


def test_subjects_are_masked_unless_the_site_is_authorised(store):
    store.add([event(1, DAY)])
    assert store.recent("s1")[0]["subject"] == {"id": mask_id("079090000001"), "name": "N.V. THU",
                                                "gender": "male"}      # kiosk.masking's rules: no birth date
    store.set_site("h1", authorised=True)
    store.add([event(1, DAY, site="h1")])
    assert store.recent("h1")[0]["subject"]["name"] == "NGUYEN VAN THU"
    once = mask_subject(event(1, DAY)["subject"], "cccd")
    assert mask_subject(once, "cccd") == once and "079090000001" not in str(once)
    assert mask_subject(event(1, DAY)["subject"], "dcc") == {}            # nothing of a certificate's holder


def test_hostile_subject_fields_are_bounded(store):
    e = event(1, DAY) | {"subject": {"name": "X" * 10_000, "Bad Key": "1", "nested": {"a": 1}, "flag": True}}
    store.add([e])
    assert store.recent("s1")[0]["subject"] == {"name": "X" * 128}


def test_recent_pages_by_keyset_newest_first(store):
    store.add([event(i, DAY + timedelta(minutes=i)) for i in range(25)])
    first = store.recent("s1", limit=10)
    assert [r["seq"] for r in first] == list(range(24, 14, -1))
    cursor = Cursor(first[-1]["at_ms"], first[-1]["id"])
    assert Cursor.parse(str(cursor)) == cursor
    second = store.recent("s1", limit=10, before=cursor)
    assert [r["seq"] for r in second] == list(range(14, 4, -1))
    assert [r["seq"] for r in store.newer("s1", cursor, 3)] == [16, 17, 18]
    assert len(list(store.export("s1", chunk=7))) == 25
    only = store.recent("s1", filters=Filters(since_ms=first[2]["at_ms"]))
    assert [r["seq"] for r in only] == [24, 23, 22]


def test_counts_per_hour_and_day_and_occupancy_never_negative(store):
    at = DAY.replace(hour=8)
    store.add([event(1, at - timedelta(minutes=20), direction="out"),  # entered before midnight: not -1
               event(2, at + timedelta(minutes=5)), event(3, at + timedelta(minutes=6)),
               event(4, at + timedelta(minutes=7), verdict="black"),
               event(5, at + timedelta(hours=1), direction="out"),
               event(6, DAY.replace(hour=23, minute=50)),
               event(7, DAY + timedelta(days=1, hours=1))])           # the next local day
    counts = store.counts("s1", DAY, 1, ZONE)
    assert counts.days == {"2021-11-15": {"in": 3, "out": 2, "green": 5, "black": 1, "invalid": 0}}
    assert counts.hours[at]["in"] == 2 and counts.hours[at]["black"] == 1
    assert counts.occupancy == 2                               # 0 (clamped) + 2 - 1 + 1
    two = store.counts("s1", DAY, 2, ZONE)
    assert two.days["2021-11-16"]["in"] == 1


def test_trace_finds_visits_and_who_else_was_there(store):
    at = DAY.replace(hour=10)
    store.add([event(1, at, ref=REF_A), event(2, at + timedelta(minutes=10), ref=REF_B),
               event(3, at + timedelta(hours=3), ref=REF_B),                      # outside the window
               event(1, at + timedelta(minutes=5), site="s2", ref=REF_B),         # another site
               event(4, at + timedelta(days=1), ref=REF_A)])
    since, until = int((DAY - timedelta(days=1)).timestamp() * 1000), int((DAY + timedelta(days=3)).timestamp() * 1000)
    visits = store.trace([REF_A], ["s1", "s2"], since, until, 30 * 60_000)
    assert [v["seq"] for v in visits] == [1, 4]
    assert [o["subject_ref"] for o in visits[0]["others"]] == [REF_B]
    assert visits[1]["others"] == []
    assert store.trace([REF_A], ["s2"], since, until, 30 * 60_000) == []        # sites the user may not see


def test_kiosk_status_and_telemetry(store):
    store.record_status("s1", "d1", {"state": "online", "version": "0.1.0"})
    store.record_telemetry("s1", "d1", {"alarms": ["clock_unsynced"], "outbox": {"pending": 3}})
    store.record_status("s1", "d1", {"state": "offline", "reason": "connection lost"})
    [device] = store.devices(["s1"])
    assert (device["status"], device["status_reason"], device["version"]) == ("offline", "connection lost", "0.1.0")
    assert device["telemetry"]["outbox"]["pending"] == 3
    assert store.devices(["s2"]) == []


def test_schema_from_empty_to_latest(database_url):
    engine = open_engine(database_url)
    assert migrations.upgrade(engine) == 0
    assert migrations.applied(engine) == [2, 3]
    assert migrations.upgrade(engine) == migrations.LATEST        # a second run changes nothing
    assert {"checkins", "counts", "users", "roles", "audit", "bundles"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_schema_from_version_2(database_url):
    engine = open_engine(database_url)
    migrations.upgrade(engine, target=2)
    assert not inspect(engine).has_table("bundles")
    assert migrations.upgrade(engine) == 2
    assert migrations.applied(engine) == [2, 3] and inspect(engine).has_table("bundles")
    engine.dispose()


def test_schema_from_the_collectors_version_1_table(database_url):
    """The first collector's `events` table (as main's EventStore wrote it) is carried over."""
    engine = open_engine(database_url)
    legacy = [event(1, DAY), event(2, DAY, verdict="nonsense"), event(3, DAY + timedelta(hours=1))]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE events (id TEXT PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL, "
                          "seq INTEGER NOT NULL, ts TEXT, received_at REAL NOT NULL, event TEXT NOT NULL)"))
        for e in legacy:
            conn.execute(text("INSERT INTO events VALUES (:id, :site, :device, :seq, :ts, 1636941600.5, :event)"),
                         {**{k: e[k] for k in ("id", "site", "device", "seq", "ts")}, "event": json.dumps(e)})
    engine.dispose()
    store = EventStore(database_url)
    assert sorted(store.ids()) == [legacy[0]["id"], legacy[2]["id"]]     # the unusable one is left out
    assert store.counts("s1", DAY, 1, ZONE).days["2021-11-15"]["green"] == 2
    assert not inspect(store.engine).has_table("events")
    store.close()


def test_a_newer_schema_is_refused(tmp_path):
    engine = open_engine(str(tmp_path / "c.sqlite"))
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (99, 0)"))
    engine.dispose()
    with pytest.raises(StorageError, match="newer than this program"):
        EventStore(tmp_path / "c.sqlite")


def test_sqlite_is_in_wal_mode_and_page_queries_use_their_index(tmp_path):
    store = EventStore(tmp_path / "c.sqlite")
    store.add([event(1, DAY)])
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plans = {
        "live": "SELECT * FROM checkins WHERE site = 's1' AND (at_ms, id) < (1, 'x') ORDER BY at_ms DESC, id DESC "
                "LIMIT 50",
        "trace": "SELECT * FROM checkins WHERE subject_ref IN ('a', 'b') AND site IN ('s1') AND at_ms >= 0 "
                 "AND at_ms < 5 ORDER BY at_ms LIMIT 500",
        "counts": "SELECT * FROM counts WHERE site = 's1' AND bucket_ms >= 0 AND bucket_ms < 9",
    }
    for name, query in plans.items():
        plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + query))
        assert "USING INDEX" in plan or "USING PRIMARY KEY" in plan, (name, plan)
        assert "TEMP B-TREE" not in plan or name == "trace", (name, plan)
    db.close()
    store.close()


def test_postgresql_urls_and_paths():
    assert to_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert to_url("console.sqlite", base=None).startswith("sqlite:///")
    with pytest.raises(Exception, match="unsupported database"):
        to_url("mysql://x")


def test_normalise_accepts_a_kiosk_event_as_published():
    row, why = normalise(event(1, DAY, ref=REF_A), received_ms=0)
    assert why is None and row["subject_ref"] == REF_A and row["at_ms"] == int(DAY.timestamp() * 1000)
    assert normalise(event(1, DAY, ref="not hex"), received_ms=0)[0]["subject_ref"] is None


def test_postgresql_page_queries_use_their_index(postgres_server):
    """With sequential scans priced out, each page query has an index path (bench/console.py shows the plans
    PostgreSQL picks at 1 M and 10 M rows)."""
    url = postgres_server.new_database()
    store = EventStore(url)
    store.add([event(i, DAY + timedelta(minutes=i), ref=REF_A) for i in range(50)])
    engine = create_engine(to_url(url))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.execute(text("SET enable_seqscan = off"))
        for query in ("SELECT * FROM checkins WHERE site = 's1' AND (at_ms, id) < (2e12, 'x') "
                      "ORDER BY at_ms DESC, id DESC LIMIT 50",
                      f"SELECT * FROM checkins WHERE subject_ref IN ('{REF_A}') AND at_ms >= 0 ORDER BY at_ms "
                      "LIMIT 500"):
            plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + query)))
            assert "Index" in plan, plan
    engine.dispose()
    store.close()


def test_retention_deletes_old_checkins_and_keeps_the_counts(store):
    old, recent = DAY - timedelta(days=30), DAY
    store.add([event(i, old + timedelta(minutes=i)) for i in range(7)] +
              [event(i, recent + timedelta(minutes=i), site="s2") for i in range(3)] + [event(99, recent)])
    cutoff = int((DAY - timedelta(days=21)).timestamp() * 1000)
    assert store.purge(cutoff, batch=3) == 7             # in batches smaller than what goes
    assert sorted(r["seq"] for r in store.recent("s1")) == [99] and len(store.recent("s2")) == 3
    assert store.counts("s1", old.replace(hour=0), 1, ZONE).days[old.date().isoformat()]["green"] == 7
    assert store.purge(cutoff) == 0

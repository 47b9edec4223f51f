"""The SQLite check-in journal on real files: durability, seq, export, stats, trace, retention, errors."""
import csv
import io
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import journal_events
from kiosk.cli import main
from kiosk.errors import StorageError
from kiosk.stores.journal import Journal, event_from_row
from kiosk.model import Decision

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
REPO = Path(__file__).resolve().parents[1]
MASKED = {"id": "******000001", "name": "N*** V** A", "birth": "1990", "gender": "male"}


def decision(at: datetime, *, verdict="green", direction="in", kind="personal_qr", ref="ref-a", **kw) -> Decision:
    return Decision(kind=kind, verdict=verdict, reason=kw.pop("reason", "vaccinated_14d"), subject=dict(MASKED),
                    subject_ref=ref, at=at, direction=direction, latency_ms=3.5, **kw)


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "data" / "journal.sqlite", site="site-9", device="gate-2")
    yield j
    j.close()


raw_rows = journal_events


def test_append_returns_the_event_and_reads_back(journal):
    at = datetime(2026, 11, 20, 8, 15, tzinfo=TZ)
    event = journal.append(decision(at, override=True, clock_synced=False))
    assert event == {"v": 1, "id": event["id"], "seq": 1, "ts": "2026-11-20T08:15:00+07:00", "clock_synced": False,
                     "site": "site-9", "device": "gate-2", "direction": "in", "mode": "trace",
                     "kind": "personal_qr", "verdict": "green", "reason": "vaccinated_14d", "subject": MASKED,
                     "subject_ref": "ref-a", "override": True}
    assert len(event["id"]) == 32 and int(event["id"], 16) >= 0
    [row] = raw_rows(journal.path)
    assert event_from_row(row) == event
    assert row["ts_epoch"] == at.timestamp() and row["up_state"] == "pending" and row["up_attempts"] == 0
    assert row["latency_ms"] == 3.5


def test_schema_version_wal_and_parent_folder(journal):
    assert journal.path.parent.name == "data"
    db = sqlite3.connect(journal.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    assert db.execute("PRAGMA page_size").fetchone()[0] == 1024
    db.close()


def test_seq_is_monotonic_across_reopen_and_purge_and_ids_are_unique(tmp_path):
    path = tmp_path / "j.sqlite"
    old = datetime(2026, 10, 1, 9, tzinfo=TZ)
    j = Journal(path, site="s", device="d")
    first = [j.append(decision(old)) for _ in range(3)]
    j.close()
    j = Journal(path, site="s", device="d")
    assert j.last_seq() == 3
    assert j.purge(old + timedelta(days=1), keep_unsent=False) == 3
    assert j.count() == 0 and j.last_seq() == 3
    after = j.append(decision(old))
    j.close()
    assert [e["seq"] for e in first] + [after["seq"]] == [1, 2, 3, 4]
    assert len({e["id"] for e in first + [after]}) == 4
    # Ids are derived (journal id + seq), not stored: no random-key index for an insert to touch.
    assert {e["id"][:16] for e in first + [after]} == {first[0]["id"][:16]}
    assert [int(e["id"][16:], 16) for e in first + [after]] == [1, 2, 3, 4]
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM checkins WHERE id IS NOT NULL").fetchone()[0] == 0
    db.close()


def fill(journal) -> None:
    """Three local days around midnight boundaries, in/out, every verdict."""
    day = datetime(2026, 11, 20, tzinfo=TZ)
    journal.append(decision(day + timedelta(hours=8, minutes=5)))
    journal.append(decision(day + timedelta(hours=8, minutes=50), direction="out", verdict="black",
                            reason="no_health_data", ref="ref-b"))
    journal.append(decision(day + timedelta(hours=23, minutes=59), verdict="invalid", kind="unknown",
                            reason="malformed", ref=None))
    # 00:30 local on the 21st is still the 20th in UTC: must count on the 21st.
    journal.append(decision(day + timedelta(days=1, minutes=30), direction="out"))
    journal.append(decision(day + timedelta(days=2, hours=10), kind="cccd", ref="ref-b"))


def test_export_jsonl_and_csv_with_site_time_zone_range(journal):
    fill(journal)
    since = datetime(2026, 11, 20, 8, 30, tzinfo=TZ)
    until = datetime(2026, 11, 22, tzinfo=TZ)
    out = io.StringIO()
    assert journal.export("jsonl", out, since, until) == 3
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["seq"] for e in events] == [2, 3, 4]
    assert events[0]["subject"] == MASKED and events[0]["v"] == 1

    out = io.StringIO()
    assert journal.export("csv", out, None, datetime(2026, 11, 21, tzinfo=TZ)) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["seq"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["subject_id"] == "******000001" and rows[0]["subject_name"] == "N*** V** A"
    assert rows[0]["subject_birth"] == "1990" and rows[0]["subject_gender"] == "male"
    assert "subject" not in rows[0] and rows[1]["verdict"] == "black"


def test_export_csv_of_an_empty_range_has_only_the_header(journal):
    fill(journal)
    out = io.StringIO()
    assert journal.export("csv", out, datetime(2030, 1, 1, tzinfo=TZ)) == 0
    assert out.getvalue().strip().split(",")[:3] == ["seq", "id", "ts"]
    with pytest.raises(ValueError):
        journal.export("xml", io.StringIO())


def test_stats_per_local_day_hour_verdict_and_kind(journal):
    fill(journal)
    s = journal.stats(None, None, "Asia/Ho_Chi_Minh")
    assert s["total"] == 5
    assert s["days"] == {"2026-11-20": {"in": 2, "out": 1}, "2026-11-21": {"in": 0, "out": 1},
                         "2026-11-22": {"in": 1, "out": 0}}
    assert s["hours"]["2026-11-20T08"] == {"in": 1, "out": 1}
    assert s["hours"]["2026-11-21T00"] == {"in": 0, "out": 1}
    assert s["verdicts"] == {"green": 3, "black": 1, "invalid": 1}
    assert s["kinds"] == {"cccd": 1, "personal_qr": 3, "unknown": 1}
    # The same rows seen from UTC: the 00:30 check-in belongs to the 20th.
    assert journal.stats(None, None, "UTC")["days"]["2026-11-20"] == {"in": 2, "out": 2}
    limited = journal.stats(datetime(2026, 11, 21, tzinfo=TZ), None, TZ)
    assert limited["total"] == 2 and limited["verdicts"]["black"] == 0


def test_trace_returns_visits_of_one_ref_in_range(journal):
    fill(journal)
    visits = journal.trace("ref-b", datetime(2026, 11, 1, tzinfo=TZ))
    assert [(v["seq"], v["direction"]) for v in visits] == [(2, "out"), (5, "in")]
    assert journal.trace("ref-b", datetime(2026, 11, 21, tzinfo=TZ)) == visits[1:]
    assert journal.trace("nobody", None) == []


def test_purge_keeps_rows_not_yet_at_the_collector(journal):
    old = datetime(2026, 10, 1, 9, tzinfo=TZ)
    for _ in range(4):
        journal.append(decision(old))
    recent = journal.append(decision(datetime(2026, 11, 20, 9, tzinfo=TZ)))
    db = sqlite3.connect(journal.path)
    db.execute("UPDATE checkins SET up_state = 'confirmed' WHERE seq = 1")
    db.execute("UPDATE checkins SET up_state = 'dropped' WHERE seq = 2")
    db.execute("UPDATE checkins SET up_state = 'published' WHERE seq = 3")
    db.commit()
    db.close()
    cutoff = datetime(2026, 11, 1, tzinfo=TZ)
    assert journal.purge(cutoff) == 2
    assert [r["up_state"] for r in raw_rows(journal.path)] == ["published", "pending", "pending"]
    assert journal.purge(cutoff, keep_unsent=False) == 2
    assert [r["seq"] for r in raw_rows(journal.path)] == [recent["seq"]]


def test_full_disk_raises_storage_error_and_keeps_acknowledged_rows(journal):
    db = journal.db  # the size limit is per connection, like a full card for this writer
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 2}")
    at = datetime(2026, 11, 20, 9, tzinfo=TZ)
    acknowledged = []
    with pytest.raises(StorageError, match="full: free space"):
        for _ in range(10_000):
            acknowledged.append(journal.append(decision(at, reason="x" * 2000))["id"])
    assert acknowledged, "some rows fit before the limit"
    db.execute("PRAGMA max_page_count = 1073741823")
    journal.append(decision(at))  # writable again once space is back
    ids = [r["id"] for r in raw_rows(journal.path)]
    assert ids[:-1] == acknowledged


def test_read_only_journal_raises_storage_error(journal):
    journal.append(decision(datetime(2026, 11, 20, 9, tzinfo=TZ)))
    journal.db.execute("PRAGMA query_only = ON")  # root ignores file modes; this gives SQLITE_READONLY
    with pytest.raises(StorageError, match="read-only"):
        journal.append(decision(datetime(2026, 11, 20, 9, tzinfo=TZ)))
    assert journal.count() == 1


def test_unopenable_path_raises_storage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot create the folder"):
        Journal(tmp_path / "file" / "journal.sqlite", site="s", device="d")
    (tmp_path / "notadb.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(StorageError, match="damaged"):
        Journal(tmp_path / "notadb.sqlite", site="s", device="d")


CHILD = """
import sys
from datetime import datetime, timezone
from kiosk.stores.journal import Journal
from kiosk.model import Decision
j = Journal(sys.argv[1], site="s", device="d")
while True:
    e = j.append(Decision(kind="badge", verdict="green", reason="on_staff_list", subject={"name": "A***"},
                          at=datetime.now(timezone.utc)))
    sys.stdout.write(e["id"] + "\\n")
    sys.stdout.flush()
"""


def test_rows_acknowledged_before_sigkill_are_all_there(tmp_path):
    path = tmp_path / "j.sqlite"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    acknowledged = [child.stdout.readline().strip() for _ in range(200)]
    child.send_signal(signal.SIGKILL)  # mid-stream: the child is inserting the next rows
    acknowledged += [line.strip() for line in child.stdout if line.endswith("\n")]
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    stored = {r["id"] for r in raw_rows(path)}
    assert len(acknowledged) >= 200 and set(acknowledged) <= stored
    j = Journal(path, site="s", device="d")  # reopens cleanly after the kill
    assert j.count() == len(stored)
    j.close()


def test_table_holds_only_the_masked_subject(journal):
    journal.append(decision(datetime(2026, 11, 20, 9, tzinfo=TZ)))
    dump = json.dumps([tuple(r) for r in raw_rows(journal.path)], ensure_ascii=False)
    assert "******000001" in dump and "N*** V** A" in dump
    assert "001190000001" not in dump and "NGUYEN" not in dump


# ------------------------------------------------------------------ command line
def cli(tmp_path, capsys, *argv):
    conf = tmp_path / "kiosk.toml"
    conf.write_text(f'[site]\nid = "site-9"\ndevice = "gate-2"\n[camera]\ntype = "none"\n'
                    f'[journal]\npath = "{tmp_path}/data/journal.sqlite"\n')
    status = main(["journal", *argv, "--config", str(conf)])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_export_stats_trace_purge(journal, tmp_path, capsys):
    fill(journal)
    status, out, _ = cli(tmp_path, capsys, "export", "--format", "jsonl", "--since", "2026-11-21")
    assert status == 0 and [json.loads(x)["seq"] for x in out.splitlines()] == [4, 5]
    target = tmp_path / "out.csv"
    status, _, err = cli(tmp_path, capsys, "export", "--format", "csv", "--until", "2026-11-20T09:00",
                         "--output", str(target))
    assert status == 0 and "2 check-ins" in err
    assert [r["seq"] for r in csv.DictReader(target.open(newline=""))] == ["1", "2"]

    status, out, _ = cli(tmp_path, capsys, "stats", "--since", "2026-11-20", "--until", "2026-11-21")
    stats = json.loads(out)
    assert status == 0 and stats["total"] == 3 and stats["days"] == {"2026-11-20": {"in": 2, "out": 1}}

    status, out, _ = cli(tmp_path, capsys, "trace", "ref-b".ljust(32, "0"), "--since", "2026-01-01")
    assert status == 0 and out == ""
    journal.append(decision(datetime.now(TZ) - timedelta(days=30)))  # pending, past retention
    status, out, _ = cli(tmp_path, capsys, "purge", "--set", "mqtt.enabled=true")
    assert status == 0 and json.loads(out)["purged"] == 0  # not uploaded yet: kept
    status, out, _ = cli(tmp_path, capsys, "purge", "--set", "mqtt.enabled=false")
    assert status == 0 and json.loads(out)["purged"] == 1 and json.loads(out)["rows"] == 5


def test_cli_trace_by_raw_id_uses_the_keyed_hash(journal, tmp_path, capsys):
    from kiosk import config
    from kiosk.identity import load_hash_key, subject_ref
    from kiosk.model import Person

    cfg = config.load(None, [f"journal.path={journal.path}"], data={"camera": {"type": "none"}})
    ref = subject_ref(load_hash_key(cfg), Person(id_number="001190000001"))
    at = datetime(2026, 11, 20, 9, tzinfo=TZ)
    journal.append(decision(at, ref=ref))
    journal.append(decision(at + timedelta(hours=1), ref="someone-else"))
    journal.append(decision(at + timedelta(hours=2), ref=ref, direction="out"))
    status, out, err = cli(tmp_path, capsys, "trace", "001190000001", "--since", "2026-11-20")
    visits = [json.loads(x) for x in out.splitlines()]
    assert status == 0 and [v["seq"] for v in visits] == [1, 3] and "2 visits" in err
    assert "001190000001" not in out


def test_cli_bad_date_is_a_usage_error(tmp_path, capsys):
    status, out, err = cli(tmp_path, capsys, "stats", "--since", "20-11-2026")
    assert status == 2 and out == "" and "not a date" in err
    assert "Traceback" not in err


def test_checkin_insert_is_synchronous_full(journal):
    assert journal.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync at every commit
    assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cli_purge_default_retention_is_21_days(journal, tmp_path, capsys):
    now = datetime.now(TZ)
    for days in (22, 20, 0):
        journal.append(decision(now - timedelta(days=days)))
    status, out, _ = cli(tmp_path, capsys, "purge", "--set", "mqtt.enabled=false")
    result = json.loads(out)
    assert status == 0 and (result["purged"], result["rows"]) == (1, 2)
    cutoff = datetime.fromisoformat(result["older_than"])
    assert abs((now - cutoff) - timedelta(days=21)) < timedelta(minutes=1)
    status, out, _ = cli(tmp_path, capsys, "purge", "--set", "mqtt.enabled=false", "--set", "journal.retention_days=1")
    assert json.loads(out)["purged"] == 1


# ------------------------------------------------------------------ schema 2 (issue 13): wear and SQL queries
def schema1_journal(path, n: int, start: datetime) -> list[str]:
    """A journal as today's schema (1) writes it: n rows, ids random, some already sent."""
    from kiosk.stores.journal_schema import V1_DDL, V1_INSERT, statements

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for statement in statements(V1_DDL):
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("PRAGMA user_version = 1")
    ids = []
    db.execute("BEGIN")
    for i in range(n):
        at = start + timedelta(minutes=7 * i)
        ids.append(uuid.uuid4().hex)
        db.execute(V1_INSERT, (ids[-1], at.isoformat(), at.timestamp(), 1, "site-9", "gate-2", ("in", "out")[i % 2],
                               "trace", "personal_qr", ("green", "black", "invalid")[i % 3], "r",
                               json.dumps(MASKED), f"ref-{i % 7}", 0, 1.0))
    db.execute("UPDATE checkins SET up_state = 'confirmed' WHERE seq <= ?", (n // 2,))
    db.execute("UPDATE checkins SET up_state = 'published', up_published_at = 1 WHERE seq > ? AND seq <= ?",
               (n // 2, n // 2 + 3))
    db.execute("DELETE FROM checkins WHERE seq = ?", (n,))   # the newest row purged: its seq is never given again
    db.execute("COMMIT")
    db.close()
    return ids[:-1]


def test_a_schema_1_journal_is_migrated_in_place_on_open(tmp_path):
    from kiosk.stores.outbox import Outbox

    path = tmp_path / "journal.sqlite"
    start = datetime(2026, 11, 20, 8, tzinfo=TZ)
    ids = schema1_journal(path, 40, start)
    db = sqlite3.connect(path)
    before = db.execute("SELECT * FROM checkins ORDER BY seq").fetchall()
    db.close()
    j = Journal(path, site="site-9", device="gate-2")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("PRAGMA page_size").fetchone()[0] == 1024          # rewritten with 1 KB pages
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'").fetchone()[0] == 0
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    after = raw_rows(path)
    assert [r["id"] for r in after] == ids                             # consumers already hold these ids
    subject = 12  # re-masked once under today's rules (kiosk.masking), like any older journal
    assert [tuple(r)[2:subject] + tuple(r)[subject + 1:] for r in before] == \
        [tuple(r)[2:subject] + tuple(r)[subject + 1:] for r in after]    # every other column, every row
    assert [r["seq"] for r in after] == list(range(1, 40))
    event = j.append(decision(start + timedelta(days=1)))
    assert event["seq"] == 41 and event["id"] not in ids                # seq 40 was given once: never again
    assert j.stats(None, None, TZ)["total"] == 40
    assert [v["seq"] for v in j.trace("ref-3", None)] == [4, 11, 18, 25, 32, 39]
    box = Outbox(path)
    assert [r["seq"] for r in box.next_batch(3)] == [24, 25, 26]       # pending after the published ones
    assert box.confirm(ids[20:23]) == 3 and box.status()["published_unconfirmed"] == 0
    assert box.mark_published([event["id"]]) == 1
    box.close()
    j.close()


def test_an_insert_writes_only_the_table_page(tmp_path):
    """Structural, not timed: WAL frames per check-in (schema 1 wrote 5-6 pages of 4 KB per insert)."""
    j = Journal(tmp_path / "j.sqlite", site="s", device="d")
    db = sqlite3.connect(tmp_path / "j.sqlite")
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'checkins'")
    assert all("WHERE" in (sql or "") for _, sql in indexes)   # only partial indexes no new row enters
    db.close()
    j.db.execute("PRAGMA wal_autocheckpoint = 0")
    j.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n = 300
    for i in range(n):
        j.append(decision(datetime(2026, 11, 20, 8, tzinfo=TZ) + timedelta(seconds=i), ref=f"r{i}"))
    frames = ((tmp_path / "j.sqlite-wal").stat().st_size - 32) / (1024 + 24)
    assert frames / n < 1.8, f"{frames / n:.2f} pages a check-in"
    j.close()


def _random_journal(path, n: int) -> tuple[Journal, list[Decision]]:
    rng = random.Random(7)
    j = Journal(path, site="s", device="d")
    made = []
    at = datetime(2026, 3, 28, 20, tzinfo=TZ)
    for i in range(n):
        at += timedelta(seconds=rng.choice((1, 30, 400, 3600)) * (-1 if rng.random() < 0.03 else 1))  # clock jumps
        made.append(decision(at, verdict=rng.choice(("green", "black", "invalid")), direction=rng.choice(("in", "out")),
                             kind=rng.choice(("personal_qr", "cccd", None)), ref=f"ref-{rng.randrange(40)}"))
    for chunk in range(0, n, 97):
        j.append_many(made[chunk:chunk + 97])
        if chunk % 3 == 0:
            j.maintain(force=True)   # some rows in segments, the newest in the tail
    return j, made


def _expected_stats(made: list[Decision], since, until, zone) -> dict:
    picked = [d for d in made if (since is None or d.at >= since) and (until is None or d.at < until)]
    days, hours = defaultdict(lambda: {"in": 0, "out": 0}), defaultdict(lambda: {"in": 0, "out": 0})
    for d in picked:
        local = d.at.astimezone(zone)
        days[local.strftime("%Y-%m-%d")][d.direction] += 1
        hours[local.strftime("%Y-%m-%dT%H")][d.direction] += 1
    return {"total": len(picked), "days": dict(sorted(days.items())), "hours": dict(sorted(hours.items())),
            "verdicts": dict(Counter(d.verdict for d in picked)), "kinds": dict(Counter(d.kind or "none" for d in picked))}


@pytest.mark.parametrize("zone", ["Asia/Ho_Chi_Minh", "Europe/Berlin", "Asia/Kathmandu"])
def test_stats_trace_and_export_in_sql_match_the_rows_whatever_the_range(tmp_path, zone):
    j, made = _random_journal(tmp_path / "j.sqlite", 1200)
    tz = ZoneInfo(zone)
    rng = random.Random(3)
    times = sorted(d.at for d in made)
    for _ in range(25):
        a, b = sorted(rng.sample(times, 2))
        since = a + timedelta(seconds=rng.choice((0, 1, 450, 899))) if rng.random() < 0.8 else None
        until = b if rng.random() < 0.8 else None
        got = j.stats(since, until, zone)
        want = _expected_stats(made, since, until, tz)
        assert (got["total"], got["days"], got["hours"]) == (want["total"], want["days"], want["hours"])
        assert {k: v for k, v in got["verdicts"].items() if v} == want["verdicts"]
        assert got["kinds"] == dict(sorted(want["kinds"].items()))
        ref = f"ref-{rng.randrange(40)}"
        trace = [(v["ts"], v["seq"]) for v in j.trace(ref, since, until)]
        inside = [(d.at, seq) for seq, d in enumerate(made, start=1)
                  if (since is None or d.at >= since) and (until is None or d.at < until)]
        expect = sorted((at, seq) for at, seq in inside if made[seq - 1].subject_ref == ref)
        assert [s for _, s in trace] == [s for _, s in expect]
        out = io.StringIO()
        j.export("jsonl", out, since, until)
        assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == sorted(s for _, s in inside)
    j.close()


def test_queries_are_bounded_by_an_index_never_a_scan_of_the_table(tmp_path):
    j, _ = _random_journal(tmp_path / "j.sqlite", 300)
    plans = []
    j.db.set_trace_callback(lambda sql: plans.append(sql) if sql.lstrip().upper().startswith("SELECT") else None)
    since = datetime(2026, 3, 29, tzinfo=TZ)
    j.stats(since, since + timedelta(days=1), TZ)
    j.trace("ref-1", since)
    j.export("jsonl", io.StringIO(), since, since + timedelta(hours=5))
    j.db.set_trace_callback(None)
    assert len(plans) >= 5
    for sql in set(plans):  # the statements as run, their parameters expanded
        for *_, detail in j.db.execute("EXPLAIN QUERY PLAN " + sql):
            # only the zone map (a row per 500 check-ins) may be read whole
            assert not re.match(r"SCAN (?!segments\b|s\b)", detail), (sql, detail)
    j.close()


def test_purge_takes_the_rows_their_refs_and_their_tallies(tmp_path):
    j, made = _random_journal(tmp_path / "j.sqlite", 600)
    db = j.db
    db.execute("UPDATE checkins SET up_state = 'confirmed' WHERE seq % 5 <> 0")
    cutoff = sorted(d.at for d in made)[300]
    kept_unsent = sum(1 for i, d in enumerate(made) if d.at < cutoff and (i + 1) % 5 == 0)
    purged = j.purge(cutoff, keep_unsent=True)
    assert purged == sum(1 for d in made if d.at < cutoff) - kept_unsent
    assert j.count() == len(made) - purged == j.stats()["total"]
    # no subject_ref of a purged row is kept anywhere (retention)
    assert db.execute("SELECT count(*) FROM segment_refs r LEFT JOIN checkins c ON c.seq = r.seq "
                      "WHERE c.seq IS NULL").fetchone()[0] == 0
    assert db.execute("SELECT sum(n) FROM tallies").fetchone()[0] == j.count()
    j.close()

#!/usr/bin/env python3
"""The journal on a real disk: bytes written per check-in, insert cost, queries and integrity check as it grows,
today's schema (1) next to the current one (2) in one run; acknowledged rows surviving SIGKILL.

1. Wear: `--wear` check-ins appended one transaction each (synchronous=FULL), with the outbox transitions the
   drain makes (PUBACKs in windows of 20, consumer acks in batches of 100), per schema; bytes from
   `/proc/self/io` write_bytes, projected to GB a year at 10,000 check-ins a day. Then, with a local Mosquitto,
   the same through `kiosk run` (a serial reader on a pseudo-terminal, the real uplink, `kiosk collector`
   confirming): write_bytes of the `kiosk run` process from its first check-in to the last confirmation.
   `--baseline-repo DIR` runs that again with another checkout's code (e.g. main) for the before figure.
2. Growth: each schema filled with synthetic rows up to each `--steps` size; at each, `--sample` timed appends
   (p50/p95), the `kiosk journal stats`, `export` and `trace` command lines (schema 2; wall time and peak RSS),
   the same answers computed as schema 1's code did (Python over the rows), PRAGMA quick_check, and at the first
   step the in-place migration of the schema-1 file.
3. `--kill-trials N`: a forked child appends and acknowledges each id on a pipe; the parent SIGKILLs it at a
   random moment and checks every acknowledged id is in the file and the file passes integrity_check.

    .venv/bin/python bench/journal.py [--steps 100000,1000000] [--wear 5000] [--baseline-repo /work/main]
    .venv/bin/python bench/journal.py --kill-trials 200 [--dir DIR]
Use a folder on the SD card (`--dir`) on a Pi; tmpfs counts no writes.
"""
from __future__ import annotations

import argparse
import json
import os
import pty
import random
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from kiosk.model import Decision  # noqa: E402
from kiosk.stores import journal_schema  # noqa: E402
from kiosk.stores.checkins import INSERT  # noqa: E402
from kiosk.stores.journal import Journal  # noqa: E402
from kiosk.stores.outbox import Outbox  # noqa: E402

SUBJECT = {"id": "******000123", "name": "N*** V** A", "birth": "1990", "gender": "male"}
PER_DAY = 10_000
WINDOW, ACK_BATCH = 20, 100
TZ = "Asia/Ho_Chi_Minh"


def sample_decision(at: datetime) -> Decision:
    return Decision(kind="personal_qr", verdict=random.choice(("green", "green", "black", "invalid")),
                    reason="vaccinated_14d", subject=dict(SUBJECT), subject_ref=uuid.uuid4().hex, at=at,
                    direction=random.choice(("in", "out")), latency_ms=4.2)


def write_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/*/io")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def per_year_gb(per_checkin: float) -> float:
    return round(per_checkin * PER_DAY * 365 / 1e9, 1)


# ---------------------------------------------------------------- schema 1, as today's code writes and reads it
class Schema1:
    """Schema 1's journal and outbox SQL, statement for statement (main before schema 2)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        for statement in journal_schema.statements(journal_schema.V1_DDL):
            self.db.execute(statement)
        self.db.execute("PRAGMA user_version = 1")
        self.box = sqlite3.connect(path, isolation_level=None)
        self.box.execute("PRAGMA synchronous = NORMAL")
        self.box.execute("CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value REAL)")

    def append(self, d: Decision) -> str:
        at = d.at
        event_id = uuid.uuid4().hex
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(journal_schema.V1_INSERT, (
            event_id, at.isoformat(), at.timestamp(), 1, "site-1", "kiosk-1", d.direction, d.mode, d.kind,
            d.verdict, d.reason, json.dumps(d.subject, sort_keys=True), d.subject_ref, 0, d.latency_ms))
        self.db.execute("COMMIT")
        return event_id

    def _update(self, sql: str, params: tuple, ids: list[str], meta: str) -> None:
        self.box.execute("BEGIN IMMEDIATE")
        self.box.execute(sql.format(marks=",".join("?" * len(ids))), (*params, *ids))
        self.box.execute("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES (?, ?)", (meta, time.time()))
        self.box.execute("COMMIT")

    def mark_published(self, ids: list[str]) -> None:
        self._update("UPDATE checkins SET up_state = ?, up_published_at = ?, up_attempts = up_attempts + 1 "
                     "WHERE +up_state IN ('pending', 'published') AND id IN ({marks})",
                     ("published", time.time()), ids, "last_puback_at")

    def confirm(self, ids: list[str]) -> None:
        self._update("UPDATE checkins SET up_state = 'confirmed' WHERE +up_state IN ('pending', 'published') "
                     "AND id IN ({marks})", (), ids, "last_ack_at")

    def close(self) -> None:
        self.box.close()
        self.db.close()

    # Schema 1's queries: rows in Python.
    def _rows(self, since, until, where="", params=(), order="seq"):
        clauses, values = ([where] if where else []), list(params)
        if since is not None:
            clauses.append("ts_epoch >= ?")
            values.append(since.timestamp())
        if until is not None:
            clauses.append("ts_epoch < ?")
            values.append(until.timestamp())
        sql = "SELECT * FROM checkins" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY " + order
        return iter(self.db.execute(sql, values))

    def stats(self, zone: ZoneInfo) -> int:
        days: dict = defaultdict(Counter)
        hours: dict = defaultdict(Counter)
        verdicts: Counter = Counter()
        kinds: Counter = Counter()
        total = 0
        for row in self._rows(None, None):
            local = datetime.fromtimestamp(row["ts_epoch"], zone)
            days[local.strftime("%Y-%m-%d")][row["direction"]] += 1
            hours[local.strftime("%Y-%m-%dT%H")][row["direction"]] += 1
            verdicts[row["verdict"]] += 1
            kinds[row["kind"] or "none"] += 1
            total += 1
        return total

    def export(self, out) -> int:
        from kiosk.stores.checkins import event_from_row

        n = 0
        for row in self._rows(None, None):
            out.write(json.dumps(event_from_row(row), ensure_ascii=False) + "\n")
            n += 1
        return n

    def trace(self, ref: str, since: datetime) -> int:
        return len(list(self._rows(since, None, "subject_ref = ?", (ref,), order="ts_epoch, seq")))


class Schema2:
    """The product's Journal and Outbox."""

    def __init__(self, path: Path):
        self.journal = Journal(path, site="site-1", device="kiosk-1")
        self.box = Outbox(path)

    def append(self, d: Decision) -> str:
        event = self.journal.append(d)
        self.journal.maintain()  # what the kiosk's loop does between scans
        return event["id"]

    def mark_published(self, ids: list[str]) -> None:
        self.box.mark_published(ids)

    def confirm(self, ids: list[str]) -> None:
        self.box.confirm(ids)

    def close(self) -> None:
        self.box.close()
        self.journal.close()


# ---------------------------------------------------------------- 1. wear
def wear(schema, folder: Path, n: int) -> dict:
    path = folder / f"wear-{schema.__name__}.sqlite"
    store = schema(path)
    start = datetime.now(timezone.utc)
    before = write_bytes()
    published: list[str] = []
    window: list[str] = []
    timings = []
    for i in range(n):
        t0 = time.perf_counter()
        window.append(store.append(sample_decision(start + timedelta(seconds=8.64 * i))))
        timings.append((time.perf_counter() - t0) * 1000)
        if len(window) == WINDOW:
            store.mark_published(window)
            published += window
            window = []
        if len(published) >= ACK_BATCH:
            store.confirm(published)
            published = []
    store.close()  # the last checkpoint belongs to these check-ins too
    per = (write_bytes() - before) / n
    return {"schema": schema.__name__, "checkins": n, "bytes_per_checkin": round(per),
            "gb_per_year_at_10k_a_day": per_year_gb(per), "append_p50_ms": round(pct(timings, .5), 3),
            "append_p95_ms": round(pct(timings, .95), 3), "append_p99_ms": round(pct(timings, .99), 3),
            "file_mb": round(path.stat().st_size / 1e6, 2),
            "mb_per_10k_checkins": round(path.stat().st_size / 1e6 * PER_DAY / n, 2)}


def kiosk_run_wear(folder: Path, n: int, repo: Path, rate: float) -> dict | None:
    """write_bytes of a real `kiosk run` (code from `repo`) journaling and uploading n check-ins."""
    if shutil.which("mosquitto") is None:
        return None
    from conftest import Broker

    work = folder / f"run-{repo.name}"
    work.mkdir()
    python = sys.executable  # with cwd=repo, `-m kiosk` runs that checkout's code (a clone of main, say)
    broker = Broker(work / "broker").start()
    master, slave = pty.openpty()
    sets = [f"journal.path={work}/journal.sqlite", f"roster.path={work}/roster.json", f"trust.path={work}/trust.json",
            "camera.type=none", "display.type=none", "gpio.pin_factory=mock", "clock.source=assume_synced",
            "site.id=s1", "site.device=d1", "mqtt.enabled=true", f"mqtt.port={broker.port}",
            "mqtt.reconnect_min_seconds=0.1", 'roster.seed_csv=""', 'trust.seed_file=""']
    argv = [arg for s in sets for arg in ("--set", s)]
    collector = subprocess.Popen([python, "-m", "kiosk", "collector", "--db", str(work / "collector.sqlite"),
                                  "--client-id", "bench-collector", *argv], cwd=repo,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kiosk = subprocess.Popen([python, "-m", "kiosk", "run", *argv, "--set", "reader.type=serial",
                              "--set", f"reader.port={os.ttyname(slave)}", "--set", "reader.baudrate=115200"],
                             cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        journal = work / "journal.sqlite"
        wait = time.monotonic() + 60
        while not journal.exists() and time.monotonic() < wait:
            time.sleep(0.1)
        time.sleep(2.0)  # start-up writes (roster, trust list, key) are not the check-ins' cost
        before = write_bytes(kiosk.pid)
        began = time.monotonic()
        for i in range(n):
            code = f"0790{i:08d}|NGUYEN VAN THU|1990-12-01|0|1630{i:014d}|<1<<\r"
            os.write(master, code.encode())
            time.sleep(max(0.0, began + (i + 1) / rate - time.monotonic()))  # people at the gate's pace
        deadline = time.monotonic() + 600
        confirmed = 0
        while time.monotonic() < deadline:
            db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30)
            try:
                confirmed = db.execute("SELECT count(*) FROM checkins WHERE up_state = 'confirmed'").fetchone()[0]
            except sqlite3.Error:
                confirmed = 0
            finally:
                db.close()
            if confirmed >= n:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        written = write_bytes(kiosk.pid) - before
    finally:
        kiosk.send_signal(signal.SIGTERM)
        summary = kiosk.communicate(timeout=60)[0].strip().splitlines()
        collector.send_signal(signal.SIGTERM)
        collector.wait(60)
        broker.kill()
        os.close(master)
        os.close(slave)
    counters = json.loads(summary[-1]) if summary else {}
    return {"code": str(repo), "checkins": n, "per_second": rate, "confirmed": confirmed,
            "bytes_per_checkin": round(written / n), "gb_per_year_at_10k_a_day": per_year_gb(written / n),
            "shown_to_stored_p50_ms": counters.get("shown_to_stored_p50_ms"),
            "shown_to_stored_p99_ms": counters.get("shown_to_stored_p99_ms")}


# ---------------------------------------------------------------- 2. growth
def fill(path: Path, schema: int, rows: int, start_index: int, start: datetime) -> None:
    """Synthetic check-ins at 10,000 a day, in big transactions (confirmed: already uploaded)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    subject = json.dumps(SUBJECT)
    done = 0
    while done < rows:
        n = min(20_000, rows - done)
        batch = []
        for i in range(start_index + done, start_index + done + n):
            at = start + timedelta(seconds=86400 / PER_DAY * i)
            values = (at.isoformat(), at.timestamp(), 1, "site-1", "kiosk-1", random.choice(("in", "out")), "trace",
                      "personal_qr", random.choice(("green", "green", "black", "invalid")), "vaccinated_14d",
                      subject, uuid.uuid4().hex, 0, 4.2)
            batch.append(((uuid.uuid4().hex,) + values) if schema == 1 else values)
        db.execute("BEGIN")
        db.executemany(journal_schema.V1_INSERT if schema == 1 else INSERT, batch)
        db.execute("UPDATE checkins SET up_state = 'confirmed' WHERE seq > ?", (start_index + done,))
        db.execute("COMMIT")
        done += n
    db.close()


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def cli(conf: Path, *argv: str) -> tuple[float, int | None, str]:
    """(wall seconds, peak RSS in MB, stdout) of one `kiosk` command line. The peak comes from GNU time when it
    is installed: a child forked from this (large) process would report this process's size as its own."""
    timer = ["/usr/bin/time", "-f", "maxrss_kb=%M"] if Path("/usr/bin/time").exists() else []
    t0 = time.perf_counter()
    done = subprocess.run([*timer, sys.executable, "-m", "kiosk", *argv, "--config", str(conf)], cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"kiosk {' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("maxrss_kb=")]
    return seconds, round(int(peak[-1].split("=")[1]) / 1024) if peak else None, done.stdout


def sample_appends(journal_like, n: int, at: datetime) -> dict:
    timings = []
    before = write_bytes()
    maintain = getattr(journal_like, "maintain", lambda: 0)  # the service's loop, between scans (not timed)
    for i in range(n):
        t0 = time.perf_counter()
        journal_like.append(sample_decision(at + timedelta(seconds=i)))
        timings.append((time.perf_counter() - t0) * 1000)
        maintain()
    per = (write_bytes() - before) / n
    return {"append_p50_ms": round(pct(timings, .5), 3), "append_p95_ms": round(pct(timings, .95), 3),
            "append_p99_ms": round(pct(timings, .99), 3), "append_bytes": round(per)}


def quick_check(path: Path) -> float:
    db = sqlite3.connect(path)
    t0 = time.perf_counter()
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    seconds = time.perf_counter() - t0
    db.close()
    return round(seconds, 2)


def growth(args, folder: Path) -> list[dict]:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    steps = [int(s) for s in args.steps.split(",")]
    zone = ZoneInfo(TZ)
    p1, p2 = folder / "schema1.sqlite", folder / "schema2.sqlite"
    s1 = Schema1(p1)
    s1.close()
    Journal(p2, site="site-1", device="kiosk-1").close()
    conf = folder / "kiosk.toml"
    conf.write_text(f'[site]\nid = "site-1"\ndevice = "kiosk-1"\ntimezone = "{TZ}"\n[camera]\ntype = "none"\n'
                    f'[journal]\npath = "{p2}"\n')
    size = 0
    results = []
    for step in steps:
        fill(p1, 1, step - size, size, start)
        fill(p2, 2, step - size, size, start)
        journal = Journal(p2, site="site-1", device="kiosk-1")
        journal.maintain(force=True)  # the kiosk indexes as it goes; the synthetic fill did not
        size = step
        at = start + timedelta(seconds=86400 / PER_DAY * size)
        row: dict = {"rows": step}
        row["schema2"] = sample_appends(journal, args.sample, at)
        journal.close()
        s1 = Schema1(p1)
        row["schema1"] = sample_appends(s1, args.sample, at)
        size += args.sample
        last_day = (at - timedelta(days=1)).astimezone(zone).date().isoformat()
        ref = sqlite3.connect(p2).execute("SELECT subject_ref FROM checkins WHERE seq = ?", (size // 2,)).fetchone()[0]
        since = (at - timedelta(days=14)).astimezone(zone).date().isoformat()
        seconds, rss, out = cli(conf, "journal", "stats")
        assert json.loads(out)["total"] == size
        row["schema2"] |= {"stats_s": round(seconds, 2), "stats_rss_mb": rss}
        seconds, rss, _ = cli(conf, "journal", "export", "--format", "jsonl", "--output", os.devnull)
        row["schema2"] |= {"export_all_s": round(seconds, 2), "export_rss_mb": rss}
        seconds, _, _ = cli(conf, "journal", "export", "--format", "csv", "--since", last_day, "--output", os.devnull)
        row["schema2"]["export_one_day_s"] = round(seconds, 2)
        seconds, _, _ = cli(conf, "journal", "trace", ref, "--since", since)
        row["schema2"]["trace_14_days_s"] = round(seconds, 2)
        seconds, _, _ = cli(conf, "journal", "trace", ref, "--since", "2000-01-01")
        row["schema2"]["trace_all_s"] = round(seconds, 2)
        row["schema2"]["quick_check_s"] = quick_check(p2)
        row["schema2"]["file_mb"] = round(p2.stat().st_size / 1e6)
        # Schema 1's answers, in-process (its CLI adds the same start-up as schema 2's).
        row["schema1"]["stats_s"] = round(timed(lambda: s1.stats(zone))[0], 2)
        with open(os.devnull, "w") as null:
            row["schema1"]["export_all_s"] = round(timed(lambda: s1.export(null))[0], 2)
        v1_ref = s1.db.execute("SELECT subject_ref FROM checkins WHERE seq = ?", (size // 2,)).fetchone()[0]
        row["schema1"]["trace_14_days_s"] = round(timed(
            lambda: s1.trace(v1_ref, datetime.fromisoformat(since).replace(tzinfo=zone)))[0], 3)
        s1.close()
        row["schema1"]["quick_check_s"] = quick_check(p1)
        row["schema1"]["file_mb"] = round(p1.stat().st_size / 1e6)
        if step == steps[0]:
            copy = folder / "migrate.sqlite"
            shutil.copy(p1, copy)
            row["migrate_schema1_s"] = round(timed(lambda: Journal(copy, site="s", device="d").close())[0], 2)
            row["migrated_page_size"] = sqlite3.connect(copy).execute("PRAGMA page_size").fetchone()[0]
            copy.unlink()
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


# ---------------------------------------------------------------- 3. kill trials
def child(path: Path, ack_fd: int) -> None:
    """Append forever, writing each acknowledged id (after commit) to the pipe."""
    journal = Journal(path, site="site-1", device="kiosk-1")
    while True:
        event = journal.append(sample_decision(datetime.now(timezone.utc)))
        journal.maintain()
        os.write(ack_fd, (event["id"] + "\n").encode())


def kill_trials(args, folder: Path) -> dict:
    path = folder / "kill.sqlite"
    Journal(path, site="site-1", device="kiosk-1").close()
    acked_total = lost = 0
    for _ in range(args.kill_trials):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns
            os.close(read_fd)
            try:
                child(path, write_fd)
            finally:
                os._exit(1)
        os.close(write_fd)
        data = b""
        deadline = time.monotonic() + random.uniform(0.005, args.max_run)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                data += os.read(read_fd, 65536)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(read_fd, 65536):  # acks written before the kill
            data += chunk
        os.close(read_fd)
        acked = [line for line in data.decode().split("\n")[:-1]]  # the last piece is unterminated or empty
        db = sqlite3.connect(path)
        stored = {r[0] for r in db.execute("SELECT event_id FROM checkin_events")}
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
        if ok != "ok":
            print(f"integrity_check failed: {ok}", file=sys.stderr)
            return {"trials": args.kill_trials, "integrity": ok}
        acked_total += len(acked)
        lost += sum(1 for i in acked if i not in stored)
    db = sqlite3.connect(path)
    rows = db.execute("SELECT COUNT(*) FROM checkins").fetchone()[0]
    db.close()
    return {"trials": args.kill_trials, "acknowledged": acked_total, "lost": lost, "rows_in_file": rows,
            "integrity": "ok"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="100000,1000000", help="journal sizes to measure at (comma-separated)")
    ap.add_argument("--sample", type=int, default=1_000, help="timed appends per step")
    ap.add_argument("--wear", type=int, default=5_000, help="check-ins for the bytes-per-check-in runs (0: skip)")
    ap.add_argument("--run-checkins", type=int, default=2_000, help="check-ins through `kiosk run` (0: skip)")
    ap.add_argument("--run-rate", type=float, default=20.0, help="check-ins a second through `kiosk run`")
    ap.add_argument("--baseline-repo", help="also run `kiosk run` wear with the code of this checkout (a clone of "
                    "main, say: `git clone /work/main /tmp/base`) for the before figure")
    ap.add_argument("--kill-trials", type=int, default=0, help="run N SIGKILL trials instead")
    ap.add_argument("--max-run", type=float, default=0.3, help="kill trials: longest child run, seconds")
    ap.add_argument("--dir", help="folder for the journals (default: a temp folder; use the SD card on a Pi)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        if args.kill_trials:
            result = kill_trials(args, folder)
            print(json.dumps(result))
            return 0 if result.get("lost") == 0 else 1
        for schema in (Schema1, Schema2) if args.wear else ():
            print(json.dumps({"wear": wear(schema, folder, args.wear)}), flush=True)
        for repo in filter(None, (args.baseline_repo, str(ROOT)) if args.run_checkins else ()):
            result = kiosk_run_wear(folder, args.run_checkins, Path(repo), args.run_rate)
            print(json.dumps({"kiosk_run_wear": result}), flush=True)
        growth(args, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

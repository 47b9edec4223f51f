#!/usr/bin/env python3
"""Journal insert cost as the table grows, and acknowledged rows surviving SIGKILL.

Growth: the table is filled with synthetic rows in big transactions up to each checkpoint; at each checkpoint
`--sample` real `Journal.append` calls (one synchronous=FULL transaction each) are timed, with the bytes the
process sent to storage per insert (`/proc/self/io` write_bytes).
Kill trials: a forked child appends check-ins and acknowledges each id on a pipe; the parent SIGKILLs it at a
random moment, then checks that every acknowledged id is in the file and the file passes integrity_check.

    .venv/bin/python bench/journal.py [--rows 1000000] [--step 100000] [--sample 1000] [--dir DIR]
    .venv/bin/python bench/journal.py --kill-trials 200 [--dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.stores.journal import Journal  # noqa: E402
from kiosk.model import Decision  # noqa: E402

SUBJECT = {"id": "******000123", "name": "N*** V** A", "birth": "1990", "gender": "male"}


def sample_decision(at: datetime) -> Decision:
    return Decision(kind="personal_qr", verdict="green", reason="vaccinated_14d", subject=dict(SUBJECT),
                    subject_ref=uuid.uuid4().hex, at=at, latency_ms=4.2)


def write_bytes() -> int | None:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def fill(path: Path, rows: int, start: datetime) -> None:
    """Add `rows` synthetic check-ins fast (10,000 per transaction, through a second connection)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = NORMAL")
    subject = json.dumps(SUBJECT)
    done = 0
    while done < rows:
        n = min(10_000, rows - done)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO checkins (id, ts, ts_epoch, clock_synced, site, device, direction, mode, kind, verdict, "
            "reason, subject, subject_ref, latency_ms, up_state) "
            "VALUES (?, ?, ?, 1, 'site-1', 'kiosk-1', 'in', 'trace', 'personal_qr', 'green', 'vaccinated_14d', "
            "?, ?, 4.2, 'confirmed')",
            ((uuid.uuid4().hex, (at := start + timedelta(seconds=done + i)).isoformat(), at.timestamp(), subject,
              uuid.uuid4().hex) for i in range(n)))
        db.execute("COMMIT")
        done += n
    db.close()


def growth(args, folder: Path) -> list[dict]:
    path = folder / "journal.sqlite"
    journal = Journal(path, site="site-1", device="kiosk-1")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    results = []
    size = 0
    checkpoints = [1_000] + list(range(args.step, args.rows + 1, args.step))
    for target in checkpoints:
        fill(path, target - size, start)
        size = target
        timings = []
        before = write_bytes()
        for _ in range(args.sample):
            t0 = time.perf_counter()
            journal.append(sample_decision(datetime.now(timezone.utc)))
            timings.append((time.perf_counter() - t0) * 1000)
        after = write_bytes()
        size += args.sample
        row = {"rows": target, "mean_ms": round(statistics.fmean(timings), 3), "p50_ms": round(pct(timings, .5), 3),
               "p95_ms": round(pct(timings, .95), 3), "max_ms": round(max(timings), 3),
               "bytes_per_insert": None if before is None else round((after - before) / args.sample)}
        results.append(row)
        print(json.dumps(row), flush=True)
    journal.close()
    return results


def child(path: Path, ack_fd: int) -> None:
    """Append forever, writing each acknowledged id (after commit) to the pipe."""
    journal = Journal(path, site="site-1", device="kiosk-1")
    while True:
        event = journal.append(sample_decision(datetime.now(timezone.utc)))
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
        stored = {r[0] for r in db.execute("SELECT id FROM checkins")}
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
    ap.add_argument("--rows", type=int, default=1_000_000, help="final table size")
    ap.add_argument("--step", type=int, default=100_000, help="rows between measurements")
    ap.add_argument("--sample", type=int, default=1_000, help="timed inserts per checkpoint")
    ap.add_argument("--kill-trials", type=int, default=0, help="run N SIGKILL trials instead of the growth run")
    ap.add_argument("--max-run", type=float, default=0.3, help="kill trials: longest child run, seconds")
    ap.add_argument("--dir", help="folder for the journal (default: a temp folder; use the SD card on a Pi)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.kill_trials:
            result = kill_trials(args, Path(tmp))
            print(json.dumps(result))
            return 0 if result.get("lost") == 0 else 1
        growth(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

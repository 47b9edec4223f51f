#!/usr/bin/env python3
"""Roster store: import time and peak memory, start-up load, lookups, and scan latency during updates.

1. Import: a roster CSV of each size (default 100,000 and 1,000,000 rows, about 90 bytes a row) imported by
   `Roster.import_csv` in a fresh process: seconds, rows/s, that process's peak RSS, the SQLite file's size;
   then imported again (a replacement of a roster that size): seconds, the file's size after it.
   The same for migrating a TinyDB roster of each size (the file format of earlier versions).
2. Start-up on the largest roster, in a fresh process: opening it, its meta and a first lookup; and the
   whole `kiosk roster show` command (interpreter start included).
3. Lookups on the largest roster: by full ID, by QID (a masked ID), and misses: p50/p95.
4. Scan latency on the real App (QueueReader, luma's dummy panel, mock GPIO, journal, uplink to a local
   Mosquitto), a scan every 20 ms, from the text handed to the reader to the feedback issued: idle, while a
   100,000-row roster replacement arrives as an MQTT `roster` command (applied on the roster worker), and
   while `kiosk roster import` replaces it from another process.

    .venv/bin/python bench/roster.py [--rows 100000,1000000] [--update-rows 100000] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import Broker, Watcher  # noqa: E402  (the tests' mosquitto and subscriber)
from kiosk import config  # noqa: E402
from kiosk.model import Person  # noqa: E402
from kiosk.mqtt.downlink import MAX_COMMAND_BYTES  # noqa: E402
from kiosk.stores.roster import Roster  # noqa: E402

NAMES = ("NGUYỄN VĂN THỬ", "TRẦN THỊ MẪU", "LÊ VĂN HỒ", "PHẠM MINH KHÁCH", "ĐẶNG THỊ HƯƠNG")
SCAN_GAP_S = 0.02
PREFIX = "kiosk/bench/k1"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def person_id(i: int) -> str:
    return f"{i:012d}"


def qid(i: int) -> str:
    return str(163_000_000_000_000_000 + i)


def write_csv(path: Path, rows: int, start: int = 0) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,qid,name,doses,recovered,staff\n")
        for i in range(start, start + rows):
            f.write(f"{person_id(i)},{qid(i)},{NAMES[i % 5]},2021-{1 + i % 12:02d}-{1 + i % 28:02d}:AstraZeneca;"
                    f"2021-11-01,{'2021-05-20' if i % 7 == 0 else ''},{'yes' if i % 3 else 'no'}\n")


def write_tinydb(path: Path, rows: int) -> None:
    """A roster as the TinyDB store of earlier versions wrote it (one JSON object, sorted keys)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"meta": {"1": {"updated_at": "2021-11-15T02:30:00+00:00", "version": 3}}, "people": {')
        for i in range(rows):
            doc = {"doses": [[f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}", "AstraZeneca"], ["2021-11-01", None]],
                   "id": person_id(i), "name": NAMES[i % 5], "qid": qid(i),
                   "recovered": "2021-05-20" if i % 7 == 0 else None, "staff": bool(i % 3)}
            f.write(("" if i == 0 else ", ") + json.dumps(str(i + 1)) + ": "
                    + json.dumps(doc, ensure_ascii=False, sort_keys=True))
        f.write("}}")


def in_fresh_process(code: str) -> tuple[dict, float]:
    """Run `code` (which prints one JSON object) in a new interpreter: (its output, its peak RSS in MB)."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed ({proc.returncode})")
    return json.loads(out), usage.ru_maxrss / 1024  # Linux: kilobytes


IMPORT = """
import json, sys, time
from kiosk.stores.roster import Roster
t = time.perf_counter()
n = Roster({db!r}).import_csv({csv!r}, force=True)
print(json.dumps({{"rows": n, "s": time.perf_counter() - t}}))
"""
MIGRATE = """
import json, logging, time
from kiosk.stores.roster import Roster
logging.disable(logging.WARNING)
t = time.perf_counter()
n = Roster({db!r}).count
print(json.dumps({{"rows": n, "s": time.perf_counter() - t}}))
"""
START = """
import time
t0 = time.perf_counter()
import json
from kiosk.model import Person
from kiosk.stores.roster import Roster
t1 = time.perf_counter()
r = Roster({db!r})
meta = (r.count, r.version, r.updated_at)
found = r.lookup(Person(id_number={pid!r}))
t2 = time.perf_counter()
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "open_meta_lookup_ms": (t2 - t1) * 1000, "found": found is not None}}))
"""


def imports(folder: Path, sizes: list[int]) -> tuple[list[dict], Path]:
    results, db = [], folder / "none"
    for rows in sizes:
        csv, db = folder / f"roster-{rows}.csv", folder / f"roster-{rows}.sqlite"
        write_csv(csv, rows)
        out, rss = in_fresh_process(IMPORT.format(db=str(db), csv=str(csv)))
        first_mb = db.stat().st_size / 1e6
        again, _ = in_fresh_process(IMPORT.format(db=str(db), csv=str(csv)))  # a replacement of the same size
        legacy = folder / f"legacy-{rows}.json"
        write_tinydb(legacy, rows)
        mig, mig_rss = in_fresh_process(MIGRATE.format(db=str(legacy)))
        results.append({"rows": rows, "csv_mb": round(csv.stat().st_size / 1e6, 1), "import_s": round(out["s"], 2),
                        "rows_per_s": round(rows / out["s"]), "peak_rss_mb": round(rss, 1),
                        "db_mb": round(first_mb, 1), "replace_s": round(again["s"], 2),
                        "db_mb_after_replace": round(db.stat().st_size / 1e6, 1), "migrate_tinydb_s": round(mig["s"], 2),
                        "migrate_peak_rss_mb": round(mig_rss, 1)})
        csv.unlink()
        legacy.unlink()
    return results, db


def start_up(db: Path, rows: int) -> dict:
    out, rss = in_fresh_process(START.format(db=str(db), pid=person_id(rows // 2)))
    cfg = db.parent / "k.toml"
    cfg.write_text(f'[camera]\ntype = "none"\n[roster]\npath = "{db}"\n')
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kiosk", "--config", str(cfg), "roster", "show"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return {"rows": rows, "open_meta_first_lookup_ms": round(out["open_meta_lookup_ms"], 1),
            "import_modules_ms": round(out["import_ms"], 1), "peak_rss_mb": round(rss, 1),
            "kiosk_roster_show_s": round(time.perf_counter() - t, 2)}


def lookups(db: Path, rows: int, n: int = 20_000) -> dict:
    roster = Roster(db)
    step = max(1, rows // n)
    kinds = {"by_id": [Person(id_number=person_id(i)) for i in range(0, rows, step)][:n],
             "by_qid_masked_id": [Person(id_number="******" + person_id(i)[6:], qid=qid(i))
                                  for i in range(0, rows, step)][:n],
             "miss": [Person(id_number=person_id(rows + i), qid=qid(rows + i)) for i in range(n)]}
    out = {}
    for kind, persons in kinds.items():
        us = []
        for p in persons:
            t = time.perf_counter()
            roster.lookup(p)
            us.append((time.perf_counter() - t) * 1e6)
        out[kind] = {"p50_us": round(statistics.median(us), 1), "p95_us": round(pct(us, 0.95), 1)}
    roster.close()
    return out


# ---------------------------------------------------------------------- scan latency during updates
class Kiosk:
    """The real App on its own thread, with its reader fed here and each feedback's instant noted."""

    def __init__(self, folder: Path, port: int, rows: int):
        from kiosk.app import App
        from drivers.display_luma import LumaDisplay
        from fakes import QueueReader
        from luma.core.device import dummy

        self.cfg = config.load(None, [
            f"journal.path={folder}/journal.sqlite", f"roster.path={folder}/roster.sqlite",
            f"trust.path={folder}/trust.json", "trust.seed_file=", "roster.seed_csv=", "site.mode=health",
            "site.debounce_seconds=0", "site.id=bench", "site.device=k1", "clock.source=fixed",
            "clock.start=2021-11-15T09:00:00+07:00", "mqtt.enabled=true", "mqtt.host=127.0.0.1",
            f"mqtt.port={port}", "mqtt.confirm=false"])
        seed = folder / "seed.csv"
        write_csv(seed, rows)
        Roster(self.cfg.roster.path).import_csv(seed)
        self.reader, self.shown, self.sent = QueueReader(), [], []
        made, ready = {}, threading.Event()

        def main() -> None:
            app = App(self.cfg, devices={"camera": None, "reader": self.reader,
                                         "display": LumaDisplay(dummy(width=128, height=64, mode="1"))})
            real = app.feedback.show
            app.feedback.show = lambda decision: (self.shown.append(time.perf_counter()), real(decision))[1]
            made["app"] = app
            ready.set()
            app.run()

        self.thread = threading.Thread(target=main, name="app", daemon=True)
        self.thread.start()
        assert ready.wait(30)
        self.app = made["app"]
        self.rows = rows

    def scan_until(self, done: threading.Event, at_least: int = 0) -> list[float]:
        """Scan every SCAN_GAP_S until `done` (and at least `at_least` scans); each scan's latency in ms."""
        first = len(self.sent)
        while not done.is_set() or len(self.sent) - first < at_least:
            i = len(self.sent) % self.rows
            self.sent.append(time.perf_counter())
            self.reader.texts.put(f"{person_id(i)}|NGUYEN VAN THU|1990-12-01|0|{qid(i)}|")
            time.sleep(SCAN_GAP_S)
        deadline = time.monotonic() + 30
        while len(self.shown) < len(self.sent) and time.monotonic() < deadline:
            time.sleep(0.01)
        return [(s - t) * 1000 for t, s in zip(self.sent[first:], self.shown[first:len(self.sent)])]

    def stop(self) -> None:
        self.app.stop()
        self.thread.join(30)


def latency(ms: list[float]) -> dict:
    return {"scans": len(ms), "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(pct(ms, 0.99), 2),
            "max_ms": round(max(ms), 2)}


def scans_during_updates(folder: Path, rows: int) -> dict:
    broker = Broker(folder / "broker", persistence=False).start()
    kiosk = Kiosk(folder, broker.port, rows)
    watcher = Watcher(broker.port, f"{PREFIX}/cmd/roster/result", f"{PREFIX}/status")
    out: dict = {}
    try:
        watcher.next(f"{PREFIX}/status", timeout=30, where=lambda b: b.get("state") == "online")
        idle = threading.Event()
        threading.Timer(3.0, idle.set).start()
        out["idle"] = latency(kiosk.scan_until(idle))

        entries = [{"id": person_id(i), "staff": True} for i in range(rows)]  # a staff list: the smallest rows
        body = json.dumps({"id": "bench", "op": "replace", "version": 10, "force": True, "entries": entries},
                          separators=(",", ":"))
        if len(body) > MAX_COMMAND_BYTES:
            out["downlink"] = {"skipped": f"{rows} rows are {len(body):,} bytes, over the command limit"}
        else:
            answered = threading.Event()
            answer: dict = {}

            def wait_answer() -> None:
                answer.update(watcher.next(f"{PREFIX}/cmd/roster/result", timeout=600))
                answered.set()

            threading.Thread(target=wait_answer, daemon=True).start()
            t = time.perf_counter()
            watcher.publish(f"{PREFIX}/cmd/roster", body)
            ms = kiosk.scan_until(answered, at_least=5)
            out["downlink"] = {"rows": rows, "command_bytes": len(body), "answered_s": round(time.perf_counter() - t, 2),
                               "ok": answer.get("ok"), **latency(ms)}

        csv = folder / "update.csv"
        write_csv(csv, rows, start=rows // 2)
        cfg = folder / "cli.toml"
        cfg.write_text(f'[camera]\ntype = "none"\n[roster]\npath = "{kiosk.cfg.roster.path}"\n')
        done = threading.Event()
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "kiosk", "--config", str(cfg), "roster", "import", str(csv),
                                 "--force"], cwd=ROOT, stdout=subprocess.DEVNULL)
        threading.Thread(target=lambda: (proc.wait(), done.set()), daemon=True).start()
        ms = kiosk.scan_until(done, at_least=5)
        out["cli_import"] = {"rows": rows, "import_s": round(time.perf_counter() - t, 2), "exit": proc.returncode,
                             **latency(ms)}
    finally:
        watcher.close()
        kiosk.stop()
        broker.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="100000,1000000", help="roster sizes to import, comma-separated")
    ap.add_argument("--update-rows", type=int, default=100_000, help="size of the roster replaced while scanning")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-roster-") as tmp:
        folder = Path(tmp)
        imported, largest = imports(folder, sizes)
        result = {"import": imported, "start_up": start_up(largest, sizes[-1]),
                  "lookup": lookups(largest, sizes[-1])}
        scans = folder / "scans"
        scans.mkdir()
        result["scan_latency"] = scans_during_updates(scans, args.update_rows)
    if args.json:
        print(json.dumps(result))
    else:
        for section, value in result.items():
            print(f"{section}:")
            for item in value if isinstance(value, list) else [value]:
                print("  " + json.dumps(item, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

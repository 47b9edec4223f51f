#!/usr/bin/env python3
"""The venue console's numbers, on this machine's real parts (Mosquitto, SQLite, a throwaway PostgreSQL,
uvicorn, Debian's Chromium through Playwright).

1. live: 10 kiosks publish 5 check-ins/s each (QoS 1) to a local Mosquitto; `kiosk console`'s collector
   stores and acks them and pushes them to a browser on the Live page; a MutationObserver in the page notes
   when each row appears. Publish-to-browser latency p50/p95.
2. ingest: the same kiosks publish a backlog as fast as the broker takes it; check-ins/s stored and
   acknowledged end to end (the last ack received), into SQLite and into PostgreSQL.
3. pages: the store filled with N check-ins (bulk SQL: 20 sites, 4 kiosks each, 60 days, 1 M people), then
   the Live, Per day (14 days), Today and Kiosks pages over HTTP, and a 14-day trace with co-presence
   (store query and the Trace page), p50/p95 of 20 runs each; the query plans PostgreSQL chose.

    .venv/bin/python bench/console.py [--sizes sqlite:1000000,postgresql:1000000,postgresql:10000000]
                                      [--live-seconds 20] [--skip-live] [--json]
Targets (issue 9): live p95 < 1 s, pages < 300 ms, trace < 500 ms at 10 M on PostgreSQL.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from conftest import Broker, free_port, wait_for  # noqa: E402  (the tests' mosquitto)
from uplink import summary  # noqa: E402  (p50/p95/max as the other benchmarks print them)
from postgres import PostgresServer, _bindir  # noqa: E402  (the tests' throwaway PostgreSQL)
from kiosk import config  # noqa: E402

PASSWORD = "bench password 123"
SITES, DEVICES, PEOPLE, DAYS = 20, 4, 1_000_000, 60
KIOSKS, RATE = 10, 5.0
CHROMIUM = "/usr/bin/chromium"


def make_config(folder: Path, database: str, broker_port: int = 1, web_port: int | None = None):
    return config.load(None, data={
        "site": {"id": "s1", "device": "d1"}, "journal": {"path": str(folder / "j.sqlite"), "hash_key": "k" * 32},
        "mqtt": {"port": broker_port, "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 1.0},
        "console": {"database_url": database, "port": web_port or free_port(), "hash_key": "k" * 32,
                    "client_id": f"bench-console-{uuid.uuid4().hex[:6]}"}})


# ---------------------------------------------------------------------- kiosks (paho publishers)
class Kiosk:
    """One simulated kiosk: publishes check-ins under its own prefix and counts the acks it gets back."""

    def __init__(self, port: int, site: str, device: str):
        import paho.mqtt.client as mqtt

        self.site, self.device, self.seq = site, device, 0
        self.acked: set[str] = set()
        self.sent_at: dict[str, float] = {}
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{site}-{device}")
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"kiosk/{site}/{device}/ack", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def _on_ack(self, client, userdata, message) -> None:
        try:
            self.acked.update(json.loads(message.payload)["ids"])
        except Exception:
            pass

    def publish(self) -> str:
        self.seq += 1
        event_id = uuid.uuid4().hex
        now = datetime.now(timezone.utc)
        body = {"v": 1, "id": event_id, "seq": self.seq, "ts": now.isoformat(), "site": self.site,
                "device": self.device, "direction": "in", "verdict": "green", "reason": "vaccinated_14d",
                "kind": "personal_qr", "clock_synced": True, "subject": {"name": "N.V. THU", "id": "******000001"},
                "subject_ref": uuid.uuid4().hex}
        self.sent_at[event_id] = time.time()
        self.client.publish(f"kiosk/{self.site}/{self.device}/checkin", json.dumps(body), qos=1)
        return event_id

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RunningConsole:
    """ConsoleProcess with its collector and uvicorn on threads of this process, and a logged-in user."""

    def __init__(self, cfg):
        from kiosk.fleet.console import ConsoleProcess

        self.process = ConsoleProcess(cfg)
        if self.process.accounts.verify("bench", PASSWORD) is None:
            self.process.accounts.add_user("bench", PASSWORD)
        for i in range(SITES):
            self.process.accounts.grant("bench", f"s{i}", "owner")
        self.process.start_collector()
        self.server = self.process.make_server()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 30, what="uvicorn")
        self.base = f"http://127.0.0.1:{cfg.console.port}"

    def login(self):
        import httpx

        http = httpx.Client(base_url=self.base, timeout=60)
        csrf = re.search(r'name="csrf" value="([^"]+)"', http.get("/login").text).group(1)
        assert http.post("/login", data={"csrf": csrf, "name": "bench", "password": PASSWORD}).status_code == 303
        return http

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.process.stop()


# ---------------------------------------------------------------------- 1. live latency in a browser
OBSERVER = """() => { window.__seen = {}; new MutationObserver(ms => { const t = Date.now();
  for (const m of ms) for (const n of m.addedNodes) if (n.id && n.id.startsWith('ev-')) window.__seen[n.id.slice(3)] = t; })
  .observe(document.getElementById('feed'), {childList: true}); }"""


def bench_live(folder: Path, broker: Broker, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    console = RunningConsole(make_config(folder, str(folder / "live.sqlite"), broker.port))
    wait_for(lambda: console.process.collector.client is not None, 20, what="the collector")
    kiosks = [Kiosk(broker.port, "s1", f"d{i}") for i in range(KIOSKS)]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"{console.base}/login")
            page.fill("input[name=name]", "bench")
            page.fill("input[name=password]", PASSWORD)
            page.click("form.login button")
            page.goto(f"{console.base}/live?site=s1")
            wait_for(lambda: console.process.hub.streams == 1, 20, what="the browser's stream")
            page.evaluate(OBSERVER)
            gap = 1.0 / (KIOSKS * RATE)
            started, n = time.monotonic(), 0
            while time.monotonic() - started < seconds:
                kiosks[n % KIOSKS].publish()
                n += 1
                time.sleep(max(0.0, started + n * gap - time.monotonic()))
            wanted = {i for k in kiosks for i in k.sent_at}
            deadline = time.monotonic() + 30
            seen: dict = {}
            while time.monotonic() < deadline:
                seen = page.evaluate("window.__seen")
                if wanted <= set(seen):
                    break
                time.sleep(0.5)
            browser.close()
        sent = {i: t for k in kiosks for i, t in k.sent_at.items()}
        latencies = [(seen[i] / 1000 - t) * 1000 for i, t in sent.items() if i in seen]
        return {"kiosks": KIOSKS, "rate_per_kiosk": RATE, "published": len(sent), "in_browser": len(latencies),
                **summary(latencies)}
    finally:
        for k in kiosks:
            k.close()
        console.stop()


# ---------------------------------------------------------------------- 2. ingest with acks
def bench_ingest(folder: Path, broker: Broker, database: str, n: int) -> dict:
    """Two figures: kiosks publishing while the console consumes (bounded by these in-process publishers),
    and a backlog the broker queued while the console was away (the console's own pace: store, commit, ack)."""
    from kiosk.fleet.collector import Collector

    cfg = make_config(folder, database, broker.port)
    client_id = f"bench-{uuid.uuid4().hex[:6]}"
    kiosks = [Kiosk(broker.port, "s1", f"i{i}") for i in range(KIOSKS)]
    out: dict = {"events": n}

    def consume(until: Callable[[], bool]) -> Collector:
        collector = Collector(cfg, database, site=None, client_id=client_id, shared=False, kiosk_state=False)
        collector.connect()
        collector.run(should_stop=until)
        return collector

    try:
        # a persistent session first, so the broker keeps what is published while the console is away
        collector = Collector(cfg, database, site=None, client_id=client_id, shared=False, kiosk_state=False)
        collector.connect()
        stop = threading.Event()
        worker = threading.Thread(target=collector.run, kwargs={"should_stop": stop.is_set}, daemon=True)
        worker.start()
        started = time.monotonic()
        for j in range(n):
            kiosks[j % KIOSKS].publish()
        published = time.monotonic() - started
        wait_for(lambda: sum(len(k.acked) for k in kiosks) >= n, 600, interval=0.05, what="every ack")
        elapsed = time.monotonic() - started
        stop.set()
        worker.join(10)
        collector.close()
        out["live"] = {"publish_s": round(published, 2), "acked_all_s": round(elapsed, 2),
                       "events_per_s": round(n / elapsed)}
        for k in kiosks:
            k.acked.clear()
        for j in range(n):                    # the console is away: the broker queues these
            kiosks[j % KIOSKS].publish()
        wait_for(lambda: all(not k.client.want_write() for k in kiosks), 60, what="the backlog published")
        time.sleep(1.0)                       # PUBACKs of the last ones (the broker has them once acknowledged)
        started = time.monotonic()
        collector = consume(lambda: sum(len(k.acked) for k in kiosks) >= n or time.monotonic() - started > 600)
        elapsed = time.monotonic() - started
        collector.close()
        out["backlog"] = {"stored": collector.result.stored, "acked_all_s": round(elapsed, 2),
                          "events_per_s": round(n / elapsed)}
    finally:
        for k in kiosks:
            k.close()
    return out


# ---------------------------------------------------------------------- 3. pages at N stored check-ins
def fill(engine, n: int) -> float:
    """N check-ins over the last DAYS days (bulk SQL inside the engine), with their quarter-hour counts."""
    from sqlalchemy import text

    now_ms = int(time.time() * 1000)
    start = now_ms - DAYS * 86_400_000
    step = DAYS * 86_400_000 / n
    pg = engine.dialect.name == "postgresql"
    ref = ("lpad(to_hex(g % {p}), 16, '0') || lpad(to_hex((g % {p}) * 7919), 16, '0')" if pg
           else "printf('%016x%016x', g % {p}, (g % {p}) * 7919)").format(p=PEOPLE)
    at = f"({start} + CAST(g * {step} AS BIGINT))"
    ts = (f"to_char(to_timestamp({at} / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+00:00'" if pg
          else f"strftime('%Y-%m-%dT%H:%M:%S', {at} / 1000, 'unixepoch') || '+00:00'")
    source = (f"generate_series(1::bigint, {n}) AS s(g)" if pg else
              f"(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {n}) SELECT g FROM c)")
    select = f"""SELECT 'b' || g, 's' || (g % {SITES}), 'd' || ((g / {SITES}) % {DEVICES}), g, {ts}, {at}, {at},
        {'true' if pg else 1}, CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END, 'trace', 'personal_qr',
        CASE WHEN g % 10 = 0 THEN 'black' WHEN g % 37 = 0 THEN 'invalid' ELSE 'green' END, 'checked_in',
        '{{"name": "N.V. THU", "id": "******000001", "birth": "1990-**-**"}}', {ref}, {'false' if pg else 0}, 'bench'
        FROM {source}"""
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO checkins (id, site, device, seq, ts, at_ms, received_ms, clock_synced, "
                          "direction, mode, kind, verdict, reason, subject, subject_ref, override, source) " + select))
        conn.execute(text("INSERT INTO counts (site, bucket_ms, direction, verdict, n) SELECT site, "
                          "at_ms - at_ms % 900000, direction, verdict, COUNT(*) FROM checkins GROUP BY 1, 2, 3, 4"))
        for i in range(SITES):
            for d in range(DEVICES):
                conn.execute(text("INSERT INTO devices (site, device, status, last_seen_ms) VALUES (:s, :d, 'online', "
                                  ":t) ON CONFLICT DO NOTHING"), {"s": f"s{i}", "d": f"d{d}", "t": now_ms})
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return time.monotonic() - started


def timed(call, runs: int = 20) -> dict:
    call()                                    # warm
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t) * 1000)
    return summary(ms)


def plans(engine) -> dict:
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return {}
    queries = {
        "live": "SELECT * FROM checkins WHERE site = 's1' ORDER BY at_ms DESC, id DESC LIMIT 50",
        "trace": f"SELECT * FROM checkins WHERE subject_ref IN ('{'0' * 15 + '1' + '0' * 12 + '1eef'}') AND "
                 "site IN ('s1','s2') AND at_ms >= 0 ORDER BY at_ms LIMIT 500",
        "counts": "SELECT * FROM counts WHERE site = 's1' AND bucket_ms >= 0 AND bucket_ms < 99999999999999",
    }
    out = {}
    with engine.connect() as conn:
        for name, q in queries.items():
            out[name] = [r[0] for r in conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF) " + q))][:6]
    return out


def bench_pages(folder: Path, database: str, n: int) -> dict:
    from kiosk.fleet.events import EventStore

    store = EventStore(database)
    fill_s = fill(store.engine, n)
    total = store.total()
    console = RunningConsole(make_config(folder, database))
    http = console.login()
    out: dict = {"rows": total, "fill_s": round(fill_s, 1)}
    try:
        for name, path in (("live", "/live?site=s1"), ("live_page_100", None), ("days_14", "/days?site=s1&days=14"),
                           ("today", "/today?site=s1"), ("kiosks", "/kiosks?site=s1")):
            if path is None:       # a deep page of the live list: the keyset costs the same
                rows = console.process.store.recent("s1", limit=5000)
                from kiosk.fleet.events import Cursor

                cursor = Cursor(rows[-1]["at_ms"], rows[-1]["id"])
                path = f"/live?site=s1&before={cursor}"
            assert http.get(path).status_code == 200, path
            out[name] = timed(lambda: http.get(path))
        people = random.Random(7).sample(range(PEOPLE), 20)
        refs = [f"{p:016x}{p * 7919:016x}" for p in people]
        until = int(time.time() * 1000)
        since = until - 14 * 86_400_000
        sites = [f"s{i}" for i in range(SITES)]
        it = iter(refs * 2)
        visits: list[int] = []
        others: list[int] = []

        def trace() -> None:
            found = store.trace([next(it)], sites, since, until, 30 * 60_000)
            visits.append(len(found))
            others.extend(len(v["others"]) for v in found)

        out["trace_14d_query"] = timed(trace, runs=20)
        out["trace_visits_per_person"] = round(statistics.mean(visits), 1)
        out["trace_others_per_visit"] = round(statistics.mean(others), 1) if others else 0
        out["plans"] = plans(store.engine)
    finally:
        http.close()
        console.stop()
        store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="sqlite:1000000,postgresql:1000000,postgresql:10000000")
    parser.add_argument("--ingest", type=int, default=20000, help="check-ins published for the ingest rate")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "broker", persistence=False).start()
        bindir = _bindir()
        postgres = PostgresServer(bindir).start() if bindir else None
        try:
            if not args.skip_live:
                results["live"] = bench_live(folder, broker, args.live_seconds)
                print("live", json.dumps(results["live"]), flush=True)
            for engine in ("sqlite", "postgresql"):
                if engine == "postgresql" and postgres is None:
                    continue
                db = postgres.new_database() if engine == "postgresql" else str(folder / "ingest.sqlite")
                results[f"ingest_{engine}"] = bench_ingest(folder, broker, db, args.ingest)
                print(f"ingest {engine}", json.dumps(results[f"ingest_{engine}"]), flush=True)
            for spec in args.sizes.split(","):
                engine, _, size = spec.partition(":")
                if engine == "postgresql" and postgres is None:
                    print("postgresql: no server binaries, skipped", flush=True)
                    continue
                db = postgres.new_database() if engine == "postgresql" else str(folder / f"pages-{size}.sqlite")
                key = f"pages_{engine}_{int(size) // 1_000_000}M"
                results[key] = bench_pages(folder, db, int(size))
                print(key, json.dumps(results[key]), flush=True)
        finally:
            broker.stop()
            if postgres is not None:
                postgres.stop()
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

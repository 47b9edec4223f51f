#!/usr/bin/env python3
"""Uplink drain rate and its effect on scan-to-feedback latency, in one run, against a local Mosquitto.

1. Journals a backlog (default 100,000 check-ins) while the uplink is stopped.
2. Idle: the real App (zxing/auto decoder, decider, feedback with mock GPIO and the luma dummy display,
   journal) replays the bundled scenes at camera pace (30 fps), debounce 0, with no drain running.
3. Starts the App's uplink with a `kiosk collector` process confirming, and replays the same scenes while
   the backlog drains. Reports the backlog's events/s to PUBACK and to end-to-end confirmation, and the
   scan-to-feedback latency (frame in -> feedback issued) p50/p95 idle versus during the drain.

    .venv/bin/python bench/uplink.py [--events 100000] [--inflight 20] [--json]

`--link bad` instead drains a backlog (default 10,000) through tests/faultrelay.py under each fault in turn (a
good link, latency with jitter, a bandwidth cap, resets every few seconds, a half-open link mid-drain, all of them
at once) while a scanner journals a check-in every 5 ms, and prints per fault the drain rate to confirmation, the
duplicates the collector received (sent more than once), the kiosk's resends and reconnects, and the scanner's
journal p50/p99 (the pipeline never waits for the link).

    .venv/bin/python bench/uplink.py --link bad [--events 10000] [--json]
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import (Broker, fill_journal, journal_states, kiosk_config,  # noqa: E402  (the tests' mosquitto,
                      running_collector)                                    # backlog and helpers)
from faultrelay import FaultRelay, LinkFaults  # noqa: E402
from kiosk import config  # noqa: E402
from kiosk.app import App  # noqa: E402

FRAME_GAP_S = 1 / 30   # camera pace
COLLECTOR_ID = "bench-collector"
TIME_LIMIT_S = 900


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(pct(ms, 0.95), 2),
            "max_ms": round(max(ms), 2)}


class BacklogWatch:
    """A thread with its own connection noting when the backlog (seq <= last) is all PUBACKed, then confirmed."""

    def __init__(self, path: Path, last_seq: int, started: float):
        self.path, self.last_seq, self.started = path, last_seq, started
        self.pubacked_s: float | None = None
        self.confirmed_s: float | None = None
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _left(self, db, states: tuple[str, ...]) -> int:
        marks = ",".join("?" * len(states))
        return db.execute(f"SELECT COUNT(*) FROM checkins WHERE up_state IN ({marks}) AND seq <= ?",
                          (*states, self.last_seq)).fetchone()[0]

    def _watch(self) -> None:
        db = sqlite3.connect(str(self.path), timeout=30)
        try:
            while self.confirmed_s is None and time.perf_counter() - self.started < TIME_LIMIT_S:
                if self.pubacked_s is None and self._left(db, ("pending",)) == 0:
                    self.pubacked_s = time.perf_counter() - self.started
                if self._left(db, ("pending", "published")) == 0:
                    self.confirmed_s = time.perf_counter() - self.started
                time.sleep(0.05)
        finally:
            db.close()


def replay_frames(app: App, until) -> None:
    """Camera frames through the real pipeline at camera pace until until() is true."""
    while not until():
        started = time.perf_counter()
        frame = app.camera.read()
        app.pipeline.handle_frame(frame, started=started)
        app.feedback.tick()
        time.sleep(max(0.0, FRAME_GAP_S - (time.perf_counter() - started)))


BAD_LINKS = {   # name -> (faults, freeze the kiosk's connection once mid-drain)
    "good link": (LinkFaults(), False),
    "latency 100 ms +-50": (LinkFaults(latency_s=0.1, jitter_s=0.05), False),
    "bandwidth 100 kB/s": (LinkFaults(bytes_per_s=100_000), False),
    "reset every 3 s": (LinkFaults(reset_every_s=3.0), False),
    "half-open once": (LinkFaults(), True),
    "all of them": (LinkFaults(latency_s=0.1, jitter_s=0.05, bytes_per_s=100_000, reset_every_s=3.0), True),
}
KEEPALIVE_S = 10


def drain_through(folder: Path, broker: Broker, faults: LinkFaults, freeze: bool, events: int,
                  inflight: int) -> dict:
    """A backlog of `events` through a fault relay to a collector beside the broker, with a scanner journaling."""
    from datetime import datetime, timezone

    from kiosk.model import GREEN, Decision
    from kiosk.mqtt.uplink import Uplink
    from kiosk.stores.journal import Journal

    folder.mkdir()
    relay = FaultRelay(broker.port, faults).start()
    cfg = kiosk_config(folder, relay.port, keepalive=KEEPALIVE_S, max_inflight=inflight, resend_after_seconds=60,
                       reconnect_min_seconds=0.5, reconnect_max_seconds=8.0)
    fill_journal(cfg.journal.path, events)
    scanned: list[float] = []
    done = threading.Event()

    def scan() -> None:
        journal = Journal(cfg.journal.path, site="s1", device="d1")
        while not done.is_set():
            started = time.perf_counter()
            journal.append(Decision(kind="personal_qr", verdict=GREEN, reason="valid", subject={"name": "N*** A"},
                                    subject_ref="r", at=datetime.now(timezone.utc)))
            up.notify()
            scanned.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)
        journal.close()

    # a group of its own: the earlier runs' collectors keep their (persistent) place in theirs, and a shared
    # subscription gives each member its share, connected or not
    with running_collector(kiosk_config(folder, broker.port), folder / "collector.sqlite",
                           client_id=f"bench-{folder.name}", group=f"bench-{folder.name}") as collector:
        up = Uplink(cfg, cfg.journal.path)
        started = time.perf_counter()
        up.start()
        scanner = threading.Thread(target=scan, daemon=True)
        scanner.start()
        noticed_s = None
        try:
            if freeze:
                while journal_states(cfg.journal.path).get("confirmed", 0) < events // 3:
                    time.sleep(0.05)
                while not (up.online and relay.open_connections() == 1 and relay.freeze() == 1):
                    time.sleep(0.01)
                frozen = time.perf_counter()
                while up.online:
                    time.sleep(0.02)
                noticed_s = time.perf_counter() - frozen
            while _confirmed_backlog(cfg.journal.path, events) < events:
                if time.perf_counter() - started > TIME_LIMIT_S:
                    raise SystemExit(f"the backlog was not confirmed within {TIME_LIMIT_S} s")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            done.set()
            scanner.join(10)
            up.stop()
            relay.stop()
        duplicates = collector.result.duplicates
    out = {"events": events, "seconds": round(seconds, 1), "confirmed_per_s": round(events / seconds),
           "duplicates_received": duplicates, "resent": up.counters["resent"],
           "reconnects": up.counters["reconnects"] - 1, "resets": relay.resets,
           "scan_journal_ms": {"p50": round(statistics.median(scanned), 2), "p99": round(pct(scanned, 0.99), 2),
                               "max": round(max(scanned), 2)}}
    if noticed_s is not None:
        out["half_open_noticed_s"] = round(noticed_s, 1)
        out["keepalive_s"] = KEEPALIVE_S
    return out


def _confirmed_backlog(path: str | Path, events: int) -> int:
    db = sqlite3.connect(str(path), timeout=30)
    try:
        return int(db.execute("SELECT COUNT(*) FROM checkins WHERE up_state = 'confirmed' AND seq <= ?",
                              (events,)).fetchone()[0])
    finally:
        db.close()


def bad_link(args: argparse.Namespace) -> int:
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp / "broker").start()
        try:
            for i, (name, (faults, freeze)) in enumerate(BAD_LINKS.items()):
                results[name] = drain_through(tmp / f"link{i}", broker, faults, freeze, args.events, args.inflight)
                if not args.json:
                    print(f"{name:22} {results[name]}", flush=True)
        finally:
            broker.kill()
    if args.json:
        print(json.dumps(results))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, help="backlog size (default 100,000; 10,000 with --link bad)")
    ap.add_argument("--inflight", type=int, default=20, help="mqtt.max_inflight (default: the product default)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="replay time before the drain starts")
    ap.add_argument("--link", choices=("local", "bad"), default="local",
                    help="local: the App's scan latency while a backlog drains; bad: the drain under each fault")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.link == "bad":
        args.events = args.events or 10_000
        return bad_link(args)
    args.events = args.events or 100_000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp / "broker").start()
        settings = [f"mqtt.port={broker.port}", "site.id=s1", "site.device=d1", "clock.source=assume_synced"]
        cfg = config.load(None, [
            *settings, "mqtt.enabled=true", f"mqtt.max_inflight={args.inflight}", "mqtt.resend_after_seconds=600",
            "mqtt.reconnect_min_seconds=0.1", f"journal.path={tmp}/journal.sqlite",
            f"roster.path={tmp}/roster.json", f"trust.path={tmp}/trust.json", "camera.type=replay",
            f"camera.path={ROOT}/kiosk/data/scenes", "camera.loop=true", "site.debounce_seconds=0",
            "display.type=dummy", "display.width=128", "display.height=64", "gpio.pin_factory=mock"])
        collector = None
        try:
            t0 = time.perf_counter()
            fill_journal(cfg.journal.path, args.events)
            fill_s = time.perf_counter() - t0
            # The collector's persistent session exists before the drain, so the broker queues for it from
            # the first event (else early events would wait for the resend timer).
            with running_collector(cfg, tmp / "collector.sqlite", client_id=COLLECTOR_ID):
                pass
            app = App(cfg)
            app.camera.start()
            idle_end = time.perf_counter() + args.idle_seconds
            replay_frames(app, lambda: time.perf_counter() >= idle_end)
            idle = list(app.pipeline.counters.latencies_ms)
            app.pipeline.counters.latencies_ms.clear()
            last_seq = app.journal.last_seq()
            collector = subprocess.Popen(
                [sys.executable, "-m", "kiosk", "collector", "--db", str(tmp / "collector.sqlite"),
                 "--client-id", COLLECTOR_ID, "--until-idle", "5", *(arg for s in settings for arg in ("--set", s)),
                 "--set", "camera.type=none", "--set", 'roster.seed_csv=""', "--set", 'trust.seed_file=""'],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            start = time.perf_counter()
            watch = BacklogWatch(Path(cfg.journal.path), last_seq, start)
            app.uplink.start()
            replay_frames(app, lambda: watch.confirmed_s is not None or not watch.thread.is_alive())
            busy = list(app.pipeline.counters.latencies_ms)
            if watch.confirmed_s is None:
                raise SystemExit(f"the backlog was not confirmed within {TIME_LIMIT_S} s")
            backlog = last_seq
            app.close()
        finally:
            if collector is not None:
                collector.wait(30)
            broker.kill()
    result = {
        "backlog_events": backlog, "max_inflight": args.inflight, "journal_fill_s": round(fill_s, 1),
        "drain_to_puback_s": round(watch.pubacked_s, 2), "drain_to_puback_per_s": round(backlog / watch.pubacked_s),
        "drain_confirmed_s": round(watch.confirmed_s, 2),
        "drain_confirmed_per_s": round(backlog / watch.confirmed_s),
        "scan_to_feedback_idle": summary(idle), "scan_to_feedback_during_drain": summary(busy),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:30} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

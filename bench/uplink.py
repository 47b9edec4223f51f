#!/usr/bin/env python3
"""Uplink drain rate and its effect on scan-to-feedback latency, in one run, against a local Mosquitto.

1. Journals a backlog (default 100,000 check-ins) while the uplink is stopped.
2. Idle: times a simulated pipeline step (decide a fixed payload with the real Decider, journal append,
   uplink.notify) with no drain running.
3. Starts the uplink with a `kiosk collector` process confirming, and times the same step while the
   backlog drains. Reports events/s to PUBACK (nothing pending) and to end-to-end confirmation.

    .venv/bin/python bench/uplink.py [--events 100000] [--inflight 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import Broker, fill_journal, journal_states  # noqa: E402  (the tests' mosquitto and backlog)
from kiosk import config  # noqa: E402
from kiosk.journal import Journal  # noqa: E402
from kiosk.uplink import Uplink  # noqa: E402

PAYLOAD = "012345678901|NGUYEN VAN A|1990-01-01|1|QID000001|2021-01-01|HA NOI"  # synthetic personal QR
STEP_GAP_S = 1 / 30  # one scan per camera frame at most


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def make_step(cfg, journal: Journal, uplink: Uplink):
    try:
        from kiosk.app import build_decider

        decider = build_decider(cfg)
    except ImportError:
        decider = None

    def step() -> float:
        started = time.perf_counter()
        now = datetime.now(timezone.utc)
        if decider is not None:
            decision = decider.decide(PAYLOAD, now, True)
        else:
            from kiosk.model import GREEN, Decision
            decision = Decision(kind="personal_qr", verdict=GREEN, reason="valid", at=now)
        journal.append(decision)
        uplink.notify()
        return (time.perf_counter() - started) * 1000

    return step, decider is not None


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(pct(ms, 0.95), 2),
            "max_ms": round(max(ms), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="backlog size")
    ap.add_argument("--inflight", type=int, default=20, help="mqtt.max_inflight")
    ap.add_argument("--idle-steps", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp / "broker").start()
        cfg = config.load(None, data={
            "site": {"id": "s1", "device": "d1"},
            "journal": {"path": str(tmp / "journal.sqlite")},
            "roster": {"path": str(tmp / "roster.json")}, "trust": {"path": str(tmp / "trust.json")},
            "mqtt": {"enabled": True, "port": broker.port, "max_inflight": args.inflight,
                     "resend_after_seconds": 600, "reconnect_min_seconds": 0.1}})
        collector = None
        try:
            t0 = time.perf_counter()
            fill_journal(cfg.journal.path, args.events)
            fill_s = time.perf_counter() - t0
            journal = Journal(cfg.journal.path, site="s1", device="d1")
            uplink = Uplink(cfg, cfg.journal.path)
            step, real_decider = make_step(cfg, journal, uplink)
            for _ in range(20):  # warm-up
                step()
            idle = []
            for _ in range(args.idle_steps):
                idle.append(step())
                time.sleep(STEP_GAP_S)
            collector = subprocess.Popen(
                [sys.executable, "-m", "kiosk", "collector", "--db", str(tmp / "collector.sqlite"),
                 "--until-idle", "5", "--set", f"mqtt.port={broker.port}", "--set", "site.id=s1",
                 "--set", "camera.type=none", "--set", 'roster.seed_csv=""', "--set", 'trust.seed_file=""'],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(1.0)  # let the collector subscribe before the drain starts (else events wait for resend)
            total = args.events + args.idle_steps + 20
            start = time.perf_counter()
            uplink.start()
            busy, pubacked_s = [], None
            while True:
                busy.append(step())
                total += 1
                if pubacked_s is None and uplink._drained.is_set():
                    pubacked_s = time.perf_counter() - start
                if len(busy) % 30 == 0 and journal_states(cfg.journal.path).get("confirmed", 0) >= total:
                    break
                if time.perf_counter() - start > 900:
                    raise SystemExit("drain did not finish within 15 minutes")
                time.sleep(STEP_GAP_S)
            confirmed_s = time.perf_counter() - start
            uplink.stop()
            journal.close()
        finally:
            if collector is not None:
                collector.wait(30)
            broker.kill()
    result = {
        "events": args.events, "max_inflight": args.inflight, "journal_fill_s": round(fill_s, 1),
        "decider": "kiosk.decider.Decider" if real_decider else "none (journal append only)",
        "drain_to_puback_s": round(pubacked_s or confirmed_s, 2),
        "drain_to_puback_per_s": round(args.events / (pubacked_s or confirmed_s)),
        "drain_confirmed_s": round(confirmed_s, 2), "drain_confirmed_per_s": round(args.events / confirmed_s),
        "step_idle": summary(idle), "step_during_drain": summary(busy),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Scan-to-feedback latency over the demo scenes: frame in -> LED/buzzer/display command issued.

Runs the real pipeline (decoder, decider, feedback with mock GPIO and the luma dummy display, SQLite
journal) on the bundled scenes, with the debounce window at 0 so every frame with a code is decided.
Prints p50/p95 of the latency and the per-frame loop time.

    .venv/bin/python bench/pipeline.py [--rounds 5] [--decoder auto|zxing|zbar] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk import config  # noqa: E402
from kiosk.app import App  # noqa: E402
from kiosk.driver_names import DECODERS  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="passes over the scenes")
    ap.add_argument("--decoder", default="auto", choices=tuple(DECODERS), help="default: the product default")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.load(None, [
            f"journal.path={tmp}/journal.sqlite", f"roster.path={tmp}/roster.json", f"trust.path={tmp}/trust.json",
            "display.type=dummy", "display.width=128", "display.height=64", "mqtt.enabled=false",
            "site.debounce_seconds=0", f"decoder.type={args.decoder}", "camera.loop=true"])
        app = App(cfg)
        frames = sum(1 for p in Path(cfg.camera.path).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
        loop_ms: list[float] = []
        app.camera.start()
        for _ in range(args.rounds * frames):
            t0 = time.perf_counter()
            frame = app.camera.read()
            app.pipeline.handle_frame(frame, started=t0)
            app.feedback.tick()
            loop_ms.append((time.perf_counter() - t0) * 1000)
        latencies = list(app.pipeline.counters.latencies_ms)
        app.close()
    result = {
        "decoder": args.decoder, "frames": len(loop_ms), "checkins": len(latencies),
        "scan_to_feedback_ms_p50": round(pct(latencies, 0.50), 2), "scan_to_feedback_ms_p95": round(pct(latencies, 0.95), 2),
        "loop_ms_p50": round(statistics.median(loop_ms), 2), "loop_ms_p95": round(pct(loop_ms, 0.95), 2),
        "loop_fps_at_p50": round(1000 / statistics.median(loop_ms), 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Time to first read on the generated presentation videos (`bench/video_set.py`), at 30 fps.

For each presentation the first legible frame is measured: the first frame that single-frame decoding with
every stage of the staged decoder and no time budget reads on its own. Then the product's decoder (tracking
on, its default budget) runs against a camera delivering a frame every 1/30 s: while it decodes, newer frames
replace older ones (one driver buffer), so a slow frame costs the frames that arrive meanwhile, as on a kiosk.
Printed per scenario and overall: the lag of the first read behind the first legible frame (frames), the time
from the whole code in view to the first read (ms, decode time included), the share never read within 3 s of
full view, wrong texts, a second phone read before the presented one. Then the same with tracking off (every
frame on its own, the same budget): what carrying the region and averaging frames adds.

    taskset -c 0 .venv/bin/python bench/video.py [--seeds 8] [--budget-ms 25] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.video_set import FPS, SCENARIOS, Presentation, presentations  # noqa: E402
from drivers.decoder_auto import AutoDecoder  # noqa: E402

NEVER_S = 3.0


def pct(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else None


def first_legible(p: Presentation) -> int | None:
    """The first frame single-frame decoding (all stages, no budget) reads the presented code in."""
    decoder = AutoDecoder(budget_ms=1e6, track=False)
    for i, frame in enumerate(p.frames):
        if p.texts[0] in decoder.decode(frame):
            return i
    return None


def run_at_fps(p: Presentation, decoder: AutoDecoder) -> dict[str, Any]:
    """The decoder against a 30 fps camera with one buffer; the first read of the presented code and its time."""
    decoder.reset()
    n, i, free = len(p.frames), 0, 0.0
    out: dict[str, Any] = {"read_frame": None, "read_s": None, "wrong": 0, "behind_first": False, "decoded": 0}
    seen: list[str] = []
    while i < n:
        start = max(free, i / FPS)
        j = max(i, min(n - 1, int(start * FPS)))  # the newest frame in the buffer when the decoder is free
        started = time.perf_counter()
        texts = decoder.decode(p.frames[j])
        free = start + (time.perf_counter() - started)
        out["decoded"] += 1
        for text in texts:
            if text not in p.texts:
                out["wrong"] += 1
            elif text not in seen:
                seen.append(text)
        if out["read_frame"] is None and p.texts[0] in texts:
            out["read_frame"], out["read_s"] = j, free
        i = j + 1
    out["behind_first"] = bool(seen) and seen[0] != p.texts[0]  # a second phone decided before the presented one
    return out


def summarise(rows: list[dict]) -> dict[str, Any]:
    lags = [r["read_frame"] - r["legible"] for r in rows if r["read_frame"] is not None and r["legible"] is not None]
    to_read = [(r["read_s"] - r["full_view"] / FPS) * 1000 for r in rows if r["read_frame"] is not None]
    never = sum(r["read_frame"] is None or r["read_s"] - r["full_view"] / FPS > NEVER_S for r in rows)
    return {"presentations": len(rows), "legible": sum(r["legible"] is not None for r in rows),
            "read_never_legible": sum(r["legible"] is None and r["read_frame"] is not None for r in rows),
            "lag_p50": pct(lags, 0.5), "lag_p95": pct(lags, 0.95),
            "earlier_than_legible": sum(lag < 0 for lag in lags),
            "full_view_to_read_ms_p50": _round(pct(to_read, 0.5)),
            "full_view_to_read_ms_p95": _round(pct(to_read, 0.95)),
            "never_within_3s": never, "never_share": round(never / len(rows), 4) if rows else None,
            "wrong": sum(r["wrong"] for r in rows), "second_phone_first": sum(r["behind_first"] for r in rows)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def line(name: str, s: dict[str, Any]) -> str:
    return (f"{name:14s} {s['presentations']:3d} shown, {s['legible']:3d} legible | lag frames p50 {s['lag_p50']} "
            f"p95 {s['lag_p95']}, {s['earlier_than_legible']} read before legible, {s['read_never_legible']} read "
            f"though never legible | full view -> read ms "
            f"p50 {s['full_view_to_read_ms_p50']} p95 {s['full_view_to_read_ms_p95']} | never within 3 s "
            f"{s['never_within_3s']} ({s['never_share']:.1%}) | wrong {s['wrong']} | second phone first "
            f"{s['second_phone_first']}")


def empty_scene_ms(decoder: AutoDecoder, frames: int = 120) -> tuple[float | None, float | None, float]:
    """Decode time p50, p95 and mean over a still, empty scene with sensor noise: what the camera sees most of
    the day."""
    import numpy as np

    from bench.video_set import background

    rng = np.random.default_rng(5)
    scene = background(rng)
    decoder.reset()
    times = []
    for _ in range(frames):
        frame = np.clip(scene + rng.normal(0, 6.0, scene.shape), 0, 255).astype(np.uint8)
        started = time.perf_counter()
        decoder.decode(frame)
        times.append((time.perf_counter() - started) * 1000)
    return _round(pct(times, 0.5)), _round(pct(times, 0.95)), round(sum(times) / len(times), 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="time to first read on generated presentation videos at 30 fps")
    ap.add_argument("--seeds", type=int, default=8, help="presentations per scenario")
    ap.add_argument("--budget-ms", type=float, default=None, help="decoder budget (default: the decoder's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    shown = presentations(args.seeds)
    legible = {p.name: first_legible(p) for p in shown}
    budget = {} if args.budget_ms is None else {"budget_ms": args.budget_ms}
    results = {}
    for label, decoder in (("tracking", AutoDecoder(**budget)), ("single frames", AutoDecoder(track=False, **budget))):
        decoder.decode(shown[0].frames[0])  # warm-up: library load and first-call allocations
        rows = [{**run_at_fps(p, decoder), "legible": legible[p.name], "full_view": p.full_view,
                 "scenario": p.scenario} for p in shown]
        by = defaultdict(list)
        for r in rows:
            by[r["scenario"]].append(r)
        results[label] = {"all": summarise(rows), **{s: summarise(by[s]) for s in SCENARIOS}}
        empty = dict(zip(("empty_scene_ms_p50", "empty_scene_ms_p95", "empty_scene_ms_mean"), empty_scene_ms(decoder)))
        results[label]["all"].update(empty)
    if args.json:
        print(json.dumps({"fps": FPS, "budget_ms": decoder.budget_ms, **results}))
        return 0
    print(f"{len(shown)} presentations at {FPS} fps, budget {decoder.budget_ms} ms")
    for label, summary in results.items():
        e = summary["all"]
        print(f"-- {label}: a still empty scene costs ms p50 {e['empty_scene_ms_p50']} p95 {e['empty_scene_ms_p95']} "
              f"mean {e['empty_scene_ms_mean']} a frame")
        for name, s in summary.items():
            print("  " + line(name, s))
    return 0


if __name__ == "__main__":
    sys.exit(main())

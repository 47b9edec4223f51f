#!/usr/bin/env python3
"""Decoder accuracy and speed on the shared QR corpus (scoring rules: ../shared/corpus/README.md).

A positive frame is read when one returned text equals a ground-truth text exactly; any other returned
text is a wrong read (worse than no read); any text on a negative frame is a false positive. Images are
loaded once, as grey arrays, so the times are the decoder's alone: each frame is decoded --repeat times and
its median time kept. Negative frames are timed apart too ("empty"): a kiosk camera sees them most of the time.

    taskset -c 0 .venv/bin/python bench/decode.py [--corpus DIR] [--decoders auto,zxing,zbar] [--repeat 5]
        [--budget-ms MS] [--json] [--contributions]

--contributions then scores `auto` once more with each of its dear stages left out (the stages for detected
symbols, `decoder_auto.STAGES`, and those for the survey's cues, `decoder_auto.CUE_PLANS`): what each adds.

--against REV times this tree's `auto` and the `auto` of git revision REV frame by frame, interleaved in one
process: on a shared, loaded machine the ratio of the two medians moves much less than either figure (the
before-staged decoder is 7d7d24b).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def load_corpus(corpus: Path) -> list[tuple[dict, np.ndarray]]:
    entries = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))["entries"]
    out = []
    for e in entries:
        e.setdefault("category", "all")  # the demo scenes' manifest has no categories
        with Image.open(corpus / e["file"]) as img:
            out.append((e, np.asarray(img.convert("L"))))
    return out


def timed_decode(decoder, grey: np.ndarray, repeat: int) -> tuple[list[str], float]:
    """The texts of one frame and the median decode time in ms over `repeat` runs. Each run is a frame on its
    own: a decoder that tracks a camera stream (`reset`) forgets the run before."""
    times = []
    for _ in range(repeat):
        if hasattr(decoder, "reset"):
            decoder.reset()
        started = time.perf_counter()
        texts = decoder.decode(grey)
        times.append((time.perf_counter() - started) * 1000)
    return texts, float(np.median(times))


def score(decoder, frames: list[tuple[dict, np.ndarray]], repeat: int = 1) -> dict:
    cats: dict[str, dict] = defaultdict(lambda: {"frames": 0, "read": 0, "wrong": 0, "false_positive": 0})
    times, empty_times, utf8 = [], [], {"frames": 0, "read": 0}
    stages: dict[str, dict] = defaultdict(lambda: {"read": 0, "ms": []})  # the stage that read each frame
    for entry, grey in frames:
        texts, ms = timed_decode(decoder, grey, repeat)
        times.append(ms)
        c = cats[entry["category"]]
        stage = getattr(decoder, "last_stage", None)
        if stage and entry["texts"] and any(t in entry["texts"] for t in texts):
            stages[stage]["read"] += 1
            stages[stage]["ms"].append(ms)
            c.setdefault("stages", defaultdict(int))[stage] += 1
        c["frames"] += 1
        truth = entry["texts"]
        if not truth:  # a negative frame (no code in view)
            empty_times.append(ms)
            c["false_positive"] += len(texts)
            continue
        hit = any(t in truth for t in texts)
        c["read"] += hit
        c["wrong"] += sum(t not in truth for t in texts)
        if not all(t.isascii() for t in truth):
            utf8["frames"] += 1
            utf8["read"] += hit
    positives = sum(bool(e["texts"]) for e, _ in frames)
    read = sum(c["read"] for c in cats.values())
    return {
        "decoder": decoder.name,
        "positives": positives,
        "read": read,
        "read_rate": round(read / positives, 4) if positives else None,
        "wrong": sum(c["wrong"] for c in cats.values()),
        "negatives": len(frames) - positives,
        "false_positives": sum(c["false_positive"] for c in cats.values()),
        "utf8_read": f"{utf8['read']}/{utf8['frames']}",
        "ms_p50": round(pct(times, 0.5), 2),
        "ms_p95": round(pct(times, 0.95), 2),
        "ms_max": round(max(times, default=0.0), 2),
        "empty_ms_p50": round(pct(empty_times, 0.5), 2),
        "empty_ms_p95": round(pct(empty_times, 0.95), 2),
        "categories": dict(sorted(cats.items())),
        "stages": {name: {"read": v["read"], "ms_p50": round(pct(v["ms"], 0.5), 2)} for name, v in stages.items()},
    }


def contributions(frames: list[tuple[dict, np.ndarray]], budget_ms: float | None) -> list[tuple[str, int, int]]:
    """(stage, reads with it left out, reads with all) for every dear stage of the auto decoder."""
    from dataclasses import replace

    from drivers.decoder_auto import CUE_PLANS, STAGES, AutoDecoder

    def reads(decoder: AutoDecoder) -> int:
        if budget_ms is not None:
            decoder.budget_ms = budget_ms
        return int(score(decoder, frames)["read"])

    every = reads(AutoDecoder())
    out = []
    for stage in STAGES:
        out.append((stage.name, reads(AutoDecoder(stages=tuple(s for s in STAGES if s is not stage))), every))
    for kind, plan in CUE_PLANS.items():
        for stage in plan.stages:
            cues = dict(CUE_PLANS, **{kind: replace(plan, stages=tuple(s for s in plan.stages if s is not stage))})
            out.append((f"{stage.name} ({kind} cue)", reads(AutoDecoder(cues=cues)), every))
    return out


def revision_decoder(rev: str, into: Path):
    """The `auto` decoder of git revision `rev` (its drivers/ and kiosk/ unpacked into `into`), imported apart
    from this tree's: the modules of both are swapped in and out of sys.modules around the import."""
    import subprocess
    import tarfile
    from io import BytesIO

    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "drivers", "kiosk"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in ("drivers", "kiosk")}
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module("drivers.decoder_auto").create(None)
    finally:
        sys.path.remove(str(into))
        for k in [k for k in sys.modules if k.split(".")[0] in ("drivers", "kiosk")]:
            del sys.modules[k]
        sys.modules.update(ours)


def against(frames: list[tuple[dict, np.ndarray]], rev: str, repeat: int) -> None:
    import tempfile

    ours = importlib.import_module("drivers.decoder_auto").create(None)
    names = ("this tree", rev)
    times: dict[str, dict[str, list[float]]] = {name: {"all": [], "empty": []} for name in names}
    with tempfile.TemporaryDirectory() as into:  # kept while timing: their modules may import lazily from it
        theirs = revision_decoder(rev, Path(into))
        for n, (entry, grey) in enumerate(frames):
            pair = [(names[0], ours), (names[1], theirs)]
            for name, decoder in pair if n % 2 else pair[::-1]:  # each goes first on every other frame
                ms = timed_decode(decoder, grey, repeat)[1]
                times[name]["all"].append(ms)
                if not entry["texts"]:
                    times[name]["empty"].append(ms)
    for name, t in times.items():
        print(f"auto of {name:10s} ms p50 {pct(t['all'], 0.5):.2f} p95 {pct(t['all'], 0.95):.2f}, "
              f"empty frames ms p50 {pct(t['empty'], 0.5):.3f}")
    ratio = pct(times[names[0]]["empty"], 0.5) / pct(times[names[1]]["empty"], 0.5)
    print(f"empty frames p50, this tree / {rev}: {ratio:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="decoder accuracy and speed on the QR corpus")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--decoders", default="auto,zxing,zbar", help="comma-separated: auto, zxing, zbar")
    ap.add_argument("--repeat", type=int, default=5, help="decodes per frame; the median time is kept")
    ap.add_argument("--budget-ms", type=float, default=None,
                    help="time budget per frame for decoders that have one (default: the decoder's own, 25 ms)")
    ap.add_argument("--json", action="store_true", help="one JSON object per decoder")
    ap.add_argument("--contributions", action="store_true", help="auto: the reads lost with each stage left out")
    ap.add_argument("--against", metavar="REV", help="auto: time this tree's and git revision REV's, interleaved")
    args = ap.parse_args(argv)

    frames = load_corpus(args.corpus)
    if args.against:
        against(frames, args.against, max(1, args.repeat))
        return 0
    for name in args.decoders.split(","):
        decoder = importlib.import_module(f"drivers.decoder_{name.strip()}").create(None)
        if args.budget_ms is not None and hasattr(decoder, "budget_ms"):
            decoder.budget_ms = args.budget_ms
        decoder.decode(frames[0][1])  # warm-up: library load and first-call allocations
        result = score(decoder, frames, max(1, args.repeat))
        if args.json:
            print(json.dumps(result))
            continue
        print(f"{result['decoder']}: read {result['read']}/{result['positives']} ({result['read_rate']:.1%}), "
              f"wrong {result['wrong']}, false positives {result['false_positives']} on {result['negatives']} "
              f"negatives, UTF-8 {result['utf8_read']}, ms p50 {result['ms_p50']} p95 {result['ms_p95']} max "
              f"{result['ms_max']}, "
              f"empty frames ms p50 {result['empty_ms_p50']} p95 {result['empty_ms_p95']}")
        for cat, c in result["categories"].items():
            by_stage = ", ".join(f"{k} {v}" for k, v in sorted(c.get("stages", {}).items()))
            print(f"  {cat:18s} {c['frames']:3d} frames  read {c['read']:3d}  wrong {c['wrong']}  "
                  f"false positives {c['false_positive']}" + (f"  ({by_stage})" if by_stage else ""))
        for stage, v in result["stages"].items():
            print(f"  stage {stage:16s} first to read {v['read']:3d} frames, those frames' ms p50 {v['ms_p50']}")
    if args.contributions:
        for name, without, every in contributions(frames, args.budget_ms):
            print(f"auto without {name:28s} reads {without:3d} ({without - every:+d})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

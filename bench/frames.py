#!/usr/bin/env python3
"""Grey conversion speed for each kind of frame a camera may hand over, next to OpenCV's cv2.cvtColor.

Prints frames per second (the fastest of --repeat rounds of --frames conversions) of `drivers.frames.to_grey`,
of the YUV 4:2:0 Y-plane view (`drivers.frames.y_plane`, what the picamera2 adapter hands on), of OpenCV's
conversion of the same frame, and of the numpy weighted sum the kiosk used before (for the record).

    taskset -c 0 .venv/bin/python bench/frames.py [--size 640x480] [--frames 50] [--repeat 40]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drivers.frames import to_grey, y_plane  # noqa: E402

BGR_WEIGHTS = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # the conversion before (numpy, float32)


def rates(converts: list[Callable[[], Any]], frames: int, repeat: int) -> list[float]:
    """Frames per second of each conversion in its fastest round (the least disturbed on a shared machine), the
    rounds interleaved so that a busy spell slows all alike."""
    rounds: list[list[float]] = [[] for _ in converts]
    for _ in range(repeat):
        for convert, out in zip(converts, rounds):
            started = time.perf_counter()
            for _ in range(frames):
                convert()
            out.append(frames / (time.perf_counter() - started))
    return [max(r) for r in rounds]


Convert = Callable[[np.ndarray], Any]


def kinds(width: int, height: int) -> dict[str, tuple[np.ndarray, Convert, Convert]]:
    """name -> (frame, the product's conversion, OpenCV's conversion)."""
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    stride = width + 64  # picamera2 pads rows to its stride
    i420 = rng.integers(0, 256, (height * 3 // 2, stride), dtype=np.uint8)
    i420_packed = np.ascontiguousarray(i420[:, :width])  # unpadded, as cv2.cvtColor wants it
    return {
        "grey": (bgr[:, :, 1].copy(), to_grey, lambda f: f.copy()),
        "BGR": (bgr, to_grey, lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)),
        "RGB": (bgr, lambda f: to_grey(f, "rgb"), lambda f: cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)),
        "BGRA": (cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), to_grey, lambda f: cv2.cvtColor(f, cv2.COLOR_BGRA2GRAY)),
        "RGBA": (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA), lambda f: to_grey(f, "rgb"),
                 lambda f: cv2.cvtColor(f, cv2.COLOR_RGBA2GRAY)),
        "YUV420 (I420, padded rows)": (i420, lambda f: to_grey(y_plane(f, width, height)),
                                       lambda f: cv2.cvtColor(i420_packed, cv2.COLOR_YUV2GRAY_I420)),
        "YUV420 (NV12)": (i420_packed, lambda f: to_grey(y_plane(f, width, height)),
                          lambda f: cv2.cvtColor(f, cv2.COLOR_YUV2GRAY_NV12)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="grey conversion frames per second, next to OpenCV")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=40)
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"{args.size} frames, frames/s (fastest of {args.repeat} rounds of {args.frames}); OpenCV threads: "
          f"{cv2.getNumThreads()}")
    print(f"{'input':28s} {'to_grey':>10s} {'cv2':>10s} {'ratio':>6s} {'numpy (before)':>15s}  copy")
    for name, (frame, ours, theirs) in kinds(width, height).items():
        out = ours(frame)
        assert out.shape == (height, width) and out.dtype == np.uint8
        copied = not np.shares_memory(out, frame)
        mine, cv = rates([lambda: ours(frame), lambda: theirs(frame)], args.frames, args.repeat)
        before = ""
        if frame.ndim == 3:
            weighted = rates([lambda: frame[:, :, :3].astype(np.float32) @ BGR_WEIGHTS], max(10, args.frames // 10),
                             args.repeat)[0]
            before = f"{weighted:15,.0f}"
        print(f"{name:28s} {mine:10,.0f} {cv:10,.0f} {mine / cv:6.2f} {before:>15s}  {'yes' if copied else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

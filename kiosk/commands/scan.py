"""`kiosk scan IMAGE... [--show-text]`: decode image files and decide each code found."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kiosk.commands import Args, Parser, Subparsers, emit, load_config

if TYPE_CHECKING:
    from kiosk.ports import Frame


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("scan", parents=[common], help="decode image files and decide each code")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--show-text", action="store_true",
                   help="add the decoded text (installer diagnostic: it may hold personal data)")
    p.set_defaults(func=run)


def load_grey(path: str) -> Frame | None:
    """A greyscale numpy frame from an image file, or None when the file is not a readable image."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def run(args: Args) -> int:
    from kiosk.app import build_clock, build_decider, build_decoder

    cfg = load_config(args)
    decoder = build_decoder(cfg)
    decider = build_decider(cfg)
    clock = build_clock(cfg)
    status = 0
    for path in args.images:
        started = time.perf_counter()
        frame = load_grey(path)
        if frame is None:
            emit({"file": path, "kind": None, "verdict": None, "reason": "unreadable_image"})
            status = 1
            continue
        texts = decoder.decode(frame)
        if not texts:
            emit({"file": path, "kind": None, "verdict": None, "reason": "no_code",
                  "latency_ms": round((time.perf_counter() - started) * 1000, 3)})
            continue
        for text in texts:
            decision = decider.decide(text, clock.now(), clock.synced())
            decision.latency_ms = (time.perf_counter() - started) * 1000.0
            out = {"file": path, **decision.to_json()}
            if args.show_text:
                out["text"] = text
            emit(out)
    return status

"""`kiosk scan FILE... [--show-text]`: decode image or video files and decide each code found.

An image is one frame on its own. A video is one presentation: its frames go through the decoder in order, as
from a camera (the tracked region and the frames' average carry over), and each code is decided once, at the
first frame that reads it, with the frame number and the video time; a summary line per video follows.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.commands import Args, Parser, Subparsers, emit, load_config

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import Frame

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v")


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("scan", parents=[common], help="decode image or video files and decide each code")
    p.add_argument("images", nargs="+", metavar="FILE", help=f"images, or videos ({', '.join(VIDEO_SUFFIXES)})")
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


class Scan:
    """The decoder, decider and clock of one `kiosk scan`, and what it does with each file."""

    def __init__(self, cfg: Config, show_text: bool):
        from kiosk.app import build_clock, build_decider, build_decoder

        self.cfg = cfg
        self.decoder = build_decoder(cfg)
        self.decider = build_decider(cfg)
        self.clock = build_clock(cfg)
        self.show_text = show_text

    def decided(self, text: str, started: float, **where: Any) -> dict[str, Any]:
        decision = self.decider.decide(text, self.clock.now(), self.clock.synced())
        decision.latency_ms = (time.perf_counter() - started) * 1000.0
        out = {**where, **decision.to_json()}
        if self.show_text:
            out["text"] = text
        return out

    def image(self, path: str) -> int:
        started = time.perf_counter()
        frame = load_grey(path)
        if frame is None:
            emit({"file": path, "kind": None, "verdict": None, "reason": "unreadable_image"})
            return 1
        if hasattr(self.decoder, "reset"):
            self.decoder.reset()  # an image is a frame on its own, not the next frame of the one before
        texts = self.decoder.decode(frame)
        if not texts:
            emit({"file": path, "kind": None, "verdict": None, "reason": "no_code",
                  "latency_ms": round((time.perf_counter() - started) * 1000, 3)})
        for text in texts:
            emit(self.decided(text, started, file=path))
        return 0

    def video(self, path: str) -> int:
        from kiosk.app import build_camera
        from kiosk.errors import DeviceError

        camera_cfg = dataclasses.replace(self.cfg.camera, type="replay", path=path, loop=False)
        camera = build_camera(dataclasses.replace(self.cfg, camera=camera_cfg))
        assert camera is not None, "the replay camera is always built"
        try:
            camera.start()
        except DeviceError as exc:
            emit({"file": path, "kind": None, "verdict": None, "reason": "unreadable_video", "detail": str(exc)})
            return 1
        if hasattr(self.decoder, "reset"):
            self.decoder.reset()
        fps = getattr(camera, "fps", None) or self.cfg.camera.fps
        seen: set[str] = set()
        frames, first = 0, None
        try:
            while (frame := camera.read()) is not None:
                started = time.perf_counter()
                for text in self.decoder.decode(frame):
                    if text in seen:  # the code is still in view: decided once per presentation
                        continue
                    seen.add(text)
                    first = frames if first is None else first
                    emit(self.decided(text, started, file=path, frame=frames,
                                      video_ms=round(frames * 1000.0 / fps, 1)))
                frames += 1
        finally:
            camera.close()
        emit({"file": path, "frames": frames, "fps": fps, "codes": len(seen), "first_read_frame": first,
              "first_read_ms": None if first is None else round(first * 1000.0 / fps, 1)})
        return 0


def run(args: Args) -> int:
    scan = Scan(load_config(args), args.show_text)
    status = 0
    for path in args.images:
        status |= scan.video(path) if Path(path).suffix.lower() in VIDEO_SUFFIXES else scan.image(path)
    return status

"""Replay camera: frames from a folder of images (name order) or from a video file.

Powers the demo, the benchmarks and field diagnostics (`camera.type = "replay"` on recorded footage).
Unreadable image files are skipped and counted, never fatal: a replay is bad input, not a broken device.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from drivers.frames import to_grey
from kiosk.errors import DeviceError

if TYPE_CHECKING:
    import cv2

    from kiosk.config import Config
    from kiosk.ports import Camera, Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ReplayCamera:
    def __init__(self, path: str | Path, loop: bool = False):
        self.path = Path(path)
        self.loop = loop
        self.skipped = 0
        self.name: str | None = None  # file (and frame index for a video) of the last frame, for diagnostics
        self._files: list[Path] = []
        self._index = 0
        self._video: cv2.VideoCapture | None = None
        self._video_frame = 0
        self.fps: float | None = None  # a video's frame rate, as its container states it

    def start(self) -> None:
        self.close()
        if not str(self.path) or not self.path.exists():
            raise DeviceError(f"replay camera: {self.path} does not exist (set camera.path to a folder of images "
                              "or a video file)")
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            self._index = 0
            if not self._files:
                raise DeviceError(f"replay camera: no {'/'.join(IMAGE_SUFFIXES)} images in {self.path} "
                                  "(check camera.path)")
        else:
            self._open_video()

    def read(self) -> Frame | None:
        if self._video is not None:
            return self._read_video(self._video)
        return self._read_image()

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    # ---------------------------------------------------------------- images
    def _read_image(self) -> Frame | None:
        from PIL import Image, UnidentifiedImageError

        misses = 0  # consecutive unreadable files: a folder of nothing but bad files must end, even looping
        while misses < len(self._files):
            if self._index >= len(self._files):
                if not self.loop:
                    return None
                self._index = 0
            path = self._files[self._index]
            self._index += 1
            try:
                with Image.open(path) as img:
                    frame = np.asarray(img.convert("L"))
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
                self.skipped += 1
                misses += 1
                log.warning("replay camera: skipped unreadable image %s", path.name)
                continue
            self.name = path.name
            return frame
        return None

    # ---------------------------------------------------------------- video
    def _open_video(self) -> None:
        import cv2

        video = cv2.VideoCapture(str(self.path))
        if not video.isOpened():
            raise DeviceError(f"replay camera: cannot open {self.path} as a video (use a folder of images or a "
                              "format OpenCV reads, e.g. .mp4 or .avi)")
        self._video = video
        self._video_frame = 0
        self.fps = float(video.get(cv2.CAP_PROP_FPS)) or None

    def _read_video(self, video: cv2.VideoCapture) -> Frame | None:
        import cv2

        ok, frame = video.read()
        if not ok and self.loop and self._video_frame > 0:
            video.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._video_frame = 0
            ok, frame = video.read()
        if not ok:
            return None
        self.name = f"{self.path.name}#{self._video_frame}"
        self._video_frame += 1
        return to_grey(frame)


def create(cfg: Config) -> Camera:
    return ReplayCamera(cfg.camera.path, loop=cfg.camera.loop)

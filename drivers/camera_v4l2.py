"""USB webcam through OpenCV's V4L2 back end (`/dev/videoN`), for kiosks without a Pi camera module.

One driver buffer: when decoding is slower than the webcam, the next read is the newest frame, not one
queued a few hundred milliseconds ago. Phone-screen settings as far as UVC webcams take them: continuous
autofocus on or off (`camera.autofocus`), and a fixed exposure (`camera.exposure_us`; V4L2 counts exposure in
100 us steps) for a bright screen that automatic exposure blows out. A webcam that refuses a setting is
logged once and keeps its own (many have neither focus motor nor manual exposure). The tests put a stand-in `cv2` at the import seam that mimics exactly
the calls made here (VideoCapture(index, CAP_V4L2), isOpened, set, read, release, cvtColor).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from drivers.frames import to_grey
from kiosk.errors import DeviceError

if TYPE_CHECKING:
    import cv2

    from kiosk.config import Config
    from kiosk.ports import Camera, Frame

log = logging.getLogger(__name__)


# OpenCV's V4L2 back end: CAP_PROP_AUTO_EXPOSURE 1 is V4L2_EXPOSURE_MANUAL, 3 is aperture priority (automatic).
V4L2_MANUAL_EXPOSURE, V4L2_AUTO_EXPOSURE = 1, 3


class V4l2Camera:
    def __init__(self, device: int = 0, width: int = 640, height: int = 480, fps: float = 30.0, *,
                 autofocus: bool = True, exposure_us: int = 0):
        self.device = device
        self.width = width
        self.height = height
        self.fps = fps
        self.autofocus = autofocus
        self.exposure_us = exposure_us
        self._capture: cv2.VideoCapture | None = None
        self._refused: set[str] = set()

    def _fix(self) -> str:
        return (f"check that the webcam is plugged in (`v4l2-ctl --list-devices`, camera.device = {self.device}) "
                "and that the kiosk user is in the `video` group")

    def start(self) -> None:
        """Open (or re-open after a failure) the device."""
        import cv2

        self.close()
        capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise DeviceError(f"cannot open /dev/video{self.device}: {self._fix()}")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        capture.set(cv2.CAP_PROP_FPS, self.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        settings = [("autofocus", cv2.CAP_PROP_AUTOFOCUS, 1 if self.autofocus else 0)]
        if self.exposure_us:
            settings += [("manual exposure", cv2.CAP_PROP_AUTO_EXPOSURE, V4L2_MANUAL_EXPOSURE),
                         ("exposure", cv2.CAP_PROP_EXPOSURE, max(1, round(self.exposure_us / 100)))]
        else:
            settings += [("automatic exposure", cv2.CAP_PROP_AUTO_EXPOSURE, V4L2_AUTO_EXPOSURE)]
        for name, prop, value in settings:
            if not capture.set(prop, value) and name not in self._refused:
                self._refused.add(name)  # logged once per setting, not at every reopen
                log.warning("webcam /dev/video%d does not take %s = %s; it keeps its own", self.device, name, value)
        self._capture = capture
        log.info("webcam /dev/video%d open", self.device)

    def read(self) -> Frame:
        if self._capture is None:
            raise DeviceError(f"/dev/video{self.device} is not open: {self._fix()}")
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise DeviceError(f"/dev/video{self.device} stopped delivering frames (unplugged?): {self._fix()}")
        grey = to_grey(frame)
        if grey is None:
            raise DeviceError(f"/dev/video{self.device} delivered a frame of shape {frame.shape}, which is not an "
                              f"image: {self._fix()}")
        return grey

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def create(cfg: Config) -> Camera:
    c = cfg.camera
    return V4l2Camera(c.device, c.width, c.height, c.fps, autofocus=c.autofocus, exposure_us=c.exposure_us)

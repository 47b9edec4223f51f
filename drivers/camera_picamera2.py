"""Raspberry Pi camera module through picamera2 (Raspberry Pi OS package `python3-picamera2`).

The decoder only needs luminance, so the main stream is YUV420 at the decode size and the frame is its
Y plane: no colour conversion on the Pi's CPU. Continuous autofocus is switched on where the module has
it (Camera Module 3); a fixed exposure (`camera.exposure_us`) helps with bright phone screens.

picamera2 cannot be installed off a Pi: the tests inject a stand-in `picamera2`/`libcamera` module that
mimics exactly the calls made here (Picamera2(), create_video_configuration, configure, camera_controls,
start, capture_array, stop, close; libcamera.controls.AfModeEnum.Continuous).
"""
from __future__ import annotations

import logging

import numpy as np

from kiosk.errors import DeviceError

log = logging.getLogger(__name__)

FIX = ("check the camera's ribbon cable, run `rpicam-hello --list-cameras`, and add the kiosk user to the "
       "`video` group")


class Picamera2Camera:
    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, autofocus: bool = True,
                 exposure_us: int = 0):
        self.width = width
        self.height = height
        self.fps = fps
        self.autofocus = autofocus
        self.exposure_us = exposure_us
        self._camera = None

    def _controls(self, camera) -> dict:
        controls: dict = {"FrameRate": float(self.fps)}
        if self.exposure_us > 0:
            controls["ExposureTime"] = int(self.exposure_us)
        if self.autofocus and "AfMode" in camera.camera_controls:
            from libcamera import controls as libcamera_controls

            controls["AfMode"] = libcamera_controls.AfModeEnum.Continuous
        return controls

    def start(self) -> None:
        """Open and start the camera (also after a failure: the pipeline calls this again with backoff)."""
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise DeviceError("picamera2 is not installed: `sudo apt install python3-picamera2` and create the "
                              "venv with --system-site-packages (or set camera.type = \"v4l2\")") from None
        self.close()
        camera = None
        try:
            camera = Picamera2()
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"}, controls=self._controls(camera))
            camera.configure(config)
            camera.start()
        except Exception as exc:  # picamera2 raises IndexError/RuntimeError for a missing or busy camera
            if camera is not None:
                _quietly_close(camera)
            raise DeviceError(f"camera module not available ({type(exc).__name__}: {exc}): {FIX}") from None
        self._camera = camera
        log.info("camera module started at %dx%d", self.width, self.height)

    def read(self) -> np.ndarray:
        if self._camera is None:
            raise DeviceError(f"camera module is not started: {FIX}")
        try:
            yuv = self._camera.capture_array("main")
        except Exception as exc:
            raise DeviceError(f"camera capture failed ({type(exc).__name__}: {exc}): {FIX}") from None
        # YUV420 comes as one (height * 3/2, stride) plane stack: Y first, rows may be padded.
        return np.ascontiguousarray(yuv[: self.height, : self.width])

    def close(self) -> None:
        if self._camera is not None:
            _quietly_close(self._camera)
            self._camera = None


def _quietly_close(camera) -> None:
    for step in (camera.stop, camera.close):
        try:
            step()
        except Exception:  # closing a half-started camera may fail; nothing more to do about it
            pass


def create(cfg) -> Picamera2Camera:
    c = cfg.camera
    return Picamera2Camera(c.width, c.height, c.fps, c.autofocus, c.exposure_us)

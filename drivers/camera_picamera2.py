"""Raspberry Pi camera module through picamera2 (Raspberry Pi OS package `python3-picamera2`).

The decoder only needs luminance, so the one stream is YUV420 at the (low) decode size and the frame is
its Y plane: no colour conversion on the Pi's CPU and no second full-size stream to fill. Continuous
autofocus is switched on where the module has it (Camera Module 3); a fixed exposure
(`camera.exposure_us`) helps with bright phone screens.

Sensor mode: among the modes that cover the decode size and reach camera.fps, the one with the widest
field of view, then the smallest (least to scale down): e.g. the 2x2-binned 1536x864 mode of Camera
Module 3 or 1640x1232 of Module 2, never a centre crop when a full-view mode is fast enough.

A frame that does not arrive within FRAME_TIMEOUT_S (ribbon cable pulled, "frontend timeout") raises
DeviceError, so the kiosk reopens the camera instead of blocking until systemd's watchdog kills it.

picamera2 cannot be installed off a Pi: the tests inject a stand-in `picamera2`/`libcamera` module that
mimics exactly the calls made here (Picamera2(), sensor_modes, create_video_configuration(main=,
controls=, sensor=), configure, camera_controls, start, capture_array(name, wait=), stop, close;
libcamera.controls.AfModeEnum.Continuous). `sensor=` needs picamera2 0.3.17 or newer (Bookworm has it).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from kiosk.errors import DeviceError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import Camera, Frame

log = logging.getLogger(__name__)

FRAME_TIMEOUT_S = 2.0  # many frame times even at a long exposure: longer means the camera is gone
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
        self._camera: Any = None  # a picamera2.Picamera2 (no type information)

    def _controls(self, camera: Any) -> dict[str, Any]:
        controls: dict[str, Any] = {"FrameRate": float(self.fps)}
        if self.exposure_us > 0:
            controls["ExposureTime"] = int(self.exposure_us)
        if self.autofocus and "AfMode" in camera.camera_controls:
            from libcamera import controls as libcamera_controls

            controls["AfMode"] = libcamera_controls.AfModeEnum.Continuous
        return controls

    def _sensor(self, modes: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The sensor mode for speed without losing field of view; None leaves the choice to picamera2."""
        def view(mode: dict[str, Any]) -> int:  # area of the sensor the mode reads (binned modes see all of it)
            crop = mode.get("crop_limits") or (0, 0, 0, 0)
            return crop[2] * crop[3]

        usable = [m for m in modes if "size" in m and m["size"][0] >= self.width and m["size"][1] >= self.height]
        if not usable:  # not a Raspberry Pi sensor (no raw modes), or smaller than the decode size
            return None
        fast = [m for m in usable if m["fps"] >= self.fps] or [max(usable, key=lambda m: m["fps"])]
        mode = min(fast, key=lambda m: (-view(m), m["size"][0] * m["size"][1]))
        return {"output_size": tuple(mode["size"]), "bit_depth": mode["bit_depth"]}

    def start(self) -> None:
        """Open and start the camera (also after a failure: the pipeline calls this again with backoff)."""
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise DeviceError("picamera2 is not installed: `sudo apt install python3-picamera2` and create the "
                              "venv with --system-site-packages (or set camera.type = \"v4l2\")") from None
        except Exception as exc:  # ValueError "numpy.dtype size changed": a pip numpy 2 over Debian's simplejpeg
            raise DeviceError(f"picamera2 cannot be loaded ({type(exc).__name__}: {exc}): the virtual "
                              "environment's numpy does not match Debian's; keep numpy<2 in the venv "
                              "(scripts/install.sh does)") from None
        self.close()
        camera = None
        try:
            camera = Picamera2()
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"}, controls=self._controls(camera),
                sensor=self._sensor(camera.sensor_modes))
            camera.configure(config)
            camera.start()
        except Exception as exc:  # picamera2 raises IndexError/RuntimeError for a missing or busy camera
            if camera is not None:
                _quietly_close(camera)
            raise DeviceError(f"camera module not available ({type(exc).__name__}: {exc}): {FIX}") from None
        self._camera = camera
        log.info("camera module started at %dx%d", self.width, self.height)

    def read(self) -> Frame:
        if self._camera is None:
            raise DeviceError(f"camera module is not started: {FIX}")
        try:
            yuv = self._camera.capture_array("main", wait=FRAME_TIMEOUT_S)
        except Exception as exc:
            raise DeviceError(f"camera capture failed ({type(exc).__name__}: {exc}): {FIX}") from None
        # YUV420 comes as one (height * 3/2, stride) plane stack: Y first, rows may be padded.
        return np.ascontiguousarray(yuv[: self.height, : self.width])

    def close(self) -> None:
        if self._camera is not None:
            _quietly_close(self._camera)
            self._camera = None


def _quietly_close(camera: Any) -> None:
    for step in (camera.stop, camera.close):
        try:
            step()
        except Exception:  # closing a half-started camera may fail; nothing more to do about it
            pass


def create(cfg: Config) -> Camera:
    c = cfg.camera
    return Picamera2Camera(c.width, c.height, c.fps, c.autofocus, c.exposure_us)

"""Raspberry Pi camera module through picamera2 (Raspberry Pi OS package `python3-picamera2`).

The decoder only needs luminance, so the one stream is YUV420 at the (low) decode size and the frame is
its Y plane, handed on as a view of the captured buffer (`drivers.frames.y_plane`): no colour conversion, no
copy, and no second full-size stream to fill.

Settings for phone screens (`[camera]`): continuous autofocus where the module has it (Camera Module 3), fast,
metered on a window in the centre of the view (`camera.af_window`, the share of width and height) where a code
is held, so a face or the counter behind does not take the focus; an exposure value below the meter's
(`camera.exposure_value`, in stops) so a bright screen is not blown out, or a fixed exposure time
(`camera.exposure_us`); and the frame rate (`camera.fps`). `describe()` reports what the camera did with
them on its last frame (lens position, focus state, exposure time, gain) for `kiosk selftest`.

Sensor mode: among the modes that cover the decode size and reach camera.fps, the one with the widest
field of view, then the smallest (least to scale down): e.g. the 2x2-binned 1536x864 mode of Camera
Module 3 or 1640x1232 of Module 2, never a centre crop when a full-view mode is fast enough.

A frame that does not arrive within FRAME_TIMEOUT_S (ribbon cable pulled, "frontend timeout") raises
DeviceError, so the kiosk reopens the camera instead of blocking until systemd's watchdog kills it.

picamera2 cannot be installed off a Pi: the tests inject a stand-in `picamera2`/`libcamera` module that
mimics exactly the calls made here (Picamera2(), sensor_modes, create_video_configuration(main=,
controls=, sensor=), configure, camera_controls, camera_properties, start, capture_array(name, wait=),
capture_metadata(wait=), stop, close; libcamera.controls AfModeEnum, AfSpeedEnum, AfMeteringEnum).
`sensor=` needs picamera2 0.3.17 or newer (Bookworm has it).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.frames import y_plane
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
                 exposure_us: int = 0, exposure_value: float = 0.0, af_window: float = 0.0):
        self.width = width
        self.height = height
        self.fps = fps
        self.autofocus = autofocus
        self.exposure_us = exposure_us
        self.exposure_value = exposure_value
        self.af_window = af_window
        self._camera: Any = None  # a picamera2.Picamera2 (no type information)

    def _controls(self, camera: Any) -> dict[str, Any]:
        controls: dict[str, Any] = {"FrameRate": float(self.fps)}
        if self.exposure_us > 0:
            controls["ExposureTime"] = int(self.exposure_us)
        elif self.exposure_value and "ExposureValue" in camera.camera_controls:
            controls["ExposureValue"] = float(self.exposure_value)
        if self.autofocus and "AfMode" in camera.camera_controls:
            from libcamera import controls as libcamera_controls

            controls["AfMode"] = libcamera_controls.AfModeEnum.Continuous
            controls["AfSpeed"] = libcamera_controls.AfSpeedEnum.Fast
            window = self._af_window(camera)
            if window is not None:
                controls["AfMetering"] = libcamera_controls.AfMeteringEnum.Windows
                controls["AfWindows"] = [window]
        return controls

    def _af_window(self, camera: Any) -> tuple[int, int, int, int] | None:
        """The centre `af_window` share of the sensor's full view, in the sensor pixels AfWindows is given in."""
        full = camera.camera_properties.get("ScalerCropMaximum")
        if not self.af_window or not full:
            return None
        x, y, w, h = full
        ww, wh = int(w * self.af_window), int(h * self.af_window)
        return (x + (w - ww) // 2, y + (h - wh) // 2, ww, wh)

    def describe(self) -> dict[str, Any]:
        """Focus and exposure of the last frame as the camera reports them (for `kiosk selftest`)."""
        if self._camera is None:
            return {}
        try:
            metadata = self._camera.capture_metadata(wait=FRAME_TIMEOUT_S)
        except Exception as exc:
            return {"metadata_error": f"{type(exc).__name__}: {exc}"}
        names = {"LensPosition": "lens_position_dioptres", "AfState": "af_state", "ExposureTime": "exposure_us",
                 "AnalogueGain": "analogue_gain", "FrameDuration": "frame_us", "FocusFoM": "focus_figure_of_merit"}
        return {ours: _plain(metadata[theirs]) for theirs, ours in names.items() if theirs in metadata}

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
        # YUV420 comes as one (height * 3/2, stride) plane stack: Y first, rows may be padded. capture_array
        # returns a new array every time, so the view stays valid after the next capture.
        return y_plane(yuv, self.width, self.height)

    def close(self) -> None:
        if self._camera is not None:
            _quietly_close(self._camera)
            self._camera = None


def _plain(value: Any) -> int | float | str:
    """A metadata value as JSON can carry it (libcamera enums are ints underneath)."""
    return value if isinstance(value, (int, float, str)) else str(value)


def _quietly_close(camera: Any) -> None:
    for step in (camera.stop, camera.close):
        try:
            step()
        except Exception:  # closing a half-started camera may fail; nothing more to do about it
            pass


def create(cfg: Config) -> Camera:
    c = cfg.camera
    return Picamera2Camera(c.width, c.height, c.fps, c.autofocus, c.exposure_us, c.exposure_value, c.af_window)

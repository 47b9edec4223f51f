"""Cameras: replay over real files (images and a video written here with OpenCV), picamera2 against a
stand-in module at the import seam (picamera2 only installs on a Pi), V4L2 failure paths."""
from __future__ import annotations

import io
import logging
import sys
import types

import cv2
import numpy as np
import pytest
import segno
from PIL import Image

from drivers import camera_picamera2, camera_replay, camera_v4l2
from drivers.camera_picamera2 import Picamera2Camera
from drivers.camera_replay import ReplayCamera
from drivers.camera_v4l2 import V4l2Camera
from drivers.decoder_zxing import ZxingDecoder
from fakes import ManualTime
from kiosk import config
from kiosk.errors import DeviceError


def qr(text: str, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A grey frame of `size` (w, h) with the code in the middle."""
    buf = io.BytesIO()
    segno.make_qr(text).save(buf, kind="png", scale=4, border=4)
    code = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    frame = np.full((size[1], size[0]), 200, np.uint8)
    y, x = (size[1] - code.shape[0]) // 2, (size[0] - code.shape[1]) // 2
    frame[y:y + code.shape[0], x:x + code.shape[1]] = code
    return frame


# ---------------------------------------------------------------- replay: folder of images
@pytest.fixture
def folder(tmp_path):
    for name, value in (("b.jpg", 20), ("a.png", 10), ("d.bmp", 40), ("c.webp", 30)):
        Image.fromarray(np.full((48, 64), value, np.uint8)).save(tmp_path / name)
    (tmp_path / "bb.png").write_bytes(b"not a png at all")
    (tmp_path / "notes.txt").write_text("not an image, not counted")
    return tmp_path


def drain(camera) -> list[np.ndarray]:
    frames = []
    while (frame := camera.read()) is not None:
        frames.append(frame)
        assert len(frames) < 100, "replay did not end"
    return frames


def test_replay_folder_in_name_order_skipping_unreadable_files(folder):
    camera = ReplayCamera(folder)
    camera.start()
    names = []
    frames = []
    while (frame := camera.read()) is not None:
        frames.append(frame)
        names.append(camera.name)
    assert names == ["a.png", "b.jpg", "c.webp", "d.bmp"]
    assert [int(np.median(f)) for f in frames] == pytest.approx([10, 20, 30, 40], abs=2)
    assert all(f.dtype == np.uint8 and f.shape == (48, 64) for f in frames)
    assert camera.skipped == 1  # bb.png
    assert camera.read() is None  # stays at the end


def test_replay_loop_starts_again(folder):
    camera = ReplayCamera(folder, loop=True)
    camera.start()
    names = [camera.read() is not None and camera.name for _ in range(9)]
    assert names == ["a.png", "b.jpg", "c.webp", "d.bmp"] * 2 + ["a.png"]
    assert camera.skipped == 2  # once per pass


def test_replay_loop_over_only_bad_files_ends(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    camera = ReplayCamera(tmp_path, loop=True)
    camera.start()
    assert camera.read() is None
    assert camera.skipped == 1


def test_replay_missing_or_empty_path_is_a_device_error(tmp_path):
    with pytest.raises(DeviceError, match="does not exist"):
        ReplayCamera(tmp_path / "nope").start()
    with pytest.raises(DeviceError, match="no .png"):
        ReplayCamera(tmp_path).start()


def test_replay_from_config_reads_the_demo_scenes_in_order():
    cfg = config.load(data={"camera": {"type": "replay"}}, overrides=[
        f"camera.path={config.REPO_ROOT / 'kiosk' / 'data' / 'scenes'}"])
    camera = camera_replay.create(cfg)
    camera.start()
    names = []
    while camera.read() is not None:
        names.append(camera.name)
    assert names == sorted(names) and len(names) >= 9 and camera.skipped == 0


# ---------------------------------------------------------------- replay: video
@pytest.fixture
def video(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    assert writer.isOpened()
    for n in range(5):
        writer.write(cv2.cvtColor(qr(f"FRAME {n}"), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_replay_video_frames_are_grey_and_decodable(video):
    camera = ReplayCamera(video)
    camera.start()
    frames = drain(camera)
    camera.close()
    assert len(frames) == 5
    assert all(f.ndim == 2 and f.dtype == np.uint8 and f.shape == (240, 320) for f in frames)
    decoder = ZxingDecoder()
    assert [decoder.decode(f) for f in frames] == [[f"FRAME {n}"] for n in range(5)]


def test_replay_video_loop_and_names(video):
    camera = ReplayCamera(video, loop=True)
    camera.start()
    names = [camera.read() is not None and camera.name for _ in range(7)]
    camera.close()
    assert names == [f"clip.avi#{n}" for n in (0, 1, 2, 3, 4, 0, 1)]


def test_replay_unreadable_video_is_a_device_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(DeviceError, match="cannot open"):
        ReplayCamera(bad).start()


# ---------------------------------------------------------------- picamera2 stand-in
# Camera Module 3 (imx708) as picamera2 lists it: size, fps and crop_limits per mode (abridged).
IMX708_MODES = [
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (1536, 864), "fps": 120.13,
     "crop_limits": (768, 432, 3072, 1728)},
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (2304, 1296), "fps": 56.03,
     "crop_limits": (0, 0, 4608, 2592)},
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (4608, 2592), "fps": 14.35,
     "crop_limits": (0, 0, 4608, 2592)},
]
# Camera Module 2 (imx219): the fast 640x480 mode is a centre crop, 1640x1232 binned sees everything.
IMX219_MODES = [
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (640, 480), "fps": 103.33,
     "crop_limits": (1000, 752, 1280, 960)},
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (1640, 1232), "fps": 41.85,
     "crop_limits": (0, 0, 3280, 2464)},
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (3280, 2464), "fps": 21.19,
     "crop_limits": (0, 0, 3280, 2464)},
]


class StandInPicamera2:
    """Mimics the picamera2 calls the adapter makes, with their real signatures and return shapes:
    YUV420 arrives as (height * 3/2, stride) uint8; capture_array(wait=seconds) raises TimeoutError
    (concurrent.futures.Future.result) when no frame comes in time."""

    instances: list["StandInPicamera2"] = []
    fail_open: Exception | None = None
    fail_capture: Exception | None = None
    frames_stop = False  # the sensor stops delivering: capture_array waits, then times out
    has_autofocus = True
    modes: list[dict] = IMX708_MODES
    stride_pad = 64
    y_plane: np.ndarray | None = None

    def __init__(self, camera_num: int = 0, verbose_console=None, tuning=None):
        if StandInPicamera2.fail_open is not None:
            raise StandInPicamera2.fail_open
        self.camera_controls = {"ExposureTime": (100, 1000000, 20000), "FrameDurationLimits": (8333, 1000000, 33333),
                                "ExposureValue": (-8.0, 8.0, 0.0)}
        if StandInPicamera2.has_autofocus:
            for name in ("AfMode", "AfSpeed", "AfMetering"):
                self.camera_controls[name] = (0, 2, 0)
            self.camera_controls["AfWindows"] = ((0, 0, 0, 0), (65535, 65535, 65535, 65535), (0, 0, 0, 0))
        # imx708's full pixel array, as picamera2 lists it
        self.camera_properties = {"Model": "imx708", "PixelArraySize": (4608, 2592),
                                  "ScalerCropMaximum": (0, 0, 4608, 2592)}
        self.metadata = {"AfState": 2, "LensPosition": 3.25, "ExposureTime": 9987, "AnalogueGain": 1.5,
                         "FrameDuration": 33333, "SensorTemperature": 41.0}
        self.config = None
        self.waits: list = []
        self.started = self.stopped = self.closed = False
        StandInPicamera2.instances.append(self)

    @property
    def sensor_modes(self) -> list[dict]:
        return [dict(m) for m in StandInPicamera2.modes]

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=None, colour_space=None,
                                   buffer_count=6, controls={}, display="main", encode="main", queue=True,
                                   sensor={}, use_case="video"):
        return {"use_case": use_case, "main": dict(main), "lores": lores, "controls": dict(controls),
                "sensor": sensor}

    def configure(self, config):
        assert not self.started, "picamera2: Camera must be stopped before configuring"
        self.config = config

    def start(self, config=None, show_preview=None):
        assert self.config is not None, "picamera2 must be configured before start()"
        self.started = True

    def capture_array(self, name="main", wait=None, signal_function=None):
        assert self.started and name == "main"
        self.waits.append(wait)
        if StandInPicamera2.fail_capture is not None:
            raise StandInPicamera2.fail_capture
        if StandInPicamera2.frames_stop:
            raise TimeoutError()  # what Future.result(timeout=wait) raises
        w, h = self.config["main"]["size"]
        yuv = np.full((h * 3 // 2, w + self.stride_pad), 128, np.uint8)  # chroma and padding: mid-grey
        yuv[:h, :w] = self.y_plane
        return yuv

    def capture_metadata(self, wait=None, signal_function=None):
        assert self.started
        self.waits.append(wait)
        if StandInPicamera2.frames_stop:
            raise TimeoutError()
        return dict(self.metadata)

    def stop(self):
        self.started = False
        self.stopped = True

    def close(self):
        self.closed = True


@pytest.fixture
def picam(monkeypatch):
    StandInPicamera2.instances = []
    StandInPicamera2.fail_open = StandInPicamera2.fail_capture = None
    StandInPicamera2.frames_stop = False
    StandInPicamera2.has_autofocus = True
    StandInPicamera2.modes = IMX708_MODES
    StandInPicamera2.y_plane = qr("PICAMERA2 Y PLANE", (640, 480))
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = StandInPicamera2
    libcamera = types.ModuleType("libcamera")
    libcamera.controls = types.SimpleNamespace(AfModeEnum=types.SimpleNamespace(Continuous="AfModeContinuous"),
                                               AfSpeedEnum=types.SimpleNamespace(Fast="AfSpeedFast"),
                                               AfMeteringEnum=types.SimpleNamespace(Windows="AfMeteringWindows"))
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    return StandInPicamera2


def test_picamera2_configures_yuv420_and_returns_the_y_plane(picam):
    cfg = config.load(data={"camera": {"type": "picamera2", "fps": 25.0, "exposure_us": 10000}})
    camera = camera_picamera2.create(cfg)
    camera.start()
    frame = camera.read()
    cam = picam.instances[-1]
    assert cam.config["main"] == {"size": (640, 480), "format": "YUV420"} and cam.config["lores"] is None
    # A fixed exposure time wins over the exposure value; focus metered on the centre half of the full view.
    assert cam.config["controls"] == {"FrameRate": 25.0, "ExposureTime": 10000, "AfMode": "AfModeContinuous",
                                      "AfSpeed": "AfSpeedFast", "AfMetering": "AfMeteringWindows",
                                      "AfWindows": [(1152, 648, 2304, 1296)]}
    assert frame.shape == (480, 640) and frame.dtype == np.uint8
    assert np.array_equal(frame, picam.y_plane)  # no chroma rows, no stride padding
    assert frame.base is not None and frame.strides == (640 + cam.stride_pad, 1)  # a view of the buffer: no copy
    assert ZxingDecoder().decode(frame) == ["PICAMERA2 Y PLANE"]
    assert cam.waits == [camera_picamera2.FRAME_TIMEOUT_S]  # never an unbounded wait
    camera.close()
    assert cam.stopped and cam.closed


def test_picamera2_without_autofocus_or_fixed_exposure(picam):
    picam.has_autofocus = False
    camera = Picamera2Camera(640, 480, 30.0, autofocus=True, exposure_us=0)
    camera.start()
    assert picam.instances[-1].config["controls"] == {"FrameRate": 30.0}


def test_picamera2_phone_screen_defaults_and_what_the_camera_reports(picam):
    cfg = config.load(data={"camera": {"type": "picamera2", "af_window": 0.25}})
    assert (cfg.camera.exposure_value, cfg.camera.fps) == (-1.0, 30.0)  # the documented defaults
    camera = camera_picamera2.create(cfg)
    camera.start()
    controls = picam.instances[-1].config["controls"]
    assert controls["ExposureValue"] == -1.0 and "ExposureTime" not in controls
    assert controls["AfWindows"] == [(1728, 972, 1152, 648)]  # the centre quarter of 4608x2592
    assert camera.describe() == {"lens_position_dioptres": 3.25, "af_state": 2, "exposure_us": 9987,
                                 "analogue_gain": 1.5, "frame_us": 33333}
    picam.frames_stop = True
    assert "TimeoutError" in camera.describe()["metadata_error"]  # a report, never a hang or a crash
    camera.close()
    assert camera.describe() == {}


@pytest.mark.parametrize("modes, fps, size, expected", [
    (IMX708_MODES, 30.0, (640, 480), {"output_size": (2304, 1296), "bit_depth": 10}),  # full view at 56 fps
    (IMX708_MODES, 90.0, (640, 480), {"output_size": (1536, 864), "bit_depth": 10}),  # only the fast mode
    (IMX219_MODES, 30.0, (640, 480), {"output_size": (1640, 1232), "bit_depth": 10}),  # binned, not the crop
    (IMX219_MODES, 120.0, (640, 480), {"output_size": (640, 480), "bit_depth": 10}),  # none that fast: fastest
    (IMX219_MODES, 30.0, (2000, 1500), {"output_size": (3280, 2464), "bit_depth": 10}),  # covers the size
    ([{"format": "MJPEG"}], 30.0, (640, 480), None),  # a USB camera through libcamera: no raw modes
])
def test_picamera2_chooses_the_sensor_mode(picam, modes, fps, size, expected):
    picam.modes = modes
    camera = Picamera2Camera(*size, fps=fps)
    camera.start()
    assert picam.instances[-1].config["sensor"] == expected


def test_picamera2_missing_camera_names_the_fix(picam):
    picam.fail_open = IndexError("list index out of range")  # what Picamera2() raises with no camera
    with pytest.raises(DeviceError, match="ribbon cable.*rpicam-hello --list-cameras.*video"):
        Picamera2Camera().start()


def test_picamera2_capture_failure_then_restart(picam):
    camera = Picamera2Camera()
    camera.start()
    picam.fail_capture = RuntimeError("Camera frontend has timed out!")
    with pytest.raises(DeviceError, match="capture failed"):
        camera.read()
    first = picam.instances[-1]
    picam.fail_capture = None
    camera.start()  # what the pipeline does after its backoff
    assert first.closed and picam.instances[-1] is not first
    assert camera.read().shape == (480, 640)


def test_picamera2_frames_stopping_is_a_device_error_not_a_hang(picam):
    camera = Picamera2Camera()
    camera.start()
    picam.frames_stop = True  # ribbon cable pulled: no more frames
    with pytest.raises(DeviceError, match="capture failed.*TimeoutError"):
        camera.read()
    picam.frames_stop = False


def test_picamera2_failing_mid_run_keeps_the_kiosk_running(picam, tmp_path):
    """The real App loop over the picamera2 adapter: alarm while the camera is down, then it recovers."""
    from kiosk.app import App

    manual = ManualTime(step=1.0)  # every guard call is a second later: retries are due at once
    cfg = config.load(data={"camera": {"type": "picamera2", "retry_seconds": 0.5}, "display": {"type": "none"},
                            "gpio": {"pin_factory": "mock"}, "mqtt": {"enabled": False}},
                      overrides=[f"journal.path={tmp_path}/j.sqlite", f"roster.path={tmp_path}/r.json",
                                 f"trust.path={tmp_path}/t.json"])
    app = App(cfg, monotonic=manual.monotonic)
    seen = []
    reads = {"n": 0}
    real_read = app.camera.read

    def read():
        reads["n"] += 1
        if reads["n"] == 2:
            picam.frames_stop = True  # unplugged after the first frame
        if reads["n"] == 4:
            seen.append(app.alarms())
            picam.frames_stop = False  # plugged back in
        return real_read()

    app.camera.read = read
    result = app.run(max_frames=3)
    assert result.stopped_because == "max_frames"
    assert "camera_failed" in seen[0] and "camera_failed" not in app.alarms()
    assert len(picam.instances) >= 2 and picam.instances[0].closed  # closed and opened again


def test_picamera2_with_a_mismatched_numpy_names_the_fix(monkeypatch):
    broken = types.ModuleType("picamera2")

    def fail(name):  # what importing Debian's picamera2 (simplejpeg) under pip's numpy 2 raises
        raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C "
                         "header, got 88 from PyObject")

    broken.__getattr__ = fail
    monkeypatch.setitem(sys.modules, "picamera2", broken)
    with pytest.raises(DeviceError, match="numpy<2"):
        Picamera2Camera().start()


def test_picamera2_read_before_start_and_missing_module(monkeypatch):
    with pytest.raises(DeviceError, match="not started"):
        Picamera2Camera().read()
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(DeviceError, match="apt install python3-picamera2"):
        Picamera2Camera().start()


# ---------------------------------------------------------------- v4l2
def test_v4l2_absent_device_with_real_opencv():
    with pytest.raises(DeviceError, match="/dev/video63.*video"):
        V4l2Camera(device=63).start()


class StandInCapture:
    """Mimics cv2.VideoCapture: `frames` frames, then read() fails as an unplugged webcam does."""

    opened: list["StandInCapture"] = []
    available = True
    frames = 2

    def __init__(self, index, backend):
        self.index, self.backend, self.props = index, backend, {}
        self.left = StandInCapture.frames
        self.released = False
        StandInCapture.opened.append(self)

    def isOpened(self):
        return StandInCapture.available

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((480, 640, 3), (10, 100, 200), np.uint8)

    def release(self):
        self.released = True


@pytest.fixture
def fake_cv2(monkeypatch):
    StandInCapture.opened, StandInCapture.available, StandInCapture.frames = [], True, 2
    stand_in = types.SimpleNamespace(
        VideoCapture=StandInCapture, CAP_V4L2=cv2.CAP_V4L2, CAP_PROP_FRAME_WIDTH=cv2.CAP_PROP_FRAME_WIDTH,
        CAP_PROP_FRAME_HEIGHT=cv2.CAP_PROP_FRAME_HEIGHT, CAP_PROP_FPS=cv2.CAP_PROP_FPS,
        CAP_PROP_BUFFERSIZE=cv2.CAP_PROP_BUFFERSIZE, CAP_PROP_AUTOFOCUS=cv2.CAP_PROP_AUTOFOCUS,
        CAP_PROP_AUTO_EXPOSURE=cv2.CAP_PROP_AUTO_EXPOSURE, CAP_PROP_EXPOSURE=cv2.CAP_PROP_EXPOSURE,
        COLOR_BGR2GRAY=cv2.COLOR_BGR2GRAY, cvtColor=cv2.cvtColor)
    monkeypatch.setitem(sys.modules, "cv2", stand_in)
    return StandInCapture


def test_v4l2_unplugged_mid_run_then_reopened(fake_cv2):
    cfg = config.load(data={"camera": {"type": "v4l2", "device": 2, "width": 640, "height": 480, "fps": 15.0}})
    camera = camera_v4l2.create(cfg)
    camera.start()
    first = fake_cv2.opened[-1]
    assert (first.index, first.backend) == (2, cv2.CAP_V4L2)
    assert first.props == {cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480, cv2.CAP_PROP_FPS: 15.0,
                           cv2.CAP_PROP_BUFFERSIZE: 1, cv2.CAP_PROP_AUTOFOCUS: 1, cv2.CAP_PROP_AUTO_EXPOSURE: 3}
    frame = camera.read()
    assert frame.shape == (480, 640) and frame.dtype == np.uint8
    assert int(frame[0, 0]) == cv2.cvtColor(np.array([[[10, 100, 200]]], np.uint8), cv2.COLOR_BGR2GRAY)[0, 0]
    camera.read()
    with pytest.raises(DeviceError, match="unplugged"):
        camera.read()
    camera.start()  # re-open after the pipeline's backoff
    assert first.released and fake_cv2.opened[-1] is not first
    assert camera.read() is not None
    camera.close()
    assert fake_cv2.opened[-1].released


def test_v4l2_phone_screen_settings_and_a_webcam_that_refuses_them(fake_cv2, caplog, monkeypatch):
    cfg = config.load(data={"camera": {"type": "v4l2", "autofocus": False, "exposure_us": 10000}})
    camera = camera_v4l2.create(cfg)
    refused = {cv2.CAP_PROP_AUTOFOCUS, cv2.CAP_PROP_EXPOSURE}
    monkeypatch.setattr(fake_cv2, "set", lambda self, prop, value: (self.props.__setitem__(prop, value),
                                                                    prop not in refused)[1])
    with caplog.at_level(logging.WARNING, logger="drivers.camera_v4l2"):
        camera.start()
        camera.start()  # reopened after a failure: the refusals are not logged again
    props = fake_cv2.opened[-1].props
    assert (props[cv2.CAP_PROP_AUTOFOCUS], props[cv2.CAP_PROP_AUTO_EXPOSURE], props[cv2.CAP_PROP_EXPOSURE]) == (0, 1, 100)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and any("autofocus" in w for w in warnings) and any("exposure = 100" in w for w in warnings)
    assert camera.read().shape == (480, 640)
    camera.close()


def test_v4l2_device_that_will_not_open(fake_cv2):
    fake_cv2.available = False
    camera = V4l2Camera(device=0)
    with pytest.raises(DeviceError, match="cannot open /dev/video0"):
        camera.start()
    assert fake_cv2.opened[-1].released
    with pytest.raises(DeviceError, match="not open"):
        camera.read()

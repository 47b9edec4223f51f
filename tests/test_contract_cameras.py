"""Camera port contract: one behavioural suite over the replay camera (a folder of images, and a video file
made here with OpenCV from the demo scenes) and the fake camera.

After start(), read() hands over grey frames (2-D uint8 arrays, the Y plane) showing what is in front of the
camera, then None at the end of input (and again if asked); close() may be called more than once, and
start() after close() opens the camera again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from drivers.decoder_zxing import ZxingDecoder
from fakes import ScriptedCamera
from kiosk import config
from kiosk.app import build_camera
from kiosk.commands.scan import load_grey

SCENES = config.REPO_ROOT / "kiosk" / "data" / "scenes"
# Personal QR, CCCD and signed-certificate scenes: dense and sparse codes, phone and paper.
CLIP = ["02_thu_phone.jpg", "05_ho_recovered_paper.jpg", "08_cccd_utf8_paper.jpg", "10_blank_phone.jpg",
        "12_dcc_vaccinated_phone.jpg"]


@dataclass
class Source:
    camera: Any
    pictures: list[np.ndarray]  # what is in front of the camera, frame by frame
    tolerance: float  # mean absolute difference a frame may have from its picture (video compression)


def scene_pictures(names: list[str]) -> list[np.ndarray]:
    return [load_grey(str(SCENES / name)) for name in names]


def folder(tmp_path: Path) -> Source:
    for name in CLIP:
        (tmp_path / name).write_bytes((SCENES / name).read_bytes())
    cfg = config.load(data={"camera": {"type": "replay", "path": str(tmp_path)}})
    return Source(build_camera(cfg), scene_pictures(CLIP), 0.0)


def video(tmp_path: Path) -> Source:
    pictures = scene_pictures(CLIP)
    path = tmp_path / "gate.avi"
    height, width = pictures[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    assert writer.isOpened()
    for picture in pictures:
        writer.write(cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR))
    writer.release()
    cfg = config.load(data={"camera": {"type": "replay", "path": str(path)}})
    return Source(build_camera(cfg), pictures, 3.0)


def fake(tmp_path: Path) -> Source:
    pictures = scene_pictures(CLIP)
    return Source(ScriptedCamera([*pictures, None]), pictures, 0.0)


SOURCES = {"replay-folder": folder, "replay-video": video, "fake": fake}


@pytest.fixture(params=SOURCES)
def source(request, tmp_path) -> Source:
    made = SOURCES[request.param](tmp_path)
    yield made
    made.camera.close()


def read_all(camera) -> list[np.ndarray]:
    frames = []
    while (frame := camera.read()) is not None:
        frames.append(frame)
        assert len(frames) <= 100, "the input did not end"
    return frames


def test_frames_are_grey_uint8_and_show_the_scene(source):
    source.camera.start()
    frames = read_all(source.camera)
    assert len(frames) == len(source.pictures)
    for frame, picture in zip(frames, source.pictures):
        assert isinstance(frame, np.ndarray) and frame.ndim == 2 and frame.dtype == np.uint8
        assert frame.shape == picture.shape
        assert np.abs(frame.astype(np.int16) - picture).mean() <= source.tolerance


def test_frames_decode_as_the_scenes_do(source):
    decoder = ZxingDecoder()
    source.camera.start()
    frames = read_all(source.camera)
    assert [decoder.decode(f) for f in frames] == [decoder.decode(p) for p in source.pictures]
    assert sum(bool(decoder.decode(f)) for f in frames) >= 4  # the codes, not just blank frames


def test_none_at_the_end_and_again_after(source):
    source.camera.start()
    read_all(source.camera)
    assert source.camera.read() is None and source.camera.read() is None


def test_close_twice_then_start_again(source):
    source.camera.start()
    assert source.camera.read() is not None
    source.camera.close()
    source.camera.close()
    source.camera.start()
    frame = source.camera.read()  # a replay starts over; a spent script has nothing more
    assert frame is None or (frame.ndim == 2 and frame.dtype == np.uint8)

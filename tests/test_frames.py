"""Grey conversion of every kind of frame a camera hands over: the same luma as OpenCV's, and no copy where the
frame is grey already or the Y plane of a YUV 4:2:0 buffer."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from drivers.frames import to_grey, y_plane

RNG = np.random.default_rng(11)
BGR = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("frame, colour, code", [
    (BGR, "bgr", cv2.COLOR_BGR2GRAY),
    (BGR, "rgb", cv2.COLOR_RGB2GRAY),
    (cv2.cvtColor(BGR, cv2.COLOR_BGR2BGRA), "bgr", cv2.COLOR_BGRA2GRAY),
    (cv2.cvtColor(BGR, cv2.COLOR_BGR2RGBA), "rgb", cv2.COLOR_RGBA2GRAY),
])
def test_colour_frames_give_opencvs_luma(frame, colour, code):
    for _ in range(2):  # the first call loads OpenCV, the next ones take the short way
        grey = to_grey(frame, colour)
        assert grey.shape == (48, 64) and grey.dtype == np.uint8
        assert np.array_equal(grey, cv2.cvtColor(frame, code))


def test_rgb_and_bgr_orders_differ_on_a_coloured_frame():
    red_in_bgr = np.zeros((16, 16, 3), np.uint8)
    red_in_bgr[:, :, 2] = 255
    assert int(to_grey(red_in_bgr)[0, 0]) == 76  # 0.299 * 255: red
    assert int(to_grey(red_in_bgr, "rgb")[0, 0]) == 29  # 0.114 * 255: read as blue


def test_the_y_plane_of_a_padded_yuv420_buffer_is_a_view():
    width, height, stride = 64, 48, 128
    buffer = RNG.integers(0, 256, (height * 3 // 2, stride), dtype=np.uint8)
    grey = to_grey(y_plane(buffer, width, height))
    assert grey.shape == (height, width) and np.shares_memory(grey, buffer)
    assert np.array_equal(grey, buffer[:height, :width])
    assert np.array_equal(grey, cv2.cvtColor(np.ascontiguousarray(buffer[:, :width]), cv2.COLOR_YUV2GRAY_I420))


def test_grey_frames_pass_as_they_are_and_odd_layouts_are_copied_once():
    grey = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
    assert to_grey(grey) is grey
    flipped = grey[:, ::-1]
    out = to_grey(flipped)
    assert out.flags["C_CONTIGUOUS"] and np.array_equal(out, flipped) and not np.shares_memory(out, grey)


@pytest.mark.parametrize("bad", [None, "text", np.zeros((4, 4), np.uint8), np.zeros((10, 10, 2), np.uint8),
                                 np.zeros((0, 10, 3), np.uint8), np.array([[object()] * 10] * 10)])
def test_not_images_are_none(bad):
    assert to_grey(bad) is None


def test_other_sample_types_are_scaled_to_bytes():
    assert int(to_grey(np.full((10, 10), 0.5))[0, 0]) == 127
    assert int(to_grey(np.full((10, 10), 65535, np.uint16))[0, 0]) == 255
    assert int(to_grey(np.ones((10, 10), bool))[0, 0]) == 255
    assert int(to_grey(np.full((10, 10, 3), 1.0, np.float32))[0, 0]) == 255

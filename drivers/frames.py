"""Helpers shared by the decoder adapters: frame normalisation and the "sure text" filter."""
from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt

Grey = npt.NDArray[np.uint8]

_ALLOWED_CONTROLS = {"\r", "\n", "\t"}
# Colour layouts a camera may hand over and the OpenCV conversion of each to BT.601 luma. OpenCV's SIMD
# conversion is the fastest here: `bench/frames.py` measured numpy's weighted sum 9x slower on a 640x480 frame.
COLOUR_CODES = {"bgr": "COLOR_BGR2GRAY", "rgb": "COLOR_RGB2GRAY", "bgra": "COLOR_BGRA2GRAY", "rgba": "COLOR_RGBA2GRAY"}


def y_plane(buffer: Grey, width: int, height: int) -> Grey:
    """The luma plane of a planar or semi-planar YUV 4:2:0 buffer (I420, YV12, NV12, NV21: `height * 3/2` rows of
    `stride >= width` bytes, Y first), as a view: no copy and no arithmetic. Rows keep the buffer's stride, which
    zxing-cpp and OpenCV both read as it is."""
    return buffer[:height, :width]


def to_grey(frame: Any, colour: str = "bgr") -> Grey | None:
    """A 2-D uint8 array from whatever a camera handed over, or None if it is not an image.

    A grey frame, including a row-strided view such as `y_plane`, comes back as it is (no copy). A 3- or
    4-channel frame is converted with OpenCV in the order `colour` names ("bgr", OpenCV's own, by default)."""
    if type(frame) is np.ndarray and frame.dtype is _UINT8:
        # What cameras hand over comes first, with as little Python in the way as can be (a few attribute
        # reads; measured 2.8 us for cv2.cvtColor's own call overhead, 7.8 us with isinstance/min()-style checks).
        if frame.ndim == 2:
            if frame.strides[1] == 1 and frame.strides[0] > 0 and frame.shape[0] >= 8 and frame.shape[1] >= 8:
                return frame
        elif frame.ndim == 3 and frame.shape[0] >= 8 and frame.shape[1] >= 8:
            code = _CONVERSIONS.get((colour, frame.shape[2]))
            if code is not None:
                return cast(Grey, _opencv().cvtColor(frame, code))
    try:
        a = np.asarray(frame)
    except Exception:
        return None
    if a.dtype == object or a.size == 0:
        return None
    if a.ndim == 3 and a.shape[2] in (3, 4) and a.dtype == np.uint8:
        a = _cvt(a, colour)
    elif a.ndim == 3 and a.shape[2] in (1, 3, 4):  # other sample types: the channels, weighted in numpy
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3].astype(np.float32) @ _weights(colour)
    if a.ndim != 2 or min(a.shape) < 8:
        return None
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.nan_to_num(a, nan=0.0)
        a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
    elif a.dtype.kind not in "ui":
        return None
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    # Contiguous pixels in rows read in any row stride; anything else (flipped, every other byte) is copied once.
    return a if a.strides[1] == 1 and a.strides[0] > 0 else np.ascontiguousarray(a)


def _cvt(frame: Grey, colour: str) -> Grey:
    code = COLOUR_CODES[colour if frame.shape[2] == 3 else ("bgra" if colour == "bgr" else "rgba")]
    return cast(Grey, _opencv().cvtColor(frame, getattr(_opencv(), code)))


_UINT8 = np.dtype(np.uint8)
_CONVERSIONS: dict[tuple[str, int], int] = {}  # (colour, channels) -> OpenCV conversion code, once OpenCV is loaded
_cv2: Any = None


def _opencv() -> Any:
    """OpenCV, imported on first use (as every library in drivers/), with its conversion codes looked up once."""
    global _cv2
    if _cv2 is None:
        import cv2

        _CONVERSIONS.update({("bgr", 3): cv2.COLOR_BGR2GRAY, ("bgr", 4): cv2.COLOR_BGRA2GRAY,
                             ("rgb", 3): cv2.COLOR_RGB2GRAY, ("rgb", 4): cv2.COLOR_RGBA2GRAY})
        _cv2 = cv2
    return _cv2


def _weights(colour: str) -> np.ndarray:
    bgr = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # BT.601 luma weights for B, G, R
    return bgr if colour in ("bgr", "bgra") else bgr[::-1].copy()


def sure_text(text: str) -> bool:
    """False for text no decoder should hand on: empty, replacement characters, or control characters."""
    if not text or "\ufffd" in text:
        return False
    return not any((ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in _ALLOWED_CONTROLS for c in text)

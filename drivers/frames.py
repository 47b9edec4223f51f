"""Helpers shared by the decoder adapters: frame normalisation and the "sure text" filter."""
from __future__ import annotations

from typing import Any

import numpy as np

_ALLOWED_CONTROLS = {"\r", "\n", "\t"}
# BT.601 luma weights for B, G, R (frames from OpenCV are BGR).
_BGR_WEIGHTS = np.array([0.114, 0.587, 0.299], dtype=np.float32)


def to_grey(frame: Any) -> np.ndarray | None:
    """A 2-D C-contiguous uint8 array from whatever a camera handed over, or None if it is not an image."""
    try:
        a = np.asarray(frame)
    except Exception:
        return None
    if a.dtype == object or a.size == 0:
        return None
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3].astype(np.float32) @ _BGR_WEIGHTS
    if a.ndim != 2 or min(a.shape) < 8:
        return None
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = a >> 8
    elif a.dtype.kind == "f":
        a = np.nan_to_num(a, nan=0.0)
        a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
    elif a.dtype.kind not in "ui":
        return None
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def sure_text(text: str) -> bool:
    """False for text no decoder should hand on: empty, replacement characters, or control characters."""
    if not text or "\ufffd" in text:
        return False
    return not any((ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in _ALLOWED_CONTROLS for c in text)

"""Image transforms for the staged QR decoder (`drivers.decoder_auto`): each takes a grey uint8 crop and returns
the grey uint8 images to hand to zxing-cpp. OpenCV does the pixel work (imported lazily, like every library in
`drivers/`); nothing here decodes.

Why each transform exists (what each reads on the shared corpus: `drivers.decoder_auto.STAGES`):
- unsharp masking (sigma 3) and a Wiener deconvolution with a Gaussian kernel undo focus blur; the Wiener
  filter reads the strongest blur (sigma ~3 px on 5 px modules) that unsharp masking cannot;
- CLAHE (contrast-limited local histogram equalisation) lifts codes out of glare and dim corners;
- halving the size averages four pixels into one: a large code under sensor noise.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

import numpy as np
import numpy.typing as npt

Grey = npt.NDArray[np.uint8]  # a grey frame or crop


def _cv2() -> Any:
    import cv2

    return cv2


def unsharp(grey: Grey, sigma: float = 3.0, amount: float = 2.0) -> Grey:
    cv2 = _cv2()
    blurred = cv2.GaussianBlur(grey, (0, 0), sigma)
    return cast(Grey, cv2.addWeighted(grey, 1.0 + amount, blurred, -amount, 0))


def clahe(grey: Grey) -> Grey:
    return cast(Grey, _clahe().apply(grey))


@lru_cache(maxsize=1)
def _clahe() -> Any:
    return _cv2().createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))


def half(grey: Grey) -> Grey:
    """Half size, each pixel the mean of four: large codes under sensor noise."""
    cv2 = _cv2()
    size = (max(1, grey.shape[1] // 2), max(1, grey.shape[0] // 2))
    return cast(Grey, cv2.resize(grey, size, interpolation=cv2.INTER_AREA))


def wiener_gauss(grey: Grey, sigma: float, nsr: float = 0.005) -> Grey:
    """Wiener deconvolution of a Gaussian blur of `sigma` px (noise-to-signal ratio `nsr`)."""
    cv2 = _cv2()
    h, w = grey.shape
    ph, pw = cv2.getOptimalDFTSize(h + 8), cv2.getOptimalDFTSize(w + 8)
    image = cv2.copyMakeBorder(grey, 0, ph - h, 0, pw - w, cv2.BORDER_REFLECT).astype(np.float32)
    # The transfer function of a Gaussian is a Gaussian: no kernel image or second transform needed.
    fy = np.fft.fftfreq(ph).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(pw).astype(np.float32)[None, :]
    transfer = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx * fx + fy * fy))
    spectrum = np.fft.rfft2(image)
    restored = np.fft.irfft2(spectrum * (transfer / (transfer * transfer + nsr)), s=(ph, pw))[:h, :w]
    return np.clip(restored, 0, 255).astype(np.uint8)


# The Wiener stage works on at most 512 px a side: measured on the shared corpus, the largest crop (720x858)
# took 73 ms at full size and 9 ms at this size, reading the same codes (its modules stay above 2.5 px).
WIENER_SIDE = 512


def deblur_focus(crop: Grey) -> list[Grey]:
    """The crop deconvolved for a strong (sigma 3 px) and a milder (2 px) focus blur, at most WIENER_SIDE a side."""
    scale = max(1.0, max(crop.shape) / WIENER_SIDE)
    if scale > 1.0:
        cv2 = _cv2()
        size = (max(1, int(crop.shape[1] / scale)), max(1, int(crop.shape[0] / scale)))
        crop = cast(Grey, cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    return [wiener_gauss(crop, 3.0 / scale), wiener_gauss(crop, 2.0 / scale, 0.01)]

"""Image transforms for the staged QR decoder (`drivers.decoder_auto`): each takes a grey uint8 crop and returns
the grey uint8 images to hand to zxing-cpp. OpenCV does the pixel work (imported lazily, like every library in
`drivers/`); nothing here decodes.

Why each transform exists (what each reads on the shared corpus: `drivers.decoder_auto.STAGES` and
`CUE_PLANS`, `bench/decode.py --contributions`):
- unsharp masking (sigma 3) and a Wiener deconvolution with a Gaussian kernel undo focus blur; the Wiener
  filter reads the strongest blur (sigma ~3 px on 5 px modules) that unsharp masking cannot;
- CLAHE (contrast-limited local histogram equalisation) lifts codes out of glare and dim corners;
- halving the size averages four pixels into one: a large code under sensor noise;
- a Wiener deconvolution of a linear motion blur, its direction from the structure tensor of the smeared code
  and its length from the cepstrum, undoes a smear of 1.5-3 modules (8 of the corpus's 10 motion-blurred frames,
  which zxing-cpp does not even detect);
- upscaling (bicubic, then unsharp masking) brings modules of 1.2-1.5 px to the 2.5 px and more that
  zxing-cpp's finder search needs.
"""
from __future__ import annotations

from collections.abc import Iterator
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


def deblur_focus(crop: Grey) -> Iterator[Grey]:
    """The crop deconvolved for a strong (sigma 3 px) and a milder (2 px) focus blur, at most WIENER_SIDE a side."""
    scale = max(1.0, max(crop.shape) / WIENER_SIDE)
    if scale > 1.0:
        cv2 = _cv2()
        size = (max(1, int(crop.shape[1] / scale)), max(1, int(crop.shape[0] / scale)))
        crop = cast(Grey, cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    yield wiener_gauss(crop, 3.0 / scale)
    yield wiener_gauss(crop, 2.0 / scale, 0.01)


def motion_length(crop: Grey, angle: float, shortest: float = 3.0, longest: float = 24.0) -> float:
    """The length in px of a linear motion blur along `angle` (degrees, image axes), from the cepstrum of `crop`.

    A smear of length L multiplies the spectrum by a sinc whose zeros repeat every 1/L along the motion; the
    logarithm turns that into a ripple, and the cepstrum (the inverse transform of the log spectrum) into a
    negative peak at distance L in that direction. Sampled along the direction already known (`qr_cues`), the
    peak is not confused with the module pitch, which peaks along the code's axes: on the corpus's motion-blurred
    frames this measured 0-1.2 px long of the true length (6-15 px), except once 3.6 px (read all the same).
    At most 256 px a side are used (the middle of the crop): enough for a blur of up to 24 px."""
    cv2 = _cv2()
    h, w = crop.shape
    side = 256
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    patch = crop[y0:y0 + side, x0:x0 + side].astype(np.float32)
    patch -= float(patch.mean())
    window = np.outer(np.hanning(patch.shape[0]), np.hanning(patch.shape[1])).astype(np.float32)
    magnitude = np.abs(np.fft.rfft2(patch * window))
    cepstrum = np.fft.fftshift(np.fft.irfft2(np.log(magnitude + 1e-3 * float(magnitude.max()) + 1e-9),
                                             s=patch.shape)).astype(np.float32)
    cy, cx = patch.shape[0] // 2, patch.shape[1] // 2
    radii = np.arange(shortest, longest + 0.01, 0.5, dtype=np.float32)
    xs = (cx + radii * np.cos(np.radians(angle)))[None, :].astype(np.float32)
    ys = (cy + radii * np.sin(np.radians(angle)))[None, :].astype(np.float32)
    profile = cv2.remap(cepstrum, xs, ys, cv2.INTER_LINEAR)[0]
    return float(radii[int(np.argmin(profile))])


def smear_direction(grey: Grey) -> float:
    """The direction (degrees, image axes) along which the gradients of `grey` are weakest: a motion smear's."""
    cv2 = _cv2()
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    return (0.5 * float(np.degrees(np.arctan2(2.0 * jxy, jxx - jyy))) + 90.0) % 180.0


def deblur_motion(crop: Grey, inner: tuple[int, int, int, int]) -> Iterator[Grey]:
    """Wiener deconvolutions of `crop` for the linear motion blur seen in its part `inner` (x0, y0, x1, y1 in crop
    pixels: the smeared code), at most WIENER_SIDE a side, likeliest first.

    The direction comes from the structure tensor of `inner` at full resolution (1-4 degrees off on the corpus's
    motion-blurred frames), the length from its cepstrum (`motion_length`). Each length is tried as estimated
    and 15 % shorter (the cepstrum runs long by up to 1.2 px), then at the direction plus and minus 1/L radians:
    an error of that much moves the ends of the kernel by half a pixel, where a 15 px smear stops deconvolving
    (measured on the corpus: 13 degrees read nothing where 16 and 18 read). One forward transform for all."""
    cv2 = _cv2()
    x0, y0, x1, y1 = inner
    code = np.ascontiguousarray(crop[y0:y1, x0:x1])
    angle = smear_direction(code)
    length = motion_length(code, angle)
    scale = max(1.0, max(crop.shape) / WIENER_SIDE)
    if scale > 1.0:
        size = (max(1, int(crop.shape[1] / scale)), max(1, int(crop.shape[0] / scale)))
        crop = cast(Grey, cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    length /= scale
    h, w = crop.shape
    pad = int(length) + 8
    ph, pw = cv2.getOptimalDFTSize(h + pad), cv2.getOptimalDFTSize(w + pad)
    spectrum = np.fft.rfft2(cv2.copyMakeBorder(crop, 0, ph - h, 0, pw - w, cv2.BORDER_REFLECT).astype(np.float32))
    fy = np.fft.fftfreq(ph).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(pw).astype(np.float32)[None, :]
    turn = float(np.degrees(1.0 / max(length, 1.0)))
    for direction in (angle, angle + turn, angle - turn):
        along = fx * np.float32(np.cos(np.radians(direction))) + fy * np.float32(np.sin(np.radians(direction)))
        for blur in (length, 0.85 * length):
            # A centred line of length L has a sinc across it for its transfer function: no kernel image needed.
            transfer = np.sinc(blur * along).astype(np.float32)
            restored = np.fft.irfft2(spectrum * (transfer / (transfer * transfer + MOTION_NSR)), s=(ph, pw))
            yield np.clip(restored[:h, :w], 0, 255).astype(np.uint8)


# Noise-to-signal ratio of the motion Wiener filter: on the corpus, 0.003 reads 5 of the 8 frames 0.01 reads,
# 0.03 the same 8.
MOTION_NSR = 0.01


def upscale(crop: Grey, factor: int) -> Grey:
    """`factor` times larger (bicubic) and unsharp-masked: modules of 1.2-1.5 px become 2.5-4.5 px, which
    zxing-cpp's finder search takes (it finds none below about 2 px)."""
    cv2 = _cv2()
    big = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return unsharp(cast(Grey, big), float(factor), 1.5)


# A code whose modules are under 2 px (where upscaling helps) spans at most 180 px (version 18, 89 modules);
# with the margins a cue's crop gets, 400 px. Larger crops are not upscaled (2x of 400 px costs 1-2 ms to read).
UPSCALE_SIDE = 400


def enlarged(crop: Grey) -> Iterator[Grey]:
    """The crop twice as large, if it is small enough to hold a code with modules under 2 px."""
    if max(crop.shape) <= UPSCALE_SIDE:
        yield upscale(crop, 2)

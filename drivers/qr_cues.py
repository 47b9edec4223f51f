"""Cues for the staged QR decoder (`drivers.decoder_auto`) when zxing-cpp detected no symbol at all: where in the
frame a code may be, and what degraded it. Nothing here decodes: a cue says which dear stage to try where, and
zxing-cpp's error-corrected read stays the only judge of a text.

One survey of the frame on a grid of 32 x 32 px cells. First the grey-level spread (standard deviation) of each
cell from every fourth pixel of every fourth row: a frame mostly covered in texture has no quiet zone for a code
and is turned away there (0.03 ms for 640x480 on the build machine). Otherwise the gradients (Sobel) of the frame
at half size over the contrasted cells' bounding box, and per cell the structure tensor of the gradients from
every other row and column of them (0.1-0.3 ms for 640x480). From them:

- motion blur: a sharp code's modules have edges along both of its axes, so the gradient energy of its cells is
  about the same in every direction (coherence 0.1-0.3 on the corpus's sharp codes and look-alikes); moved by more
  than about a module and a half while the shutter was open (where zxing-cpp stops finding its finder patterns),
  a code is smeared along the motion and what is left of its gradients points across it (0.4-0.7). A patch of
  such cells, with a code's contrast and edge density, that agree on one direction is a cue: the direction is the
  motion's (2-4 degrees off on the corpus's motion-blurred frames), and the cepstrum along it gives the length
  (`qr_stages.motion_length`).
- defocus: a patch of contrasted cells whose edges are soft (low edge density, no direction) is a code out of
  focus (a Gaussian Wiener deconvolution, `qr_stages.deblur_focus`).
- a code whose modules are under 2 px (far away) shows aliased streaks at half size and is cued as motion: the
  first stage for a motion cue upscales its crop (`decoder_auto.CUE_PLANS`).

Not cued: dim frames (sensor noise spreads grey levels as texture does, and the gate turns them away; in a camera
stream the still scene's running average reads them), and small codes that show no streaks. Measured on the
corpus, the survey cues 4 of 31 empty frames (two photographed textures, two look-alike cards at 1280x720).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

Grey = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels

CELL = 16  # cell side in half-size pixels: 32 px of the frame
# A cell with a code in it: black and white modules spread grey levels by 20-65 (standard deviation) on the
# corpus's hard frames; a blank card or a defocused background stays under 15.
MIN_SPREAD = 20.0
# Edge density: the larger eigenvalue of the cell's structure tensor over its grey-level variance. Modules of 2-3
# half-size px give 15-45; a single edge (a card's border, a line) crossing a cell gives 3-12.
MIN_DENSITY = 14.0
MIN_COHERENCE = 0.35  # (l1 - l2) / (l1 + l2): 0 for edges in every direction, 1 for parallel streaks
AGREE_DEG = 15.0  # the cells of one smeared code agree on its direction within this
MIN_AGREEING = 0.6  # share of a patch's cells that must agree
# A smeared code is a patch of at least 3 x 3 cells (96 px: 27 modules of 3.5 px); smaller coherent patches are the
# strokes of text and textures (at most 5 cells on the corpus's look-alike cards at 640x480; two at 1280x720 show
# 14 and 17, and a photographed texture 34: those are cued, and their stages read nothing).
MIN_MOTION_CELLS = 9
# A defocused code: a patch of contrasted cells of which at least 12 (a code of 110 px) have soft edges (density under
# MIN_DENSITY, no direction): 16-144 on the corpus's defocused codes, at most 9 on its look-alike cards (two
# photographed textures that pass the gate show 33 and 57).
MIN_SOFT_CELLS = 12
MIN_CUE_CELLS = min(MIN_MOTION_CELLS, MIN_SOFT_CELLS)  # the fewest contrasted cells any cue needs
# A code needs a quiet zone: a frame where more than three quarters of the cells are textured (grey levels spread
# by more than 12) has no room for one that zxing-cpp could not find. Measured: 15 of the corpus's 17 photographed
# textures (the falsepositives set) are so, and every dim frame; no frame that a cue stage reads.
TEXTURE_SPREAD = 12.0
MAX_TEXTURE = 0.75


@dataclass(frozen=True)
class Cue:
    kind: str  # what degraded the code: a key of `decoder_auto.CUE_PLANS`
    box: Box  # where it seems to be, in frame pixels


@dataclass(frozen=True)
class Grid:
    """Per-cell statistics of a frame (arrays of cells, rows by columns)."""

    jxx: Floats
    jyy: Floats
    jxy: Floats
    spread: Floats

    @property
    def coherence(self) -> Floats:
        return self._root / (self.jxx + self.jyy + 1e-3)

    @property
    def density(self) -> Floats:
        return 0.5 * (self.jxx + self.jyy + self._root) / (self.spread * self.spread + 1.0)

    @property
    def _root(self) -> Floats:
        return np.sqrt((self.jxx - self.jyy) ** 2 + 4.0 * self.jxy * self.jxy)


def _cv2() -> Any:
    import cv2

    return cv2


def _halve(image: Floats) -> Floats:
    cv2 = _cv2()
    return cast(Floats, cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA))


def grid(grey: Grey) -> Grid | None:
    """The cell statistics of a frame, or None when it is smaller than 2 x 2 cells, too busy to hold a code, or has
    too few contrasted cells for any cue."""
    cv2 = _cv2()
    h, w = grey.shape
    gh, gw = h // (2 * CELL), w // (2 * CELL)
    if gh < 2 or gw < 2:
        return None
    # The spread from every fourth pixel of every fourth row (8 x 8 samples a cell: cell statistics need no more;
    # the strided copy is a fraction of a resize by 4, 0.1 ms for 640x480), so that a textured frame is turned away
    # for 0.03 ms.
    values = np.ascontiguousarray(grey[: gh * 2 * CELL: 4, : gw * 2 * CELL: 4])
    square = cv2.multiply(values, values, dtype=cv2.CV_32F)
    mean = values.astype(np.float32)
    for _ in range(3):  # cell means by halving three times
        square, mean = _halve(square), _halve(mean)
    spread = np.sqrt(np.maximum(square - mean * mean, 0.0))
    if float(np.count_nonzero(spread > TEXTURE_SPREAD)) > MAX_TEXTURE * spread.size:
        return None
    rows, cols = np.nonzero(spread > MIN_SPREAD)
    if rows.size < MIN_CUE_CELLS:
        return None
    # Gradients at half size, only over the contrasted cells' bounding box (no cue lies outside it).
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    side = 2 * CELL
    part = grey[r0 * side: r1 * side, c0 * side: c1 * side]
    half = cv2.resize(part, ((c1 - c0) * CELL, (r1 - r0) * CELL), interpolation=cv2.INTER_AREA)
    dx = np.ascontiguousarray(cv2.Sobel(half, cv2.CV_16S, 1, 0)[::2, ::2])  # 8 x 8 samples a cell again
    dy = np.ascontiguousarray(cv2.Sobel(half, cv2.CV_16S, 0, 1)[::2, ::2])
    xx = cv2.multiply(dx, dx, dtype=cv2.CV_32F)
    # A fourth channel (repeated) makes the halvings take OpenCV's fast path: measured on 160 x 120 samples, three
    # halvings of 4 channels 0.015 ms, of 3 channels 0.04 ms.
    planes = cv2.merge([xx, cv2.multiply(dy, dy, dtype=cv2.CV_32F), cv2.multiply(dx, dy, dtype=cv2.CV_32F), xx])
    for _ in range(3):
        planes = _halve(planes)
    tensor = np.zeros((gh, gw, 4), np.float32)
    tensor[r0:r1, c0:c1] = planes
    return Grid(tensor[:, :, 0], tensor[:, :, 1], tensor[:, :, 2], spread)


def survey(grey: Grey) -> list[Cue]:
    """The cues of one frame: motion-blurred codes (largest first), then defocused ones."""
    cells = grid(grey)
    if cells is None:
        return []
    contrast = cells.spread > MIN_SPREAD
    dense = cells.density > MIN_DENSITY
    coherent = cells.coherence > MIN_COHERENCE
    size = (grey.shape[1], grey.shape[0])
    return _motion(contrast & dense & coherent, cells, size) + _focus(contrast, ~dense & ~coherent, size)


def _focus(contrast: npt.NDArray[np.bool_], soft: npt.NDArray[np.bool_], size: tuple[int, int]) -> list[Cue]:
    """Codes out of focus: patches of contrasted cells with at least MIN_SOFT_CELLS cells whose edges are soft."""
    if int((contrast & soft).sum()) < MIN_SOFT_CELLS:
        return []
    count, labels, stats = _patches(contrast)
    found: list[tuple[int, Cue]] = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        softened = int((soft[labels == label]).sum()) if area >= MIN_SOFT_CELLS else 0
        if softened >= MIN_SOFT_CELLS:
            found.append((softened, Cue("focus", _box(x, y, w, h, size))))
    return [cue for _, cue in sorted(found, key=lambda f: -f[0])]


def _direction(jxx: Any, jyy: Any, jxy: Any) -> Any:
    """The direction along which the gradients are weakest (the smear), degrees in [0, 180)."""
    return (0.5 * np.degrees(np.arctan2(2.0 * jxy, jxx - jyy)) + 90.0) % 180.0


def _patches(mask: npt.NDArray[np.bool_]) -> tuple[int, Any, Any]:
    count, labels, stats, _ = _cv2().connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return int(count), labels, stats


def _box(x: int, y: int, w: int, h: int, size: tuple[int, int]) -> Box:
    scale = 2 * CELL
    return x * scale, y * scale, min(size[0], (x + w) * scale), min(size[1], (y + h) * scale)


def _motion(mask: npt.NDArray[np.bool_], cells: Grid, size: tuple[int, int]) -> list[Cue]:
    if int(mask.sum()) < MIN_MOTION_CELLS:
        return []
    count, labels, stats = _patches(mask)
    angles = _direction(cells.jxx, cells.jyy, cells.jxy)
    found: list[tuple[int, Cue]] = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < MIN_MOTION_CELLS or min(w, h) < 2:
            continue
        inside = labels == label
        angle = float(_direction(cells.jxx[inside].sum(), cells.jyy[inside].sum(), cells.jxy[inside].sum()))
        off = np.abs((angles[inside] - angle + 90.0) % 180.0 - 90.0)
        if float((off < AGREE_DEG).mean()) >= MIN_AGREEING:
            found.append((area, Cue("motion", _box(x, y, w, h, size))))
    return [cue for _, cue in sorted(found, key=lambda f: -f[0])]


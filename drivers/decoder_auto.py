"""The staged QR decoder (`decoder.type = "auto"`, the default): cheap passes on every frame, dear ones only where
zxing-cpp found a symbol it could not decode, a time budget per frame, and a tracker that carries the detected
region (and the dear stages not yet tried) over to the next frames of a camera stream.

Every frame:
1. zxing-cpp, LocalAverage binarizer, full resolution only;
2. zxing-cpp, GlobalHistogram binarizer (glare and moiré that local averaging breaks up), which also looks for
   light-on-dark symbols (dark-mode screens): zxing-cpp inverts its bit matrix, no second image pass.
Both run with `return_errors=True`: a symbol whose finder patterns were found but whose data did not decode
comes back with its position. Measured on the shared corpus, that signal fires on none of the 31 negative
frames, so an empty frame (what the camera sees most of the day) never pays for the stages for detected symbols
below, only for the survey after them (`bench/decode.py`, empty frames p50).

Then, for each symbol detected but not read (largest first) or, in a stream, the region tracked from the last
frames where one was: its crop at full resolution through the dear stages in `STAGES`, cheapest first,
until one reads or the frame's budget (`decoder.budget_ms`) is spent. In a stream the next frame goes on with
the stage after the last one tried (the dear stages are spread over consecutive frames), the crops of
consecutive detected-but-undecoded frames are aligned and averaged (noise falls with the square root of the
number of frames) and decoded first, and a still scene's running average is read every few frames, which finds
codes in dim light that no single frame shows (`bench/video.py`, the dim presentations).

Most codes zxing-cpp cannot read it does not detect either (motion blur over more than a module and a half,
strong defocus, modules under 2 px: 21 of the 24 the stages above left on the corpus). For those, when nothing
was read and time is left, a survey of the frame (`qr_cues`: cell statistics at half size, 0.03 ms for a
textured 640x480 frame, 0.1-0.3 ms for others) points at where a code may be and what degraded it, and the
stages in `CUE_PLANS` work on that crop: the crop upscaled (modules under 2 px), a Wiener deconvolution along
the smear the survey saw (its length from the cepstrum), one for defocus. The survey cues 4 of the corpus's 31
empty frames (two photographed textures, two look-alike cards; their dear stages read nothing and stop at the
budget); with the survey's own cost that puts the empty-frame median at 1.23-1.40x the two-pass decoder's before
the staged one (`bench/decode.py --against 7d7d24b`, README). In a stream, a still scene is surveyed once, not
again until it changes.

Mirrored codes (front cameras) need nothing: zxing-cpp reads them as they are. Texts come back largest code
first (the nearest one), each once per frame; repeats across frames are the pipeline's to suppress. Which stage
reads what, and what each frame costs: `bench/decode.py` (single frames) and `bench/video.py` (streams).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, cast

import numpy as np
import numpy.typing as npt

from drivers import qr_cues, qr_stages
from drivers.frames import sure_text, to_grey
from drivers.qr_stages import Grey
from kiosk.errors import DeviceError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import Decoder

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels

# 30 fps on a Raspberry Pi 4 core leaves 33 ms a frame; the rest of the pipeline takes about 3 ms there.
DEFAULT_BUDGET_MS = 25.0
MARGIN = 0.5  # crop margin around a detected symbol, as a share of its size: a detection may cover part of it
TRACK_FRAMES = 15  # a region stays tracked for half a second at 30 fps after its last detection
STACK_FRAMES = 4  # crops averaged: 4 halve the noise
# Phase correlation peak below which an earlier crop is not the same view. Measured: consecutive crops of the dim
# presentations 0.71-0.86, crops of unrelated corpus images -0.02 to 0.04.
MIN_ALIGNMENT = 0.3
STILL_FRAMES = 8  # the still-scene average weighs the last ~8 frames (noise / 2.8)
STILL_CHANGE = 6.0  # mean grey-level change of the 1/8 thumbnail that counts as a new scene
# The still-scene average is read (LocalAverage only) on every fourth frame. Measured on the dim presentations of
# bench/video.py (8): every 3rd or 4th frame, LocalAverage alone or with GlobalHistogram, all read 8 (GlobalHistogram
# alone 6-7); every 4th frame read the slowest one at frame 38 instead of 81.
AVERAGE_EVERY = 4


@dataclass(frozen=True)
class Stage:
    """One dear stage: transforms of a crop (or of the whole frame), each read with the named binarizers."""

    name: str
    transform: Callable[[Grey], Iterable[Grey]]
    binarizers: tuple[str, ...] = ("LocalAverage", "GlobalHistogram")
    whole_frame: bool = False


# Cheapest first. Measured on the shared corpus with no budget (152 codes; the first passes read 118, all stages
# 128): alone after the first passes, crop +1, half +1, unsharp +5, clahe +3, wiener +7; left out of the five,
# crop -0, half -1, unsharp -0, clahe -1, wiener -3 (crop and unsharp stay: the cheapest reads come first). With
# the cue stages after them (140), left out: crop -0, half -1, unsharp -0, clahe -1, wiener -1 (the focus cue
# reads two of its frames): `bench/decode.py --contributions`.
# Tried and left out, reading nothing the five do not: adaptive thresholds (blocks 15 and 31; +3 alone),
# 2x upscaling with or without unsharp masking (+3 alone), a 3x3 median before GlobalHistogram, zbar on the
# crop and on its 2x upscale.
STAGES: tuple[Stage, ...] = (
    Stage("crop", lambda crop: [crop]),  # 0.1-0.5 ms: the region alone, at full resolution
    # 0.1-0.3 ms: the frame at half size, each pixel the mean of four, halves the noise; on the whole frame,
    # because on a large noisy code the detection may be a part of it that a crop cuts off.
    Stage("half", lambda frame: [qr_stages.half(frame)], ("LocalAverage",), whole_frame=True),
    Stage("unsharp", lambda crop: [qr_stages.unsharp(crop)]),  # about 1-3 ms
    Stage("clahe", lambda crop: [qr_stages.clahe(crop)]),  # about 1-4 ms
    Stage("wiener", qr_stages.deblur_focus),  # about 3-9 ms
)


@dataclass(frozen=True)
class CueStage:
    """A dear stage for a cue of `qr_cues` (no symbol detected): from the crop and the cue's box in it (x0, y0, x1,
    y1 in crop pixels), images to read with both binarizers, cheapest first."""

    name: str
    transform: Callable[[Grey, Box], Iterable[Grey]]


@dataclass(frozen=True)
class CuePlan:
    """What a kind of cue calls for: its box grown by `grow` of its size and `pad` px each way, then `stages`."""

    grow: float
    pad: int
    stages: tuple[CueStage, ...]


# What each kind of cue calls for, cheapest stage first. A motion cue's box is the smeared code's cells, which may
# miss its border: a quarter of its size and the longest blur (24 px) more each way. Codes with modules under 2 px
# also show streaks at half size (aliasing) and are cued as motion: the crop upscaled reads them (1-2 ms, against
# 3-9 ms for a deconvolution). A defocused code's contrasted cells cover it: a cell (32 px) more for its quiet zone.
# Measured on the shared corpus: the stage table in README.
CUE_PLANS: dict[str, CuePlan] = {
    "motion": CuePlan(0.25, 24, (CueStage("upscale", lambda crop, inner: qr_stages.enlarged(crop)),
                                 CueStage("deblur motion", qr_stages.deblur_motion))),
    "focus": CuePlan(0.0, 32, (CueStage("deblur focus", lambda crop, inner: qr_stages.deblur_focus(crop)),)),
}


@dataclass
class Symbol:
    text: str | None  # None: detected, not decoded
    box: Box

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass
class Track:
    """What a camera stream carries from frame to frame: the region, its age, the next stage, recent crops."""

    box: Box | None = None
    age: int = 0
    next_stage: int = 0
    crops: deque[Grey] = field(default_factory=lambda: deque(maxlen=STACK_FRAMES))


@dataclass
class Still:
    """The running average of the frames since the scene last changed (a stream's noise filter)."""

    first: Grey  # the scene's first frame
    small: Grey | None = None  # its 1/8 thumbnail, which later frames are compared with
    mean: npt.NDArray[np.float32] | None = None  # from the second frame on
    frames: int = 1
    cued: bool = False  # the survey and its cue stages ran on this scene and read nothing: not again until it changes


class AutoDecoder:
    name = "auto"

    def __init__(self, budget_ms: float = DEFAULT_BUDGET_MS, stages: tuple[Stage, ...] = STAGES,
                 track: bool = True, clock: Callable[[], float] = time.perf_counter,
                 cues: Mapping[str, CuePlan] | None = None):
        try:
            import zxingcpp
        except ImportError:
            raise DeviceError("the zxing-cpp decoder is not installed: run `pip install zxing-cpp` in the kiosk's "
                              "virtual environment (or set decoder.type = \"zbar\")") from None
        self._zxing = zxingcpp
        self.budget_ms = budget_ms
        self.stages = stages
        self.cues = CUE_PLANS if cues is None else cues  # {} turns the survey and its stages off
        self.tracking = track
        self.clock = clock
        self.track = Track()
        self.still: Still | None = None
        # Seconds per crop pixel that the first image of each cue stage last took (`_cued`).
        self._first_image_rate: dict[str, float] = {}
        # What read the last frame: "zxing", "globalhistogram", "still average", "stack" or a stage's name.
        self.last_stage: str | None = None
        # Plain text mode: the payload as encoded (HRI would rewrite control characters as "<NUL>" markup).
        # No downscaled pass: it read one frame of the corpus (a large, noisy code), which the "half" stage reads
        # from the detected region, and it costs a third of an empty frame.
        self._base: dict[str, Any] = dict(formats=zxingcpp.BarcodeFormat.QRCode, try_rotate=False,
                                          try_downscale=False, text_mode=zxingcpp.TextMode.Plain, return_errors=True)

    def reset(self) -> None:
        """Forget the tracked region: the next frame starts a new stream (another image file, another video)."""
        self.track = Track()
        self.still = None

    # ------------------------------------------------------------------ the cascade
    def decode(self, frame: Any) -> list[str]:
        grey = to_grey(frame)
        self.last_stage = None
        if grey is None:
            return []
        deadline = self.clock() + self.budget_ms / 1000.0
        symbols = self._first_passes(grey)
        if self.tracking:
            symbols += self._still(grey, read=any(s.text for s in symbols))
        read = [s for s in symbols if s.text is not None]
        pending: list[Box] = []
        for s in sorted(symbols, key=lambda s: -s.area):  # one box per symbol not read, largest first
            if s.text is None and not any(_overlap(s.box, b) for b in [r.box for r in read] + pending):
                pending.append(s.box)
        if self.tracking:
            pending = self._follow(read, pending)
        for box in pending:
            if self.clock() >= deadline:
                break
            found = self._dear(grey, box, deadline)
            read += [Symbol(t, box) for t in found]
        if self.cues and not read and self.clock() < deadline and not (self.still is not None and self.still.cued):
            read += self._cued(grey, deadline)
        if self.tracking and read and self.track.box is not None and any(_overlap(self.track.box, s.box) for s in read):
            self.track = Track()  # read: nothing left to follow (repeat suppression is the pipeline's)
        texts: list[str] = []
        for symbol in sorted(read, key=lambda s: -s.area):  # the largest, nearest code first
            if symbol.text not in texts:
                texts.append(symbol.text)  # type: ignore[arg-type]  # read symbols carry text
        return texts

    def _first_passes(self, grey: Grey) -> list[Symbol]:
        symbols: list[Symbol] = []
        for name, binarizer in (("zxing", "LocalAverage"), ("globalhistogram", "GlobalHistogram")):
            # The GlobalHistogram pass also looks for light-on-dark symbols: zxing-cpp inverts its bit matrix,
            # which costs less than a third pass over an inverted image (measured on the corpus's empty frames:
            # +0.06-0.09 ms a frame against +0.10-0.14).
            symbols += self._read(grey, binarizer, invert=binarizer == "GlobalHistogram")
            if any(s.text for s in symbols):
                self.last_stage = name
                break
        return symbols

    def _still(self, grey: Grey, read: bool) -> list[Symbol]:
        """The running average of a still scene, read every AVERAGE_EVERY frames when this frame read nothing:
        under a dim light's sensor noise, the average reads (or at least detects, giving a region to work on)
        where no single frame does. A changed scene (the code moving in, a new person) starts it again."""
        import cv2

        still = self.still
        if still is None:  # a stream's first frame: kept as it is, nothing computed (a single image costs nothing)
            self.still = Still(first=grey)
            return []
        if still.small is None:
            still.small = _thumbnail(still.first)
        if still.small.shape != _thumbnail_shape(grey) or \
                float(cv2.absdiff(_thumbnail(grey), still.small).mean()) > STILL_CHANGE:
            self.still = Still(first=grey)  # a new scene (cameras hand over a new array each frame: no copy)
            return []
        if still.mean is None:  # the second still frame starts the average
            still.mean = still.first.astype(np.float32)
        cv2.accumulateWeighted(grey, still.mean, 1.0 / min(still.frames + 1, STILL_FRAMES))
        still.frames += 1
        if read or still.frames % AVERAGE_EVERY:
            return []
        average = still.mean.astype(np.uint8)
        symbols = self._read(average, "LocalAverage")
        if any(s.text for s in symbols):
            self.last_stage = "still average"
        return symbols

    def _dear(self, grey: Grey, box: Box, deadline: float) -> list[str]:
        """The dear stages on the crop of `box`, from the stream's next stage on, until one reads or time is up."""
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(grey[y0:y1, x0:x1])
        if self.tracking and box == self.track.box:
            texts = self._stacked(crop)  # about a millisecond: before the dear stages once there are two crops
            if texts:
                return texts
        start = self.track.next_stage if self.tracking else 0
        order = list(range(start, len(self.stages))) + list(range(0, start))
        for n, index in enumerate(order):
            if n and self.clock() >= deadline:  # the first stage always runs: every frame makes progress
                self.track.next_stage = index
                return []
            stage = self.stages[index]
            texts = [t for image in stage.transform(grey if stage.whole_frame else crop) for b in stage.binarizers
                     for t in self._texts(image, b)]
            if texts:
                self.last_stage = stage.name
                return texts
        self.track.next_stage = 0
        return []

    def _cued(self, grey: Grey, deadline: float) -> list[Symbol]:
        """The cue stages (`CUE_PLANS`) where the survey of the frame (`qr_cues`) points, while time is left.

        A cue stage's first image is its dearest (a deconvolution's transforms and the blur's estimate: 3-9 ms on
        the build machine): a stage starts only when the time left is at least what its first image would take at
        the dearest rate (per crop pixel) it ran at lately."""
        height, width = grey.shape
        for cue in qr_cues.survey(grey):
            plan = self.cues.get(cue.kind)
            if plan is None:
                continue
            x0, y0, x1, y1 = cue.box
            grow = int(plan.grow * max(x1 - x0, y1 - y0)) + plan.pad
            box = (max(0, x0 - grow), max(0, y0 - grow), min(width, x1 + grow), min(height, y1 + grow))
            crop = np.ascontiguousarray(grey[box[1]:box[3], box[0]:box[2]])
            inner = (x0 - box[0], y0 - box[1], x1 - box[0], y1 - box[1])
            for stage in plan.stages:
                if deadline - self.clock() < self._first_image_rate.get(stage.name, 0.0) * crop.size:
                    return []
                started = self.clock()
                for n, image in enumerate(stage.transform(crop, inner)):
                    if not n:
                        # The dearest rate lately (its hold halves every three runs): part of a first image's
                        # cost does not grow with the crop (the cepstrum's 256 px patch), and a loaded core is slower.
                        rate = (self.clock() - started) / crop.size
                        held = 0.8 * self._first_image_rate.get(stage.name, 0.0)
                        self._first_image_rate[stage.name] = max(rate, held)
                    elif self.clock() >= deadline:
                        return []
                    texts = [t for b in ("LocalAverage", "GlobalHistogram") for t in self._texts(image, b)]
                    if texts:
                        self.last_stage = stage.name
                        return [Symbol(t, box) for t in texts]
        if self.still is not None:
            self.still.cued = True
        return []

    def _follow(self, read: list[Symbol], pending: list[Box]) -> list[Box]:
        """The regions to work on in this frame of a stream: new detections first, else the tracked region."""
        track = self.track
        if pending:
            # The same symbol detected again keeps its region, so that its crops line up for averaging.
            box = track.box
            if box is None or not _inside(_centre(pending[0]), box):
                box = pending[0]
                self.track = track = Track(box=box)
            track.age = 0
            return [box] + pending[1:]
        if track.box is None or read:
            return pending
        track.age += 1
        if track.age > TRACK_FRAMES:
            self.track = Track()
            return []
        return [track.box]

    def _stacked(self, crop: Grey) -> list[str]:
        """Aligned average of this crop and the crops of the region in the frames before (phase correlation)."""
        import cv2

        crops = self.track.crops
        if crops and crops[-1].shape != crop.shape:
            crops.clear()
        crops.append(crop)
        if len(crops) < 2:
            return []
        newest = crop.astype(np.float32)
        total, used = newest.copy(), 1
        for older in list(crops)[:-1]:
            moving = older.astype(np.float32)
            (dx, dy), response = cv2.phaseCorrelate(newest, moving)
            if response < MIN_ALIGNMENT:  # not the same view: averaging it in could read another frame's code
                continue
            shift = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
            total += cv2.warpAffine(moving, shift, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REPLICATE)
            used += 1
        if used < 2:
            return []
        average = np.clip(total / used, 0, 255).astype(np.uint8)
        texts = [t for image in (average, qr_stages.unsharp(average)) for b in ("LocalAverage", "GlobalHistogram")
                 for t in self._texts(image, b)]
        if texts:
            self.last_stage = "stack"
        return texts

    # ------------------------------------------------------------------ zxing-cpp
    def _read(self, image: Grey, binarizer: str, invert: bool = False) -> list[Symbol]:
        """Symbols in one image: read ones with their text, detected-but-undecoded ones with text None."""
        try:
            found = self._zxing.read_barcodes(image, binarizer=getattr(self._zxing.Binarizer, binarizer),
                                              try_invert=invert, **self._base)
        except (ValueError, RuntimeError, TypeError):
            log.debug("zxing rejected an image of shape %s", image.shape)
            return []
        h, w = image.shape
        symbols = []
        for barcode in found:
            text = barcode.text if barcode.valid and not barcode.error and sure_text(barcode.text) else None
            symbols.append(Symbol(text, _box(barcode.position, w, h)))
        return symbols

    def _texts(self, image: Grey, binarizer: str) -> list[str]:
        return [s.text for s in self._read(image, binarizer) if s.text is not None]


def _box(position: Any, width: int, height: int) -> Box:
    """The bounding box of a zxing position, grown by MARGIN and kept inside the frame."""
    xs = [p.x for p in (position.top_left, position.top_right, position.bottom_right, position.bottom_left)]
    ys = [p.y for p in (position.top_left, position.top_right, position.bottom_right, position.bottom_left)]
    margin = MARGIN * max(max(xs) - min(xs), max(ys) - min(ys), 8)
    return (max(0, int(min(xs) - margin)), max(0, int(min(ys) - margin)),
            min(width, int(max(xs) + margin) + 1), min(height, int(max(ys) + margin) + 1))


def _thumbnail_shape(grey: Grey) -> tuple[int, int]:
    return max(1, grey.shape[0] // 8), max(1, grey.shape[1] // 8)


def _thumbnail(grey: Grey) -> Grey:
    import cv2

    h, w = _thumbnail_shape(grey)
    return cast(Grey, cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA))


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def create(cfg: Config | None) -> Decoder:
    if cfg is None:  # the benchmarks build decoders without a configuration
        return AutoDecoder()
    return AutoDecoder(budget_ms=cfg.decoder.budget_ms)

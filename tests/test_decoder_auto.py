"""The staged decoder on the real shared corpus and on codes rendered here: what it reads, what it never returns,
which stages run when, the time budget, and what a camera stream carries from frame to frame."""
from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import segno
from PIL import Image

from drivers import decoder_auto, decoder_zbar, decoder_zxing, qr_cues, qr_stages
from drivers.decoder_auto import CUE_PLANS, STAGES, AutoDecoder, CuePlan, CueStage, Stage
from kiosk import config
from kiosk.app import build_decoder

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# Frames zxing-cpp's first pass misses: zbar reads the first two, the GlobalHistogram pass all three.
ZBAR_ONLY = ["synth/glare/glare_001_1280x720.jpg", "synth/moire/moire_003_1280x720.jpg"]
# Focus-blurred frames whose symbol zxing-cpp detects but cannot decode: a dear stage reads them.
DETECTED_BLURRED = ["synth/blur_gauss/blur_gauss_003_1280x720.jpg", "synth/blur_gauss/blur_gauss_005_1280x720.jpg"]
# A frame with a symbol detected that no stage reads (glare over the code).
DETECTED_UNREAD = "synth/glare/glare_007_1280x720.jpg"
BLANK = np.full((480, 640), 200, dtype=np.uint8)


@lru_cache(maxsize=1)
def corpus() -> tuple[tuple[dict, np.ndarray], ...]:
    entries = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["entries"]
    frames = []
    for e in entries:
        with Image.open(CORPUS / e["file"]) as img:
            frames.append((e, np.asarray(img.convert("L"))))
    return tuple(frames)


def frame(file: str) -> tuple[dict, np.ndarray]:
    return next(f for f in corpus() if f[0]["file"] == file)


def single(decoder: AutoDecoder, grey: np.ndarray) -> list[str]:
    decoder.reset()  # each corpus image is a stream of its own
    return decoder.decode(grey)


def read_files(decode) -> set[str]:
    return {e["file"] for e, grey in corpus() if e["texts"] and set(decode(grey)) & set(e["texts"])}


def code(text: str, scale: int = 4) -> np.ndarray:
    buf = io.BytesIO()
    segno.make_qr(text, error="m").save(buf, kind="png", scale=scale, border=4)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def counted(stages: tuple[Stage, ...]) -> tuple[tuple[Stage, ...], list[str]]:
    """The real stages, each noting its name in `calls` when it runs."""
    calls: list[str] = []

    def wrap(stage: Stage) -> Stage:
        def transform(image: np.ndarray) -> list[np.ndarray]:
            calls.append(stage.name)
            return stage.transform(image)

        return Stage(stage.name, transform, stage.binarizers, stage.whole_frame)

    return tuple(wrap(s) for s in stages), calls


@lru_cache(maxsize=1)
def auto() -> AutoDecoder:
    return decoder_auto.create(None)


# ---------------------------------------------------------------- the corpus
@pytest.mark.parametrize("file", ZBAR_ONLY)
def test_reads_the_frames_only_zbar_reads(file):
    entry, grey = frame(file)
    assert decoder_zxing.ZxingDecoder().decode(grey) == []  # still a frame zxing alone misses
    assert decoder_zbar.ZbarDecoder().decode(grey) == entry["texts"]
    assert single(auto(), grey) == entry["texts"]


def test_reads_every_frame_either_single_decoder_reads_and_more():
    either = read_files(decoder_zxing.ZxingDecoder().decode) | read_files(decoder_zbar.ZbarDecoder().decode)
    staged = read_files(lambda grey: single(auto(), grey))
    assert either - staged == set()
    assert len(staged) >= len(either) + 5  # 128 against 119 when this was written (bench/decode.py)


def test_never_a_wrong_text_and_nothing_on_negatives():
    wrong, false_positives = [], []
    for e, grey in corpus():
        texts = single(auto(), grey)
        if e["texts"]:
            wrong += [e["file"] for t in texts if t not in e["texts"]]
        elif texts:
            false_positives.append(e["file"])
    assert wrong == []
    assert false_positives == []
    assert sum(not e["texts"] for e, _ in corpus()) > 20  # the negatives were really there


def test_no_dear_stage_runs_on_a_negative_frame():
    stages, calls = counted(STAGES)
    decoder = AutoDecoder(stages=stages)
    negatives = [grey for e, grey in corpus() if not e["texts"]]
    for grey in negatives:
        assert single(decoder, grey) == []
    assert calls == []


@pytest.mark.parametrize("file", DETECTED_BLURRED)
def test_a_detected_but_undecoded_symbol_goes_through_the_dear_stages(file):
    entry, grey = frame(file)
    stages, calls = counted(STAGES)
    decoder = AutoDecoder(stages=stages, budget_ms=1000)
    assert single(decoder, grey) == entry["texts"]
    assert decoder.last_stage in {s.name for s in STAGES}
    assert calls[0] == "crop" and calls[-1] == decoder.last_stage


def test_a_frame_the_first_pass_reads_runs_nothing_else():
    stages, calls = counted(STAGES)
    decoder = AutoDecoder(stages=stages)
    entry, grey = frame("synth/nominal/nominal_000_640x480.jpg")
    assert single(decoder, grey) == entry["texts"]
    assert decoder.last_stage == "zxing" and calls == []


# ---------------------------------------------------------------- the budget and the stream
class StepClock:
    """Each reading is `step` seconds after the one before: a frame's budget runs out after a known count."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_budget_stops_the_cascade_and_the_next_frame_goes_on_with_the_next_stage():
    entry, grey = frame(DETECTED_UNREAD)
    never = tuple(Stage(f"s{n}", lambda crop: [np.full_like(crop, 255)]) for n in range(4))  # reads nothing
    stages, calls = counted(never)
    # 10 ms budget, 6 ms between clock readings: the first stage always runs, the second finds the time spent.
    decoder = AutoDecoder(stages=stages, budget_ms=10, clock=StepClock(0.006))
    assert decoder.decode(grey) == []
    assert calls == ["s0"]
    decoder.decode(grey)  # the same symbol in the next frame: the cascade goes on where it stopped
    assert calls == ["s0", "s1"]
    decoder.reset()
    decoder.decode(grey)
    assert calls == ["s0", "s1", "s0"]  # a new stream starts again at the first stage


def test_the_tracked_region_is_decoded_in_later_frames_without_a_detection():
    entry, grey = frame(DETECTED_BLURRED[0])
    seen: list[tuple[int, int]] = []
    def probe_transform(crop: np.ndarray) -> list[np.ndarray]:
        seen.append(crop.shape)
        return []

    probe = Stage("probe", probe_transform)
    decoder = AutoDecoder(stages=(probe,), budget_ms=1000, cues={})  # the focus cue would read it at once
    decoder.decode(grey)
    assert len(seen) == 1 and seen[0] < grey.shape  # a crop, not the frame
    blank = np.full_like(grey, 128)  # nothing detected: the region from the frame before is tried
    for _ in range(decoder_auto.TRACK_FRAMES):
        assert decoder.decode(blank) == []
    assert len(seen) == 1 + decoder_auto.TRACK_FRAMES and set(seen) == {seen[0]}
    decoder.decode(blank)  # the track has aged out
    assert len(seen) == 1 + decoder_auto.TRACK_FRAMES and decoder.track.box is None


def test_a_stream_reads_noisy_frames_that_no_single_frame_decoding_reads():
    rng = np.random.default_rng(7)
    clean = np.full((480, 640), 150, np.float32)
    symbol = code("079090000001|NGUYEN VAN THU|1990-12-01", scale=4).astype(np.float32) * 0.5 + 60
    clean[100:100 + symbol.shape[0], 200:200 + symbol.shape[1]] = symbol
    frames = [np.clip(np.roll(clean, (n % 2, n // 3), axis=(0, 1)) + rng.normal(0, 45, clean.shape), 0, 255)
              .astype(np.uint8) for n in range(10)]  # a dim corner's sensor noise; a hand is never quite still
    alone = AutoDecoder(budget_ms=1e6, track=False)
    assert [alone.decode(f) for f in frames] == [[]] * 10  # every stage, no budget: no frame reads on its own
    stream = AutoDecoder(budget_ms=1e6)
    read = [stream.decode(f) for f in frames]
    # The region detected in one frame is worked on in the next ones, where no symbol is detected at all.
    assert ["079090000001|NGUYEN VAN THU|1990-12-01"] in read


# ---------------------------------------------------------------- the survey's cues (no symbol detected)
def undetected(file: str) -> bool:
    """zxing-cpp's first passes find no symbol in the frame: no stage for detected symbols runs."""
    probe, calls = counted((Stage("probe", lambda crop: []),))
    decoder = AutoDecoder(stages=probe, cues={}, budget_ms=1e6)
    return single(decoder, frame(file)[1]) == [] and calls == []


def test_motion_blurred_codes_zxing_cpp_never_detects_read_deconvolved_along_their_smear():
    files = [e["file"] for e, _ in corpus() if e["category"] == "blur_motion"]
    blind = [f for f in files if undetected(f)]
    assert len(blind) >= 7  # most motion-blurred frames show zxing-cpp no symbol at all
    decoder = AutoDecoder(budget_ms=1e6)
    for file in blind:
        entry, grey = frame(file)
        assert single(decoder, grey) == entry["texts"], file
        assert decoder.last_stage == "deblur motion", file


@pytest.mark.parametrize("file", ["synth/blur_gauss/blur_gauss_004_640x480.jpg",
                                  "synth/blur_gauss/blur_gauss_008_640x480.jpg"])
def test_defocused_codes_zxing_cpp_does_not_detect_read_deconvolved(file):
    assert undetected(file)
    entry, grey = frame(file)
    decoder = AutoDecoder(budget_ms=1e6)
    assert single(decoder, grey) == entry["texts"] and decoder.last_stage == "deblur focus"


@pytest.mark.parametrize("file", ["synth/small/small_002_640x480.jpg", "synth/small/small_005_1280x720.jpg"])
def test_codes_with_modules_too_small_for_the_finder_search_read_upscaled(file):
    assert undetected(file)
    entry, grey = frame(file)
    decoder = AutoDecoder(budget_ms=1e6)
    assert single(decoder, grey) == entry["texts"] and decoder.last_stage == "upscale"


def test_the_survey_points_at_few_frames_without_a_code():
    # Each cue costs dear stages (3-25 ms): an empty frame, what the camera sees most of the day, should rarely
    # have one. Measured: 4 of the corpus's 31 empty frames (two photographed textures, two look-alike cards).
    negatives = [grey for e, grey in corpus() if not e["texts"]]
    cued = [grey for grey in negatives if qr_cues.survey(grey)]
    assert len(negatives) > 20 and len(cued) <= 5


def counted_cues() -> tuple[dict[str, CuePlan], list[str]]:
    """The real cue plans, each stage noting its name in `calls` when it runs."""
    calls: list[str] = []

    def wrap(stage: CueStage) -> CueStage:
        def transform(crop: np.ndarray, inner: tuple[int, int, int, int]):
            calls.append(stage.name)
            return stage.transform(crop, inner)

        return CueStage(stage.name, transform)

    return {k: CuePlan(p.grow, p.pad, tuple(wrap(s) for s in p.stages)) for k, p in CUE_PLANS.items()}, calls


def test_a_still_scene_is_surveyed_once_and_a_new_one_again():
    cued = next(grey for e, grey in corpus() if not e["texts"] and qr_cues.survey(grey))
    cues, calls = counted_cues()
    decoder = AutoDecoder(cues=cues, budget_ms=1e6)
    for _ in range(3):  # a camera looking at the same empty scene
        assert decoder.decode(cued) == []
    once = len(calls)
    assert once >= 1
    assert decoder.decode(np.full_like(cued, 40)) == []  # the scene changes...
    assert decoder.decode(cued) == []  # ...and changes back: a new scene, surveyed again
    assert len(calls) == 2 * once


def test_no_cue_stage_starts_when_the_frame_has_no_time_left():
    entry, grey = frame("synth/blur_motion/blur_motion_002_640x480.jpg")
    cues, calls = counted_cues()
    decoder = AutoDecoder(cues=cues, budget_ms=1e-6, track=False)
    assert decoder.decode(grey) == [] and calls == []
    decoder.budget_ms = 1e6
    assert decoder.decode(grey) == entry["texts"] and calls


def test_a_cue_stage_that_would_overrun_the_budget_waits_for_the_next_frame():
    entry, grey = frame("synth/blur_motion/blur_motion_002_640x480.jpg")
    cues, calls = counted_cues()
    decoder = AutoDecoder(cues=cues, budget_ms=1e6, track=False)
    assert decoder.decode(grey) == entry["texts"]  # measures what each stage's first image costs a pixel
    decoder._first_image_rate = {name: 1.0 for name in decoder._first_image_rate}  # a second a pixel: never fits
    calls.clear()
    assert decoder.decode(grey) == [] and calls == []


# ---------------------------------------------------------------- the cue stages on rendered codes
def smeared(length: float, angle: float) -> tuple[np.ndarray, str]:
    """A code of 4 px modules smeared along `angle` (degrees, image axes) by `length` px, as a moving card is."""
    import cv2

    text = "079090000001|TRAN VAN MINH|1987-03-09|1"
    grey = np.pad(code(text, scale=4), 60, constant_values=235).astype(np.float32)
    kernel = np.zeros((41, 41), np.float32)
    c = 20
    ends = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))]) * length / 2
    cv2.line(kernel, (int(round(4 * (c - ends[0]))), int(round(4 * (c - ends[1])))),
             (int(round(4 * (c + ends[0]))), int(round(4 * (c + ends[1])))), 1.0, 1, cv2.LINE_AA, shift=2)
    blurred = cv2.filter2D(grey, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)
    return np.clip(blurred, 0, 255).astype(np.uint8), text


@pytest.mark.parametrize("length, angle", [(9.0, 20.0), (12.0, 100.0), (13.0, 160.0)])
def test_the_smear_is_measured_and_undone(length, angle):
    grey, text = smeared(length, angle)
    assert decoder_zxing.ZxingDecoder().decode(grey) == []  # smeared by 2-3 modules: unreadable as it is
    # The direction within 6 degrees (1-4 on the corpus's frames; deblur_motion also tries 1/L radians either side).
    assert abs((qr_stages.smear_direction(grey) - angle + 90) % 180 - 90) < 6
    assert abs(qr_stages.motion_length(grey, angle) - length) <= 2.0
    h, w = grey.shape
    images = qr_stages.deblur_motion(grey, (0, 0, w, h))
    assert any(decoder_zxing.ZxingDecoder().decode(image) == [text] for image in images)


def test_the_survey_finds_a_smeared_code_and_no_cue_on_a_sharp_one():
    grey, text = smeared(12.0, 30.0)
    frame_ = np.full((480, 640), 120, np.uint8)
    frame_[40:40 + grey.shape[0], 100:100 + grey.shape[1]] = grey
    cues = qr_cues.survey(frame_)
    assert cues and cues[0].kind == "motion"
    x0, y0, x1, y1 = cues[0].box
    assert x0 < 100 + grey.shape[1] and 100 < x1 and y0 < 40 + grey.shape[0] and 40 < y1  # on the code
    sharp = frame_.copy()
    sharp[40:40 + grey.shape[0], 100:100 + grey.shape[1]] = smeared(0.5, 30.0)[0]
    assert [c.kind for c in qr_cues.survey(sharp)] == []
    assert single(AutoDecoder(budget_ms=1e6), frame_) == [text]


# ---------------------------------------------------------------- kinds of codes
def test_light_on_dark_and_mirrored_codes_read():
    grey = np.pad(code("DARK MODE 0123"), 40, constant_values=255)
    assert single(auto(), 255 - grey) == ["DARK MODE 0123"]
    assert auto().last_stage == "globalhistogram"  # its pass also looks for light-on-dark symbols
    assert single(auto(), np.ascontiguousarray(grey[:, ::-1])) == ["DARK MODE 0123"]


def test_two_codes_each_once_largest_first():
    frame_ = np.full((480, 640), 230, np.uint8)
    near, far = code("NEAR PHONE 1", scale=6), code("FAR PHONE 2", scale=3)
    frame_[20:20 + near.shape[0], 20:20 + near.shape[1]] = near
    frame_[300:300 + far.shape[0], 450:450 + far.shape[1]] = far
    assert single(auto(), frame_) == ["NEAR PHONE 1", "FAR PHONE 2"]


@pytest.mark.parametrize("bad", [None, "text", np.zeros(10, dtype=np.uint8), np.zeros((4, 4), dtype=np.uint8)])
def test_not_an_image_returns_nothing(bad):
    stages, calls = counted(STAGES)
    assert AutoDecoder(stages=stages).decode(bad) == [] and calls == []


def test_colour_frame_is_converted_and_read():
    entry, grey = frame("synth/nominal/nominal_000_640x480.jpg")
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    assert single(auto(), bgr) == entry["texts"]


def test_auto_is_the_configured_default_and_takes_its_budget():
    cfg = config.load(None, data={"decoder": {"budget_ms": 12.5}})
    assert cfg.decoder.type == "auto"
    decoder = build_decoder(cfg)
    assert decoder.name == "auto" and decoder.budget_ms == 12.5
    assert decoder.decode(BLANK) == []

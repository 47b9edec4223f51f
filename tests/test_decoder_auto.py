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

from drivers import decoder_auto, decoder_zbar, decoder_zxing
from drivers.decoder_auto import STAGES, AutoDecoder, Stage
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

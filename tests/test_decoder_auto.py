"""The combined decoder on the real shared corpus: reads what either single decoder reads, never a wrong text."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drivers import decoder_auto, decoder_zbar, decoder_zxing
from drivers.decoder_auto import AutoDecoder, GlobalHistogramZxing
from kiosk import config
from kiosk.app import build_decoder

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# The frames zbar reads and zxing-cpp alone does not (measured with bench/decode.py).
ZBAR_ONLY = ["synth/glare/glare_001_1280x720.jpg", "synth/moire/moire_003_1280x720.jpg"]
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


def read_files(decoder) -> set[str]:
    return {e["file"] for e, grey in corpus() if e["texts"] and set(decoder.decode(grey)) & set(e["texts"])}


class Counting:
    """A real decoder pass that counts its calls."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, 0

    def decode(self, frame):
        self.calls += 1
        return self.inner.decode(frame)


def counted_auto() -> tuple[AutoDecoder, Counting, Counting]:
    first, second = Counting(decoder_zxing.ZxingDecoder()), Counting(GlobalHistogramZxing())
    return AutoDecoder(passes=(first, second)), first, second


@lru_cache(maxsize=1)
def auto() -> AutoDecoder:
    return decoder_auto.create(None)


@pytest.mark.parametrize("file", ZBAR_ONLY)
def test_reads_the_frames_only_zbar_reads(file):
    entry, grey = frame(file)
    assert decoder_zxing.ZxingDecoder().decode(grey) == []  # still a frame zxing alone misses
    assert decoder_zbar.ZbarDecoder().decode(grey) == entry["texts"]
    assert auto().decode(grey) == entry["texts"]


def test_reads_every_frame_either_single_decoder_reads():
    single = read_files(decoder_zxing.ZxingDecoder()) | read_files(decoder_zbar.ZbarDecoder())
    combined = read_files(auto())
    assert single - combined == set()
    assert len(combined) >= len(single)


def test_second_pass_not_run_when_the_first_reads():
    decoder, first, second = counted_auto()
    entry, grey = frame("synth/nominal/nominal_000_640x480.jpg")
    assert decoder.decode(grey) == entry["texts"]
    assert (first.calls, second.calls) == (1, 0)


def test_second_pass_reads_what_the_first_misses():
    decoder, first, second = counted_auto()
    entry, grey = frame(ZBAR_ONLY[0])
    assert decoder.decode(grey) == entry["texts"]
    assert (first.calls, second.calls) == (1, 1)


@pytest.mark.parametrize("file", ["synth/negative/negative_001_1280x720.jpg", None])
def test_empty_frame_costs_one_call_per_pass_and_never_zbar(file, monkeypatch):
    zbar_calls = []
    monkeypatch.setattr(decoder_zbar.ZbarDecoder, "decode", lambda self, f: zbar_calls.append(f) or [])
    decoder, first, second = counted_auto()
    grey = frame(file)[1] if file else BLANK
    assert decoder.decode(grey) == []
    assert (first.calls, second.calls, len(zbar_calls)) == (1, 1, 0)


@pytest.mark.parametrize("bad", [None, "text", np.zeros(10, dtype=np.uint8), np.zeros((4, 4), dtype=np.uint8)])
def test_not_an_image_returns_nothing_without_running_a_pass(bad):
    decoder, first, second = counted_auto()
    assert decoder.decode(bad) == []
    assert (first.calls, second.calls) == (0, 0)


def test_colour_frame_is_converted_once_and_read():
    entry, grey = frame("synth/nominal/nominal_000_640x480.jpg")
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    assert auto().decode(bgr) == entry["texts"]


def test_auto_is_the_configured_default_and_builds():
    cfg = config.load(None, data={})
    assert cfg.decoder.type == "auto"
    decoder = build_decoder(cfg)
    assert decoder.name == "auto"
    assert decoder.decode(BLANK) == []

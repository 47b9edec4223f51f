"""Decoder port contract: one behavioural suite over every decoder the configuration offers and the fake.

Every decoder gets the same real images: the shared corpus (`../shared/corpus`, ground truth in its manifest)
and the bundled demo scenes. Whatever it returns is exactly the ground truth or nothing, never a wrong text;
nothing on frames without a code; grey frames and the colour (BGR) and other array forms a camera may hand
over give the same answer; a frame that is not an image gives nothing and never raises.

The fake (`fakes.TableDecoder`) is told the scenes' texts, so on them the "exact texts" check shows only that
it hands them back as a decoder would; its value here is that it behaves like the real ones everywhere else.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import TableDecoder
from kiosk import config
from kiosk.app import build_decoder
from kiosk.driver_names import DECODERS

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
SCENES = REPO / "kiosk" / "data" / "scenes"
NAMES = (*DECODERS, "table")  # every decoder a kiosk can be configured with, and the fake
# Corpus frames each decoder read when this was written, less a margin: a regression shows here. Measured
# with bench/decode.py: zxing 114, zbar 94, auto 140 of 152 positives (auto's margin: under load the time budget
# may cut a dear stage). A new decoder adds its own floor.
MIN_CORPUS_READS = {"zxing": 100, "zbar": 85, "auto": 134, "table": 0}
# Scenes a decoder may miss: pyzbar misses a dense signed-certificate code.
MAX_SCENE_MISSES = {"zxing": 0, "zbar": 1, "auto": 0, "table": 0}


def grey(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def bgr(path: Path) -> np.ndarray:
    """The image as a colour camera would hand it over (OpenCV's channel order)."""
    with Image.open(path) as img:
        return np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])


@lru_cache(maxsize=1)
def images() -> tuple[tuple[str, Path, tuple[str, ...]], ...]:
    """(name, path, ground-truth texts) of every corpus image and demo scene."""
    corpus = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["entries"]
    scenes = json.loads((SCENES / "manifest.json").read_text(encoding="utf-8"))["entries"]
    return (tuple((f"corpus/{e['file']}", CORPUS / e["file"], tuple(e["texts"])) for e in corpus)
            + tuple((f"scenes/{e['file']}", SCENES / e["file"], tuple(e["texts"])) for e in scenes))


def scene_images() -> list[tuple[str, Path, tuple[str, ...]]]:
    return [image for image in images() if image[0].startswith("scenes/")]


@lru_cache(maxsize=None)
def decoder(name: str):
    if name == "table":
        return TableDecoder((grey(path), list(texts)) for _, path, texts in scene_images() if texts)
    return build_decoder(config.load(data={"decoder": {"type": name}}))


@lru_cache(maxsize=1)
def readings() -> dict[str, dict[str, list[str]]]:
    """What every decoder returns for every image (each image loaded once)."""
    out: dict[str, dict[str, list[str]]] = {name: {} for name in NAMES}
    for image, path, _ in images():
        frame = grey(path)
        for name in NAMES:
            out[name][image] = decoder(name).decode(frame)
    return out


def test_the_images_are_there():
    kinds = [bool(texts) for _, _, texts in images()]
    assert sum(kinds) >= 150 and kinds.count(False) >= 20  # corpus positives and negatives, plus the scenes
    assert any(not t.isascii() for _, _, texts in images() for t in texts)  # Vietnamese UTF-8 among them


@pytest.mark.parametrize("name", NAMES)
def test_returns_exactly_the_ground_truth_or_nothing(name):
    wrong, read = {}, 0
    for image, _, texts in images():
        got = readings()[name][image]
        assert isinstance(got, list) and all(isinstance(t, str) for t in got), image
        if got and sorted(got) != sorted(texts):
            wrong[image] = got
        read += bool(got) and image.startswith("corpus/")
    assert wrong == {}
    assert read >= MIN_CORPUS_READS[name]


@pytest.mark.parametrize("name", NAMES)
def test_nothing_on_frames_without_a_code(name):
    negatives = [image for image, _, texts in images() if not texts]
    assert len(negatives) >= 20
    assert {image: readings()[name][image] for image in negatives if readings()[name][image]} == {}


@pytest.mark.parametrize("name", NAMES)
def test_demo_scenes_read_as_their_manifest_says(name):
    missed = [image for image, _, texts in scene_images() if texts and readings()[name][image] != list(texts)]
    assert len(missed) <= MAX_SCENE_MISSES[name], missed


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(480, 640), (720, 1280), (120, 160), (64, 64)])
@pytest.mark.parametrize("level", [0, 128, 255])
def test_blank_frames_give_nothing(name, shape, level):
    blank = np.full(shape, level, np.uint8)
    assert decoder(name).decode(blank) == []
    assert decoder(name).decode(np.repeat(blank[:, :, None], 3, axis=2)) == []


@pytest.mark.parametrize("name", NAMES)
def test_colour_and_other_array_forms_read_as_the_grey_frame(name):
    """A colour camera hands over BGR (3 or 4 channels); others uint16 or float frames: the same answer."""
    checked = 0
    for image, path, texts in scene_images():
        frame = grey(path)
        expected = readings()[name][image]
        forms = {"bgr": np.repeat(frame[:, :, None], 3, axis=2),
                 "bgra": np.dstack([frame] * 3 + [np.full_like(frame, 255)]),
                 "uint16": frame.astype(np.uint16) * 257,
                 "float": frame.astype(np.float32) / 255}
        for form, array in forms.items():
            assert decoder(name).decode(array) == expected, (image, form)
        checked += bool(expected)
    assert checked >= 10


@pytest.mark.parametrize("name", NAMES)
def test_colour_photos_give_the_ground_truth_or_nothing(name):
    """Real colour photos (the corpus's photos/ folder) converted by the decoder itself."""
    photos = [(image, path, texts) for image, path, texts in images() if image.startswith("corpus/photos/")]
    assert len(photos) >= 10
    for image, path, texts in photos:
        got = decoder(name).decode(bgr(path))
        assert got == [] or sorted(got) == sorted(texts), image


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [None, "frame", np.zeros((0, 0), np.uint8), np.zeros(100, np.uint8),
                                 np.zeros((4, 4), np.uint8), np.zeros((2, 2, 2, 2), np.uint8),
                                 np.array([[object()]]), np.full((50, 50), np.nan)],
                         ids=["none", "str", "empty", "1d", "tiny", "4d", "object", "nan"])
def test_what_is_not_an_image_gives_nothing_and_never_raises(name, bad):
    assert decoder(name).decode(bad) == []


@pytest.mark.parametrize("name", NAMES)
def test_has_a_name(name):
    assert isinstance(decoder(name).name, str) and decoder(name).name

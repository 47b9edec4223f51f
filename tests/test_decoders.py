"""zxing-cpp and pyzbar on real images: corpus samples and codes rendered here with segno. What every decoder
must do on the whole corpus and the demo scenes is the port contract (test_contract_decoders.py)."""
from __future__ import annotations

import io
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import segno
from PIL import Image

from drivers import decoder_zbar, decoder_zxing
from drivers.decoder_zbar import recover_utf8
from kiosk import config
from kiosk.errors import DeviceError

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
SCENES = REPO / "kiosk" / "data" / "scenes"
DECODERS = {"zxing": decoder_zxing.ZxingDecoder, "zbar": decoder_zbar.ZbarDecoder}


@lru_cache(maxsize=None)
def decoder(name: str):
    return DECODERS[name]()


@lru_cache(maxsize=1)
def corpus() -> tuple[dict, ...]:
    return tuple(json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["entries"])


def grey(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def entry(file: str) -> dict:
    return next(e for e in corpus() if e["file"] == file)


def qr_frame(text: str, scale: int = 4) -> np.ndarray:
    buf = io.BytesIO()
    segno.make_qr(text, error="m").save(buf, kind="png", scale=scale, border=4)
    return grey(io.BytesIO(buf.getvalue()))


# Each sample is one both decoders read; the UTF-8 ones cover zbar's three guesses: UTF-8 (kept as is),
# Shift_JIS (nominal_002, perspective_002) and ISO-8859-1 (rotation_007), each undone to the exact text.
SAMPLES = ["synth/nominal/nominal_000_640x480.jpg", "synth/nominal/nominal_002_640x480.jpg",
           "synth/nominal/nominal_007_1280x720.jpg", "synth/perspective/perspective_002_640x480.jpg",
           "synth/rotation/rotation_007_1280x720.jpg", "synth/moire/moire_007_1280x720.jpg",
           "photos/qrcode-1/1.webp", "photos/qrcode-3/01.webp"]


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("file", SAMPLES)
def test_decoders_read_the_exact_text_of_corpus_images(name, file):
    if not (CORPUS / file).exists():
        pytest.skip(f"{file} is not in this corpus")
    assert decoder(name).decode(grey(CORPUS / file)) == entry(file)["texts"]


def test_samples_include_vietnamese_utf8():
    texts = [t for f in SAMPLES if (CORPUS / f).exists() for t in entry(f)["texts"]]
    assert sum(not t.isascii() for t in texts) >= 4


def test_zbar_never_returns_mojibake_on_utf8_codes():
    utf8 = [e for e in corpus() if not all(t.isascii() for t in e["texts"])]
    assert len(utf8) >= 10
    returned = []
    for e in utf8:
        texts = decoder("zbar").decode(grey(CORPUS / e["file"]))
        assert all(t in e["texts"] for t in texts), e["file"]
        returned += texts
    assert any(not t.isascii() for t in returned)  # it does read some of them, correctly


@pytest.mark.parametrize("name", DECODERS)
def test_vietnamese_cccd_text_rendered_by_segno(name):
    text = "001195000002||Trần Thị Mẫu|15081995|Nữ|Thôn Thử, Hà Nội|20052022"
    assert decoder(name).decode(qr_frame(text)) == [text]


@pytest.mark.parametrize("name", DECODERS)
def test_control_characters_are_dropped_but_tab_cr_lf_kept(name):
    assert decoder(name).decode(qr_frame("079090000001|A\x00B|x")) == []
    assert decoder(name).decode(qr_frame("abc\x1bdef")) == []
    assert decoder(name).decode(qr_frame("line one\r\nline\ttwo\n")) == ["line one\r\nline\ttwo\n"]


# ---------------------------------------------------------------- zbar's character-set guess undone
def test_recover_utf8_undoes_shift_jis_and_latin1_guesses():
    original = "068052506826|HUỲNH NGỌC TRANG"
    sjis = original.encode("utf-8").decode("shift_jis")
    assert sjis != original
    assert recover_utf8(sjis.encode("utf-8")) == original
    latin1 = original.encode("utf-8").decode("latin-1")
    assert recover_utf8(latin1.encode("utf-8")) == original


def test_recover_utf8_keeps_correct_text_and_drops_what_it_cannot_know():
    assert recover_utf8("Trần Thị Mẫu".encode("utf-8")) == "Trần Thị Mẫu"
    assert recover_utf8(b"ASCII|ONLY") == "ASCII|ONLY"
    assert recover_utf8(b"\xff\xfe broken") is None  # not UTF-8 at all
    assert recover_utf8("Café".encode("utf-8")) == "Café"  # read as UTF-8 already; é is not Latin-1 mojibake
    assert recover_utf8("盻ｲ unrecoverable ～".encode("utf-8")) is None  # Shift_JIS leftovers


# ---------------------------------------------------------------- construction
def test_create_from_config():
    assert decoder_zxing.create(config.load(data={"decoder": {"type": "zxing"}})).name == "zxing"
    assert decoder_zbar.create(config.load(data={"decoder": {"type": "zbar"}})).name == "zbar"


def test_missing_zxing_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "zxingcpp", None)  # makes `import zxingcpp` raise ImportError
    with pytest.raises(DeviceError, match="pip install zxing-cpp"):
        decoder_zxing.ZxingDecoder()


def test_missing_zbar_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyzbar", None)
    monkeypatch.setitem(sys.modules, "pyzbar.pyzbar", None)
    with pytest.raises(DeviceError, match="apt install libzbar0"):
        decoder_zbar.ZbarDecoder()


def test_demo_scenes_decide_as_the_manifest_says_for_any_today(tmp_path):
    """Scene texts through the real decision core, with the demo roster written for a date other than
    the bundled one: the verdicts depend only on days before "today"."""
    from datetime import date, datetime, timedelta, timezone

    from kiosk.decider import Decider
    from kiosk.identity import FixedKey
    from kiosk.demo_people import demo_roster_csv
    from kiosk.stores.roster import Roster

    today = date(2030, 3, 1)
    (tmp_path / "roster.csv").write_text(demo_roster_csv(today), encoding="utf-8")
    roster = Roster(tmp_path / "roster.json")
    roster.import_csv(tmp_path / "roster.csv")
    decider = Decider(config.load(data={"site": {"mode": "health"}}), roster, FixedKey(b"k" * 32))
    now = datetime(2030, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=7)))
    manifest = json.loads((SCENES / "manifest.json").read_text(encoding="utf-8"))
    decided = [e for e in manifest["entries"] if e["texts"] and e["kind"] != "dcc"]  # certificates: test_demo
    assert {e["verdict"] for e in decided} == {"green", "black", "invalid"}
    for e in decided:
        d = decider.decide(e["texts"][0], now, True)
        assert (d.kind, d.verdict, d.reason) == (e["kind"], e["verdict"], e["reason"]), e["file"]

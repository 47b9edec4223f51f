"""kiosk.inert: control, bidi and formula characters neutralised for terminals, pages and spreadsheets."""
import csv
import io

from hypothesis import given, strategies as st

from kiosk import inert


def test_terminal_escapes_become_visible_text():
    assert inert.text("A\x1b[2JB") == "A\\x1b[2JB"                 # CSI (clear screen)
    assert inert.text("\x1b]0;owned\x07") == "\\x1b]0;owned\\x07"  # OSC (window title)
    assert inert.text("x\x9by") == "x\\x9by"                       # 8-bit CSI (C1)
    assert inert.text("a\nb\tc\rd\x00") == "a\\x0ab\\x09c\\x0dd\\x00"


def test_bidi_overrides_and_invisible_marks_become_visible():
    assert inert.text("abc\u202edcb") == "abc\\u202edcb"
    assert inert.text("\u2066x\u2069\u200f\ufeff") == "\\u2066x\\u2069\\u200f\\ufeff"


def test_ordinary_text_is_unchanged():
    for s in ("NGUYỄN VĂN THỬ", "N.V. THU", "******000001", "Müller-Lüdenscheidt", "李小龙", ""):
        assert inert.text(s) == s
    assert inert.text(None) == "" and inert.text(12) == "12"


def test_csv_cells_never_start_a_formula():
    for hostile in ("=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        cell = inert.cell(hostile)
        assert cell.startswith("'") or cell.startswith("\\"), cell
        assert not cell.startswith(inert.FORMULA_START)
    assert inert.cell("N.V. THU") == "N.V. THU"
    out = io.StringIO()
    csv.writer(out).writerow(inert.row(["=1+1", "a\x1bb", 5]))
    assert out.getvalue() == "'=1+1,a\\x1bb,5\r\n"


@given(st.text())
def test_no_unsafe_character_survives(value):
    out = inert.cell(value)
    assert not inert._UNSAFE.search(out)
    assert not out.startswith(inert.FORMULA_START)

"""Injection through the kiosk's own human-facing outputs (issue 12, item 7): a name inside a signed certificate is
free text, so the CSV export and the screens neutralise control, bidi and formula characters.

`kiosk decide`/`scan` print JSON for programs: JSON escapes what JSON must, and stays exact."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
from PIL import ImageChops

from kiosk import inert
from kiosk.model import Decision
from kiosk.screens import render
from kiosk.stores.journal import Journal

AT = datetime(2021, 11, 15, 9, 0, tzinfo=timezone(timedelta(hours=7)))
HOSTILE = {
    "formula": ("=HYPERLINK(\"http://x.invalid\")", "'=HYPERLINK(\"http://x.invalid\")"),
    "plus": ("+1-2", "'+1-2"),
    "minus": ("-2+3", "'-2+3"),
    "at": ("@SUM(A1)", "'@SUM(A1)"),
    "tab_first": ("\t=1", "\\x09=1"),
    "csi": ("\x1b[2J\x1b[31mRED", "\\x1b[2J\\x1b[31mRED"),
    "c1_csi": ("\x9b31mRED", "\\x9b31mRED"),
    "osc": ("\x1b]0;title\x07X", "\\x1b]0;title\\x07X"),
    "bidi_override": ("ABC\u202eFED", "ABC\\u202eFED"),
    "bidi_isolate": ("\u2066X\u2069", "\\u2066X\\u2069"),
    "newline": ("A\nB,C", "A\\x0aB,C"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_csv_export_writes_every_cell_inert(tmp_path, case):
    raw, shown = HOSTILE[case]
    journal = Journal(tmp_path / "journal.sqlite", site="s1", device="d1")
    journal.append(Decision(kind="dcc", verdict="green", reason="vaccinated_14d", at=AT,
                            subject={"name": raw, "id": raw}, subject_ref="ref"))
    out = io.StringIO()
    assert journal.export("csv", out) == 1
    journal.close()
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["subject_name"] == shown and row["subject_id"] == shown
    assert row["reason"] == "vaccinated_14d" and row["clock_synced"] == "True"  # ordinary cells unchanged
    assert not any(ch in out.getvalue() for ch in "\x1b\x9b\u202e\u2066\x07")


def test_jsonl_export_stays_exact_json(tmp_path):
    import json

    journal = Journal(tmp_path / "journal.sqlite", site="s1", device="d1")
    journal.append(Decision(kind="dcc", verdict="green", reason="x", at=AT, subject={"name": "=A\u202eB"}))
    out = io.StringIO()
    journal.export("jsonl", out)
    journal.close()
    assert json.loads(out.getvalue())["subject"]["name"] == "=A\u202eB"


@pytest.mark.parametrize("size, mode", [((128, 64), "1"), ((800, 480), "RGB")])
@pytest.mark.parametrize("case", ["csi", "c1_csi", "bidi_override", "bidi_isolate", "newline"])
def test_screens_show_controls_and_bidi_as_visible_escapes(size, mode, case):
    raw, _ = HOSTILE[case]

    def screen(name: str):
        return render(Decision(kind="dcc", verdict="green", reason="checked_in", screen_subject={"name": name}),
                      size, mode, "en")

    hostile, escaped = screen(raw), screen(inert.text(raw))
    assert ImageChops.difference(hostile.convert("RGB"), escaped.convert("RGB")).getbbox() is None
    assert inert.text(raw) != raw  # the escaped form differs, so the comparison above can fail

"""Roster: CSV import all-or-nothing (any delimiter, encodings named), lookups by ID and QID, the roster's own
rules (well-formed IDs, versions forward, force), the SQLite store (atomic swap, another process's import),
migration of a TinyDB roster made by the earlier code, the CLI."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import unicodedata
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.clock import FixedClock
from kiosk.codes import classify
from kiosk.errors import DataError, StorageError
from kiosk.model import Dose, HealthRecord, Person
from kiosk.stores.roster import Roster, RosterEntry

REPO = Path(__file__).resolve().parents[1]
# Written by the TinyDB roster of commit 5502819 (kiosk.stores.roster before SQLite): Roster(path).replace_all(
# parse_entries([...]), 12) at 2021-11-15T02:30Z, with an id of "1" that the earlier rules accepted.
TINYDB_ROSTER = REPO / "tests" / "data" / "roster_tinydb_v1.json"
SPEC_CSV = """id,qid,name,doses,recovered,staff
079090000001,163000000000000001,NGUYEN VAN THU,2021-11-01,,yes
,163000000000000002,TRAN THI MAU,2021-11-02:AstraZeneca,,no
001195000003,,LE VAN HO,,2021-05-20,yes
"""
THU = "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<<"


def write(tmp_path, text, name="roster.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def people(n, start=0):
    """A CSV of n people with 12-digit IDs from `start`."""
    return "id,doses\n" + "".join(f"0790900{i:05d},2021-11-01\n" for i in range(start, start + n))


@pytest.fixture
def roster(tmp_path):
    return Roster(tmp_path / "data" / "roster.sqlite")


def test_spec_example_imports_and_looks_up(roster, tmp_path):
    assert roster.count == 0 and roster.version is None and roster.updated_at is None
    assert roster.import_csv(write(tmp_path, SPEC_CSV)) == 3
    assert (roster.count, roster.version) == (3, 1)
    assert roster.updated_at.tzinfo is not None
    thu = roster.lookup(classify(THU).person)
    assert thu == RosterEntry("079090000001", "163000000000000001", "NGUYEN VAN THU",
                              HealthRecord(doses=(Dose(date(2021, 11, 1)),)), True)
    masked = classify("******000002|TRAN THI MAU|1985-**-**|0|163000000000000002|<2<<").person
    assert roster.lookup(masked).health.doses == (Dose(date(2021, 11, 2), "AstraZeneca"),)
    ho = classify("001195000003||Lê Văn Hồ|15081995|Nam|Hà Nội|20052022").person  # CCCD by ID
    assert roster.lookup(ho).health.recovered == date(2021, 5, 20)
    assert roster.lookup(ho).staff is True and roster.lookup(masked).staff is False
    assert roster.path.read_bytes()[:16] == b"SQLite format 3\x00"


def test_masked_id_never_matches_by_id_and_unknown_is_none(roster, tmp_path):
    roster.import_csv(write(tmp_path, SPEC_CSV))
    assert roster.lookup(Person(id_number="******000001")) is None
    assert roster.lookup(Person(id_number="079090000099", qid="nope")) is None
    assert roster.lookup(Person(id_number="079090000099", qid="163000000000000001")).name == "NGUYEN VAN THU"


def test_bom_any_column_order_and_reopen(tmp_path):
    path = tmp_path / "r.sqlite"
    csv_text = "staff,recovered,doses,name,qid,id\r\nyes,,2021-01-01;2021-03-01:Pfizer,,,C0000004\r\n"
    assert Roster(path).import_csv(write(tmp_path, "\ufeff" + csv_text)) == 1
    again = Roster(path)
    entry = again.lookup(Person(id_number="C0000004"))
    assert entry.staff is True and entry.health.doses == (Dose(date(2021, 1, 1)), Dose(date(2021, 3, 1), "Pfizer"))
    assert again.version == 1


# ------------------------------------------------------------------ what spreadsheets write
SEMICOLON_CSV = ('id;qid;name;doses;recovered;staff\r\n'
                 '079090000001;163000000000000001;Nguyễn Văn Thử;"2021-06-01;2021-11-01:AstraZeneca";;yes\r\n'
                 ';163000000000000002;Trần Thị Mẫu;2021-11-02;;no\r\n')


def test_a_semicolon_separated_roster_is_read(roster, tmp_path):
    """What a spreadsheet writes for "CSV" where the decimal separator is a comma (Vietnam): ';' between fields,
    a field holding ';' (several doses) in quotes."""
    assert roster.import_csv(write(tmp_path, SEMICOLON_CSV)) == 2
    thu = roster.lookup(Person(id_number="079090000001"))
    assert thu.name == "Nguyễn Văn Thử"
    assert thu.health.doses == (Dose(date(2021, 6, 1)), Dose(date(2021, 11, 1), "AstraZeneca"))
    assert roster.lookup(Person(qid="163000000000000002")).staff is False


@pytest.mark.parametrize("text,encoding", [
    ("sep=;\nID;Doses\n079090000001;2021-11-01\n", "utf-8"),          # Excel's delimiter hint, names in capitals
    ("id\tname\tdoses\n079090000001\tNguyễn Văn Thử\t2021-11-01\n", "utf-16"),  # "Unicode text": UTF-16, BOM, tabs
    ("\n\nid,doses\n079090000001,2021-11-01\n", "utf-8-sig"),          # blank lines before the header
], ids=["sep-hint", "utf16-tabs", "blank-lines-first"])
def test_other_spreadsheet_exports_are_read(roster, tmp_path, text, encoding):
    assert roster.import_csv(write(tmp_path, text, encoding=encoding)) == 1
    assert roster.lookup(Person(id_number="079090000001")).health.doses == (Dose(date(2021, 11, 1)),)


def test_a_semicolon_file_with_unquoted_doses_says_to_quote_them(roster, tmp_path):
    text = "id;doses;staff\n079090000001;2021-06-01;2021-11-01;yes\n079090000002;2021-06-01;no\n"
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, text))
    assert exc.value.problems == ["line 2: expected 3 fields, found 4 (in a ';'-separated file a field with several "
                                  "doses needs quotes: \"2021-06-01;2021-09-01\")"]


TONE_MARKS = "\u0300\u0301\u0303\u0309\u0323"  # grave, acute, tilde, hook above, dot below


def cp1258(text: str) -> bytes:
    """Vietnamese text as Windows writes it in code page 1258: a precomposed letter where the code page has one,
    else the letter and a combining tone mark."""
    out = b""
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            decomposed = unicodedata.normalize("NFD", ch)
            tone = "".join(c for c in decomposed if c in TONE_MARKS)
            letter = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in TONE_MARKS))
            out += letter.encode("cp1258") + tone.encode("cp1258")
    return out


# The well-known look of "Cộng hòa xã hội chủ nghĩa Việt Nam" typed in the legacy fonts, as bytes.
TCVN3_BYTES = "Céng hoµ x· héi chñ nghÜa ViÖt Nam".encode("cp1252")  # .VnTime (TCVN3, ABC)
VNI_BYTES = "Coäng hoøa xaõ hoäi chuû nghóa Vieät Nam".encode("cp1252")  # VNI-Times


@pytest.mark.parametrize("name,named,advice", [
    (cp1258("Nguyễn Văn Thử"), "Windows-1258", "CSV UTF-8 (Comma delimited)"),
    (cp1258("Trần Thị Mẫu Đặng Hương"), "Windows-1258", "CSV UTF-8 (Comma delimited)"),
    (TCVN3_BYTES, "TCVN3", "UniKey: Ctrl+Shift+F6, source TCVN3 (ABC)"),
    (VNI_BYTES, "VNI", "UniKey: Ctrl+Shift+F6, source VNI Windows"),
    ("José Müller Ångström".encode("latin-1"), "Latin-1", "CSV UTF-8 (Comma delimited)"),
], ids=["cp1258", "cp1258-more", "tcvn3", "vni", "latin-1"])
def test_a_legacy_encoding_is_named_with_how_to_save_as_utf8(roster, tmp_path, name, named, advice):
    data = b"id,name\n079090000001,THU\n079090000002," + name + b"\n"
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, data))
    (problem,) = exc.value.problems
    assert problem.startswith("line 3: not UTF-8: the file looks like ") and named in problem, problem
    assert advice in problem and "UTF-8" in problem
    assert roster.count == 0


def test_utf16_without_a_byte_order_mark_is_named(roster, tmp_path):
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, "id,doses\n079090000001,2021-11-01\n", encoding="utf-16-le"))
    assert exc.value.problems[0].startswith("line 1: the file is UTF-16LE without a byte-order mark; save it as UTF-8")


def test_a_bad_byte_far_into_the_file_is_found_on_its_line(roster, tmp_path):
    rows = people(30_000).encode()  # about 700 KB of good rows first
    data = rows + b"079091000000,2021-11-01\n" + b"079091000001,2021-11-01," + cp1258("Nguyễn") + b"\n"
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, data.replace(b"id,doses", b"id,doses,name")))
    assert exc.value.problems[0].startswith("line 30003: not UTF-8: the file looks like Windows-1258")


# ------------------------------------------------------------------ all or nothing, every bad line listed
def test_every_bad_line_is_listed_and_nothing_changes(roster, tmp_path):
    roster.import_csv(write(tmp_path, SPEC_CSV))
    before = roster.updated_at
    bad = ("id,qid,name,doses,recovered,staff\n"
           "079090000001,,OK,2021-11-01,,\n"
           ",,NO KEY,,,\n"
           "079090000005,,BAD DOSE,2021-13-01,,\n"
           "079090000006,,BAD STAFF,,,maybe\n"
           "079090000001,,DUPLICATE,,,\n"
           "079090000007,,SHORT ROW\n"
           "079 090,,SPACE IN ID,,2021-02-30,\n")
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, bad))
    problems = exc.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5", "line 6", "line 7", "line 8"]
    assert "needs an id or a qid" in problems[0]
    assert "doses" in problems[1] and "not a calendar date" in problems[1]
    assert "staff: expected yes, no or empty" in problems[2]
    assert "duplicate id (also on line 2)" in problems[3]
    assert "expected 6 fields, found 3" in problems[4]
    assert "id: not an ID number" in problems[5] and "recovered" in problems[5]
    assert exc.value.exit_status == 65
    assert (roster.count, roster.version, roster.updated_at) == (3, 1, before)
    assert roster.lookup(Person(id_number="079090000001")).name == "NGUYEN VAN THU"


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("   \n\n", "is empty"),
    ("id,qid,name\n", "has a header but no rows"),
    ("079090000001,163000000000000001,NGUYEN VAN THU,2021-11-01,,yes\n", "a header row is required"),
    ("id,qid,nmae,doses\n079090000001,,,\n", "unknown column 'nmae'"),
    ("id,id,name\n079090000001,079090000001,X\n", "column 'id' appears twice"),
    ("name,doses\nX,2021-01-01\n", "needs an 'id' or a 'qid' column"),
    ("id,doses\n" + "0" * (1024 * 1024 + 10), "longer than 1024 KB without a line break"),
])
def test_file_level_problems(tmp_path, text, message):
    with pytest.raises(DataError) as exc:
        Roster(tmp_path / "r.sqlite").import_csv(write(tmp_path, text))
    assert message in str(exc.value)
    assert Roster(tmp_path / "r.sqlite").count == 0


def test_rows_are_named_by_their_first_line_and_reading_goes_on_after_a_csv_error(roster, tmp_path):
    text = ("id,name,doses\n"
            '079090000001,"NGUYEN\nVAN THU",2021-13-01\n'       # lines 2-3: a quoted name over two lines
            "079090000002,HUGE," + "9" * 200_000 + "\n"          # line 4: a field over csv's size limit
            "079090000003,OK,2021-11-01\n"
            "079090000004,BAD,tomorrow\n")                       # line 6: still checked
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, text))
    problems = exc.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 4", "line 6"]
    assert "field larger than field limit" in problems[1]
    assert "9" * 100 not in str(exc.value)  # the offending value is not echoed
    assert roster.count == 0


def test_a_huge_file_is_refused_before_it_is_read(roster, tmp_path):
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as f:
        f.write(b"id,name\n")
        f.truncate(257 * 1024 * 1024)  # sparse: 257 MB of NULs without writing them
    with pytest.raises(DataError, match="larger than 256 MB: not a roster CSV, nothing imported"):
        roster.import_csv(huge)
    with pytest.raises(DataError, match="Is a directory"):
        roster.import_csv(tmp_path)
    assert roster.count == 0


def test_many_bad_lines_are_counted_and_the_listing_is_bounded(roster, tmp_path):
    text = "id,doses\n" + "".join(f"0790900{i:05d},not-a-date\n" for i in range(1000))
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, text))
    problems = exc.value.problems
    assert len(problems) == 201 and problems[0].startswith("line 2: doses:")
    assert problems[199].startswith("line 201:") and problems[-1] == "... and 800 more"


def test_duplicates_are_listed_in_line_order_with_the_other_problems_and_bounded(roster, tmp_path):
    rows = [f"0790900{i:05d},2021-11-01" for i in range(300)]
    rows[5] = "079090000002,2021-11-01"          # line 7 repeats line 4
    rows[8] = "079090000001,yesterday"           # line 10: a bad date (not a duplicate: never stored)
    rows += [f"0790900{i:05d},2021-11-01" for i in range(10, 260)]  # lines 302-551 repeat lines 12-261
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, "id,doses\n" + "\n".join(rows) + "\n"))
    problems = exc.value.problems
    assert problems[0] == "line 7: duplicate id (also on line 4)"
    assert problems[1].startswith("line 10: doses: 'yesterday' is not a date")
    assert problems[2] == "line 302: duplicate id (also on line 12)" and len(problems) == 201
    assert problems[-1] == "... and 52 more"  # 1 + 1 + 250 problems, 200 listed


def test_duplicate_qid_and_unknown_columns_are_listed_together(roster, tmp_path):
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, "id,qid,nam,dose\n1,2\n"))
    known = "(known: id, qid, name, doses, recovered, staff)"
    assert exc.value.problems == [f"line 1: unknown column 'nam' (did you mean \"name\"?) {known}",
                                  f"line 1: unknown column 'dose' (did you mean \"doses\"?) {known}"]
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, "qid,name\nQ000001,A\nQ000002,B\nQ000001,C\n"))
    assert exc.value.problems == ["line 4: duplicate qid (also on line 2)"]


# ------------------------------------------------------------------ well-formed IDs and QIDs
@pytest.mark.parametrize("value,problem", [
    ("1", "not an ID number: 1 digit, expected a CCCD (12 digits), a CMND (9 digits) or a passport number"),
    ("79090000001", "11 digits, expected a CCCD (12 digits), a CMND (9 digits) or a passport number (6-20 "
                    "upper-case letters and digits); a spreadsheet drops leading zeros: format the column as Text"),
    ("7.9009E+10", "a spreadsheet wrote it as a number in exponent form (format the column as Text"),
    ("c0000004", "the letters of a passport number are upper case"),
    ("KB-0042", "not an ID number: expected a CCCD (12 digits), a CMND (9 digits) or a passport number"),
])
def test_an_id_must_be_one_a_code_can_carry(roster, tmp_path, value, problem):
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, f"id,name\n{value},X\n"))
    (listed,) = exc.value.problems
    assert listed.startswith("line 2: id: not an ID number") and problem in listed, listed
    assert len(value) < 3 or value not in listed  # the ID itself is never echoed
    with pytest.raises(DataError):
        roster.apply({"entries": [{"id": value}]})
    assert roster.count == 0


def test_ids_of_every_document_type_and_badges_where_configured(tmp_path):
    rows = [{"id": "079090000001"}, {"id": "021000001"}, {"id": "C0000004"}, {"id": "B12345678"},
            {"qid": "163000000000000002"}]
    roster = Roster(tmp_path / "r.sqlite")
    assert roster.apply({"entries": rows}) == {"count": 5, "version": 1}
    with pytest.raises(DataError, match="row 1: qid: not a QID"):
        roster.apply({"entries": [{"qid": "1"}]})
    badges = Roster(tmp_path / "b.sqlite", badge_prefix="KB:")
    badges.apply({"entries": [{"id": "STAFF-0042", "staff": "yes"}, {"id": "079090000001"}]})
    badge = classify("KB:STAFF-0042", badge_prefix="KB:").person
    assert badges.lookup(badge).staff is True
    with pytest.raises(DataError, match="row 1: id: not an ID number: expected a CCCD .*, a badge id or"):
        badges.apply({"entries": [{"id": "STAFF 42"}]})


# ------------------------------------------------------------------ versions and force (the roster's own rules)
def test_versions_only_move_forward(roster, tmp_path):
    assert roster.apply({"op": "replace", "version": 10, "entries": [{"id": "079090000001"}]}) == \
        {"count": 1, "version": 10}
    for stale in (3, 10):
        with pytest.raises(DataError) as exc:
            roster.apply({"op": "replace", "version": stale, "entries": [{"id": "079090000002"}]})
        assert str(exc.value) == (f"roster version {stale} refused: this kiosk's roster is at version 10 and "
                                  "versions only move forward; nothing changed")
    with pytest.raises(DataError, match="at version 10"):
        roster.apply({"op": "add", "version": 9, "entries": [{"id": "079090000002"}]})
    assert roster.lookup(Person(id_number="079090000002")) is None
    assert roster.apply({"op": "add", "entries": [{"id": "079090000002"}]}) == {"count": 2, "version": 10}
    assert roster.apply({"op": "add", "version": 11, "entries": [{"id": "079090000003"}]})["version"] == 11
    assert roster.import_csv(write(tmp_path, people(2))) == 2 and roster.version == 12  # an import: current + 1
    for bad in ("7", True, -1, 1.5):
        with pytest.raises(DataError, match="'version' must be a whole number"):
            roster.apply({"version": bad, "entries": []})


def test_a_replacement_removing_most_of_the_roster_needs_force(roster, tmp_path):
    roster.import_csv(write(tmp_path, people(100)))
    half_kept = people(49) + "".join(f"0790910{i:05d},2021-11-01\n" for i in range(200))  # keeps 49 of 100
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, half_kept))
    assert str(exc.value).startswith("roster replacement refused: it would remove 51 of the 100 people on the roster "
                                     "(more than half). If that is intended, send it again with \"force\": true")
    with pytest.raises(DataError, match="would remove 100 of the 100"):
        roster.apply({"entries": [{"id": "079099999999"}]})
    with pytest.raises(DataError, match="would remove 100 of the 100"):
        roster.apply({"entries": []})
    assert (roster.count, roster.version) == (100, 1)
    assert roster.import_csv(write(tmp_path, people(50)), force=False) == 50  # removes exactly half: allowed
    assert roster.apply({"entries": [{"id": "079099999999"}], "force": True}) == {"count": 1, "version": 3}
    assert roster.apply({"entries": []}) == {"count": 0, "version": 4}  # a small roster needs no force
    with pytest.raises(DataError, match="'force' must be true or false"):
        roster.apply({"entries": [], "force": "yes"})


def test_the_downlink_roster_command(roster):
    """`{"entries": [{"id": "1"}]}` alone no longer replaces a roster, and every op checks everything first."""
    assert roster.apply({"entries": [{"id": "079090000001", "qid": "163000000000000001", "doses": "2021-11-01"},
                                     {"id": "C0000004"}]}) == {"count": 2, "version": 1}
    assert roster.apply({"op": "remove", "keys": ["C0000004", "163000000000000001", "nobody"]}) == \
        {"removed": 2, "count": 0, "version": 1}
    for bad, message in (({"entries": [{"id": "1"}]}, "row 1: id: not an ID number"),
                         ({"op": "add", "entries": [{"name": "no id or qid"}]}, "row 1: needs an id or a qid"),
                         ({"entries": "not a list"}, "'entries' must be a list"),
                         ({"op": "remove", "keys": "C0000004"}, "'keys' must be a list"),
                         ({"op": "shuffle", "entries": []}, "unknown op 'shuffle'"),
                         ({"entries": [{"id": "079090000001"}, {"id": "079090000001"}]},
                          r"row 2: duplicate id \(also on row 1\)")):
        with pytest.raises(DataError, match=message):
            roster.apply(bad)
    assert (roster.count, roster.version) == (0, 1)


def test_parse_entries_replace_upsert_remove(tmp_path):
    clock = FixedClock(datetime(2021, 11, 15, 1, tzinfo=timezone.utc))
    roster = Roster(tmp_path / "r.sqlite", clock=clock)
    entries = roster.parse_entries([
        {"id": "079090000001", "doses": ["2021-11-01", "2021-11-20:Moderna"], "staff": True},
        {"qid": "163000000000000002", "recovered": "2021-05-20", "staff": "no"},
    ])
    assert roster.replace_all(entries, 42) == 2
    assert (roster.count, roster.version, roster.updated_at.hour) == (2, 42, 1)
    clock.advance(3600)
    roster.upsert(roster.parse_entries([{"id": "079090000001", "staff": False}, {"id": "001195000003"}]))
    assert roster.count == 3 and roster.version == 42 and roster.updated_at.hour == 2
    assert roster.lookup(Person(id_number="079090000001")).staff is False
    clock.advance(3600)
    assert roster.remove(["163000000000000002", "nobody"]) == 1
    assert roster.count == 2 and roster.updated_at.hour == 3
    clock.advance(3600)
    assert roster.remove(["nobody"]) == 0 and roster.updated_at.hour == 3  # nothing changed, nothing written
    assert Roster(tmp_path / "r.sqlite").count == 2


def test_parse_entries_lists_every_bad_row(roster):
    roster_rows = [{"id": "079090000001"}, {"id": 79090000001}, "not a dict", {"idd": "x"},
                   {"qid": "a b"}, {"id": "079090000001"}]
    with pytest.raises(DataError) as exc:
        roster.parse_entries(roster_rows)
    assert [p.split(":")[0] for p in exc.value.problems] == ["row 2", "row 3", "row 4", "row 5", "row 6"]
    assert "unknown field(s) idd" in exc.value.problems[2]


def test_duplicates_in_an_update_are_refused(roster):
    entry = RosterEntry("079090000001", None, None, HealthRecord())
    with pytest.raises(DataError, match="entry 2: duplicate id"):
        roster.replace_all([entry, entry])
    with pytest.raises(DataError, match="entry 2: duplicate id"):
        roster.upsert([entry, entry])
    assert (roster.count, roster.version) == (0, None)


# ------------------------------------------------------------------ the store: atomic, shared, durable
def test_readers_keep_the_old_roster_until_the_replacement_commits(roster, tmp_path):
    """A replacement runs on another thread; the pipeline's lookups see the previous roster until the commit."""
    roster.import_csv(write(tmp_path, SPEC_CSV))
    halfway, go_on = threading.Event(), threading.Event()

    def entries():
        yield 1, RosterEntry("079090000099", None, "NEW", HealthRecord())
        halfway.set()
        go_on.wait(10)
        yield 2, RosterEntry("079090000001", None, "THU AGAIN", HealthRecord())

    worker = threading.Thread(target=lambda: roster._replace(entries(), "row", "rejected", None, False))
    worker.start()
    assert halfway.wait(10)
    assert roster.lookup(Person(id_number="079090000001")).name == "NGUYEN VAN THU"
    assert roster.lookup(Person(id_number="079090000099")) is None and roster.count == 3
    go_on.set()
    worker.join(10)
    assert roster.lookup(Person(id_number="079090000001")).name == "THU AGAIN"
    assert roster.lookup(Person(id_number="079090000099")).name == "NEW" and roster.count == 2


def test_a_running_roster_sees_another_process_import(roster, tmp_path):
    assert roster.count == 0 and roster.lookup(Person(id_number="079090000001")) is None
    config = tmp_path / "k.toml"
    config.write_text(f'[camera]\ntype = "none"\n[roster]\npath = "{roster.path}"\n')
    done = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config), "roster", "import",
                           str(write(tmp_path, SPEC_CSV))], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert roster.count == 3 and roster.lookup(Person(id_number="079090000001")) is not None


def test_a_full_disk_changes_nothing(tmp_path):
    """On a real 1 MB tmpfs: an import that does not fit fails with the reason and leaves the roster as it was."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        roster = Roster(mount / "roster.sqlite")
        roster.import_csv(write(tmp_path, SPEC_CSV))
        with pytest.raises(StorageError, match="full"):
            roster.import_csv(write(tmp_path, people(40_000), name="big.csv"), force=True)
        assert (roster.count, roster.version) == (3, 1)
        assert Roster(mount / "roster.sqlite").lookup(Person(id_number="079090000001")).name == "NGUYEN VAN THU"
        roster.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_file_that_is_not_a_roster_is_refused_with_what_to_do(tmp_path):
    path = write(tmp_path, "garbage that is no database" * 10, name="r.sqlite")
    with pytest.raises(StorageError, match="does not hold a valid roster; import the roster CSV again"):
        Roster(path)


# ------------------------------------------------------------------ migration of a TinyDB roster (earlier versions)
def test_a_tinydb_roster_made_by_the_earlier_code_is_migrated_in_place(tmp_path, caplog):
    path = tmp_path / "roster.json"
    shutil.copy(TINYDB_ROSTER, path)
    roster = Roster(path)
    assert path.read_bytes()[:16] == b"SQLite format 3\x00" and not list(tmp_path.glob(".*migrating"))
    assert (roster.count, roster.version) == (5, 12)
    assert roster.updated_at == datetime(2021, 11, 15, 2, 30, tzinfo=timezone.utc)
    thu = roster.lookup(classify(THU).person)
    assert thu == RosterEntry("079090000001", "163000000000000001", "NGUYEN VAN THU",
                              HealthRecord(doses=(Dose(date(2021, 11, 1)),)), True)
    mau = roster.lookup(Person(id_number="******000002", qid="163000000000000002"))
    assert mau.name == "TRẦN THỊ MẪU" and mau.staff is False
    assert mau.health.doses == (Dose(date(2021, 6, 1), "Sinopharm"), Dose(date(2021, 11, 2), "AstraZeneca"))
    assert roster.lookup(Person(id_number="001195000003")).health.recovered == date(2021, 5, 20)
    assert roster.lookup(Person(id_number="1")).name == "LEGACY SHORT ID"  # kept: nothing is lost
    assert "5 people; 1 have an ID or QID a new import would refuse" in caplog.text
    assert "079090000001" not in caplog.text
    caplog.clear()
    assert Roster(path).count == 5 and "migrated" not in caplog.text  # once only
    with pytest.raises(DataError, match="at version 12"):
        roster.apply({"version": 12, "entries": [{"id": "079090000001"}]})


def test_the_earlier_default_file_is_migrated_into_the_new_default_name(tmp_path):
    shutil.copy(TINYDB_ROSTER, tmp_path / "roster.json")
    roster = Roster(tmp_path / "roster.sqlite")
    assert roster.count == 5 and not (tmp_path / "roster.json").exists()
    assert Roster(tmp_path / "other.sqlite").count == 0  # only the default name takes the old default file


def test_two_processes_starting_at_once_migrate_once(tmp_path):
    path = tmp_path / "roster.json"
    shutil.copy(TINYDB_ROSTER, path)
    starts = [subprocess.Popen([sys.executable, "-c", f"from kiosk.stores.roster import Roster; "
                                f"print(Roster({str(path)!r}).count)"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in starts]
    assert [o.strip() for o, _ in outs] == ["5", "5", "5"], outs
    assert sum("roster migrated" in err for _, err in outs) == 1
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM people").fetchone() == (5,)


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],                                    # torn copy
    lambda text: text.replace('"2021-11-01"', '"2021-13-01"'),              # a date that is none
    lambda text: text.replace('"staff": true', '"staff": "maybe"', 1),     # a wrong type
], ids=["torn", "bad-date", "bad-type"])
def test_a_damaged_tinydb_roster_is_refused_and_left_as_it_was(tmp_path, damage):
    path = tmp_path / "roster.json"
    path.write_text(damage(TINYDB_ROSTER.read_text(encoding="utf-8")), encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(StorageError, match="does not hold a valid roster; import the roster CSV again"):
        Roster(path)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*migrating"))


# ------------------------------------------------------------------ the CLI
def test_roster_cli_import_and_show(tmp_path, capsys):
    config = tmp_path / "k.toml"
    config.write_text('[camera]\ntype = "none"\n[roster]\npath = "roster.sqlite"\n')
    assert main(["roster", "import", str(write(tmp_path, SPEC_CSV)), "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == {"imported": 3, "version": 1}
    assert main(["--config", str(config), "roster", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["count"], shown["version"]) == (3, 1) and datetime.fromisoformat(shown["updated_at"])
    assert "0790" not in json.dumps(shown)


def test_roster_cli_force(tmp_path, capsys):
    config = tmp_path / "k.toml"
    config.write_text('[camera]\ntype = "none"\n[roster]\npath = "roster.sqlite"\n')
    assert main(["roster", "import", str(write(tmp_path, people(60))), "--config", str(config)]) == 0
    capsys.readouterr()
    small = write(tmp_path, people(5), name="small.csv")
    assert main(["roster", "import", str(small), "--config", str(config)]) == 65
    assert "would remove 55 of the 60 people" in capsys.readouterr().err
    assert main(["roster", "import", str(small), "--force", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == {"imported": 5, "version": 2}


def test_roster_cli_bad_file_exits_65_listing_lines(tmp_path):
    config = tmp_path / "k.toml"
    config.write_text('[camera]\ntype = "none"\n[roster]\npath = "roster.sqlite"\n')
    bad = write(tmp_path, "id,doses\n079090000001,yesterday\n079090000002,2021-11-01\n,\n1,2,3\n")
    done = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config), "roster", "import", str(bad)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 65
    assert "line 2: doses:" in done.stderr and "line 5: expected 2 fields, found 3" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert Roster(tmp_path / "roster.sqlite").count == 0


# ------------------------------------------------------------------ a large command, applied in a child process
def test_a_large_command_is_applied_in_a_child_process_with_the_same_answers(tmp_path, monkeypatch):
    from kiosk.stores.roster_apply import CHILD_MIN_ROWS

    roster = Roster(tmp_path / "r.sqlite")
    in_process = []
    real = roster.apply
    roster.apply = lambda payload: in_process.append(len(payload.get("entries") or [])) or real(payload)
    rows = [{"id": f"0790900{i:05d}", "doses": "2021-11-01", "staff": "yes"} for i in range(CHILD_MIN_ROWS + 500)]
    assert roster.apply_isolated({"id": "c1", "version": 4, "entries": rows}) == {"count": 2500, "version": 4}
    assert in_process == [] and roster.lookup(Person(id_number="079090002499")).staff is True
    assert roster.apply_isolated({"op": "add", "entries": [{"id": "C0000004"}]}) == {"count": 2501, "version": 4}
    assert in_process == [1]  # a small one is applied here
    twin = Roster(tmp_path / "twin.sqlite")
    twin.apply({"version": 4, "entries": rows})
    for bad in ({"version": 5, "entries": rows[:1000] + [{"id": "1"}] + rows[1000:]},   # one bad row
                {"version": 3, "entries": rows}):                                      # an old version
        with pytest.raises(DataError) as here:
            twin.apply(bad)
        with pytest.raises(DataError) as child:
            roster.apply_isolated(bad)
        assert str(child.value) == str(here.value) and in_process == [1]
    assert (roster.count, roster.version) == (2501, 4)

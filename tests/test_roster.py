"""Roster: CSV import all-or-nothing, lookups by ID and QID, atomic MQTT-style updates, the CLI."""
import errno
import json
import os
import subprocess
import sys
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
SPEC_CSV = """id,qid,name,doses,recovered,staff
079090000001,163000000000000001,NGUYEN VAN THU,2021-11-01,,yes
,163000000000000002,TRAN THI MAU,2021-11-02:AstraZeneca,,no
001195000003,,LE VAN HO,,2021-05-20,yes
"""


def write(tmp_path, text, name="roster.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def roster(tmp_path):
    return Roster(tmp_path / "data" / "roster.json")


def test_spec_example_imports_and_looks_up(roster, tmp_path):
    assert roster.count == 0 and roster.version is None and roster.updated_at is None
    assert roster.import_csv(write(tmp_path, SPEC_CSV)) == 3
    assert (roster.count, roster.version) == (3, 1)
    assert roster.updated_at.tzinfo is not None
    thu = roster.lookup(classify("079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<<").person)
    assert thu == RosterEntry("079090000001", "163000000000000001", "NGUYEN VAN THU",
                              HealthRecord(doses=(Dose(date(2021, 11, 1)),)), True)
    masked = classify("******000002|TRAN THI MAU|1985-**-**|0|163000000000000002|<2<<").person
    assert roster.lookup(masked).health.doses == (Dose(date(2021, 11, 2), "AstraZeneca"),)
    ho = classify("001195000003||Lê Văn Hồ|15081995|Nam|Hà Nội|20052022").person  # CCCD by ID
    assert roster.lookup(ho).health.recovered == date(2021, 5, 20)
    assert roster.lookup(ho).staff is True and roster.lookup(masked).staff is False


def test_masked_id_never_matches_by_id_and_unknown_is_none(roster, tmp_path):
    roster.import_csv(write(tmp_path, SPEC_CSV))
    assert roster.lookup(Person(id_number="******000001")) is None
    assert roster.lookup(Person(id_number="079090000099", qid="nope")) is None
    assert roster.lookup(Person(id_number="079090000099", qid="163000000000000001")).name == "NGUYEN VAN THU"


def test_bom_any_column_order_and_reopen(tmp_path):
    path = tmp_path / "r.json"
    csv_text = "staff,recovered,doses,name,qid,id\r\nyes,,2021-01-01;2021-03-01:Pfizer,,,C0000004\r\n"
    assert Roster(path).import_csv(write(tmp_path, "\ufeff" + csv_text)) == 1
    again = Roster(path)
    entry = again.lookup(Person(id_number="C0000004"))
    assert entry.staff is True and entry.health.doses == (Dose(date(2021, 1, 1)), Dose(date(2021, 3, 1), "Pfizer"))
    assert again.version == 1


def test_every_bad_line_is_listed_and_nothing_changes(roster, tmp_path):
    roster.import_csv(write(tmp_path, SPEC_CSV))
    before = roster.path.read_bytes()
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
    assert roster.path.read_bytes() == before and roster.count == 3 and roster.version == 1


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("   \n\n", "is empty"),
    ("id,qid,name\n", "has a header but no rows"),
    ("079090000001,163000000000000001,NGUYEN VAN THU,2021-11-01,,yes\n", "a header row is required"),
    ("id,qid,nmae,doses\n1234567,,,\n", "unknown column 'nmae'"),
    ("id,id,name\n1234567,1234567,X\n", "column 'id' appears twice"),
    ("name,doses\nX,2021-01-01\n", "needs an 'id' or a 'qid' column"),
])
def test_file_level_problems(tmp_path, text, message):
    with pytest.raises(DataError) as exc:
        Roster(tmp_path / "r.json").import_csv(write(tmp_path, text))
    assert message in str(exc.value)
    assert not (tmp_path / "r.json").exists() or Roster(tmp_path / "r.json").count == 0


def test_not_utf8_is_rejected_with_its_line(tmp_path):
    path = write(tmp_path, "id,name\n079090000001,Nguyên\n", encoding="latin-1")
    with pytest.raises(DataError) as exc:
        Roster(tmp_path / "r.json").import_csv(path)
    assert exc.value.problems == ["line 2: not UTF-8 (save the file as UTF-8)"]


def test_parse_entries_replace_upsert_remove(tmp_path):
    clock = FixedClock(datetime(2021, 11, 15, 1, tzinfo=timezone.utc))
    roster = Roster(tmp_path / "r.json", clock=clock)
    entries = roster.parse_entries([
        {"id": "079090000001", "doses": ["2021-11-01", "2021-11-20:Moderna"], "staff": True},
        {"qid": "163000000000000002", "recovered": "2021-05-20", "staff": "no"},
    ])
    roster.replace_all(entries, 42)
    assert (roster.count, roster.version, roster.updated_at.hour) == (2, 42, 1)
    clock.advance(3600)
    roster.upsert(roster.parse_entries([{"id": "079090000001", "staff": False}, {"id": "001195000003"}]))
    assert roster.count == 3 and roster.version == 42 and roster.updated_at.hour == 2
    assert roster.lookup(Person(id_number="079090000001")).staff is False
    clock.advance(3600)
    assert roster.remove(["163000000000000002", "nobody"]) == 1
    assert roster.count == 2 and roster.updated_at.hour == 3
    assert roster.remove(["nobody"]) == 0  # nothing to write
    assert Roster(tmp_path / "r.json").count == 2


def test_parse_entries_lists_every_bad_row():
    roster_rows = [{"id": "079090000001"}, {"id": 79090000001}, "not a dict", {"idd": "x"},
                   {"qid": "a b"}, {"id": "079090000001"}]
    with pytest.raises(DataError) as exc:
        Roster.parse_entries(roster_rows)
    assert [p.split(":")[0] for p in exc.value.problems] == ["row 2", "row 3", "row 4", "row 5", "row 6"]
    assert "unknown field(s) idd" in exc.value.problems[2]


def test_duplicates_in_an_update_are_refused(roster):
    entry = RosterEntry("079090000001", None, None, HealthRecord())
    with pytest.raises(DataError):
        roster.replace_all([entry, entry], None)
    assert roster.count == 0 and not roster.path.exists()


def test_a_failed_write_changes_nothing(roster, tmp_path, monkeypatch):
    roster.import_csv(write(tmp_path, SPEC_CSV))
    before = roster.path.read_bytes()

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("kiosk.stores.documents.os.replace", disk_full)  # the disk fills up at the rename
    with pytest.raises(StorageError, match="No space left"):
        roster.upsert(roster.parse_entries([{"id": "1234567"}]))
    assert roster.count == 3 and roster.lookup(Person(id_number="1234567")) is None
    assert roster.path.read_bytes() == before and not list(roster.path.parent.glob(".*.tmp"))


def test_a_running_roster_sees_another_process_import(roster, tmp_path):
    assert roster.count == 0
    Roster(roster.path).import_csv(write(tmp_path, SPEC_CSV))  # e.g. `kiosk roster import` beside the service
    assert roster.count == 3 and roster.lookup(Person(id_number="079090000001")) is not None


def test_roster_cli_import_and_show(tmp_path, capsys):
    config = tmp_path / "k.toml"
    config.write_text('[camera]\ntype = "none"\n[roster]\npath = "roster.json"\n')
    assert main(["roster", "import", str(write(tmp_path, SPEC_CSV)), "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == {"imported": 3, "version": 1}
    assert main(["--config", str(config), "roster", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["count"], shown["version"]) == (3, 1) and datetime.fromisoformat(shown["updated_at"])
    assert "0790" not in json.dumps(shown)


def test_roster_cli_bad_file_exits_65_listing_lines(tmp_path):
    config = tmp_path / "k.toml"
    config.write_text('[camera]\ntype = "none"\n[roster]\npath = "roster.json"\n')
    bad = write(tmp_path, "id,doses\n079090000001,yesterday\n079090000002,2021-11-01\n,\n1,2,3\n")
    done = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config), "roster", "import", str(bad)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 65
    assert "line 2: doses:" in done.stderr and "line 5: expected 2 fields, found 3" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "roster.json").exists() or Roster(tmp_path / "roster.json").count == 0


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
    assert roster.count == 0 and not roster.path.exists()


def test_a_huge_file_is_refused_before_it_is_read(roster, tmp_path):
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as f:
        f.write(b"id,name\n")
        f.truncate(65 * 1024 * 1024)  # sparse: 65 MB of NULs without writing them
    with pytest.raises(DataError, match="larger than 64 MB: not a roster CSV, nothing imported"):
        roster.import_csv(huge)
    with pytest.raises(DataError, match="Is a directory"):
        roster.import_csv(tmp_path)
    assert roster.count == 0


def test_many_bad_lines_are_all_counted(roster, tmp_path):
    text = "id,doses\n" + "".join(f"0790900{i:05d},not-a-date\n" for i in range(1000))
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, text))
    problems = exc.value.problems
    assert len(problems) == 201 and problems[0].startswith("line 2: doses:")
    assert problems[199].startswith("line 201:") and problems[-1] == "... and 800 more"


def test_duplicate_qid_and_unknown_columns_are_listed_together(roster, tmp_path):
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, "id,qid,nam,dose\n1,2\n"))
    known = "(known: id, qid, name, doses, recovered, staff)"
    assert exc.value.problems == [f"line 1: unknown column 'nam' (did you mean \"name\"?) {known}",
                                  f"line 1: unknown column 'dose' (did you mean \"doses\"?) {known}"]
    with pytest.raises(DataError) as exc:
        roster.import_csv(write(tmp_path, "qid,name\nQ1,A\nQ2,B\nQ1,C\n"))
    assert exc.value.problems == ["line 4: duplicate qid (also on line 2)"]

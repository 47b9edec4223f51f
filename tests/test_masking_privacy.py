"""What is published about a person leaves at least a million candidates for the identity its subject_ref hashes
(issue 12, item 1), for every code type; computed from the masking rules by kiosk.idspace, and checked where the
masked subject flows: decisions, the journal, MQTT events, CSV exports and screens."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import date, datetime, timedelta, timezone

import pytest

from conftest import trusting
from kiosk import config, idspace
from kiosk.cli import main
from kiosk.codes import classify
from kiosk.codes.dcc import DccVerifier
from kiosk.decider import Decider
from kiosk.identity import FixedKey
from kiosk.issuing import health_certificate, new_signer, sign_hc1
from kiosk.stores.checkins import SELECT_EVENTS, event_from_row
from kiosk.stores.journal import Journal

SITE = timezone(timedelta(hours=7))
NOW = datetime(2021, 11, 15, 9, 0, tzinfo=SITE)
SIGNER = new_signer()


def hc1(dob: str) -> str:
    cert = health_certificate("NGUYEN VAN THU", dob, doses=[(date(2021, 10, 1), None)])
    return sign_hc1(SIGNER, cert, iat=NOW - timedelta(days=1), exp=NOW + timedelta(days=30))


CODES = {
    "personal_qr, CCCD number": "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<DN4790000000001<0900000001",
    "personal_qr, published example": "001093029317|NGUYEN LE KHA HAN|1987-01-18|0|162979388586171100|<1<HS4010120878821<0944713700",
    "personal_qr, masked ID (QID)": "******000002|TRAN THI MAU|1985-**-**|0|163000000000000002|<2<DN479*******<0900******",
    "personal_qr, proxy": "001195000003|LE VAN HO|1995-08-15|1|163000000000000003|163000000000000099<0<<",
    "personal_qr, passport": "C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|",
    "personal_qr, CMND": "021000001|NGUYEN VAN CU|1960-03-04|0|163000000000000005|<1<<",
    "cccd": "079090000001|021000001|Nguyễn Văn Thử|01121990|Nam|Số 1 Đường Thử, Quận 1, TP Hồ Chí Minh|15042021",
    "cccd, female, no old ID": "001195000002||Trần Thị Mẫu|15081995|Nữ|Thôn Thử, Hà Nội|20052022",
    "cccd, year-only birth": "038060000003||Lê Văn Cũ|1960|Nam|Thanh Hóa|10012022",
    "dcc": hc1("1990-12-01"),
    "dcc, birth year only": hc1("1990"),
    "dcc, no birth date": hc1(""),
}


@pytest.fixture
def decide(tmp_path):
    cfg = config.load(data={"camera": {"type": "none"}, "site": {"mode": "trace"},
                            "journal": {"path": str(tmp_path / "journal.sqlite")}, "codes": {"badge_prefix": "KB:"}})
    verifier = DccVerifier(trusting(tmp_path / "trust.json", SIGNER))
    decider = Decider(cfg, None, FixedKey(b"k" * 32), dcc=verifier)

    def run(text):
        decision = decider.decide(text, NOW, True)
        key = classify(text, badge_prefix="KB:", dcc=verifier, now=NOW).person.identity_key()
        return decision, key.split(":")[0] if key else None
    return run


@pytest.mark.parametrize("name", sorted(CODES))
def test_everything_published_leaves_a_million_candidates(decide, name):
    decision, identity = decide(CODES[name])
    assert decision.verdict == "green"
    if identity is None:  # a holder without a date of birth has no identity to hash: nothing to guess
        assert decision.subject_ref is None and decision.subject == {}
        return
    count = idspace.candidates(identity, decision.subject, NOW.date())
    assert count >= idspace.MIN_CANDIDATES, (name, decision.subject, count)
    assert "birth" not in decision.subject  # no rule needs it


def test_the_count_fails_for_the_spec_default_masking():
    """The spec's masking (last 6 digits, birth year, gender) leaves one candidate once the province is known
    (63 without): what the count is there to catch."""
    spec_default = {"id": "******000001", "name": "N.V. THU", "birth": "1990-**-**", "gender": "male"}
    assert idspace.candidates("id", spec_default, NOW.date()) == 1
    assert idspace.candidates("id", {**spec_default, "id": "*********001"}, NOW.date()) == 1000  # 3 digits, birth
    assert idspace.candidates("holder", {"name": "N.V. THU", "birth": "1990-**-**"}, NOW.date()) < 1000


def test_a_badge_publishes_nothing_of_its_number(decide):
    decision, identity = decide("KB:STAFF-0042")
    assert decision.kind == "badge" and decision.subject == {} and identity == "id"


@pytest.mark.parametrize("name", sorted(CODES))
def test_no_qid_phone_insurance_or_card_field_is_published(decide, name):
    decision, _ = decide(CODES[name])
    published = json.dumps([decision.to_json(), decision.screen_subject], ensure_ascii=False)
    for secret in ("163000000000000", "162979388586171100", "0900000001", "0944713700", "DN479", "HS401",
                   "021000001", "Đường", "Thôn", "Hà Nội", "2021-04-15", "000001", "000002", "1990", "1985", "1960"):
        assert secret not in published, (name, secret)


def test_every_place_the_masked_subject_flows(tmp_path, capsys):
    """The demo through the real pipeline: journal rows, the MQTT event form, the CSV export and the screens."""
    sets = [f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
            f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens", "mqtt.port=1"]
    argv = ["demo", "--drain-seconds", "0"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    db.row_factory = sqlite3.Row
    events = [event_from_row(row) for row in db.execute(f"{SELECT_EVENTS} ORDER BY seq")]
    db.close()
    journal = Journal(tmp_path / "journal.sqlite", site="s", device="d")
    out = io.StringIO()
    journal.export("csv", out)
    journal.close()
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(events) == len(rows) > 0 and {e["kind"] for e in events} >= {"personal_qr", "cccd", "dcc"}
    for event, row in zip(events, rows):
        subject = event["subject"]
        assert set(subject) <= {"id", "name", "gender"} and not row["subject_birth"]
        if event["kind"] == "dcc":
            assert subject == {} and not row["subject_name"]
        if "id" in subject:
            assert len(subject["id"].lstrip("*")) <= 2 and row["subject_id"] == subject["id"]
            assert idspace.candidates("id", subject, NOW.date()) >= idspace.MIN_CANDIDATES
    for line in printed:
        assert "birth" not in line.get("subject", {})


def test_check_ins_journaled_under_the_old_masking_are_remasked_once(tmp_path):
    from kiosk.stores.checkins import INSERT

    path = tmp_path / "journal.sqlite"
    Journal(path, site="s", device="d").close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'masking'")  # as a journal written before the upgrade
    old = {"personal_qr": {"id": "******000001", "name": "N.V. THU", "birth": "1990-**-**", "gender": "male"},
           "cccd": {"id": "******000002", "name": "T.T. Mẫu", "birth": "1995-**-**", "gender": "female"},
           "dcc": {"name": "N.V. THU", "birth": "1990-**-**"}, "badge": {"id": "******0042"}}
    authorised = {"id": "079090000001", "name": "NGUYEN VAN THU", "birth": "1990-12-01", "gender": "male"}
    rows = [(kind, subject) for kind, subject in old.items()] + [("personal_qr", authorised)]
    for i, (kind, subject) in enumerate(rows):
        db.execute(INSERT, (NOW.isoformat(), NOW.timestamp(), 1, "s", "d", "in", "trace", kind, "green",
                            "checked_in", json.dumps(subject), f"ref{i}", 0, 1.0))
    db.commit()
    db.close()
    journal = Journal(path, site="s", device="d")
    out = io.StringIO()
    journal.export("jsonl", out)
    journal.close()
    subjects = [json.loads(line)["subject"] for line in out.getvalue().splitlines()]
    assert subjects == [{"id": "**********01", "name": "N.V. THU", "gender": "male"},
                        {"id": "**********02", "name": "T.T. Mẫu", "gender": "female"}, {}, {}, authorised]
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'masking'").fetchone() == ("2",)
    db.execute("UPDATE checkins SET subject = ? WHERE seq = 1", (json.dumps(old["personal_qr"]),))
    db.commit()
    db.close()
    Journal(path, site="s", device="d").close()  # done once: a later open does not scan again
    db = sqlite3.connect(path)
    assert json.loads(db.execute("SELECT subject FROM checkins WHERE seq = 1").fetchone()[0]) == old["personal_qr"]
    db.close()

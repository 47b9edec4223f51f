"""Dates of birth in every code type (issue 12, item 13): one in the future, or an impossible one such as
30 February, is `malformed`, never a valid code; today's date and a month or year that has begun are fine.

Decided in `trace` mode, where any well-formed code is green: a bad date must not pass as one."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from conftest import trusting
from kiosk import config
from kiosk.codes.dcc import DccVerifier
from kiosk.decider import Decider
from kiosk.identity import FixedKey
from kiosk.issuing import health_certificate, new_signer, sign_hc1

SITE = timezone(timedelta(hours=7))
NOW = datetime(2021, 11, 15, 9, 0, tzinfo=SITE)
SIGNER = new_signer()


def personal_qr(birth: str) -> str:
    return f"079090000001|NGUYEN VAN THU|{birth}|0|163000000000000001|<1<<"


def cccd(birth: str) -> str:
    return f"079090000001||Nguyễn Văn Thử|{birth}|Nam|Hà Nội|15042021"


def dcc(birth: str) -> str:
    cert = health_certificate("NGUYEN VAN THU", birth, doses=[(date(2021, 10, 1), None)])
    return sign_hc1(SIGNER, cert, iat=NOW - timedelta(days=1), exp=NOW + timedelta(days=30))


# (code type, a future date, an impossible date, today, a partial date that has begun, the same partial ahead)
CASES = {
    "personal_qr": (personal_qr, "2030-01-01", "2000-02-30", "2021-11-15", "2021-**-**", "2022-**-**"),
    "cccd": (cccd, "01012030", "30022000", "15112021", "112021", "122021"),
    "dcc": (dcc, "2030-01-01", "2000-02-30", "2021-11-15", "2021-11", "2021-12"),
}


@pytest.fixture
def decide(tmp_path):
    cfg = config.load(data={"camera": {"type": "none"}, "site": {"mode": "trace"},
                            "journal": {"path": str(tmp_path / "journal.sqlite")}})
    decider = Decider(cfg, None, FixedKey(b"k" * 32), dcc=DccVerifier(trusting(tmp_path / "trust.json", SIGNER)))
    return lambda text, now=NOW: decider.decide(text, now, True)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_future_and_impossible_births_are_malformed(decide, kind):
    make, future, impossible, today, begun, ahead = CASES[kind]
    for birth in (future, impossible, ahead):
        decision = decide(make(birth))
        assert (decision.kind, decision.verdict, decision.reason) == (kind, "invalid", "malformed"), birth
        assert decision.subject == {} and decision.subject_ref is None
    for birth in (today, begun):
        decision = decide(make(birth))
        assert (decision.kind, decision.verdict, decision.reason) == (kind, "green", "checked_in"), birth


@pytest.mark.parametrize("kind", sorted(CASES))
def test_tomorrow_is_in_the_future_by_the_site_date(decide, kind):
    make, *_ = CASES[kind]
    tomorrow = NOW.date() + timedelta(days=1)
    birth = {"personal_qr": tomorrow.isoformat(), "cccd": tomorrow.strftime("%d%m%Y"), "dcc": tomorrow.isoformat()}
    assert decide(make(birth[kind])).reason == "malformed"
    # 17:30 UTC on the 15th is already the 16th in Ho Chi Minh City: born "tomorrow" in UTC is today there
    late = datetime(2021, 11, 15, 17, 30, tzinfo=timezone.utc)
    assert decide(make(birth[kind]), late).verdict == "green"

"""Decisions per site mode (spec sections 5-7), fail policy, masking in decisions, subject_ref, debounce."""
import logging
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import ManualTime, StubDcc
from kiosk import config
from kiosk.debounce import Debouncer
from kiosk.decider import Decider
from kiosk.identity import FixedKey, subject_ref
from kiosk.model import BLACK, CCCD, DCC, GREEN, INVALID, PERSONAL_QR, UNKNOWN, Dose, HealthRecord, ParsedCode, Person
from kiosk.stores.roster import Roster

SITE = timezone(timedelta(hours=7))
NOW = datetime(2021, 11, 15, 9, 0, tzinfo=SITE)  # spec section 7: today = 2021-11-15
KEY = b"k" * 32

THU = "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<DN4790000000001<0900000001"
MAU_MASKED = "******000002|TRAN THI MAU|1985-**-**|0|163000000000000002|<2<DN479*******<0900******"
HO = "001195000003|LE VAN HO|1995-08-15|1|163000000000000003|163000000000000099<0<<"
KHACH = "C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|"
THU_CCCD = "079090000001|021000001|Nguyễn Văn Thử|01121990|Nam|Số 1 Đường Thử, Quận 1, TP Hồ Chí Minh|15042021\r"
ROSTER_CSV = """id,qid,name,doses,recovered,staff
079090000001,163000000000000001,NGUYEN VAN THU,2021-11-01,,yes
,163000000000000002,TRAN THI MAU,2021-11-02:AstraZeneca,,no
001195000003,,LE VAN HO,,2021-05-20,yes
C0000004,,PHAM MINH KHACH,,2021-05-19,
"""


def make_cfg(tmp_path, mode="health", **site):
    return config.load(data={"camera": {"type": "none"}, "site": {"mode": mode, **site},
                             "journal": {"path": str(tmp_path / "journal.sqlite")},
                             "codes": {"badge_prefix": "KB:"}})


@pytest.fixture
def roster(tmp_path):
    r = Roster(tmp_path / "roster.sqlite", badge_prefix="KB:")  # the site's badges (make_cfg) are roster IDs
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER_CSV + "KB-0042,,GUARD,2021-10-01,,yes\n", encoding="utf-8")
    r.import_csv(path)
    return r


def decider(tmp_path, roster, mode="health", dcc=None, **site):
    return Decider(make_cfg(tmp_path, mode, **site), roster, FixedKey(KEY), dcc=dcc)


def signed(health, name="NGUYEN VAN THU"):
    return StubDcc(ParsedCode(DCC, person=Person(name=name, birth="1990-12-01", health=health)))


# ------------------------------------------------------------------ health mode: spec section 7 table
@pytest.mark.parametrize("text,verdict,reason", [
    (THU, GREEN, "vaccinated_14d"),          # dose 2021-11-01: 14 days
    (MAU_MASKED, BLACK, "dose_too_recent"),  # dose 2021-11-02: 13 days, looked up by QID
    (HO, GREEN, "recovered_180d"),           # recovered 2021-05-20: 179 days
    (KHACH, BLACK, "recovery_too_old"),      # recovered 2021-05-19: 180 days
    ("079090000099|NGUYEN VAN MOI|1990-12-01|0|163000000000000099|", BLACK, "no_health_data"),  # not in roster
    (THU_CCCD, GREEN, "vaccinated_14d"),     # a CCCD is looked up by its ID
    ("KB:KB-0042", GREEN, "vaccinated_14d"),
], ids=["dose-14d", "dose-13d-masked", "recovered-179d", "recovered-180d", "not-in-roster", "cccd", "badge"])
def test_health_mode_spec_table(tmp_path, roster, text, verdict, reason):
    d = decider(tmp_path, roster).decide(text, NOW, True)
    assert (d.verdict, d.reason) == (verdict, reason)
    assert d.mode == "health" and d.direction == "in" and d.at == NOW and d.clock_synced


def test_personal_qr_alone_is_never_green(tmp_path):
    d = decider(tmp_path, None).decide(THU, NOW, True)
    assert (d.kind, d.verdict, d.reason) == (PERSONAL_QR, BLACK, "no_roster")


@pytest.mark.parametrize("text,kind,reason", [
    ("079090000006|NGUYEN VAN THU|1990-12-01|0|163000000000000006", UNKNOWN, "unrecognised"),
    ("079090000007|NGUYEN VAN THU|1990-12-01|2|163000000000000007|<1<<", UNKNOWN, "unrecognised"),
    ("079090000009|NGUYEN VAN THU|01/12/1990|0|163000000000000009|<1<<", PERSONAL_QR, "malformed"),
    ("001099000004||Nguyễn Văn A|31022000|Nam|Hà Nội|01012021", CCCD, "malformed"),
    ("x" * 5000, UNKNOWN, "too_long"),
    ("HC1:6BFOXN", DCC, "unsupported"),
])
@pytest.mark.parametrize("mode", ["trace", "health", "staff"])
def test_invalid_codes_in_every_mode(tmp_path, roster, text, kind, reason, mode):
    d = decider(tmp_path, roster, mode).decide(text, NOW, True)
    assert (d.kind, d.verdict, d.reason) == (kind, INVALID, reason)
    assert d.subject == {} and d.subject_ref is None


# ------------------------------------------------------------------ trace and staff modes
@pytest.mark.parametrize("text", [THU, MAU_MASKED, THU_CCCD, "KB:KB-0042", "KB:NOT-ON-ROSTER"])
def test_trace_mode_checks_in_any_well_formed_code(tmp_path, text):
    d = decider(tmp_path, None, "trace").decide(text, NOW, False)  # no date rule: the clock does not matter
    assert (d.verdict, d.reason, d.clock_synced) == (GREEN, "checked_in", False)


@pytest.mark.parametrize("text,requires_health,verdict,reason", [
    (THU, False, GREEN, "on_staff_list"),
    (MAU_MASKED, False, BLACK, "not_on_staff_list"),    # staff = no
    (KHACH, False, BLACK, "not_on_staff_list"),         # staff empty
    ("079090000099|NGUYEN VAN MOI|1990-12-01|0|163000000000000099|", False, BLACK, "not_on_staff_list"),
    (THU, True, GREEN, "vaccinated_14d"),
    (HO, True, GREEN, "recovered_180d"),
    (MAU_MASKED, True, BLACK, "not_on_staff_list"),
])
def test_staff_mode(tmp_path, roster, text, requires_health, verdict, reason):
    d = decider(tmp_path, roster, "staff", staff_requires_health=requires_health).decide(text, NOW, True)
    assert (d.verdict, d.reason, d.mode) == (verdict, reason, "staff")


def test_staff_mode_needs_a_roster(tmp_path):
    assert decider(tmp_path, None, "staff").decide(THU, NOW, True).reason == "no_roster"


# ------------------------------------------------------------------ signed certificates
def test_dcc_uses_its_own_signed_health_data_not_the_roster(tmp_path, roster):
    dcc = signed(HealthRecord(doses=(Dose(date(2021, 11, 2)),)))
    d = decider(tmp_path, roster, dcc=dcc).decide("HC1:ANY", NOW, True)
    assert (d.kind, d.verdict, d.reason) == (DCC, BLACK, "dose_too_recent")
    assert d.subject == {} and d.screen_subject == {"name": "THU"}  # a holder's identity is name and birth
    # the holder (name and birth date) is traceable across certificates, and is not the roster's Thu
    later = signed(HealthRecord(doses=(Dose(date(2021, 11, 2)), Dose(date(2021, 12, 1)))))
    assert d.subject_ref and decider(tmp_path, roster, dcc=later).decide("HC1:ANY", NOW, True).subject_ref == d.subject_ref
    assert d.subject_ref != decider(tmp_path, roster).decide(THU, NOW, True).subject_ref
    green = decider(tmp_path, None, dcc=signed(HealthRecord(recovered=date(2021, 9, 1)))).decide("HC1:X", NOW, True)
    assert (green.verdict, green.reason) == (GREEN, "recovered_180d")
    assert decider(tmp_path, None, "trace", dcc=dcc).decide("HC1:X", NOW, True).reason == "checked_in"


def test_dcc_verification_failures_are_invalid(tmp_path):
    d = decider(tmp_path, None, dcc=StubDcc(ParsedCode(DCC, error="bad_signature"))).decide("HC1:X", NOW, True)
    assert (d.verdict, d.reason) == (INVALID, "bad_signature")
    expired = StubDcc(ParsedCode(DCC, error="expired"))
    assert decider(tmp_path, None, dcc=expired).decide("HC1:X", NOW, True).reason == "expired"
    unsynced = decider(tmp_path, None, dcc=expired).decide("HC1:X", NOW, False)
    assert (unsynced.verdict, unsynced.reason) == (BLACK, "clock_unsynced")  # the clock may be what is wrong


# ------------------------------------------------------------------ fail policy
@pytest.mark.parametrize("policy", ["black", "green"])
def test_stale_sources_and_unsynced_clock_follow_the_fail_policy(tmp_path, roster, policy):
    d = decider(tmp_path, roster, fail_policy=policy)
    assert (d.decide(THU, NOW, True, roster_stale=True).verdict, d.decide(THU, NOW, True, roster_stale=True).reason) \
        == (policy, "roster_stale")
    assert (d.decide(THU, NOW, False).verdict, d.decide(THU, NOW, False).reason) == (policy, "clock_unsynced")
    dcc = signed(HealthRecord(doses=(Dose(date(2021, 1, 1)),)))
    with_dcc = decider(tmp_path, roster, dcc=dcc, fail_policy=policy)
    assert with_dcc.decide("HC1:X", NOW, True, trust_stale=True).reason == "trust_stale"
    assert with_dcc.decide("HC1:X", NOW, True, trust_stale=True).verdict == policy
    assert with_dcc.decide("HC1:X", NOW, True, roster_stale=True).reason == "vaccinated_14d"  # no roster needed
    assert d.decide(THU, NOW, True, trust_stale=True).reason == "vaccinated_14d"  # no trust list needed


def test_no_date_rule_no_clock_needed(tmp_path, roster):
    d = decider(tmp_path, roster)
    stranger = "079090000099|NGUYEN VAN MOI|1990-12-01|0|163000000000000099|"
    assert decider(tmp_path, roster).decide(stranger, NOW, False).reason == "no_health_data"
    assert decider(tmp_path, roster, "staff").decide(THU, NOW, False).reason == "on_staff_list"
    assert d.decide(THU, NOW, False).reason == "clock_unsynced"


def test_site_date_is_used_whatever_the_instant_zone(tmp_path, roster):
    # 2021-11-14 17:30 UTC is 2021-11-15 00:30 at the site: the dose of 2021-11-01 is 14 days old there.
    d = decider(tmp_path, roster).decide(THU, datetime(2021, 11, 14, 17, 30, tzinfo=timezone.utc), True)
    assert d.reason == "vaccinated_14d" and d.at.utcoffset() == timedelta(hours=7)


# ------------------------------------------------------------------ what a decision carries
def test_decision_is_masked_and_carries_a_keyed_ref(tmp_path, roster):
    d = decider(tmp_path, roster).decide(THU, NOW, True)
    assert d.kind == PERSONAL_QR
    assert d.subject == {"id": "**********01", "name": "N.V. THU", "gender": "male"}
    assert d.screen_subject == {"name": "THU"}
    text = repr(d.to_json()) + repr(d.screen_subject)
    for secret in ("079090000001", "NGUYEN VAN", "0900000001", "DN4790000000001", "1990", "000001"):
        assert secret not in text
    assert d.subject_ref == subject_ref(KEY, Person(id_number="079090000001")) and len(d.subject_ref) == 32
    # The same person by CCCD gets the same ref; a masked personal QR is traced by its QID.
    assert decider(tmp_path, roster).decide(THU_CCCD, NOW, True).subject_ref == d.subject_ref
    assert decider(tmp_path, roster).decide(MAU_MASKED, NOW, True).subject_ref == \
        subject_ref(KEY, Person(qid="163000000000000002"))


def test_authorised_site_keeps_full_fields(tmp_path, roster):
    d = decider(tmp_path, roster, authorised_site=True).decide(THU_CCCD, NOW, True)
    assert d.subject == {"id": "079090000001", "name": "Nguyễn Văn Thử", "birth": "1990-12-01", "gender": "male"}


def test_mode_and_direction_are_read_per_call(tmp_path, roster):
    d = decider(tmp_path, roster)
    assert d.decide(MAU_MASKED, NOW, True).verdict == BLACK
    d.site.update(mode="trace", direction="out")  # the config command and the button change the site state
    again = d.decide(MAU_MASKED, NOW, True)
    assert (again.verdict, again.reason, again.mode, again.direction) == (GREEN, "checked_in", "trace", "out")


class ExplodingRoster:
    def lookup(self, person):
        raise RuntimeError("secret 079090000001")


def test_unexpected_errors_become_invalid_without_logging_the_payload(tmp_path, caplog):
    d = decider(tmp_path, ExplodingRoster())
    with caplog.at_level(logging.ERROR, logger="kiosk.decider"):
        result = d.decide(THU, NOW, True)
    assert (result.verdict, result.reason) == (INVALID, "internal_error")
    assert "RuntimeError" in caplog.text
    assert "079090000001" not in caplog.text and "NGUYEN" not in caplog.text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("|0123456789*<-:ABKĐữ \r\n\x00"), max_size=200),
    st.lists(st.sampled_from(["079090000001", "", "0", "1", "NGUYEN VAN THU", "1990-12-01", "Nữ", "01121990",
                              "<1<<", "163000000000000001", "\x00"]), min_size=4, max_size=9).map("|".join),
    st.integers(0, 20000).map(lambda n: "|" * n),
), mode=st.sampled_from(["trace", "health", "staff"]), synced=st.booleans())
def test_decide_never_raises(tmp_path, roster, text, mode, synced):
    d = decider(tmp_path, roster, mode).decide(text, NOW, synced)
    assert d.verdict in (GREEN, BLACK, INVALID) and d.reason
    assert d.reason != "internal_error"


# ------------------------------------------------------------------ identity
def test_subject_ref_is_keyed_and_none_without_identity():
    person = Person(id_number="079090000001")
    assert subject_ref(KEY, person) != subject_ref(b"other", person)
    assert subject_ref(KEY, Person(id_number="******000001")) is None
    assert subject_ref(KEY, None) is None


# ------------------------------------------------------------------ debounce
T = datetime(2021, 11, 15, 9, 0, tzinfo=SITE)


def test_debounce_same_person_same_verdict_within_window():
    deb = Debouncer(10)
    assert not deb.is_repeat("a", GREEN, T)
    assert deb.is_repeat("a", GREEN, T + timedelta(seconds=9.9))
    assert not deb.is_repeat("a", BLACK, T + timedelta(seconds=5))  # a different verdict is news
    assert not deb.is_repeat("b", GREEN, T + timedelta(seconds=5))
    assert not deb.is_repeat("a", GREEN, T + timedelta(seconds=10))  # the window runs from the check-in
    assert deb.is_repeat("a", GREEN, T + timedelta(seconds=19))
    assert not deb.is_repeat(None, INVALID, T) and not deb.is_repeat(None, INVALID, T)
    assert not Debouncer(0).is_repeat("a", GREEN, T) and not Debouncer(0).is_repeat("a", GREEN, T)


def test_debounce_memory_is_bounded():
    deb = Debouncer(3600, max_people=100)
    for i in range(1000):
        deb.is_repeat(f"p{i}", GREEN, T + timedelta(milliseconds=i))
    assert len(deb._people) == 100
    assert deb.is_repeat("p999", GREEN, T + timedelta(seconds=2))
    assert not deb.is_repeat("p0", GREEN, T + timedelta(seconds=2))  # evicted: counted again
    later = Debouncer(10)
    for i in range(50):
        later.is_repeat(f"p{i}", GREEN, T)
    later.is_repeat("q", GREEN, T + timedelta(seconds=11))
    assert len(later._people) == 1  # expired entries are dropped


def test_a_code_in_view_is_one_sighting_while_it_stays_and_memory_is_bounded():
    manual = ManualTime()
    deb = Debouncer(10, monotonic=manual.monotonic, max_texts=3)
    assert not deb.in_view("code a")
    for _ in range(5):  # held in front of the camera for 40 s: every sighting refreshes the window
        manual.advance(8)
        assert deb.in_view("code a")
    manual.advance(10)
    assert not deb.in_view("code a")  # gone for the whole window: a new sighting
    for text in ("b", "c", "d"):
        deb.in_view(text)
    assert len(deb._texts) == 3 and not deb.in_view("code a")  # the oldest was forgotten
    off = Debouncer(0, monotonic=ManualTime().monotonic)
    assert not off.in_view("x") and not off.in_view("x")  # window 0: suppression off


def test_clock_stepping_back_does_not_suppress():
    deb = Debouncer(10)
    deb.is_repeat("a", GREEN, T)
    assert not deb.is_repeat("a", GREEN, T - timedelta(seconds=5))

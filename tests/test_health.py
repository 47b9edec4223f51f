"""The health rule (spec section 5): HCMC profile vectors, thresholds, the MoH profile, tests."""
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from kiosk import config
from kiosk.health import evaluate
from kiosk import model
from kiosk.model import BLACK, GREEN, Dose, HealthRecord

SITE = timezone(timedelta(hours=7))
NOW = datetime(2021, 11, 15, 9, 0, tzinfo=SITE)  # spec section 7: today = 2021-11-15


def settings(**health):
    return config.load(data={"camera": {"type": "none"}, "health": health}).health


def doses(*days):
    return HealthRecord(doses=tuple(Dose(date.fromisoformat(d)) for d in days))


def recovered(day):
    return HealthRecord(recovered=date.fromisoformat(day))


@pytest.mark.parametrize("record,expected", [
    (doses("2021-11-01"), (GREEN, "vaccinated_14d")),    # 14 days
    (doses("2021-11-02"), (BLACK, "dose_too_recent")),   # 13 days
    (recovered("2021-05-20"), (GREEN, "recovered_180d")),  # 179 days
    (recovered("2021-05-19"), (BLACK, "recovery_too_old")),  # 180 days
    (None, (BLACK, "no_health_data")),                   # not in roster
    (HealthRecord(), (BLACK, "no_health_data")),
], ids=["dose-14d", "dose-13d", "recovered-179d", "recovered-180d", "none", "empty"])
def test_spec_vectors_hcmc(record, expected):
    assert evaluate(record, NOW, settings()) == expected


def test_any_counting_dose_is_enough_and_single_dose_counts():
    assert evaluate(doses("2021-11-10", "2021-06-01"), NOW, settings()) == (GREEN, "vaccinated_14d")
    one = HealthRecord(doses=(Dose(date(2021, 10, 1), "Janssen"),))
    assert evaluate(one, NOW, settings()) == (GREEN, "vaccinated_14d")


def test_site_date_not_utc_date():
    # 2021-11-15 00:30 in Ho Chi Minh City is still 2021-11-14 in UTC; the rule uses the site date.
    local = datetime(2021, 11, 15, 0, 30, tzinfo=SITE)
    assert evaluate(doses("2021-11-01"), local, settings()) == (GREEN, "vaccinated_14d")
    assert evaluate(doses("2021-11-01"), local.astimezone(timezone.utc), settings())[1] == "dose_too_recent"


def test_thresholds_are_configurable():
    strict = settings(dose_min_inclusive=False)
    assert evaluate(doses("2021-11-01"), NOW, strict) == (BLACK, "dose_too_recent")
    assert evaluate(doses("2021-10-31"), NOW, strict) == (GREEN, "vaccinated_14d")
    assert evaluate(doses("2021-11-08"), NOW, settings(dose_min_days=7)) == (GREEN, "vaccinated_14d")
    assert evaluate(recovered("2021-05-19"), NOW, settings(recovered_days=181)) == (GREEN, "recovered_180d")
    inclusive = settings(recovered_inclusive=True)  # "at most 180 days" instead of "under 180 days"
    assert evaluate(recovered("2021-05-19"), NOW, inclusive) == (GREEN, "recovered_180d")
    assert evaluate(recovered("2021-05-18"), NOW, inclusive) == (BLACK, "recovery_too_old")
    assert evaluate(doses("2021-11-02"), NOW, settings(dose_min_days=13)) == (GREEN, "vaccinated_14d")
    assert evaluate(doses("2021-11-02"), NOW, settings(dose_min_days=13, dose_min_inclusive=False)) == \
        (BLACK, "dose_too_recent")
    capped = settings(dose_max_days=90)
    assert evaluate(doses("2021-05-01"), NOW, capped) == (BLACK, "dose_too_old")


def test_recovery_beats_a_recent_dose_and_future_dates_do_not_count():
    mixed = HealthRecord(doses=(Dose(date(2021, 11, 10)),), recovered=date(2021, 9, 1))
    assert evaluate(mixed, NOW, settings()) == (GREEN, "recovered_180d")
    assert evaluate(recovered("2021-12-01"), NOW, settings()) == (BLACK, "no_health_data")
    assert evaluate(doses("2021-12-01"), NOW, settings()) == (BLACK, "dose_too_recent")


@pytest.mark.parametrize("days,expected", [
    (["2021-11-01"], (GREEN, "vaccinated_14d")),
    (["2021-05-19"], (GREEN, "vaccinated_14d")),          # 180 days: still within 6 months
    (["2021-05-18"], (BLACK, "dose_too_old")),            # 181 days
    (["2021-03-01", "2021-11-10"], (BLACK, "dose_too_recent")),  # the last dose decides
    (["2021-03-01", "2021-10-01"], (GREEN, "vaccinated_14d")),
])
def test_moh_profile_uses_the_last_dose_within_six_months(days, expected):
    assert evaluate(doses(*days), NOW, settings(profile="moh-2021-12")) == expected


def test_moh_profile_recovery_and_own_cap():
    moh = settings(profile="moh-2021-12")
    assert evaluate(recovered("2021-06-01"), NOW, moh) == (GREEN, "recovered_180d")
    assert evaluate(recovered("2021-01-01"), NOW, moh) == (BLACK, "recovery_too_old")
    assert evaluate(doses("2021-05-18"), NOW, settings(profile="moh-2021-12", dose_max_days=365))[0] == GREEN


def with_test(hours_ago, positive=False, as_date=False):
    taken = NOW - timedelta(hours=hours_ago)
    return HealthRecord(tests=(model.TestResult(taken.date() if as_date else taken, positive),))


def test_tests_black_unless_accepted():
    assert evaluate(with_test(10), NOW, settings()) == (BLACK, "test_not_accepted")
    accepting = settings(accept_tests=True, test_valid_hours=72)
    assert evaluate(with_test(10), NOW, accepting) == (GREEN, "tested_negative")
    assert evaluate(with_test(71), NOW, accepting) == (GREEN, "tested_negative")
    assert evaluate(with_test(73), NOW, accepting) == (BLACK, "test_too_old")
    assert evaluate(with_test(10, positive=True), NOW, accepting) == (BLACK, "test_positive")


def test_an_unreadable_test_result_is_never_negative_nor_positive():
    accepting = settings(accept_tests=True, test_valid_hours=72)
    assert evaluate(with_test(10, positive=None), NOW, accepting) == (BLACK, "test_result_unknown")
    assert evaluate(with_test(10, positive=None), NOW, settings()) == (BLACK, "test_not_accepted")
    assert evaluate(with_test(73, positive=None), NOW, accepting) == (BLACK, "test_too_old")
    vaccinated = HealthRecord(doses=(Dose(date(2021, 9, 1)),), tests=with_test(5, positive=None).tests)
    assert evaluate(vaccinated, NOW, accepting) == (GREEN, "vaccinated_14d")  # it blocks nothing either


def test_recent_positive_test_is_black_even_when_vaccinated():
    record = HealthRecord(doses=(Dose(date(2021, 9, 1)),), tests=(model.TestResult(NOW - timedelta(hours=5), True),))
    assert evaluate(record, NOW, settings()) == (BLACK, "test_positive")


def test_a_test_given_as_a_date_counts_from_the_start_of_that_day():
    accepting = settings(accept_tests=True, test_valid_hours=12)
    # 09:00 today: a test dated today is at most 9 hours old; one dated yesterday may be 33 hours old.
    assert evaluate(with_test(0, as_date=True), NOW, accepting) == (GREEN, "tested_negative")
    assert evaluate(with_test(24, as_date=True), NOW, accepting) == (BLACK, "test_too_old")


def test_settings_object_only_needs_the_attributes():
    plain = SimpleNamespace(profile="hcmc", recovered_days=180, recovered_inclusive=False, dose_min_days=14,
                            dose_min_inclusive=True,
                            dose_max_days=0, accept_tests=False, test_valid_hours=72)
    assert evaluate(doses("2021-11-01"), NOW, plain) == (GREEN, "vaccinated_14d")

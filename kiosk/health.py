"""The green/black health rule (spec section 5), for a roster entry or a signed certificate.

Profiles (`cfg.health`):
- `hcmc` (default, Ho Chi Minh City 2021): recovered less than `recovered_days` ago (at most that many
  with `recovered_inclusive`), or any dose at least `dose_min_days` ago (`>` instead of `>=` when
  `dose_min_inclusive` is false; a dose older than `dose_max_days` stops counting when that is set).
- `moh-2021-12` (Ministry of Health, December 2021): the *last* dose `dose_min_days` to `dose_max_days`
  (180 when 0) days ago, or recovered within `recovered_days`.
Tests: a positive test within `test_valid_hours` is always black; a negative one is green only with
`accept_tests`; one whose result is unreadable (`positive` None) is neither. Dates are the site's local
dates: pass `now` in the site's time zone.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from kiosk.model import BLACK, GREEN, HealthRecord, TestResult

if TYPE_CHECKING:
    from kiosk.config import HealthConfig

MOH_PROFILE = "moh-2021-12"
MOH_DEFAULT_MAX_DAYS = 180


def evaluate(record: HealthRecord | None, now: datetime, settings: HealthConfig) -> tuple[str, str]:
    """(verdict, reason) for `record` at the site-local instant `now`."""
    if record is None or record.empty:
        return BLACK, "no_health_data"
    today = now.date()
    recent_tests = [t for t in record.tests if _test_age(t, now) <= timedelta(hours=settings.test_valid_hours)]
    if any(t.positive is True for t in recent_tests):
        return BLACK, "test_positive"
    recovery_age = (today - record.recovered).days if record.recovered else None
    if recovery_age is not None and 0 <= recovery_age and _recovery_counts(recovery_age, settings):
        return GREEN, "recovered_180d"
    dose_verdict = _doses(record, today, settings)
    if dose_verdict == GREEN:
        return GREEN, "vaccinated_14d"
    if record.tests:
        if not settings.accept_tests:
            return BLACK, "test_not_accepted"
        if any(t.positive is False for t in recent_tests):
            return GREEN, "tested_negative"
    if dose_verdict:
        return BLACK, dose_verdict
    if any(t.positive is None for t in recent_tests):
        return BLACK, "test_result_unknown"
    if record.tests:
        return BLACK, "test_too_old"
    if recovery_age is not None and recovery_age >= 0:
        return BLACK, "recovery_too_old"
    return BLACK, "no_health_data"  # only future-dated entries: nothing usable


def _recovery_counts(age: int, settings: HealthConfig) -> bool:
    return age <= settings.recovered_days if settings.recovered_inclusive else age < settings.recovered_days


def _doses(record: HealthRecord, today: date, settings: HealthConfig) -> str | None:
    """GREEN, a black reason (`dose_too_recent`, `dose_too_old`), or None without doses."""
    if not record.doses:
        return None
    max_days = settings.dose_max_days
    if settings.profile == MOH_PROFILE:
        max_days = max_days or MOH_DEFAULT_MAX_DAYS
        ages = [min((today - d.day).days for d in record.doses)]  # the last dose only
    else:
        ages = [(today - d.day).days for d in record.doses]
    too_recent = False
    for age in ages:
        old_enough = age >= settings.dose_min_days if settings.dose_min_inclusive else age > settings.dose_min_days
        if not old_enough:
            too_recent = True
        elif not max_days or age <= max_days:
            return GREEN
    return "dose_too_recent" if too_recent else "dose_too_old"


def _test_age(test: TestResult, now: datetime) -> timedelta:
    """Age of a test; a bare date counts from the start of that day (the oldest it can be)."""
    taken = test.taken
    if not isinstance(taken, datetime):
        taken = datetime.combine(taken, time(0), tzinfo=now.tzinfo)
    elif (taken.tzinfo is None) != (now.tzinfo is None):
        taken = taken.replace(tzinfo=now.tzinfo)  # a naive side is site-local time
    return now - taken

"""Field checks shared by the code parsers and the roster (one definition of each shape)."""
from __future__ import annotations

import re
from datetime import date

# A full identity-document number: CCCD (12 digits), CMND (9 digits) or a passport number (`C0000004`).
ID_NUMBER = re.compile(r"[A-Z0-9]{6,20}")
# The same with its first 6 characters masked, as the personal QR may carry it (`******000002`).
MASKED_ID_NUMBER = re.compile(r"\*{6}[A-Z0-9]{1,14}")
# The national platform's QID: opaque, so only bounded printable ASCII without spaces or separators.
QID = re.compile(r"[!-;=-{}~]{1,64}")  # printable ASCII except space, '<' and '|'
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MIN_YEAR = 1900


class Malformed(ValueError):
    """A field failed validation. `field` names it; the value is never included (it is personal data)."""

    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


def iso_date(text: str, field: str) -> date:
    """A calendar date `YYYY-MM-DD` (ASCII digits only, year from 1900)."""
    if not ISO_DATE.fullmatch(text):
        raise Malformed(field)
    return calendar_date(int(text[:4]), int(text[5:7]), int(text[8:]), field)


def calendar_date(year: int, month: int, day: int, field: str) -> date:
    if year < MIN_YEAR:
        raise Malformed(field)
    try:
        return date(year, month, day)
    except ValueError:
        raise Malformed(field) from None


def birth_date(year: int, month: int | None, day: int | None, field: str, today: date) -> str:
    """A date of birth at the precision the code gives: `YYYY-MM-DD`, `YYYY-MM` (no day) or `YYYY` (no month).

    It must be a real calendar date (30 February is not) from MIN_YEAR, and not after `today`: a partial date
    counts from its first day, so a birth month or year that has begun is possible, a later one is not."""
    first = calendar_date(year, month or 1, day or 1, field)
    if first > today:
        raise Malformed(field)
    return first.isoformat()[:10 if day else 7 if month else 4]

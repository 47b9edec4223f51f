"""Parsing of operator-given instants (`--at`, `--since`): naive values are in the site's time zone."""
from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo


def parse_instant(text: str, tz: str) -> datetime:
    """`YYYY-MM-DD` (start of that local day) or ISO-8601; raises ValueError with a usable message."""
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), time(0))
        else:
            value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or ISO-8601 time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value

"""Parsing of operator-given instants (`--at`, `--since`; naive values are in the site's time zone), and the
UTC timestamps the kiosk writes into its MQTT messages."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
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


def iso_utc(epoch: float) -> str:
    """Epoch seconds as ISO-8601 UTC to the second (`2021-11-15T02:00:00+00:00`)."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")

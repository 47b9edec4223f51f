"""One check-in per person and verdict within a time window (a person often scans twice)."""
from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

MAX_PEOPLE = 4096


class Debouncer:
    """`is_repeat` is true for the same subject_ref and verdict within `window_seconds` of the recorded
    check-in. The window runs from that check-in (repeats do not extend it). Memory is bounded: expired
    entries are dropped, and the oldest go first beyond `max_entries`."""

    def __init__(self, window_seconds: float, max_entries: int = MAX_PEOPLE):
        self.window_seconds = window_seconds
        self.max_entries = max_entries
        self._last: OrderedDict[tuple[str, str], datetime] = OrderedDict()

    def is_repeat(self, subject_ref: str | None, verdict: str, now: datetime) -> bool:
        if subject_ref is None or self.window_seconds <= 0:
            return False
        self._expire(now)
        key = (subject_ref, verdict)
        last = self._last.get(key)
        if last is not None and 0 <= (now - last).total_seconds() < self.window_seconds:
            return True
        self._last.pop(key, None)
        self._last[key] = now
        while len(self._last) > self.max_entries:
            self._last.popitem(last=False)
        return False

    def _expire(self, now: datetime) -> None:
        while self._last:
            oldest = next(iter(self._last.values()))
            if (now - oldest).total_seconds() < self.window_seconds:
                return
            self._last.popitem(last=False)

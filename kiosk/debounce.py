"""Repeat suppression: one check-in per code held in view and per person and verdict (a person often scans twice).

Both rules share one window, `site.debounce_seconds`, and live in one `Debouncer` the pipeline asks:
- `in_view(text)`, before any work: the same payload seen again within the window of its last sighting.
  Monotonic time, refreshed on every sighting, so a code left in front of the camera is one check-in however
  long it stays. Payloads are remembered by a 16-byte BLAKE2b digest, never as text.
- `is_repeat(subject_ref, verdict, at)`, after the decision: the same person with the same verdict within the
  window of the recorded check-in, in the decision's time (the Clock's), so another code of the same person
  (the phone, then the printed QR) is the same check-in. The window runs from that check-in: repeats do not
  extend it.
Memory is bounded: expired people are dropped, and the oldest entries go first beyond the maxima.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from datetime import datetime
from typing import Callable

MAX_PEOPLE = 4096
MAX_TEXTS = 256  # distinct payloads remembered for "still in view"


class Debouncer:
    def __init__(self, window_seconds: float, *, monotonic: Callable[[], float] = time.monotonic,
                 max_people: int = MAX_PEOPLE, max_texts: int = MAX_TEXTS):
        self.window_seconds = window_seconds
        self.monotonic = monotonic
        self.max_people = max_people
        self.max_texts = max_texts
        self._people: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        self._texts: OrderedDict[bytes, float] = OrderedDict()

    def in_view(self, text: str) -> bool:
        """True when the same payload was seen within the window (it stays in front of the camera)."""
        key = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()
        now = self.monotonic()
        last = self._texts.pop(key, None)
        self._texts[key] = now  # refreshed on every sighting
        while len(self._texts) > self.max_texts:
            self._texts.popitem(last=False)
        return last is not None and now - last < self.window_seconds

    def is_repeat(self, subject_ref: str | None, verdict: str, at: datetime) -> bool:
        """True for the same person and verdict within the window of their recorded check-in; otherwise
        `at` is recorded as their check-in."""
        if subject_ref is None or self.window_seconds <= 0:
            return False
        self._expire(at)
        key = (subject_ref, verdict)
        last = self._people.get(key)
        if last is not None and 0 <= (at - last).total_seconds() < self.window_seconds:
            return True
        self._people.pop(key, None)
        self._people[key] = at
        while len(self._people) > self.max_people:
            self._people.popitem(last=False)
        return False

    def _expire(self, now: datetime) -> None:
        while self._people:
            oldest = next(iter(self._people.values()))
            if (now - oldest).total_seconds() < self.window_seconds:
                return
            self._people.popitem(last=False)

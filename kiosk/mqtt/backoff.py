"""Reconnect pacing: exponential backoff with jitter, so a fleet does not reconnect in step after an outage."""
from __future__ import annotations

import random
from typing import Callable


def backoff_delay(attempt: int, low: float, high: float, rand: Callable[[], float] = random.random) -> float:
    """Between half and all of min(high, low * 2**(attempt-1))."""
    ceiling = min(high, low * 2.0 ** max(0, min(attempt - 1, 30)))
    return ceiling * (0.5 + rand() / 2)

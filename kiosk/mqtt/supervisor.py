"""A supervised worker thread: when its body raises, it is marked down, logged once and run again after a
backoff, until the owner stops it. The uplink runs its connection loop and its drain this way, so a bug or
a fault injected through a client (a publish that raises) raises the `uplink_stopped` alarm instead of
silently ending the upload.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("kiosk.mqtt.uplink")

STABLE_S = 10.0    # a worker that has been working this long since its restart starts its backoff afresh


class Supervised:
    """Runs `body(working)` on a daemon thread; `body` calls `working()` after every healthy round.

    `down` is true from a failure until the restarted body reports a healthy round. on_failure runs on the
    dying thread after each failure (to release what the body held); on_change whenever `down` flips.
    Neither callback may raise (they are guarded all the same).
    """

    def __init__(self, name: str, body: Callable[[Callable[[], None]], None], *, stopping: threading.Event,
                 delay: Callable[[int], float], on_failure: Callable[[], None] = lambda: None,
                 on_change: Callable[[], None] = lambda: None, monotonic: Callable[[], float] = time.monotonic):
        self.name = name
        self.down = False
        self.failures = 0          # consecutive failures (reset after STABLE_S of work): the backoff's attempt
        self.restarts = 0
        self._body = body
        self._stopping = stopping
        self._delay = delay
        self._on_failure = on_failure
        self._on_change = on_change
        self._monotonic = monotonic
        self._since = monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def working(self) -> None:
        """Called by the body after a healthy round: clears `down`; a long healthy run resets the backoff."""
        if self.failures and self._monotonic() - self._since >= STABLE_S:
            self.failures = 0
        if self.down:
            self.down = False
            log.warning("%s working again after %d restart(s)", self.name, self.restarts)
            self._guarded(self._on_change)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._since = self._monotonic()
            try:
                self._body(self.working)
                return                      # the body returns only when asked to stop
            except Exception:
                self.failures += 1
                if not self.down:
                    log.exception("%s stopped; restarting it with backoff", self.name)
                else:
                    log.debug("%s failed again", self.name, exc_info=True)
                self._guarded(self._on_failure)
                if not self.down:
                    self.down = True
                    self._guarded(self._on_change)
            if self._stopping.wait(self._delay(self.failures)):
                return
            self.restarts += 1

    def _guarded(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.debug("%s: supervisor callback failed", self.name, exc_info=True)

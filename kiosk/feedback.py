"""What the person at the gate sees and hears: screen, LED, buzzer, door relay.

`show()` never blocks the pipeline. LED, buzzer and relay commands are issued at once and run in the
background (gpiozero's own threads); the screen is handed to one display worker thread that renders and
pushes it, drawing only the newest pending screen. A failing device is logged once per state change,
counted in `errors`, and never raises into the caller.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from kiosk.model import BLACK, GREEN, INVALID, Decision
from kiosk.ports import Buzzer, Display, Indicator, Relay
from kiosk.screens import IdleView, render, require_fonts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pattern:
    colour: str
    beep_on: float
    beep_off: float
    beeps: int
    relay: bool


PATTERNS = {
    GREEN: Pattern("green", 0.1, 0.1, 1, relay=True),
    BLACK: Pattern("red", 0.5, 0.2, 2, relay=False),
    INVALID: Pattern("amber", 0.1, 0.1, 3, relay=False),
}


class Feedback:
    """Drives the display, indicator, buzzer and relay for each decision. Any device may be None.

    `last_command_at[name]` is the `monotonic()` time the latest command went to "indicator", "buzzer",
    "relay", "display" (screen handed to the worker) and "display_shown" (the device's show returned),
    so a benchmark can measure frame-in to command-issued. `on_command(name, t)`, if set, is called
    at the same moments (from the worker thread for "display_shown").
    """

    def __init__(self, display: Display | None, indicator: Indicator | None, buzzer: Buzzer | None,
                 relay: Relay | None, *, lang: str = "vi", result_seconds: float = 3.0, relay_seconds: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.display = display
        self.indicator = indicator
        self.buzzer = buzzer
        self.relay = relay
        self.lang = lang
        self.result_seconds = result_seconds
        self.relay_seconds = relay_seconds
        self.monotonic = monotonic
        self.errors = 0
        self.shown = 0  # screens the display accepted
        self.last_command_at: dict[str, float] = {}
        self.on_command: Callable[[str, float], None] | None = None
        self._failing: set[str] = set()
        self._lock = threading.Lock()  # errors, _failing, last_command_at: touched by two threads
        self._alarms: tuple[str, ...] = ()
        self._result_until: float | None = None
        self._wake = threading.Condition()
        self._pending: Decision | IdleView | None = None
        self._drawing = False
        self._closed = False
        self._worker: threading.Thread | None = None
        if display is not None:
            require_fonts()  # a missing font is a start-up error naming the fix, not a blank screen later
            self._worker = threading.Thread(target=self._draw_loop, args=(display,), name="display", daemon=True)
            self._worker.start()
            self._submit(IdleView())

    # -------------------------------------------------------------- called by the pipeline thread
    def show(self, decision: Decision) -> None:
        """Issue LED, buzzer and relay commands and queue the result screen. Returns at once."""
        pattern = PATTERNS.get(decision.verdict, PATTERNS[INVALID])
        indicator, buzzer, relay = self.indicator, self.buzzer, self.relay
        if indicator is not None:
            self._device("indicator", lambda: indicator.flash(pattern.colour, self.result_seconds))
        if buzzer is not None:
            self._device("buzzer", lambda: buzzer.beep(pattern.beep_on, pattern.beep_off, pattern.beeps))
        if relay is not None and pattern.relay:
            self._device("relay", lambda: relay.pulse(self.relay_seconds))
        self._result_until = self.monotonic() + self.result_seconds
        if self.display is not None:
            self._submit(decision)

    def tick(self) -> None:
        """Bring back the idle screen once the result has been shown long enough. Never sleeps."""
        if self._result_until is not None and self.monotonic() >= self._result_until:
            self._result_until = None
            if self.display is not None:
                self._submit(self._idle_view())

    def set_alarms(self, alarms: list[str]) -> None:
        """Status lines for the idle screen (i18n keys); redraws only when they change."""
        if tuple(alarms) == self._alarms:
            return
        self._alarms = tuple(alarms)
        if self._result_until is None and self.display is not None:
            self._submit(self._idle_view())

    def wait_drawn(self, timeout: float) -> bool:
        """Wait until every queued screen has been drawn (tests, benchmarks, shutdown). False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: self._pending is None and not self._drawing, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the display worker (after the screen it is drawing) and release the display."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("display still busy after %.1f s; leaving it", timeout)
                return
        if self.display is not None:
            self._device("display", self.display.close, stamp=False)

    def failing(self, name: str) -> bool:
        """True while the latest command to device `name` ("display", "indicator", ...) failed."""
        return name in self._failing

    # -------------------------------------------------------------- internals
    def _idle_view(self) -> IdleView:
        return IdleView(alarms=self._alarms)

    def _submit(self, view: Decision | IdleView) -> None:
        with self._wake:
            self._pending = view  # replaces an older screen not drawn yet
            self._wake.notify_all()
        self._stamp("display")

    def _draw_loop(self, display: Display) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending is not None or self._closed)
                view = self._pending
                if self._closed or view is None:
                    self._pending = None
                    self._wake.notify_all()
                    return
                self._pending, self._drawing = None, True
            try:
                if self._device("display", lambda: display.show(render(view, display.size, display.mode, self.lang)),
                                stamp=False):
                    self.shown += 1
                    self._stamp("display_shown")
            finally:
                with self._wake:
                    self._drawing = False
                    self._wake.notify_all()

    def _device(self, name: str, command: Callable[[], None], stamp: bool = True) -> bool:
        """Run one device command; count, and log once per failing/working change. True when it worked."""
        try:
            command()
        except Exception as exc:  # any driver failure: the gate keeps answering with the other devices
            with self._lock:
                self.errors += 1
                first = name not in self._failing
                self._failing.add(name)
            if first:
                log.error("%s failed: %s: %s (further failures counted, not logged)",
                          name, type(exc).__name__, exc)
            return False
        with self._lock:
            recovered = name in self._failing
            self._failing.discard(name)
        if recovered:
            log.warning("%s working again", name)
        if stamp:
            self._stamp(name)
        return True

    def _stamp(self, name: str) -> None:
        t = self.monotonic()
        with self._lock:
            self.last_command_at[name] = t
        if self.on_command is not None:
            self.on_command(name, t)

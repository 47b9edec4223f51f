"""The scan pipeline: text or frame in -> decision -> feedback -> journal -> uplink notice.

One thread owns it. Feedback comes first (the person at the gate never waits for storage or the
network); the journal write follows; the uplink is only woken up. The pipeline never sleeps.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from kiosk.debounce import Debouncer
from kiosk.errors import StorageError
from kiosk.model import BLACK, GREEN, INVALID, Decision, Staleness
from kiosk.ports import Clock, DecisionMaker, Decoder, GateFeedback, Journal

if TYPE_CHECKING:
    from kiosk.ports import Event, Frame

log = logging.getLogger(__name__)

# Check-ins kept in memory while the journal cannot be written (disk full past the reserve, read-only);
# saved next to the journal at stop (kiosk.stores.held). Retried every RETRY_S, then flushed FLUSH_BATCH
# per loop round in one transaction each: 10,000 held check-ins flushed one fsync each blocked a scan for
# 887 ms; a batch of 200 is one fsync and a few ms, between scans.
MAX_UNWRITTEN = 10_000
FLUSH_BATCH = 200
RETRY_S = 1.0


@dataclass
class Counters:
    frames: int = 0
    frames_unreadable: int = 0
    reads: int = 0
    checkins: int = 0
    repeats: int = 0
    green: int = 0
    black: int = 0
    invalid: int = 0
    journal_errors: int = 0
    journaled: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    # Feedback shown -> journal commit returned, per check-in: the window in which a power cut takes a
    # check-in the person was already shown (feedback first is the rule; this measures what it costs).
    shown_to_stored_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not isinstance(v, deque)}
        window = sorted(self.shown_to_stored_ms)
        out["shown_to_stored_p50_ms"] = round(window[len(window) // 2], 3) if window else None
        out["shown_to_stored_p99_ms"] = round(window[min(len(window) - 1, int(len(window) * 0.99))], 3) \
            if window else None
        return out


class Pipeline:
    def __init__(self, *, decider: DecisionMaker, feedback: GateFeedback, journal: Journal, clock: Clock,
                 decoder: Decoder | None = None, debounce_seconds: float = 10.0,
                 stale: Callable[[], Staleness] = Staleness,
                 on_journaled: Callable[[Event], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        """`debounce_seconds`: the repeat-suppression window (site.debounce_seconds); `monotonic` times it for
        codes still in view, and paces the retries of held check-ins."""
        self.decider = decider
        self.feedback = feedback
        self.journal = journal
        self.clock = clock
        self.decoder = decoder
        self.repeats = Debouncer(debounce_seconds, monotonic=monotonic)
        self.monotonic = monotonic
        self.stale = stale
        self.on_journaled = on_journaled
        self.counters = Counters()
        self.decisions: list[Decision] = []  # kept only when `keep_decisions` (demo, tests)
        self.keep_decisions = False
        self._unwritten: deque[tuple[Decision, float]] = deque()   # (check-in, when its feedback was shown)
        self.journal_failing = False
        self._retry_at = 0.0

    # ------------------------------------------------------------------ inputs
    def handle_frame(self, frame: Frame, started: float | None = None) -> list[Decision]:
        """Decode one grey frame and handle every code in it."""
        started = time.perf_counter() if started is None else started
        self.counters.frames += 1
        if self.decoder is None:
            raise ValueError("handle_frame needs a pipeline built with a decoder")
        try:
            texts = self.decoder.decode(frame)
        except Exception:  # a decoder must not take the kiosk down; count and go on
            log.exception("decoder failed on a frame")
            self.counters.frames_unreadable += 1
            return []
        out = []
        for text in texts:
            decision = self.handle_text(text, started=started)
            if decision is not None:
                out.append(decision)
        return out

    def handle_text(self, text: str, started: float | None = None) -> Decision | None:
        """Decide one payload, give feedback, journal it. None when it repeats a recent check-in."""
        started = time.perf_counter() if started is None else started
        self.counters.reads += 1
        if self.repeats.in_view(text):
            self.counters.repeats += 1
            return None
        now = self.clock.now()
        stale = self.stale()
        decision = self.decider.decide(text, now, self.clock.synced(), roster_stale=stale.roster,
                                       trust_stale=stale.trust, revocation_stale=stale.revocation)
        if self.repeats.is_repeat(decision.subject_ref, decision.verdict, now):
            self.counters.repeats += 1
            return None
        self.feedback.show(decision)
        decision.latency_ms = (time.perf_counter() - started) * 1000.0
        self._record(decision)
        return decision

    def handle_override(self, decision: Decision) -> None:
        """A guard's manual admit (button): feedback and journal like any check-in."""
        self.feedback.show(decision)
        self._record(decision)

    # ------------------------------------------------------------------ internals
    def _record(self, decision: Decision) -> None:
        c = self.counters
        c.checkins += 1
        c.latencies_ms.append(decision.latency_ms)
        if decision.verdict == GREEN:
            c.green += 1
        elif decision.verdict == BLACK:
            c.black += 1
        elif decision.verdict == INVALID:
            c.invalid += 1
        if self.keep_decisions:
            self.decisions.append(decision)
        if len(self._unwritten) >= MAX_UNWRITTEN:
            self._unwritten.popleft()
            c.journal_errors += 1
            log.error("journal unwritable for too long: oldest unwritten check-in dropped")
        self._unwritten.append((decision, self.monotonic()))
        if len(self._unwritten) == 1 and not self.journal_failing:
            self.flush()  # the usual case: nothing held, this check-in is stored now (one fsync)

    def hold(self, decisions: list[Decision]) -> None:
        """Take check-ins saved at the last stop that the journal could not take at start (oldest first)."""
        now = self.monotonic()
        self._unwritten.extendleft((d, now) for d in reversed(decisions))

    def flush(self, force: bool = False) -> bool:
        """Write the oldest held check-ins, at most FLUSH_BATCH in one transaction; while the journal fails,
        at most once every RETRY_S (unless `force`: at stop). Called by each check-in when nothing is held,
        and every loop round (so a backlog drains between scans, never in front of one). True when something
        was written."""
        if not self._unwritten:
            return False
        now = self.monotonic()
        if self.journal_failing and now < self._retry_at and not force:
            return False
        batch = [self._unwritten[i] for i in range(min(FLUSH_BATCH, len(self._unwritten)))]
        try:
            events = self.journal.append_many([d for d, _ in batch])
        except StorageError as exc:
            if not self.journal_failing:
                log.error("journal write failed, holding %d check-in(s) in memory: %s", len(self._unwritten), exc)
            self.journal_failing = True
            self._retry_at = now + RETRY_S
            return False
        stored = self.monotonic()
        for (_, shown), event in zip(batch, events):
            self._unwritten.popleft()
            self.counters.shown_to_stored_ms.append((stored - shown) * 1000.0)
            self.counters.journaled += 1
            if self.on_journaled:
                self.on_journaled(event)
        if self.journal_failing:
            log.warning("journal writable again, flushing %d held check-in(s) in batches of %d",
                        len(self._unwritten) + len(batch), FLUSH_BATCH)
            self.journal_failing = False
        return True

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def held(self) -> list[Decision]:
        return [d for d, _ in self._unwritten]

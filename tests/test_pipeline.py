"""Pipeline logic: feedback before journal, repeat suppression, journal failure hold-and-flush."""
from datetime import datetime, timedelta, timezone

from kiosk.errors import StorageError
from kiosk.model import BLACK, GREEN, INVALID, Decision
from kiosk.pipeline import Pipeline

T0 = datetime(2021, 11, 15, 9, 0, tzinfo=timezone(timedelta(hours=7)))


class StubDecider:
    """Verdict chosen by the payload's first word; subject_ref = the payload's second word."""

    def decide(self, text, now, clock_synced, *, roster_stale=False, trust_stale=False):
        verdict, _, ref = text.partition(" ")
        return Decision(kind="personal_qr", verdict=verdict, reason="r", subject_ref=ref or None, at=now,
                        clock_synced=clock_synced)


class Recorder:
    def __init__(self, log):
        self.log = log

    def show(self, decision):
        self.log.append(("feedback", decision.verdict))


class FlakyJournal:
    def __init__(self, log):
        self.log, self.fail, self.rows = log, False, []

    def append(self, decision):
        if self.fail:
            raise StorageError("disk full")
        self.rows.append(decision)
        self.log.append(("journal", decision.verdict))
        return {"seq": len(self.rows)}


class StepClock:
    def __init__(self):
        self.t = T0

    def now(self):
        return self.t

    def synced(self):
        return True


def make(log, debounce=10.0):
    clock = StepClock()
    mono = [0.0]
    journal = FlakyJournal(log)
    notified = []
    p = Pipeline(decider=StubDecider(), feedback=Recorder(log), journal=journal, clock=clock,
                 debounce_seconds=debounce, on_journaled=notified.append, monotonic=lambda: mono[0])
    return p, journal, clock, mono, notified


def test_feedback_is_issued_before_the_journal_write():
    log = []
    p, journal, *_ = make(log)
    d = p.handle_text("green alice")
    assert log == [("feedback", GREEN), ("journal", GREEN)]
    assert d.latency_ms >= 0 and p.counters.green == 1 and p.counters.journaled == 1


def test_same_code_in_view_and_same_person_are_one_checkin():
    log = []
    p, journal, clock, mono, _ = make(log, debounce=10.0)
    assert p.handle_text("green alice") is not None
    mono[0] += 0.03
    assert p.handle_text("green alice") is None          # same text, next frame
    assert p.handle_text("black bob") is not None
    mono[0] += 20
    clock.t += timedelta(seconds=5)
    assert p.handle_text("green alice") is None          # text window passed, person window has not
    clock.t += timedelta(seconds=11)
    mono[0] += 20
    assert p.handle_text("green alice") is not None
    assert p.counters.checkins == 3 and p.counters.repeats == 2
    assert [d.subject_ref for d in journal.rows] == ["alice", "bob", "alice"]


def test_invalid_codes_without_subject_are_suppressed_while_in_view_only():
    log = []
    p, journal, clock, mono, _ = make(log, debounce=2.0)
    assert p.handle_text("invalid") is not None
    mono[0] += 1.0
    assert p.handle_text("invalid") is None
    mono[0] += 3.0
    assert p.handle_text("invalid") is not None
    assert p.counters.invalid == 2


def test_journal_failure_keeps_feedback_and_flushes_when_writable_again():
    log = []
    p, journal, clock, mono, notified = make(log)
    journal.fail = True
    assert p.handle_text("green a1") is not None
    assert p.handle_text("black b1") is not None
    assert log == [("feedback", GREEN), ("feedback", BLACK)]   # the gate still answered
    assert p.journal_failing and p.unwritten == 2 and journal.rows == []
    p.flush()
    assert p.unwritten == 2
    journal.fail = False
    p.flush()
    assert [d.subject_ref for d in journal.rows] == ["a1", "b1"]
    assert p.unwritten == 0 and not p.journal_failing and len(notified) == 2


def test_decoder_exception_counts_and_never_raises():
    class Broken:
        def decode(self, frame):
            raise RuntimeError("bad frame")

    log = []
    p, *_ = make(log)
    p.decoder = Broken()
    assert p.handle_frame(object()) == []
    assert p.counters.frames == 1 and p.counters.frames_unreadable == 1


def test_every_code_in_a_frame_is_handled():
    class Two:
        def decode(self, frame):
            return ["green x", "invalid"]

    log = []
    p, journal, *_ = make(log)
    p.decoder = Two()
    out = p.handle_frame(object())
    assert [d.verdict for d in out] == [GREEN, INVALID]
    assert len(journal.rows) == 2

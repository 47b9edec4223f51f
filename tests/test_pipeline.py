"""Pipeline logic: feedback before journal, repeat suppression, journal failure hold-and-flush."""
import numpy as np

from fakes import FlakyJournal, ManualTime, RecordingFeedback, StubDecider, TableDecoder
from kiosk.model import BLACK, GREEN, INVALID
from kiosk.pipeline import FLUSH_BATCH, RETRY_S, Pipeline


def make(log, debounce=10.0):
    manual = ManualTime()
    journal = FlakyJournal(log)
    notified = []
    p = Pipeline(decider=StubDecider(), feedback=RecordingFeedback(log), journal=journal, clock=manual.clock(),
                 debounce_seconds=debounce, on_journaled=notified.append, monotonic=manual.monotonic)
    return p, journal, manual, notified


def test_feedback_is_issued_before_the_journal_write():
    log = []
    p, journal, *_ = make(log)
    d = p.handle_text("green alice")
    assert log == [("feedback", GREEN), ("journal", GREEN)]
    assert d.latency_ms >= 0 and p.counters.green == 1 and p.counters.journaled == 1


def test_same_code_in_view_and_same_person_are_one_checkin():
    log = []
    p, journal, manual, _ = make(log, debounce=10.0)
    assert p.handle_text("green alice") is not None
    manual.advance(0.03)
    assert p.handle_text("green alice") is None          # same text, next frame
    assert p.handle_text("black bob") is not None
    manual.advance(5)
    assert p.handle_text("green cccd alice") is None     # another code of hers: the person window has not passed
    manual.advance(11)
    assert p.handle_text("green alice") is not None      # both windows passed
    assert p.counters.checkins == 3 and p.counters.repeats == 2
    assert [d.subject_ref for d in journal.rows] == ["alice", "bob", "alice"]


def test_invalid_codes_without_subject_are_suppressed_while_in_view_only():
    log = []
    p, journal, manual, _ = make(log, debounce=2.0)
    assert p.handle_text("invalid") is not None
    manual.advance(1.0)
    assert p.handle_text("invalid") is None
    manual.advance(3.0)
    assert p.handle_text("invalid") is not None
    assert p.counters.invalid == 2


def test_journal_failure_keeps_feedback_and_flushes_when_writable_again():
    log = []
    p, journal, manual, notified = make(log)
    journal.fail = True
    assert p.handle_text("green a1") is not None
    assert p.handle_text("black b1") is not None
    assert log == [("feedback", GREEN), ("feedback", BLACK)]   # the gate still answered
    assert p.journal_failing and p.unwritten == 2 and journal.rows == []
    manual.advance(RETRY_S)
    p.flush()
    assert p.unwritten == 2
    journal.fail = False
    p.flush()
    assert p.unwritten == 2, "retried at most once a second while failing"
    manual.advance(RETRY_S)
    p.flush()
    assert [d.subject_ref for d in journal.rows] == ["a1", "b1"]
    assert p.unwritten == 0 and not p.journal_failing and len(notified) == 2


def test_held_checkins_flush_in_small_batches_between_scans_not_in_front_of_one():
    log = []
    p, journal, manual, notified = make(log, debounce=0.0)
    journal.fail = True
    for i in range(3 * FLUSH_BATCH + 5):
        p.handle_text(f"green p{i}")
        manual.advance(1)
    attempts = journal.transactions
    journal.fail = False
    p.handle_text("green late")            # a scan while check-ins are held: shown, held, not a write
    assert journal.transactions == attempts and journal.rows == [] and p.unwritten == 3 * FLUSH_BATCH + 6
    manual.advance(RETRY_S)
    rounds = []
    while p.flush():                       # the loop's rounds: one transaction of at most FLUSH_BATCH each
        rounds.append(len(journal.rows))
    assert rounds == [FLUSH_BATCH, 2 * FLUSH_BATCH, 3 * FLUSH_BATCH, 3 * FLUSH_BATCH + 6]
    assert [d.subject_ref for d in journal.rows][-2:] == [f"p{3 * FLUSH_BATCH + 4}", "late"]  # order kept
    assert len(notified) == 3 * FLUSH_BATCH + 6 and not p.journal_failing


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
    frame = np.full((48, 64), 200, np.uint8)
    log = []
    p, journal, *_ = make(log)
    p.decoder = TableDecoder([(frame, ["green x", "invalid"])])
    out = p.handle_frame(frame)
    assert [d.verdict for d in out] == [GREEN, INVALID]
    assert len(journal.rows) == 2

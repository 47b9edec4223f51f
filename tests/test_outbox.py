"""Outbox state machine on a real journal file: forward-only states, resend selection, bound and policies."""
import pytest

from conftest import fill_journal, journal_states
from fakes import ManualTime
from kiosk.stores.outbox import Outbox


@pytest.fixture
def journal(tmp_path):
    path = tmp_path / "journal.sqlite"
    return path, fill_journal(path, 10)


def test_next_batch_is_pending_in_seq_order_after_cursor(journal):
    path, ids = journal
    box = Outbox(path)
    assert [r["id"] for r in box.next_batch(4)] == ids[:4]
    assert [r["id"] for r in box.next_batch(3, after_seq=4)] == ids[4:7]
    assert box.next_batch(0) == []


def test_states_only_move_forward(journal):
    path, ids = journal
    box = Outbox(path)
    assert box.mark_published(ids[:3]) == 3
    assert box.confirm(ids[:2]) == 2
    # a late PUBACK (re-send of a confirmed event) must not move it back to published
    assert box.mark_published(ids[:2]) == 0
    # confirming a pending row whose PUBACK was lost is allowed: the consumer has it
    assert box.confirm([ids[5]]) == 1
    assert journal_states(path) == {"confirmed": 3, "published": 1, "pending": 6}
    status = box.status()
    assert status["pending"] == 6 and status["published_unconfirmed"] == 1 and status["confirmed"] == 3
    assert status["last_ack_at"] is not None and status["last_puback_at"] is not None
    assert status["oldest_pending_age_s"] > 4 * 86400  # the 4th of 10 events spread over the last week


def test_published_unconfirmed_are_resent_after_the_resend_time(journal):
    path, ids = journal
    manual = ManualTime()
    box = Outbox(path, wall=manual.wall)
    box.mark_published(ids)
    assert box.next_batch(10, resend_before_epoch=manual.wall() - 300) == []   # too recent
    manual.advance(301)
    assert [r["id"] for r in box.next_batch(10, resend_before_epoch=manual.wall() - 300)] == ids
    box.mark_published(ids[:4])  # re-sent and PUBACKed again: the resend timer restarts for those
    assert [r["id"] for r in box.next_batch(10, resend_before_epoch=manual.wall() - 300)] == ids[4:]
    assert [r["up_attempts"] for r in box.next_batch(10, resend_before_epoch=manual.wall() + 1)][:5] == [2, 2, 2, 2, 1]


def test_watermark_confirms_published_rows_up_to_seq(journal):
    path, ids = journal
    box = Outbox(path)
    box.mark_published(ids[:8])
    assert box.confirm_upto(5) == 5
    assert journal_states(path) == {"confirmed": 5, "published": 3, "pending": 2}


def test_final_on_puback_when_no_consumer_confirms(journal):
    path, ids = journal
    box = Outbox(path, final_on_puback=True)
    box.mark_published(ids[:3])
    assert journal_states(path) == {"confirmed": 3, "pending": 7}


def test_drop_oldest_when_full(tmp_path):
    path = tmp_path / "j.sqlite"
    ids = fill_journal(path, 150)
    box = Outbox(path, max_rows=100, full_policy="drop_oldest")
    assert box.enforce_limit() == 50
    assert box.full and box.status()["dropped"] == 50
    assert [r["id"] for r in box.next_batch(1)] == [ids[50]]
    assert box.status()["dropped"] == 50
    assert box.confirm(ids[:1]) == 0  # dropped stays dropped


def test_published_but_unconfirmed_rows_count_against_the_bound(tmp_path):
    path = tmp_path / "j.sqlite"
    ids = fill_journal(path, 130)
    box = Outbox(path, max_rows=100)
    box.mark_published(ids[:60])      # would still be sent again: they are queued too
    box.confirm(ids[:10])             # confirmed rows are not
    assert box.enforce_limit() == 20
    assert journal_states(path) == {"confirmed": 10, "dropped": 20, "published": 30, "pending": 70}
    assert box.next_batch(1, resend_before_epoch=box.wall() + 1, after_seq=130)[0]["id"] == ids[30]


def test_drop_newest_when_full(tmp_path):
    path = tmp_path / "j.sqlite"
    ids = fill_journal(path, 120)
    box = Outbox(path, max_rows=100, full_policy="drop_newest")
    assert box.enforce_limit() == 20
    assert [r["id"] for r in box.next_batch(200)] == ids[:100]


def test_below_the_bound_nothing_is_dropped(journal):
    path, _ = journal
    box = Outbox(path, max_rows=100)
    assert box.enforce_limit() == 0 and not box.full


def test_unknown_policy_is_rejected(journal):
    with pytest.raises(ValueError):
        Outbox(journal[0], full_policy="drop_everything")


def test_updates_by_id_cost_the_same_whatever_the_backlog(tmp_path):
    """SQLite work (VM steps) to mark 20 events published and confirmed must not grow with the pending rows."""
    def steps(backlog: int) -> int:
        path = tmp_path / f"j{backlog}.sqlite"
        ids = fill_journal(path, backlog)
        box = Outbox(path)
        count = [0]
        box.db.set_progress_handler(lambda: count.__setitem__(0, count[0] + 1), 100)
        box.mark_published(ids[-20:])
        box.confirm(ids[-20:])
        box.close()
        return count[0]

    assert steps(20_000) < 2 * steps(200) + 10


def test_coalesced_pubacks_are_written_late_or_never_and_the_row_stays_unsent_meanwhile(journal):
    path, ids = journal
    box = Outbox(path, wall=ManualTime().wall, coalesce_published_s=3600)
    assert box.mark_published(ids[:4]) == 4
    assert journal_states(path) == {"pending": 10}          # held: nothing written yet
    assert not any(r["id"] in ids[:4] for r in box.next_batch(10, after_seq=4))
    box.confirm(ids[:2])                                    # acked first: pending -> confirmed, one write
    assert journal_states(path) == {"confirmed": 2, "pending": 8}
    status = box.status()                                   # a status writes what is held
    assert (status["published_unconfirmed"], status["pending"], status["confirmed"]) == (2, 6, 2)
    assert journal_states(path) == {"confirmed": 2, "published": 2, "pending": 6}
    box.mark_published(ids[4:6])
    box.close()                                             # and so does close
    assert journal_states(path) == {"confirmed": 2, "published": 4, "pending": 4}


def test_has_pending_does_not_count_rows_whose_puback_is_held(tmp_path):
    path = tmp_path / "j.sqlite"
    ids = fill_journal(path, 3)
    box = Outbox(path, coalesce_published_s=3600)
    assert box.has_pending()
    box.mark_published(ids)
    assert not box.has_pending() and journal_states(path) == {"pending": 3}

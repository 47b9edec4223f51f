"""The drain without a broker: the uplink on tests/fakes.py's FakeBroker, with manual time.

The uplink's connection thread runs as in the product (fresh client per connection, callbacks onto the
event queue); the test is the worker: it runs the Drain one round at a time after the fake's network
threads have delivered every callback (`settle`), so each assertion sees a known state, without sleeps.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from conftest import fill_journal, journal_states, kiosk_config
from fakes import FakeBroker, ManualTime
from kiosk.mqtt.drain import Drain
from kiosk.mqtt.uplink import Uplink
from kiosk.timeparse import iso_utc

CHECKINS = "kiosk/s1/d1/checkin"
TIMEOUT = 10.0


class Harness:
    def __init__(self, tmp_path, n: int = 0, **mqtt):
        self.time = ManualTime()
        self.broker = FakeBroker()
        self.cfg = kiosk_config(tmp_path, 1883, **mqtt)
        self.ids = fill_journal(self.cfg.journal.path, n)
        self.up = Uplink(self.cfg, self.cfg.journal.path, client_factory=self.broker.client,
                         wall=self.time.wall, monotonic=self.time.monotonic)
        self.outbox = self.up.open_outbox()
        self.drain = Drain(self.up, self.outbox)
        self.connection = threading.Thread(target=self.up.run_connection, daemon=True)

    def start(self) -> "Harness":
        self.connection.start()
        return self

    def close(self) -> None:
        self.broker.hold_pubacks = False
        self.broker.release_pubacks()
        self.up.stop()
        self.connection.join(TIMEOUT)
        self.outbox.close()
        assert [e for c in self.broker.made for e in c.callback_errors] == []

    def step(self) -> None:
        """One drain round over everything the fake's network threads have delivered so far."""
        self.broker.settle()
        self.drain.step(0)

    def step_until(self, predicate, what: str) -> None:
        """Rounds (each waiting for the next event) until predicate() holds."""
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.drain.step(0.1)

    def online(self) -> None:
        self.step_until(lambda: self.drain.client is not None, "the uplink to connect")
        self.step()

    def sent(self) -> list[str]:
        """Ids of the check-ins the broker received, in order (resends included)."""
        return [m.json()["id"] for m in self.broker.messages(CHECKINS)]


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(n=0, **mqtt):
        h = Harness(tmp_path, n, **mqtt)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_the_window_never_holds_more_than_max_inflight(harness):
    h = harness(23, max_inflight=5, confirm=False)
    h.broker.hold_pubacks = True
    h.start().online()
    windows = []
    while len(h.sent()) < 23:
        windows.append(h.broker.held(CHECKINS))
        h.step()                                # nothing acknowledged: nothing more is sent
        assert h.broker.held(CHECKINS) == windows[-1]
        h.broker.release_pubacks()
        h.step()
    assert windows == [5, 5, 5, 5] and h.broker.held(CHECKINS) == 3
    assert h.sent() == h.ids                    # each once, in seq order
    h.broker.release_pubacks()
    h.step()
    assert journal_states(h.cfg.journal.path) == {"confirmed": 23}
    assert h.up.counters["published"] == 23 and h.up.drained.is_set()


def test_many_pubacks_are_recorded_in_one_transaction(harness):
    h = harness(60, max_inflight=60, confirm=False)
    h.broker.hold_pubacks = True
    h.start().online()
    assert h.broker.held(CHECKINS) == 60
    statements: list[str] = []
    h.outbox.db.set_trace_callback(statements.append)
    h.broker.release_pubacks()
    h.step()
    assert journal_states(h.cfg.journal.path) == {"confirmed": 60}
    assert statements.count("COMMIT") == 1


def test_unconfirmed_events_are_sent_again_after_resend_after_seconds(harness):
    h = harness(8, max_inflight=3, resend_after_seconds=300)
    h.start().online()
    h.step_until(lambda: journal_states(h.cfg.journal.path) == {"published": 8}, "every PUBACK")
    assert h.sent() == h.ids
    h.time.advance(299)
    h.step()
    assert h.sent() == h.ids and h.up.counters["resent"] == 0      # not due yet
    h.time.advance(2)
    h.step_until(lambda: len(h.sent()) == 16, "every event sent again")
    assert h.sent()[8:] == h.ids and h.up.counters["resent"] == 8   # once each, in seq order (windows of 3)
    h.step_until(lambda: not h.drain.inflight, "the resends' PUBACKs")
    consumer = h.broker.client(client_id="consumer")
    consumer.connect("127.0.0.1")
    consumer.loop_start()
    h.broker.wait_for(lambda: "consumer" in h.broker.clients, what="the consumer")
    consumer.publish("kiosk/s1/d1/ack", '{"upto_seq": 5}', qos=1)
    consumer.publish("kiosk/s1/d1/ack", '{"ids": ["%s"]}' % h.ids[7], qos=1)
    h.step()
    assert journal_states(h.cfg.journal.path) == {"confirmed": 6, "published": 2}
    h.time.advance(301)
    h.step_until(lambda: len(h.sent()) == 18, "the two unconfirmed sent a third time")
    assert h.sent()[16:] == h.ids[5:7]
    consumer.disconnect()
    consumer.loop_stop()


def test_a_puback_from_a_replaced_connection_is_ignored(harness):
    h = harness(10, max_inflight=4, confirm=False)
    h.broker.hold_pubacks = True
    h.start().online()
    first, first_gen = h.drain.client, h.drain.gen
    first_mids = {mid for gen, mid in h.drain.inflight}
    h.broker.sever(h.broker.clients["kiosk-s1-d1"])     # the link drops with 4 messages in flight
    h.step_until(lambda: h.drain.client is not None and h.drain.gen != first_gen, "the reconnect")
    h.step()
    second_mids = {mid for gen, mid in h.drain.inflight}
    assert h.sent() == h.ids[:4] + h.ids[:4]                  # the unacknowledged window sent again
    assert first_mids == second_mids                          # paho numbers each client's messages from 1
    for mid in sorted(first_mids):
        first.fire_puback(mid)                                # late PUBACKs of the first connection
    h.step()
    assert journal_states(h.cfg.journal.path) == {"pending": 10} and len(h.drain.inflight) == 4
    h.broker.release_pubacks()                                # the second connection's own PUBACKs
    h.step()
    assert journal_states(h.cfg.journal.path) == {"confirmed": 4, "pending": 6}
    assert h.drain.client is h.broker.made[1] is not first


@pytest.mark.parametrize("policy, dropped_seqs", [("drop_oldest", range(1, 51)), ("drop_newest", range(101, 151))])
def test_the_outbox_bound_drops_by_policy_and_raises_the_alarm_until_there_is_room(harness, policy, dropped_seqs):
    h = harness(150, outbox_max_rows=100, outbox_full_policy=policy, confirm=False)
    h.broker.up = False                                       # nothing listens: the queue only grows
    h.start()
    h.drain.step(0)
    assert journal_states(h.cfg.journal.path) == {"dropped": 50, "pending": 100}
    assert set(h.up.alarms()) == {"mqtt_offline", "outbox_full"} and h.up.counters["dropped"] == 50
    db = sqlite3.connect(h.cfg.journal.path)
    assert [r[0] for r in db.execute("SELECT seq FROM checkins WHERE up_state = 'dropped' ORDER BY seq")] == \
        list(dropped_seqs)
    db.close()
    h.broker.up = True
    h.step_until(lambda: journal_states(h.cfg.journal.path) == {"dropped": 50, "confirmed": 100}, "the drain")
    assert "outbox_full" in h.up.alarms()                     # until the next check of the bound ...
    h.time.advance(1)
    h.step()
    assert h.up.alarms() == []                                # ... which finds room again
    assert sorted(h.sent()) == sorted(i for i, seq in zip(h.ids, range(1, 151)) if seq not in dropped_seqs)


def test_the_state_says_since_when_the_link_is_up_or_down(harness):
    h = harness(1, confirm=False)
    h.start().online()
    assert h.up.state["state"] == "online" and h.up.state["since"] == iso_utc(h.time.wall())
    h.time.advance(60)
    h.broker.up = False
    h.broker.sever(h.drain.client)
    h.step_until(lambda: h.up.state["last_error"] is not None, "the link to go down")
    assert h.up.state["state"] == "offline" and h.up.state["since"] == iso_utc(h.time.wall())
    assert h.up.state["last_error"].startswith(("connection lost", "connection refused"))   # then retried
    assert "mqtt_offline" in h.up.alarms()

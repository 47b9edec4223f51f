"""Fault injection with a real Mosquitto: every journaled event reaches the collector exactly once, whatever dies.

Broker down at start, broker SIGKILLed mid-drain, the kiosk process SIGKILLed mid-drain, a week of backlog,
and a broker that loses messages it had acknowledged (only the consumer's confirmation brings them back).
"""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (assert_exactly_once, fill_journal, journal_states, kiosk_config, running_collector,
                      wait_for)
from kiosk.uplink import Uplink

TESTS = Path(__file__).resolve().parent
RESEND = 2.0  # seconds before a published but unconfirmed event is sent again

# The kiosk's uplink alone in a child process, so the test can SIGKILL it.
CHILD = """
import json, sys, threading
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import kiosk_config
from kiosk.uplink import Uplink
cfg = kiosk_config(Path({tmp!r}), {port}, **json.loads({opts!r}))
Uplink(cfg, cfg.journal.path).start()
print("started", flush=True)
threading.Event().wait()
"""


def start_child(tmp_path, port, **opts):
    code = CHILD.format(tests=str(TESTS), tmp=str(tmp_path), port=port, opts=json.dumps(opts))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout.readline().strip() == "started"
    return proc


def done(cfg, n):
    return lambda: journal_states(cfg.journal.path).get("confirmed", 0) == n


def progressed(cfg, at_least):
    def check():
        states = journal_states(cfg.journal.path)
        return states.get("published", 0) + states.get("confirmed", 0) >= at_least
    return check


@pytest.fixture
def uplinks():
    made = []
    yield made
    for up in made:
        up.stop()


def test_broker_down_when_the_kiosk_starts(tmp_path, broker_factory, uplinks):
    broker = broker_factory()
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=RESEND)
    fill_journal(cfg.journal.path, 500)
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    up.start()
    wait_for(lambda: up.state["last_error"] is not None, 10, what="the connection failure")
    assert "mqtt_offline" in up.alarms() and journal_states(cfg.journal.path) == {"pending": 500}
    broker.start()
    with running_collector(cfg, tmp_path / "collector.sqlite"):
        wait_for(done(cfg, 500), 30, what="all confirmed")
    assert up.alarms() == []
    assert_exactly_once(tmp_path / "collector.sqlite", cfg.journal.path)


def test_broker_killed_mid_drain_and_restarted(tmp_path, broker, uplinks):
    n = 5_000
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=RESEND)
    fill_journal(cfg.journal.path, n)
    with running_collector(cfg, tmp_path / "collector.sqlite"):
        up = Uplink(cfg, cfg.journal.path)
        uplinks.append(up)
        up.start()
        wait_for(progressed(cfg, 1000), 30, what="the drain to start")
        broker.kill()
        states = journal_states(cfg.journal.path)
        assert states.get("pending", 0) > 0, "killed too late to be mid-drain"
        wait_for(lambda: up.state["state"] == "offline", 10, what="offline")
        broker.start()
        wait_for(done(cfg, n), 90, what="all confirmed after the broker restart")
    assert_exactly_once(tmp_path / "collector.sqlite", cfg.journal.path)


def test_kiosk_process_killed_mid_drain_and_restarted(tmp_path, broker):
    n = 5_000
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=RESEND)
    fill_journal(cfg.journal.path, n)
    with running_collector(cfg, tmp_path / "collector.sqlite"):
        child = start_child(tmp_path, broker.port, resend_after_seconds=RESEND)
        try:
            wait_for(progressed(cfg, 1000), 30, what="the drain to start")
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            assert journal_states(cfg.journal.path).get("pending", 0) > 0, "killed too late to be mid-drain"
        finally:
            child.kill()
        child = start_child(tmp_path, broker.port, resend_after_seconds=RESEND)
        try:
            wait_for(done(cfg, n), 90, what="all confirmed after the kiosk restart")
        finally:
            child.kill()
            child.wait(10)
    assert_exactly_once(tmp_path / "collector.sqlite", cfg.journal.path)


def test_a_week_of_backlog_drains_after_reconnect(tmp_path, broker_factory, uplinks):
    n = 30_000
    broker = broker_factory()
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=30, max_inflight=100)
    fill_journal(cfg.journal.path, n)   # spread over the last 7 days
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    up.start()
    wait_for(lambda: up.state["last_error"] is not None, 10, what="offline")
    assert up.status()["outbox"]["oldest_pending_age_s"] > 6 * 86400
    broker.start()
    with running_collector(cfg, tmp_path / "collector.sqlite"):
        wait_for(done(cfg, n), 120, what="the backlog confirmed")
    assert up.counters["resent"] == 0
    assert_exactly_once(tmp_path / "collector.sqlite", cfg.journal.path)


def test_events_lost_by_a_broker_after_puback_come_back_by_confirmation(tmp_path, broker_factory, uplinks):
    n = 2_000
    broker = broker_factory(persistence=False).start()
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=RESEND)
    fill_journal(cfg.journal.path, n)
    collector_db = tmp_path / "collector.sqlite"
    with running_collector(cfg, collector_db):
        pass  # the collector's session subscribes, then it goes away: the broker queues for it
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    up.start()
    assert up.wait_drained(30)
    assert journal_states(cfg.journal.path) == {"published": n}   # every event PUBACKed by the broker ...
    broker.kill()                                                  # ... which now loses them all
    broker.start()
    with running_collector(cfg, collector_db):
        wait_for(done(cfg, n), 60, what="the resent events confirmed")
    assert up.counters["resent"] >= n
    assert_exactly_once(collector_db, cfg.journal.path)


def test_last_will_announces_a_killed_kiosk(tmp_path, broker, watcher_factory):
    cfg = kiosk_config(tmp_path, broker.port)
    fill_journal(cfg.journal.path, 1)
    watcher = watcher_factory(broker.port, "kiosk/s1/d1/status")
    child = start_child(tmp_path, broker.port)
    try:
        watcher.next("kiosk/s1/d1/status", where=lambda b: b["state"] == "online")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        offline = watcher.next("kiosk/s1/d1/status", where=lambda b: b["state"] == "offline")
    finally:
        child.kill()
    assert offline["device"] == "d1"
    # retained: a watcher arriving later still sees it
    late = watcher_factory(broker.port, "kiosk/s1/d1/status")
    assert late.next("kiosk/s1/d1/status")["state"] == "offline"

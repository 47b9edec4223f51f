"""Fault injection with a real Mosquitto: every journaled event reaches the collector exactly once, whatever dies.

Broker down at start, broker SIGKILLed mid-drain, the kiosk process SIGKILLed mid-drain, a week of backlog,
a broker that loses messages it had acknowledged (only the consumer's confirmation brings them back), the Last
Will, `kiosk run` over replayed QR images with the broker stopped, and connection faults (TLS, a listener
that accepts then drops) that must be visible, logged once, retried with backoff and lose nothing.
"""
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (assert_exactly_once, collected_ids, fill_journal, journal_states, kiosk_config,
                      running_collector, tls_listener, wait_for)
from kiosk.mqtt.uplink import Uplink

TESTS = Path(__file__).resolve().parent
RESEND = 2.0  # seconds before a published but unconfirmed event is sent again

# The kiosk's uplink alone in a child process, so the test can SIGKILL it.
CHILD = """
import json, sys, threading
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import kiosk_config
from kiosk.mqtt.uplink import Uplink
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


# Mosquitto 2.0 restores a persistent session's plain subscriptions after a restart but not its shared ones
# ($share/...): until the collector reconnects, a restarted broker drops events for it, and only the resend
# timer brings them back. Tests that restart the broker under a waiting session use a plain subscription.
def test_a_week_of_backlog_drains_after_reconnect(tmp_path, broker_factory, uplinks):
    n = 30_000
    broker = broker_factory().start()
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=30, max_inflight=100)
    collector_db = tmp_path / "collector.sqlite"
    with running_collector(cfg, collector_db, shared=False):
        pass  # the collector's persistent session subscribes, so the broker queues for it from its next start
    broker.stop()
    fill_journal(cfg.journal.path, n)   # spread over the last 7 days
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    up.start()
    wait_for(lambda: up.state["last_error"] is not None, 10, what="offline")
    assert up.status()["outbox"]["oldest_pending_age_s"] > 6 * 86400
    broker.start()
    with running_collector(cfg, collector_db, shared=False):
        wait_for(done(cfg, n), 120, what="the backlog confirmed")
    assert up.counters["resent"] == 0, (up.counters, up.state)   # one in-order pass: nothing waited for a resend
    assert_exactly_once(collector_db, cfg.journal.path)


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
    # every event PUBACKed by the broker (written within the outbox's coalescing time) ...
    wait_for(lambda: journal_states(cfg.journal.path) == {"published": n}, 10, what="PUBACKs written")
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


def write_qr_codes(folder: Path, n: int) -> list[str]:
    """n distinct personal QR codes rendered by segno as PNG files, in replay (name) order."""
    import segno

    folder.mkdir()
    texts = [f"0790900{i:05d}|NGUYEN VAN THU|1990-12-01|0|1630000000{i:08d}|" for i in range(n)]
    for i, text in enumerate(texts):
        segno.make_qr(text, error="m").save(str(folder / f"{i:04d}.png"), scale=4, border=4)
    return texts


def kiosk_run_config(tmp_path: Path, port: int, codes: Path) -> Path:
    """A service config: replay camera looping over the codes (repeats debounced away), trace mode, MQTT on."""
    path = tmp_path / "kiosk.toml"
    path.write_text(f"""
[site]
id = "s1"
device = "d1"
mode = "trace"
debounce_seconds = 3600.0
[clock]
source = "assume_synced"
[camera]
type = "replay"
path = "{codes}"
loop = true
[roster]
path = "{tmp_path}/roster.json"
[trust]
path = "{tmp_path}/trust.json"
[journal]
path = "{tmp_path}/journal-d1.sqlite"
[display]
type = "none"
[gpio]
pin_factory = "mock"
[service]
watchdog = false
[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
reconnect_min_seconds = 0.1
reconnect_max_seconds = 1.0
keepalive = 5
""")
    return path


def journal_count(path: Path) -> int:
    """Rows journaled so far; 0 while the service has not yet created the file or its table."""
    import sqlite3

    try:
        return sum(journal_states(path).values()) if path.exists() else 0
    except sqlite3.OperationalError:  # "no such table": the service is still opening its journal
        return 0


def test_kiosk_run_journals_while_the_broker_is_down_and_delivers_after_it_starts(tmp_path, broker_factory):
    """The issue's "done when": `kiosk run` over N replayed codes, broker stopped, journals N events; once the
    broker starts, the subscriber receives all N distinct ids (and the kiosk ends with all of them confirmed)."""
    n = 40
    texts = write_qr_codes(tmp_path / "codes", n)
    broker = broker_factory().start()
    cfg = kiosk_config(tmp_path, broker.port)   # same site, device, port and journal as the service below
    collector_db = tmp_path / "collector.sqlite"
    with running_collector(cfg, collector_db, shared=False):
        pass  # the subscriber's persistent session: the broker queues for it while it is away
    broker.stop()
    journal = Path(cfg.journal.path)
    kiosk = subprocess.Popen([sys.executable, "-m", "kiosk", "run", "--config",
                              str(kiosk_run_config(tmp_path, broker.port, tmp_path / "codes"))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: journal_count(journal) >= n or kiosk.poll() is not None, 60, what="N check-ins journaled")
        assert kiosk.poll() is None, kiosk.communicate()[1]
        assert journal_states(journal) == {"pending": n}   # broker down: journaled, nothing sent
        broker.start()
        with running_collector(cfg, collector_db, shared=False) as collector:
            wait_for(done(cfg, n), 60, what="every event confirmed by the subscriber")
            assert collector.result.stored == n
        kiosk.send_signal(signal.SIGTERM)
        out, err = kiosk.communicate(timeout=30)
    finally:
        kiosk.kill()
    assert kiosk.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["journaled"] == n and summary["checkins"] == n and summary["repeats"] > 0
    got = collected_ids(collector_db)
    assert len(got) == len(set(got)) == n
    assert_exactly_once(collector_db, journal)
    events = collected_events(collector_db)
    assert {(e["kind"], e["verdict"], e["mode"]) for e in events} == {("personal_qr", "green", "trace")}
    assert sorted(e["seq"] for e in events) == list(range(1, n + 1))
    assert not any(text.split("|")[0] in json.dumps(e) for e in events for text in texts)  # ids masked


def collected_events(db_path: Path) -> list[dict]:
    import sqlite3

    db = sqlite3.connect(str(db_path))
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM checkins")]   # the fleet store's table
    finally:
        db.close()


# ---------------------------------------------------------------- connection faults: visible, logged once, retried
def offline_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kiosk.mqtt.uplink" and "MQTT offline" in r.getMessage()]


def retried(up, times):
    return lambda: up.state["attempts"] >= times


def test_tls_with_the_right_ca_and_client_certificate_drains(tmp_path, broker_factory, tls_material, uplinks):
    broker = broker_factory("tls", extra=tls_listener(tls_material, require_certificate=True)).start()
    cfg = kiosk_config(tmp_path, broker.port, tls=True, confirm=False, ca_file=str(tls_material["ca_crt"]),
                       cert_file=str(tls_material["client_crt"]), key_file=str(tls_material["client_key"]))
    fill_journal(cfg.journal.path, 50)
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    up.start()
    assert up.wait_drained(30)
    assert journal_states(cfg.journal.path) == {"confirmed": 50} and up.state["state"] == "online"


@pytest.mark.parametrize("fault, words", [
    ("unknown CA", "certificate was not accepted"),
    ("no client certificate", "client certificate"),
])
def test_tls_failures_are_visible_logged_once_retried_and_lose_nothing(tmp_path, broker_factory, tls_material,
                                                                      uplinks, caplog, fault, words):
    broker = broker_factory("tls", extra=tls_listener(tls_material, require_certificate=True)).start()
    ca = tls_material["other_ca_crt" if fault == "unknown CA" else "ca_crt"]
    # keepalive far above the wait below: a link closed before CONNACK is retried at backoff pace, not keepalive
    cfg = kiosk_config(tmp_path, broker.port, tls=True, ca_file=str(ca), keepalive=120)
    fill_journal(cfg.journal.path, 5)
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    up.start()
    wait_for(retried(up, 4), 30, what="several attempts")
    assert up.state["state"] == "offline" and words in up.state["last_error"], up.state
    assert "mqtt_offline" in up.alarms()
    assert len(offline_lines(caplog)) == 1, offline_lines(caplog)   # once per state change, not per attempt
    assert journal_states(cfg.journal.path) == {"pending": 5}


class AcceptThenDrop:
    """A TCP listener on loopback that accepts each connection and closes it at once (a broken broker)."""

    def __init__(self, port: int):
        import socket
        import threading

        self.accepted = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def test_a_broker_that_accepts_then_drops(tmp_path, broker_factory, uplinks, caplog):
    caplog.set_level(logging.INFO, "kiosk.mqtt.uplink")
    broker = broker_factory()          # its port, not started yet: a broken server answers there first
    dropper = AcceptThenDrop(broker.port)
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=RESEND, keepalive=120)  # see above
    fill_journal(cfg.journal.path, 300)
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    try:
        up.start()
        wait_for(lambda: dropper.accepted >= 4, 30, what="the kiosk to retry")
        assert up.state["state"] == "offline" and "closed the connection" in up.state["last_error"], up.state
        assert len(offline_lines(caplog)) == 1, offline_lines(caplog)
        assert journal_states(cfg.journal.path) == {"pending": 300}
    finally:
        dropper.close()
    broker.start()
    with running_collector(cfg, tmp_path / "collector.sqlite"):
        wait_for(done(cfg, 300), 30, what="all confirmed once a real broker answers")
    assert [m for m in (r.getMessage() for r in caplog.records) if m.startswith("MQTT online:")] != []
    assert_exactly_once(tmp_path / "collector.sqlite", cfg.journal.path)

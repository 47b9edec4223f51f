"""Uplink against a real Mosquitto: events, acks, downlink commands, alarms and connection errors."""
import json
import socket
import threading
from datetime import datetime, timezone

import pytest

from conftest import (admission, assert_exactly_once, fill_journal, journal_states, kiosk_config, running_collector,
                      stamped, wait_for)
from fakes import QueueReader
from kiosk import remote
from kiosk.errors import DataError
from kiosk.stores.journal import Journal
from kiosk.model import GREEN, Decision
from kiosk.mqtt.backoff import backoff_delay
from kiosk.mqtt.downlink import parse_ack
from kiosk.mqtt.uplink import Uplink

PREFIX = "kiosk/s1/d1"


def ping_deps(up):
    """Dependencies for the commands these tests run: only `ping` reads them (the uplink's state)."""
    return remote.Dependencies(roster=None, trust=None, revocations=None, keys=None, site=None, clock=None,
                               link_state=lambda: up.state)


@pytest.fixture
def make_uplink():
    made = []

    def make(cfg, snapshot=None, **kw):
        up = Uplink(cfg, cfg.journal.path, **kw)
        if snapshot is not None:
            up.set_app_snapshot(snapshot)
        made.append(up)
        up.start()
        return up

    yield make
    for up in made:
        up.stop()


def online(up):
    return up.state["state"] == "online"


def test_journaled_checkins_are_published_once_and_final_on_puback(tmp_path, broker, watcher_factory, make_uplink):
    cfg = kiosk_config(tmp_path, broker.port, confirm=False)
    watcher = watcher_factory(broker.port, f"{PREFIX}/checkin")
    journal = Journal(cfg.journal.path, site="s1", device="d1")
    up = make_uplink(cfg)
    sent = []
    for i in range(5):
        sent.append(journal.append(Decision(kind="personal_qr", verdict=GREEN, reason="valid",
                                            subject={"name": "N*** A"}, subject_ref=f"r{i}",
                                            at=datetime.now(timezone.utc))))
        up.notify()
    received = [watcher.next(f"{PREFIX}/checkin") for _ in sent]
    assert [e["id"] for e in received] == [e["id"] for e in sent]  # in seq order
    assert received[0]["v"] == 1 and received[0]["subject"] == {"name": "N*** A"} and received[0]["seq"] == 1
    assert up.wait_drained(10)
    wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 5}, 10, what="PUBACK to be final")
    journal.close()


def test_consumer_watermark_confirms(tmp_path, broker, watcher_factory, make_uplink):
    cfg = kiosk_config(tmp_path, broker.port)
    ids = fill_journal(cfg.journal.path, 6)
    watcher = watcher_factory(broker.port, f"{PREFIX}/checkin")
    up = make_uplink(cfg)
    assert up.wait_drained(10)
    wait_for(lambda: journal_states(cfg.journal.path) == {"published": 6}, 10, what="PUBACKs")
    watcher.publish(f"{PREFIX}/ack", {"upto_seq": 4})
    wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 4, "published": 2}, 10, what="watermark")
    watcher.publish(f"{PREFIX}/ack", {"ids": ids[4:]})
    wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 6}, 10, what="id ack")
    assert up.status()["outbox"]["last_ack_at"] is not None


class RosterHandler:
    """Validates completely, then applies: the shape of the command handlers in kiosk.remote."""

    def __init__(self):
        self.version, self.entries, self.calls = 0, [], 0

    def __call__(self, payload, deps):
        self.calls += 1
        entries = payload.get("entries")
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
            raise DataError("roster: 'entries' must be a list of rows with an id")
        self.version, self.entries = payload["version"], entries
        return {"count": len(entries), "version": self.version}


def run_commands_until(up, handlers, watcher, topic, timeout=10.0):
    """The app's main loop in miniature: run queued commands (and `ping`) until the result on `topic` arrives."""
    import time

    from kiosk.stores.commands import ledger_path

    admitted = admission(ledger_path(up.journal_path))   # read from the file each time, as after a restart
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up.run_pending_commands({"ping": remote.ping, **handlers}, ping_deps(up), admitted)
        try:
            return watcher.next(topic, timeout=0.05)
        except AssertionError:
            continue
    raise AssertionError(f"no result on {topic}")


def test_roster_command_takes_effect_on_the_app_thread(tmp_path, broker, watcher_factory, make_uplink):
    cfg = kiosk_config(tmp_path, broker.port)
    fill_journal(cfg.journal.path, 1)
    watcher = watcher_factory(broker.port, f"{PREFIX}/cmd/+/result")
    up = make_uplink(cfg)
    wait_for(lambda: online(up), 10, what="online")
    roster = RosterHandler()
    command = stamped({"id": "c-1", "entries": [{"id": "x1"}, {"id": "x2"}]})
    watcher.publish(f"{PREFIX}/cmd/roster", command)
    result = run_commands_until(up, {"roster": roster}, watcher, f"{PREFIX}/cmd/roster/result")
    version = command["version"]
    assert result == {"v": 1, "ok": True, "error": None, "result": {"count": 2, "version": version}, "id": "c-1"}
    assert roster.version == version and len(roster.entries) == 2


@pytest.mark.parametrize("name, payload, error", [
    ("roster", b"\xff not json", "malformed"),
    ("roster", b"[1, 2]", "malformed"),
    ("roster", json.dumps(stamped({"entries": "everyone"})).encode(), "entries"),
    ("reboot", b"{}", "unknown command"),
    ("roster", b'{"entries": []}', "'version' must be"),
])
def test_bad_commands_are_rejected_and_change_nothing(tmp_path, broker, watcher_factory, make_uplink,
                                                      name, payload, error):
    cfg = kiosk_config(tmp_path, broker.port)
    fill_journal(cfg.journal.path, 1)
    watcher = watcher_factory(broker.port, f"{PREFIX}/cmd/+/result")
    up = make_uplink(cfg)
    wait_for(lambda: online(up), 10, what="online")
    roster = RosterHandler()
    watcher.publish(f"{PREFIX}/cmd/{name}", payload)
    result = run_commands_until(up, {"roster": roster}, watcher, f"{PREFIX}/cmd/{name}/result")
    assert result["ok"] is False and error in result["error"]
    assert roster.version == 0 and roster.entries == []
    assert up.counters["commands_rejected"] == 1


def test_a_command_replayed_after_a_restart_is_refused(tmp_path, broker, watcher_factory, make_uplink):
    """The last accepted version of each kind is kept in a file beside the journal: a replay (the same
    command, or an older one) is refused after the kiosk restarts as before it."""
    from kiosk.stores.commands import ledger_path

    cfg = kiosk_config(tmp_path, broker.port)
    fill_journal(cfg.journal.path, 1)
    watcher = watcher_factory(broker.port, f"{PREFIX}/cmd/+/result")
    old, new = stamped({"id": "v3", "entries": [{"id": "x1"}]}), stamped({"id": "v10", "entries": [{"id": "x2"}]})
    roster = RosterHandler()
    up = make_uplink(cfg)
    wait_for(lambda: online(up), 10, what="online")
    for command in (old, new):
        watcher.publish(f"{PREFIX}/cmd/roster", command)
        assert run_commands_until(up, {"roster": roster}, watcher, f"{PREFIX}/cmd/roster/result")["ok"]
    up.stop()
    assert json.loads(ledger_path(cfg.journal.path).read_text())["roster"]["version"] == new["version"]
    up = make_uplink(cfg)                                            # the kiosk restarted
    for replay in (old, new):
        watcher.publish(f"{PREFIX}/cmd/roster", replay)
        answer = run_commands_until(up, {"roster": roster}, watcher, f"{PREFIX}/cmd/roster/result")
        assert answer["ok"] is False and answer["id"] == replay["id"], answer
        assert f"last accepted (version {new['version']}" in answer["error"] or "repeated" in answer["error"]
    assert roster.entries == [{"id": "x2"}] and roster.calls == 2
    watcher.command(f"{PREFIX}/cmd/roster", {"id": "v11", "entries": [{"id": "x3"}]})
    assert run_commands_until(up, {"roster": roster}, watcher, f"{PREFIX}/cmd/roster/result")["ok"]


def test_a_flood_of_commands_is_dropped_with_one_warning(tmp_path, broker, watcher_factory, make_uplink, caplog):
    """10,000 commands at once (once: 9,040 warning lines): the queue keeps its bound, the drops are counted and
    the first is logged, the rest summed up once the burst is over."""
    import logging

    from kiosk.mqtt.downlink import MAX_QUEUED_COMMANDS

    caplog.set_level(logging.WARNING, "kiosk.mqtt.downlink")
    cfg = kiosk_config(tmp_path, broker.port)
    fill_journal(cfg.journal.path, 0)
    up = make_uplink(cfg)
    wait_for(lambda: online(up), 10, what="online")
    flood = watcher_factory(broker.port, f"{PREFIX}/cmd/+/result")
    for i in range(10_000):
        flood.client.publish(f"{PREFIX}/cmd/ping", json.dumps(stamped({"id": i})), qos=0)
    wait_for(lambda: len(up.commands) + up.commands.dropped == 10_000, 60, what="the flood received")
    assert len(up.commands) == MAX_QUEUED_COMMANDS and up.commands.dropped == 10_000 - MAX_QUEUED_COMMANDS
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1 and drops[0].startswith("downlink command dropped: 100 commands"), drops[:3]


def test_only_own_and_site_wide_commands_are_received(tmp_path, broker, watcher_factory, make_uplink):
    cfg = kiosk_config(tmp_path, broker.port)
    fill_journal(cfg.journal.path, 1)
    watcher = watcher_factory(broker.port, f"{PREFIX}/cmd/+/result")
    up = make_uplink(cfg)
    wait_for(lambda: online(up), 10, what="online")
    roster = RosterHandler()
    watcher.command("kiosk/s1/d2/cmd/roster", {"entries": [{"id": "other"}]})
    watcher.command("kiosk/s2/all/cmd/roster", {"entries": [{"id": "other site"}]})
    watcher.command("kiosk/s1/all/cmd/ping", {"id": 42})   # site-wide: received, after the two above
    result = run_commands_until(up, {"roster": roster}, watcher, f"{PREFIX}/cmd/ping/result")
    assert result["ok"] and result["id"] == 42 and result["result"]["pong"] is True
    assert roster.calls == 0 and up.counters["commands"] == 1


def test_telemetry_carries_app_counters_and_outbox_depth(tmp_path, broker, watcher_factory, make_uplink):
    cfg = kiosk_config(tmp_path, broker.port, telemetry_seconds=1)
    fill_journal(cfg.journal.path, 3)
    watcher = watcher_factory(broker.port, f"{PREFIX}/telemetry", f"{PREFIX}/status")
    up = make_uplink(cfg, snapshot={"frames": 12, "decode_rate_fps": 29.5})
    status = watcher.next(f"{PREFIX}/status", where=lambda b: b["state"] == "online")
    assert status["version"] and status["since"]
    body = watcher.next(f"{PREFIX}/telemetry", where=lambda b: b["outbox"]["pending"] == 0)
    assert body["frames"] == 12 and body["outbox"]["published_unconfirmed"] == 3
    assert body["uplink"]["uptime_s"] >= 0 and "last_error" in body["uplink"]
    assert up.alarms() == []


def test_outbox_bound_drops_oldest_and_raises_the_alarm_on_status_and_telemetry(tmp_path, broker_factory,
                                                                                  watcher_factory, make_uplink):
    broker = broker_factory()                  # not started yet: nothing listens on its port
    cfg = kiosk_config(tmp_path, broker.port, outbox_max_rows=100, telemetry_seconds=1, confirm=False)
    ids = fill_journal(cfg.journal.path, 150)
    up = make_uplink(cfg)
    wait_for(lambda: "outbox_full" in up.alarms(), 10, what="outbox alarm")
    assert "mqtt_offline" in up.alarms()
    assert "connection refused" in up.state["last_error"]
    status = up.status()
    assert status["outbox"]["dropped"] == 50 and status["outbox"]["pending"] == 100 and status["dropped"] == 50
    assert status["outbox"]["oldest_pending_ts"] is not None and status["outbox"]["full"] is True
    broker.start()
    watcher = watcher_factory(broker.port, f"{PREFIX}/telemetry")
    body = watcher.next(f"{PREFIX}/telemetry", where=lambda b: b["outbox"]["pending"] == 0)
    assert body["outbox"]["dropped"] == 50  # the drops stay counted once the queue has room again
    wait_for(lambda: "outbox_full" not in up.alarms(), 10, what="outbox alarm cleared after the drain")
    states = journal_states(cfg.journal.path)
    assert states == {"dropped": 50, "confirmed": 100} and len(ids) == 150   # the journal still has all 150


def test_refused_credentials_are_visible_and_nothing_is_lost(tmp_path, broker_factory, make_uplink):
    import subprocess

    folder = tmp_path / "auth"
    folder.mkdir()
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), "kiosk-s1-d1", "right"], check=True)
    broker = broker_factory("auth", extra=("allow_anonymous false", f"password_file {folder / 'passwd'}")).start()
    cfg = kiosk_config(tmp_path, broker.port, username="kiosk-s1-d1", password="wrong")
    fill_journal(cfg.journal.path, 3)
    up = make_uplink(cfg)
    wait_for(lambda: up.state["last_error"] is not None, 10, what="refusal")
    assert "refused" in up.state["last_error"] and up.state["state"] == "offline"
    assert journal_states(cfg.journal.path) == {"pending": 3}


def test_tls_against_a_plain_listener_fails_visibly(tmp_path, broker, make_uplink):
    cfg = kiosk_config(tmp_path, broker.port, tls=True)
    fill_journal(cfg.journal.path, 2)
    up = make_uplink(cfg)
    wait_for(lambda: up.state["last_error"] is not None, 15, what="TLS error")
    assert "TLS" in up.state["last_error"] or "CONNACK" in up.state["last_error"]
    assert up.wait_drained(0.2) is False
    assert journal_states(cfg.journal.path) == {"pending": 2}


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    assert backoff_delay(1, 1, 120, rand=lambda: 1.0) == 1
    assert backoff_delay(4, 1, 120, rand=lambda: 1.0) == 8
    assert backoff_delay(4, 1, 120, rand=lambda: 0.0) == 4
    assert backoff_delay(50, 1, 120, rand=lambda: 1.0) == 120


def test_parse_ack_ignores_garbage():
    assert parse_ack(b'{"ids": ["a", 3, ""], "upto_seq": 5}') == (["a"], 5)
    assert parse_ack(b"not json") == ([], None)
    assert parse_ack(b'{"upto_seq": true}') == ([], None)


# ---------------------------------------------------------------- downlink into the running App
KHACH = "C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|"


def app_config(tmp_path, port):
    from kiosk import config

    return config.load(None, data={
        "site": {"id": "s1", "device": "d1", "mode": "health", "debounce_seconds": 0},
        "clock": {"source": "fixed", "start": "2021-11-15T09:00:00+07:00"},
        "camera": {"type": "none"}, "display": {"type": "none"}, "gpio": {"pin_factory": "mock"},
        "roster": {"path": str(tmp_path / "roster.json"), "seed_csv": ""},
        "trust": {"path": str(tmp_path / "trust.json"), "seed_file": "", "max_age_hours": 0},
        "journal": {"path": str(tmp_path / "journal.sqlite")},
        "mqtt": {"enabled": True, "port": port, "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 1.0,
                 "keepalive": 5, "confirm": False}})


@pytest.fixture
def running_app(tmp_path, broker):
    """The real App (roster, trust, journal, uplink) on its own thread, reading texts from a QueueReader."""
    from kiosk.app import App

    reader, made = QueueReader(), {}
    ready = threading.Event()

    def main():
        made["app"] = App(app_config(tmp_path, broker.port), devices={"camera": None, "reader": reader})
        ready.set()
        made["result"] = made["app"].run()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield made["app"], reader
    made["app"].stop()
    thread.join(10)
    assert not thread.is_alive() and made["result"].stopped_because == "stopped"


def test_downlink_commands_take_effect_on_the_next_scan_and_bad_ones_change_nothing(broker, watcher_factory,
                                                                                 running_app):
    app, reader = running_app
    watcher = watcher_factory(broker.port, f"{PREFIX}/checkin", f"{PREFIX}/cmd/+/result", f"{PREFIX}/status")
    watcher.next(f"{PREFIX}/status", where=lambda b: b["state"] == "online")

    def scan():
        reader.texts.put(KHACH)
        event = watcher.next(f"{PREFIX}/checkin")
        return event["verdict"], event["reason"], event["direction"], event["mode"]

    def command(topic_name, body, *, site_wide=False):
        """A command stamped at the kiosk's own (fixed, 2021) clock; bytes sent as they are."""
        base = "kiosk/s1/all" if site_wide else PREFIX
        if isinstance(body, dict):
            body = stamped(body, at=app.clock.now().timestamp())
        watcher.publish(f"{base}/cmd/{topic_name}", body)
        return body, watcher.next(f"{PREFIX}/cmd/{topic_name}/result")

    assert scan() == ("black", "no_health_data", "in", "health")
    sent, answer = command("roster", {"id": "r-1", "op": "replace",
                                      "entries": [{"id": "C0000004", "doses": "2021-10-01"}]})
    version = sent["version"]
    assert answer == {"v": 1, "ok": True, "error": None, "result": {"count": 1, "version": version}, "id": "r-1"}
    assert scan() == ("green", "vaccinated_14d", "in", "health")

    # malformed or invalid: rejected with a reason, the roster (and the verdict) unchanged
    for bad in (b"{not json", {"op": "replace", "entries": [{"id": "X1", "doses": "2021-10-01"},
                                                            {"id": "X2", "doses": "yesterday"}]},
                {"op": "remove", "keys": "C0000004"}, {"op": "shuffle", "entries": []}):
        _, answer = command("roster", bad)
        assert answer["ok"] is False and answer["error"], bad
    _, answer = command("roster", json.dumps(sent).encode())     # the first command again: a replay
    assert answer["ok"] is False and "repeated" in answer["error"]
    assert (app.roster.count, app.roster.version) == (1, version)
    assert scan() == ("green", "vaccinated_14d", "in", "health")

    # trust: a bad certificate is rejected whole
    _, answer = command("trust", {"entries": [{"kid": "AAAA", "certificate": "!!"}]})
    assert answer["ok"] is False and app.trust.count == 0

    # config: own topic applies; site-wide topic is heard too, and a bad value changes nothing
    assert command("config", {"direction": "out"})[1]["result"] == {"direction": "out", "mode": "health"}
    _, answer = command("config", {"mode": "party", "direction": "in"}, site_wide=True)
    assert answer["ok"] is False and "mode" in answer["error"]
    assert scan() == ("green", "vaccinated_14d", "out", "health")

    sent, answer = command("roster", {"op": "remove", "keys": ["C0000004"]})
    assert answer["result"] == {"removed": 1, "count": 0, "version": sent["version"]}
    assert scan() == ("black", "no_health_data", "out", "health")
    assert command("ping", {"id": 5})[1]["result"]["pong"] is True
    assert app.uplink.counters["commands_rejected"] == 7


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_both_protocol_versions_deliver_confirm_and_keep_the_downlink_session(tmp_path, broker, watcher_factory,
                                                                              make_uplink, protocol):
    cfg = kiosk_config(tmp_path, broker.port, protocol=protocol)
    fill_journal(cfg.journal.path, 300)
    watcher = watcher_factory(broker.port, f"{PREFIX}/cmd/+/result")
    collector_db = tmp_path / "collector.sqlite"
    with running_collector(cfg, collector_db):       # the collector speaks the same protocol version
        up = make_uplink(cfg)
        wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 300}, 30, what="all confirmed")
        assert up.current_link()[1].socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        up.stop()
    assert_exactly_once(collector_db, cfg.journal.path)
    # a command sent while the kiosk is away waits in its persistent session and is answered on return
    watcher.command(f"{PREFIX}/cmd/ping", {"id": "while-away"})
    up = make_uplink(cfg)
    result = run_commands_until(up, {}, watcher, f"{PREFIX}/cmd/ping/result")
    assert result["ok"] and result["id"] == "while-away"

"""A supervised uplink: a worker that dies raises `uplink_stopped` (screen, retained status, telemetry), is
restarted with backoff, and every journaled event is still delivered. Faults are injected through the client
factory (tests/fakes.py's FaultyClient makes publishing a check-in raise inside the worker), on the fake
broker and on a real mosquitto. Telemetry carries the app thread's snapshot: no uplink thread touches the
roster or trust stores.
"""
from __future__ import annotations

import json
import threading

from luma.core.device import dummy

from conftest import (assert_exactly_once, collected_ids, fill_journal, journal_states, kiosk_config,
                      running_collector, stamped, wait_for)
from drivers.display_luma import LumaDisplay
from fakes import FakeBroker, Faults, QueueReader
from kiosk import config
from kiosk.mqtt.client import make_client
from kiosk.mqtt.uplink import Uplink
from kiosk.i18n import STRINGS
from kiosk.screens import IdleView, render

PREFIX = "kiosk/s1/d1"
STATUS = f"{PREFIX}/status"
TIMEOUT = 30.0


def statuses(broker):
    """The retained status messages the kiosk published, as (state, alarms or reason)."""
    return [(b["state"], b.get("alarms", b.get("reason"))) for b in (m.json() for m in broker.messages(STATUS))]


def test_a_dying_worker_raises_the_alarm_is_restarted_and_every_event_is_delivered(tmp_path, uplinks, caplog):
    broker, faults = FakeBroker(), Faults(3)
    cfg = kiosk_config(tmp_path, 1883, confirm=False)
    ids = fill_journal(cfg.journal.path, 200)
    up = Uplink(cfg, cfg.journal.path, client_factory=faults.wrap(broker.client))
    uplinks.append(up)
    up.start()
    wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 200}, TIMEOUT, what="every event")
    broker.wait_for(lambda: statuses(broker)[-1] == ("online", []), what="the alarm cleared in the status")
    assert faults.injected == 3 and up.worker_restarts == 3 and up.alarms() == []
    assert statuses(broker) == [("online", []), ("online", ["uplink_stopped"]), ("online", [])]
    telemetry = [m.json()["uplink"] for m in broker.messages(f"{PREFIX}/telemetry")]
    assert telemetry[0]["alarms"] == ["uplink_stopped"] and telemetry[0]["worker_restarts"] == 3
    assert set(m.json()["id"] for m in broker.messages(f"{PREFIX}/checkin")) == set(ids)
    logged = [r.getMessage() for r in caplog.records if r.name == "kiosk.mqtt.uplink"]
    assert logged.count("uplink-worker stopped; restarting it with backoff") == 1       # once, not per death
    assert "uplink-worker working again after 3 restart(s)" in logged


def test_a_dying_connection_thread_is_restarted_and_its_client_closed(tmp_path, uplinks):
    broker = FakeBroker()
    cfg = kiosk_config(tmp_path, 1883, confirm=False)
    fill_journal(cfg.journal.path, 50)
    up = Uplink(cfg, cfg.journal.path, client_factory=broker.client)
    uplinks.append(up)
    went_online = up._went_online
    calls = []

    def fails_once():          # a bug on the connection thread, after the CONNACK
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        went_online()

    up._went_online = fails_once
    up.start()
    wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 50}, TIMEOUT, what="every event")
    broker.wait_for(lambda: statuses(broker)[-1] == ("online", []), what="the alarm cleared in the status")
    assert statuses(broker) == [("online", []), ("offline", "restarting"), ("online", ["uplink_stopped"]),
                                ("online", [])]
    first, second = broker.made
    assert first._thread is None and "kiosk-s1-d1" in broker.clients and broker.clients["kiosk-s1-d1"] is second
    assert up.worker_restarts == 1 and up.alarms() == [] and up.state["state"] == "online"


def test_on_a_real_broker_a_dying_worker_loses_nothing(tmp_path, broker, watcher_factory, uplinks):
    faults = Faults(3)
    cfg = kiosk_config(tmp_path, broker.port, resend_after_seconds=5)
    fill_journal(cfg.journal.path, 2000)
    watcher = watcher_factory(broker.port, STATUS)
    collector_db = tmp_path / "collector.sqlite"
    with running_collector(cfg, collector_db):
        up = Uplink(cfg, cfg.journal.path, client_factory=faults.wrap(make_client))
        uplinks.append(up)
        up.start()
        watcher.next(STATUS, where=lambda b: b.get("alarms") == ["uplink_stopped"])
        wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 2000}, 60, what="every event confirmed")
        watcher.next(STATUS, where=lambda b: b.get("alarms") == [])
    assert faults.injected == 3 and up.worker_restarts == 3 and up.alarms() == []
    assert_exactly_once(collector_db, cfg.journal.path)
    assert len(collected_ids(collector_db)) == 2000


# ---------------------------------------------------------------- in the running App
def app_config(tmp_path, **extra):
    mqtt = {"enabled": True, "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 1.0, "confirm": False,
            **extra.pop("mqtt", {})}
    return config.load(None, data={
        "site": {"id": "s1", "device": "d1", "mode": "trace", "debounce_seconds": 0, "language": "en"},
        "clock": {"source": "assume_synced"}, "camera": {"type": "none"}, "gpio": {"pin_factory": "mock"},
        "display": {"result_seconds": 0.2},
        "roster": {"path": str(tmp_path / "roster.json"), "seed_csv": "", **extra.pop("roster", {})},
        "trust": {"path": str(tmp_path / "trust.json"), "seed_file": "", "max_age_hours": 0,
                  **extra.pop("trust", {})},
        "journal": {"path": str(tmp_path / "journal.sqlite")}, "mqtt": mqtt})


class RunningApp:
    """The real App on its own thread with a queue reader, luma's dummy panel and a client factory."""

    def __init__(self, cfg, factory, prepare=lambda app: None):
        from kiosk.app import App

        self.reader, self.panel = QueueReader(), LumaDisplay(dummy(width=128, height=64, mode="1"))
        made, ready = {}, threading.Event()

        def main():
            made["app"] = App(cfg, devices={"camera": None, "reader": self.reader, "display": self.panel,
                                            "mqtt_client": factory})
            prepare(made["app"])
            ready.set()
            made["result"] = made["app"].run()

        self.thread = threading.Thread(target=main, name="app", daemon=True)
        self.thread.start()
        assert ready.wait(TIMEOUT)
        self.app, self.made = made["app"], made

    def scan(self, n):
        for i in range(n):
            self.reader.texts.put(f"0790900{i:05d}|NGUYEN VAN THU|1990-12-01|0|1630000000{i:08d}|")

    def shows(self, alarms):
        expected = render(IdleView(alarms=tuple(alarms)), (128, 64), "1", "en").tobytes()
        return lambda: self.panel.device.image is not None and self.panel.device.image.tobytes() == expected

    def stop(self):
        self.app.stop()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive() and self.made["result"].stopped_because == "stopped"


def test_the_alarm_has_a_screen_text_in_both_languages():
    assert STRINGS["vi"]["uplink_stopped"] == "Lỗi bộ gửi dữ liệu"
    assert STRINGS["en"]["uplink_stopped"] == "Uplink stopped"


def test_the_alarm_is_on_the_screen_while_the_worker_keeps_dying_and_clears_once_it_works(tmp_path):
    broker, faults = FakeBroker(), Faults(10**9)
    cfg = app_config(tmp_path)
    running = RunningApp(cfg, faults.wrap(broker.client))
    try:
        running.scan(5)
        wait_for(running.shows(["uplink_stopped"]), TIMEOUT, what="the alarm on the screen")
        assert "uplink_stopped" in running.app.uplink.app_snapshot["alarms"]     # what telemetry carries
        broker.wait_for(lambda: ("online", ["uplink_stopped"]) in statuses(broker), what="the alarm in the status")
        wait_for(lambda: running.app.uplink.worker_restarts >= 2, TIMEOUT, what="restarts with backoff")
        assert journal_states(cfg.journal.path) == {"pending": 5} and running.shows(["uplink_stopped"])()
        faults.left = 0                                                  # the fault goes away
        wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": 5}, TIMEOUT, what="every event")
        wait_for(running.shows([]), TIMEOUT, what="the alarm gone from the screen")
        broker.wait_for(lambda: statuses(broker)[-1] == ("online", []), what="the alarm gone from the status")
    finally:
        running.stop()


def test_telemetry_carries_the_app_snapshot_and_only_the_app_thread_touches_the_stores(tmp_path):
    """Trust and revocation lists, the site's key ring: every read (a file re-read check) and write. (The roster
    is made for other threads, each change one SQLite transaction: its commands run on the roster worker.)"""
    broker = FakeBroker()
    # stale limits on: staleness checks read the stores' files (the old telemetry did that on the uplink thread)
    cfg = app_config(tmp_path, mqtt={"telemetry_seconds": 1}, roster={"max_age_hours": 48},
                     trust={"max_age_hours": 168})
    touched: set[str] = set()

    def record_threads(app):
        for store in (app.roster, app.trust, app.revocations, app.keys):
            for name in ("_refresh", "_write"):
                method = getattr(store, name, None)
                if method is None:
                    continue

                def recorded(*args, _method=method, **kwargs):
                    touched.add(threading.current_thread().name)
                    return _method(*args, **kwargs)

                setattr(store, name, recorded)

    running = RunningApp(cfg, broker.client, prepare=record_threads)
    try:
        operator = broker.client(client_id="operator")
        operator.connect("127.0.0.1")
        operator.loop_start()
        broker.wait_for(lambda: "kiosk-s1-d1" in broker.clients and "operator" in broker.clients, what="online")
        running.scan(3)
        operator.publish(f"{PREFIX}/cmd/roster", json.dumps(stamped({"id": "r", "entries": [{"id": "079090000001"}]})),
                         qos=1)
        operator.publish(f"{PREFIX}/cmd/ping", json.dumps(stamped({"id": "p"})), qos=1)

        def telemetry_with(**fields):
            return [b for b in (m.json() for m in broker.messages(f"{PREFIX}/telemetry"))
                    if all(b.get(k) == v for k, v in fields.items())]

        broker.wait_for(lambda: len(telemetry_with(checkins=3)) >= 2, what="two telemetry messages after the scans")
        body = telemetry_with(checkins=3)[-1]
        assert body["journaled"] == 3 and body["mode"] == "trace" and "trust_stale" in body["alarms"]
        answers = {m.json()["id"]: m.json() for m in broker.messages(f"{PREFIX}/cmd/+/result")}
        assert answers["r"]["result"]["count"] == 1 and answers["p"]["result"]["pong"] is True
        operator.disconnect()
        operator.loop_stop()
    finally:
        running.stop()
    assert touched == {"app"}

"""Downlink command handlers (kiosk.remote) on the real App's roster, trust list and site state."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import replace

import pytest

from kiosk import config, remote
from kiosk.app import App
from kiosk.errors import DataError, KioskError

KHACH = "C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|"


@pytest.fixture
def app(tmp_path):
    app = App(config.load(None, [
        f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
        f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens", "mqtt.enabled=false"]))
    yield app
    app.close()


def run(app, name, payload):
    """A command's result; a roster command's work is done on the roster worker: its Future is waited for."""
    out = remote.COMMAND_HANDLERS[name](payload, app.commands)
    return out.result(timeout=30) if isinstance(out, Future) else out


def test_a_roster_command_runs_on_the_roster_worker_not_the_app_thread(app):
    threads = []
    real = app.roster.apply
    app.roster.apply = lambda payload: threads.append(threading.current_thread().name) or real(payload)
    pending = remote.COMMAND_HANDLERS["roster"]({"entries": [{"id": "079090000001"}]}, app.commands)
    assert isinstance(pending, Future)
    assert pending.result(timeout=30) == {"count": 1, "version": 2}  # the seeded roster was version 1
    assert threads == ["roster update"]


def test_the_table_holds_every_command():
    assert set(remote.COMMAND_HANDLERS) == {"roster", "trust", "config", "ping"}


def test_roster_commands(app):
    before = app.roster.count
    assert before == 5
    out = run(app, "roster", {"op": "replace", "version": 7, "entries": [
        {"id": "079090000001", "qid": "163000000000000001", "doses": "2021-11-01", "staff": "yes"}]})
    assert out == {"count": 1, "version": 7}
    out = run(app, "roster", {"op": "add", "entries": [{"id": "C0000004", "recovered": "2021-10-01"}]})
    assert out["count"] == 2
    khach = app.pipeline.handle_text(KHACH)
    assert (khach.verdict, khach.reason) == ("green", "recovered_180d")
    assert run(app, "roster", {"op": "remove", "keys": ["C0000004"]}) == {"removed": 1, "count": 1, "version": 7}
    for bad in ({"op": "replace", "entries": [{"id": "079090000001", "doses": "yesterday"}]},
                {"op": "add", "entries": [{"name": "no id or qid"}]},
                {"op": "replace", "entries": "not a list"},
                {"op": "replace", "version": "7", "entries": []},
                {"op": "remove", "keys": "C0000004"},
                {"op": "shuffle", "entries": []}):
        with pytest.raises(DataError):
            run(app, "roster", bad)
        assert (app.roster.count, app.roster.version) == (1, 7), bad


def test_config_command(app):
    assert run(app, "config", {"direction": "out", "mode": "trace"}) == {"direction": "out", "mode": "trace"}
    decision = app.pipeline.handle_text(KHACH)
    assert (decision.mode, decision.direction, decision.verdict) == ("trace", "out", "green")
    for bad in ({"direction": "sideways"}, {"mode": "party"}, {"retention_days": 1}, {"mode": None}):
        with pytest.raises(DataError):
            run(app, "config", bad)
        assert (app.site.direction, app.site.mode) == ("out", "trace")


def test_trust_command_rejects_bad_entries(app):
    before = (app.trust.count, app.trust.kids())
    assert before[0] >= 1
    for bad in ({"entries": "nope"}, {"entries": []}, {"entries": [{"kid": "AAAA", "certificate": "!!"}]},
                {"entries": [{"kid": 1}]}, {"entries": [{}]}):
        with pytest.raises(KioskError):
            run(app, "trust", bad)
        assert (app.trust.count, app.trust.kids()) == before, bad


def test_ping_answers_with_the_link_state_and_the_time(app):
    deps = replace(app.commands, link_state=lambda: {"state": "online", "attempts": 0}, wall=lambda: 1636941600.0)
    out = remote.COMMAND_HANDLERS["ping"]({"id": 1}, deps)
    assert out["pong"] is True and out["version"] and out["ts"] == "2021-11-15T02:00:00+00:00"
    assert out["state"] == "online" and out["attempts"] == 0

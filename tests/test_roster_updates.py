"""Roster changes beside a running kiosk: the downlink `roster` command applied off the app thread (scans go
on, the answer comes with the command's id once the new roster is committed), and `kiosk roster import` from
another process, seen on the next scan. The real App, a real Mosquitto, real SQLite files."""
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import wait_for
from fakes import QueueReader
from test_uplink import app_config  # the App in health mode on the spec's day, debounce 0, no display

PREFIX = "kiosk/s1/d1"
REPO = Path(__file__).resolve().parents[1]
THU = "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<<"


class Running:
    """The App on its own thread ("app"), reading the test's texts; `prepare(app)` runs before the loop."""

    def __init__(self, cfg, prepare=lambda app: None):
        from kiosk.app import App

        self.reader, self.made, ready = QueueReader(), {}, threading.Event()

        def main():
            self.made["app"] = App(cfg, devices={"camera": None, "reader": self.reader})
            prepare(self.made["app"])
            self.made["app"].pipeline.keep_decisions = True
            ready.set()
            self.made["result"] = self.made["app"].run()

        self.thread = threading.Thread(target=main, name="app", daemon=True)
        self.thread.start()
        assert ready.wait(10)
        self.app = self.made["app"]

    def decide(self, text):
        """Scan `text`; (verdict, reason) once the app thread has decided it."""
        before = len(self.app.pipeline.decisions)
        self.reader.texts.put(text)
        wait_for(lambda: len(self.app.pipeline.decisions) > before, 10, what="a decision")
        decision = self.app.pipeline.decisions[before]
        return decision.verdict, decision.reason

    def stop(self):
        self.app.stop()
        self.thread.join(10)
        assert not self.thread.is_alive() and self.made["result"].stopped_because == "stopped"


def people(n):
    return [{"id": f"0790910{i:05d}", "doses": "2021-10-01"} for i in range(n)]


def test_a_roster_command_is_applied_while_the_kiosk_scans_and_answered_when_committed(tmp_path, broker,
                                                                                     watcher_factory):
    applying, release = threading.Event(), threading.Event()

    def slow_roster(app):
        """Roster work held at its start until the test has scanned (the worker is then mid-command)."""
        submit = app.commands.background

        def held(job):
            def job_when_released():
                applying.set()
                assert release.wait(30)
                return job()
            return submit(job_when_released)

        app.commands = replace(app.commands, background=held)

    running = Running(app_config(tmp_path, broker.port), prepare=slow_roster)
    try:
        watcher = watcher_factory(broker.port, f"{PREFIX}/cmd/+/result", f"{PREFIX}/status")
        watcher.next(f"{PREFIX}/status", where=lambda b: b["state"] == "online")
        assert running.decide(THU) == ("black", "no_health_data")
        entries = [{"id": "079090000001", "doses": "2021-11-01"}] + people(20_000)
        issued = running.app.clock.now().isoformat()    # the kiosk's (fixed, 2021) clock
        watcher.publish(f"{PREFIX}/cmd/roster", {"id": "big-1", "version": 5, "issued": issued, "entries": entries})
        assert applying.wait(10)
        # the worker holds the command: the app thread goes on scanning, on the roster it has
        assert running.decide(THU) == ("black", "no_health_data")
        assert running.decide(THU) == ("black", "no_health_data")
        assert running.app.roster.version is None and watcher.messages.empty()
        release.set()
        answer = watcher.next(f"{PREFIX}/cmd/roster/result")
        assert answer == {"v": 1, "ok": True, "error": None, "id": "big-1",
                          "result": {"count": 20_001, "version": 5}}
        assert running.decide(THU) == ("green", "vaccinated_14d")
        # an older version (a replay) is refused by the envelope, one the roster's own rules refuse is answered the
        # same way with its id; nothing changed
        watcher.publish(f"{PREFIX}/cmd/roster", {"id": "replayed", "version": 3, "issued": issued,
                                                 "entries": people(10)})
        answer = watcher.next(f"{PREFIX}/cmd/roster/result")
        assert (answer["id"], answer["ok"], answer["result"]) == ("replayed", False, None)
        assert "older than the last accepted (version 5" in answer["error"]
        watcher.publish(f"{PREFIX}/cmd/roster", {"id": "wipe", "version": 6, "issued": issued,
                                                 "entries": [{"id": "1"}]})
        answer = watcher.next(f"{PREFIX}/cmd/roster/result")
        assert (answer["id"], answer["ok"]) == ("wipe", False) and "row 1: id: not an ID number" in answer["error"]
        assert (running.app.roster.count, running.app.roster.version) == (20_001, 5)
        assert running.app.uplink.counters["commands_rejected"] == 2
    finally:
        release.set()
        running.stop()


def test_kiosk_roster_import_beside_the_running_kiosk_is_seen_on_the_next_scan(tmp_path):
    cfg = app_config(tmp_path, 1883)
    cfg = replace(cfg, mqtt=replace(cfg.mqtt, enabled=False))
    running = Running(cfg)
    try:
        assert running.decide(THU) == ("black", "no_health_data")
        csv = tmp_path / "roster.csv"
        csv.write_text("id;doses\n079090000001;2021-11-01\n", encoding="utf-8")
        config = tmp_path / "k.toml"
        config.write_text(f'[camera]\ntype = "none"\n[roster]\npath = "{cfg.roster.path}"\n')
        done = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(config), "roster", "import", str(csv)],
                              capture_output=True, text=True, cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        assert running.decide(THU) == ("green", "vaccinated_14d")
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _the_roster_worker_ends_with_the_app():
    yield
    assert not [t for t in threading.enumerate() if t.name == "roster update"]

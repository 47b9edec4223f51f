"""The composition root end to end: App over the bundled scenes with real decoder, journal, roster, PNG
screens and gpiozero's MockFactory; device failures injected at the device seam or with a real pty."""
from __future__ import annotations

import json
import os
import pty
import queue
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import tmp_sets
from fakes import BrokenDisplay, DeadReader, LoopWatchdog, ManualTime, QueueReader, ScriptedCamera
from kiosk import config
from kiosk.app import App, DeviceGuard
from kiosk.cli import main
from kiosk.commands.scan import load_grey
from kiosk.errors import DeviceError, StorageError
from kiosk.model import GREEN, Decision

REPO = Path(__file__).resolve().parents[1]
SCENES = REPO / "kiosk" / "data" / "scenes"
MANIFEST = json.loads((SCENES / "manifest.json").read_text())
TIMEOUT = 10.0


def make_cfg(tmp_path, *extra: str):
    return config.load(None, [
        f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
        f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens",
        "mqtt.enabled=false", "camera.retry_seconds=0.1", *extra])


def scene(name_part: str):
    path = next(p for p in sorted(SCENES.glob("*.jpg")) if name_part in p.name)
    return load_grey(str(path))


def journal_rows(tmp_path):
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM checkins ORDER BY seq")]
    finally:
        db.close()


def journaled_events(app) -> queue.SimpleQueue:
    events: queue.SimpleQueue = queue.SimpleQueue()
    app.pipeline.on_journaled = events.put
    return events


def app_in_thread(make_app):
    """Build and run an App on its own thread (the journal's SQLite connection belongs to one thread)."""
    result: dict = {}
    watchdog = LoopWatchdog()  # App.run calls ready() once every device is open

    def main():
        result["app"] = app = make_app()
        result["events"] = journaled_events(app)
        result["r"] = app.run(watchdog=watchdog)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert watchdog.started.wait(TIMEOUT)
    return thread, result


def wait_until(predicate, what: str):
    """Poll state owned by the App's thread, bounded."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# ---------------------------------------------------------------- the bundled scenes
def test_app_over_the_bundled_scenes(tmp_path):
    app = App(make_cfg(tmp_path))
    app.wait_for_screens = True
    app.pipeline.keep_decisions = True
    result = app.run()
    assert result.stopped_because == "end_of_input"
    expected = [e for e in MANIFEST["entries"] if e["texts"]]
    # the same person in consecutive frames is one check-in
    distinct = [e for i, e in enumerate(expected) if i == 0 or e["texts"] != expected[i - 1]["texts"]]
    assert result.frames == len(MANIFEST["entries"])
    c = result.counters
    assert c["checkins"] == len(distinct) == result.journal_rows
    for verdict in ("green", "black", "invalid"):
        assert c[verdict] == sum(e["verdict"] == verdict for e in distinct), verdict
    assert [(d.kind, d.verdict, d.reason) for d in app.pipeline.decisions] == \
        [(e["kind"], e["verdict"], e["reason"]) for e in distinct]
    rows = journal_rows(tmp_path)
    assert [r["verdict"] for r in rows] == [e["verdict"] for e in distinct]
    screens = sorted((tmp_path / "screens").glob("*.png"))
    results = [p for p in screens if "idle" not in p.name]
    assert len(results) == len(distinct), [p.name for p in screens]
    assert not app.alarms() or set(app.alarms()) <= {"clock_unsynced"}


# ---------------------------------------------------------------- device failures
def test_device_guard_backs_off_and_reopens():
    manual = ManualTime()
    camera = ScriptedCamera([DeviceError("gone"), DeviceError("gone"), "frame"])
    guard = DeviceGuard("camera", camera, retry_seconds=1.0, monotonic=manual.monotonic)
    assert guard.call(camera.read, default="down") == "down" and guard.failed and camera.closes == 1
    manual.advance(0.5)
    assert guard.call(camera.read, default="down") == "down" and camera.reads == 1  # waiting: not retried
    manual.advance(0.5)
    assert guard.call(camera.read, default="down") == "down" and camera.reads == 2 and camera.starts == 1
    manual.advance(1.9)  # second failure: backoff doubled to 2 s
    assert guard.call(camera.read, default="down") == "down" and camera.reads == 2
    manual.advance(0.1)
    assert guard.call(camera.read, default="down") == "frame" and camera.starts == 2
    assert not guard.failed and guard.failures == 0


def test_camera_failing_mid_run_alarms_retries_and_recovers(tmp_path):
    manual = ManualTime(step=1.0)  # every guard call is a second later: retries are due at once
    seen_alarms = []
    failure = DeviceError("camera unplugged")
    script = [scene("thu_phone"), failure, failure, failure,
              lambda: seen_alarms.append(list(app.alarms())), scene("mau_masked"), None]
    camera = ScriptedCamera(script)
    app = App(make_cfg(tmp_path), devices={"camera": camera}, monotonic=manual.monotonic)
    result = app.run()
    assert result.stopped_because == "end_of_input"
    assert "camera_failed" in seen_alarms[0]
    assert camera.starts == 1 + 3  # the initial start and one reopen per failure
    assert camera.closes >= 3
    assert result.counters["checkins"] == result.journal_rows == 2
    assert "camera_failed" not in app.alarms()


def test_camera_down_keeps_the_loop_alive_without_spinning(tmp_path):
    """Real clock, camera failing for a while: the loop waits between retries and keeps answering."""
    camera = ScriptedCamera([DeviceError("gone")] * 3 + [scene("thu_phone"), None])
    app = App(make_cfg(tmp_path), devices={"camera": camera})
    started = time.monotonic()
    result = app.run()
    assert result.stopped_because == "end_of_input" and result.journal_rows == 1
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.4 - 0.05  # backoff 0.1, 0.2, 0.4 s
    assert camera.reads <= 10  # retried on schedule, not in a busy loop


def _open_pty(link: Path) -> int:
    """A new pseudo-terminal; `link` (like a /dev/serial/by-id name) points at its slave."""
    master, slave = pty.openpty()
    name = os.ttyname(slave)
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(name)
    tmp.replace(link)
    os.close(slave)
    return master


def test_serial_reader_unplugged_alarms_and_recovers(tmp_path):
    link = tmp_path / "reader"
    master = _open_pty(link)
    thread, result = app_in_thread(
        lambda: App(make_cfg(tmp_path, "camera.type=none", "reader.type=serial", f"reader.port={link}")))
    app, events = result["app"], result["events"]
    try:
        os.write(master, b"C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|\r")
        assert events.get(timeout=TIMEOUT)["verdict"] == "black"
        os.close(master)  # unplugged
        wait_until(lambda: "reader_failed" in app.alarms(), "reader_failed alarm")
        master = _open_pty(link)  # plugged in again (new tty behind the same by-id name)
        wait_until(lambda: "reader_failed" not in app.alarms(), "reader reopened")
        os.write(master, "001195000003|LE VAN HO|1995-08-15|1|163000000000000003|163000000000000099<0<<\r"
                 .encode())
        event = events.get(timeout=TIMEOUT)
        assert (event["verdict"], event["reason"]) == ("green", "recovered_180d")
    finally:
        app.stop()
        thread.join(TIMEOUT)
        os.close(master)
    assert not thread.is_alive() and result["r"].stopped_because == "stopped"
    assert result["r"].journal_rows == 2


def test_reader_and_camera_side_by_side(tmp_path):
    reader = QueueReader()
    reader.texts.put("C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|")
    frames = [scene("thu_phone"), scene("idle"), scene("ho_recovered"), scene("idle")]
    app = App(make_cfg(tmp_path), devices={"camera": ScriptedCamera(frames), "reader": reader})
    app.pipeline.keep_decisions = True
    result = app.run(max_frames=len(frames))
    assert result.stopped_because == "max_frames"
    assert sorted(d.reason for d in app.pipeline.decisions) == \
        ["no_health_data", "recovered_180d", "vaccinated_14d"]
    assert result.journal_rows == 3


def test_injected_reader_failure_alarm_and_recovery(tmp_path):
    reader = QueueReader()
    failures = [DeviceError("reader gone")] * 2
    original = reader.read

    def read(timeout):
        if failures:
            raise failures.pop()
        return original(timeout)

    reader.read = read
    reader.texts.put("C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|")
    seen = []
    manual = ManualTime(step=1.0)  # retries are due at once
    camera = ScriptedCamera([scene("idle"), lambda: seen.append(app.alarms()), scene("idle"), scene("idle"),
                             scene("idle")])
    app = App(make_cfg(tmp_path), devices={"camera": camera, "reader": reader}, monotonic=manual.monotonic)
    result = app.run(max_frames=4)
    assert "reader_failed" in seen[0]
    assert "reader_failed" not in app.alarms()
    assert result.journal_rows == 1


# ---------------------------------------------------------------- button
def press(app):
    pin = app.gpio.button.pin
    pin.drive_low()
    pin.drive_high()


def test_button_toggles_direction(tmp_path):
    cfg = make_cfg(tmp_path, "gpio.button=5")
    camera = ScriptedCamera([scene("thu_phone"), lambda: press(app), scene("idle"), scene("ho_recovered"), None])
    app = App(cfg, devices={"camera": camera})
    app.run()
    rows = journal_rows(tmp_path)
    assert [r["direction"] for r in rows] == ["in", "out"]
    assert (app.site.direction, cfg.site.direction) == ("out", "in")  # runtime state; the configuration as loaded


def test_button_override_journals_a_guard_admit(tmp_path):
    cfg = make_cfg(tmp_path, "gpio.button=5", "gpio.button_action=override")
    shown = []
    camera = ScriptedCamera([scene("khach"), lambda: press(app), scene("idle"), None])
    app = App(cfg, devices={"camera": camera})
    original = app.feedback.show
    app.feedback.show = lambda d: (shown.append(d), original(d))
    app.run()
    rows = journal_rows(tmp_path)
    assert [(r["verdict"], r["reason"], r["override"]) for r in rows] == \
        [("black", "no_health_data", 0), ("green", "override", 1)]
    assert [d.verdict for d in shown] == ["black", "green"]


# ---------------------------------------------------------------- journal failure
def test_journal_failure_gives_feedback_alarms_and_loses_nothing(tmp_path):
    shown, seen_alarms = [], []
    broken = {"on": False}

    def break_journal():
        original = type(app.journal).append_many

        def append_many(self_, decisions, note=None):
            if broken["on"]:
                raise StorageError("database or disk is full")
            return original(self_, decisions, note)

        app.journal.append_many = lambda d, note=None: append_many(app.journal, d, note)
        broken["on"] = True

    script = [scene("thu_phone"), break_journal, scene("mau_masked"), scene("idle"),
              lambda: seen_alarms.append(app.alarms()), scene("ho_recovered"), scene("idle"),
              lambda: broken.update(on=False), scene("khach"), None]
    app = App(make_cfg(tmp_path), devices={"camera": ScriptedCamera(script)})
    original_show = app.feedback.show
    app.feedback.show = lambda d: (shown.append(d.reason), original_show(d))
    result = app.run()
    assert shown == ["vaccinated_14d", "dose_too_recent", "recovered_180d", "no_health_data"]
    assert "journal_failed" in seen_alarms[0]
    assert "journal_failed" not in app.alarms()
    assert app.pipeline.unwritten == 0
    assert [r["reason"] for r in journal_rows(tmp_path)] == shown  # in order, none lost
    assert result.journal_rows == 4


def test_journal_full_disk_with_sqlite_page_limit(tmp_path):
    """A real SQLite 'database or disk is full' error through max_page_count."""
    seen = []

    def heal():
        app.journal.db.execute("PRAGMA max_page_count = 1073741823")

    names = ["thu_phone", "mau_masked", "ho_recovered", "moi_recovered", "khach", "cccd", "malformed", "website"]
    script = [scene(n) for n in names] + [lambda: seen.append(app.alarms()), heal, scene("idle"), None]
    app = App(make_cfg(tmp_path), devices={"camera": ScriptedCamera(script)})
    db = app.journal.db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    filler = 0
    with pytest.raises(StorageError, match="full"):
        for filler in range(1, 1000):  # fill the journal up to its size limit with real rows
            app.journal.append(_old_decision("filler", 1))
    filler -= 1
    result = app.run()
    assert "journal_failed" in seen[0]
    assert result.counters["checkins"] == len(names)
    assert [r["reason"] for r in journal_rows(tmp_path)][filler:] == \
        ["vaccinated_14d", "dose_too_recent", "recovered_180d", "recovery_too_old", "no_health_data",
         "vaccinated_14d", "malformed", "unrecognised"]


# ---------------------------------------------------------------- display failure
def test_display_failure_is_an_alarm(tmp_path):
    display = BrokenDisplay()
    seen = []

    def heal():
        display.broken = False

    camera = ScriptedCamera([scene("thu_phone"), lambda: app.feedback.wait_drawn(2.0),
                             lambda: seen.append(app.alarms()), heal, scene("mau_masked"),
                             lambda: app.feedback.wait_drawn(2.0), lambda: seen.append(app.alarms()), None])
    app = App(make_cfg(tmp_path), devices={"camera": camera, "display": display})
    result = app.run()
    assert "display_failed" in seen[0]
    assert "display_failed" not in seen[1]
    assert result.journal_rows == 2  # the gate kept answering


# ---------------------------------------------------------------- retention
def _old_decision(reason: str, days: int) -> Decision:
    at = datetime(2021, 11, 15, 9, tzinfo=timezone(timedelta(hours=7))) - timedelta(days=days)
    return Decision(kind=None, verdict=GREEN, reason=reason, at=at, clock_synced=True, direction="in",
                    mode="health", override=True)


@pytest.mark.parametrize("mqtt", [False, True])
def test_retention_purge(tmp_path, mqtt):
    extra = ["mqtt.enabled=true", "mqtt.port=1"] if mqtt else []  # nothing listens on port 1
    # monotonic 10 s: the kiosk service starts right after boot, and purges at once all the same
    app = App(make_cfg(tmp_path, *extra), devices={"camera": ScriptedCamera([None])},
              monotonic=ManualTime(monotonic=10.0).monotonic)
    for reason, days in (("old_sent", 30), ("old_unsent", 30), ("recent", 3)):
        app.journal.append(_old_decision(reason, days))
    app.journal.db.execute("UPDATE checkins SET up_state = 'confirmed' WHERE reason = 'old_sent'")
    app.run()
    left = [r["reason"] for r in journal_rows(tmp_path)]
    assert left == (["old_unsent", "recent"] if mqtt else ["recent"])


# ---------------------------------------------------------------- kiosk run
def sets(tmp_path, *extra):
    return tmp_sets(tmp_path, "mqtt.enabled=false", *extra)


def test_kiosk_run_max_frames(tmp_path, capsys):
    assert main(["run", "--max-frames", "3", *sets(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stopped"] == "max_frames" and summary["frames"] == 3
    assert summary["checkins"] == summary["journaled"] == len(journal_rows(tmp_path)) == 1


@pytest.mark.parametrize("override,status,words", [
    ("camera.path=/nonexistent/scenes", 78, "does not exist"),
    ("camera.path=", 78, "camera.path"),
    ("display.type=ssd1306", 69, "I2C"),
    ("display.type=plasma", 78, "display.type"),
])
def test_kiosk_run_device_and_config_errors(tmp_path, capsys, override, status, words):
    assert main(["run", "--max-frames", "1", *sets(tmp_path, override)]) == status
    captured = capsys.readouterr()
    assert words in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


# ---------------------------------------------------------------- loop pace without input
@pytest.mark.parametrize("devices,extra", [
    ({"camera": None, "reader": None}, ()),                           # nothing to wait on
    ({"camera": None, "reader": DeadReader()}, ()),                   # the only input is down
    ({"camera": ScriptedCamera([DeviceError("gone")] * 100), "reader": None}, ()),  # camera down
    ({"camera": ScriptedCamera([None]), "reader": QueueReader()}, ()),  # replay ended, reader still live
], ids=["no-input", "reader-down", "camera-down", "replay-ended-with-reader"])
def test_loop_does_not_spin_when_no_device_blocks(tmp_path, devices, extra):
    app = App(make_cfg(tmp_path, *extra), devices=devices)
    counter = LoopWatchdog(app, stop_after=5)  # App.run calls progress() once per loop round
    started = time.monotonic()
    result = app.run(watchdog=counter)
    assert result.stopped_because == "stopped"
    assert time.monotonic() - started >= 4 * 0.1 - 0.02  # about one round per INPUT_WAIT_S, not thousands


def test_stopping_with_the_journal_still_failing_says_so(tmp_path, caplog):
    def break_journal():
        def append_many(decisions, note=None):
            raise StorageError("disk full")

        app.journal.append_many = append_many

    app = App(make_cfg(tmp_path), devices={"camera": ScriptedCamera([break_journal, scene("thu_phone"), None])})
    result = app.run()
    assert (result.counters["checkins"], result.counters["journaled"]) == (1, 0)
    assert any("could not store" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


# ---------------------------------------------------------------- kiosk demo with another configuration
def test_demo_never_wipes_the_journal_of_a_given_config(tmp_path, capsys):
    conf = tmp_path / "site.toml"
    conf.write_text("\n".join([
        '[camera]', 'type = "replay"', f'path = "{SCENES}"',
        '[display]', 'type = "png"', 'path = "screens"',
        '[gpio]', 'pin_factory = "mock"',
        '[clock]', 'source = "fixed"', 'start = "2021-11-15T09:00:00+07:00"',
        '[roster]', 'path = "roster.json"', '[trust]', 'path = "trust.json"',
        '[journal]', 'path = "journal.sqlite"', '[mqtt]', 'enabled = false', ""]))
    cfg = config.load(conf)
    app = App(cfg, devices={"camera": ScriptedCamera([scene("khach"), None])})
    app.run()
    before = journal_rows(tmp_path)
    assert len(before) == 1  # a check-in the site has not uploaded yet
    assert main(["demo", "--config", str(conf), "--drain-seconds", "0"]) == 0
    captured = capsys.readouterr()
    assert "keeping" in captured.err
    rows = journal_rows(tmp_path)
    assert rows[0] == before[0] and len(rows) > 1


def test_a_reader_missing_at_start_is_an_alarm_not_an_exit(tmp_path):
    """DESIGN section 7: a failed device is reported and the kiosk keeps doing what it still can."""
    link = tmp_path / "reader"  # nothing there yet: the reader is unplugged when the service starts
    thread, result = app_in_thread(
        lambda: App(make_cfg(tmp_path, "camera.type=none", "reader.type=serial", f"reader.port={link}")))
    app, events = result["app"], result["events"]
    master = None
    try:
        wait_until(lambda: "reader_failed" in app.alarms(), "reader_failed alarm")
        master = _open_pty(link)
        wait_until(lambda: "reader_failed" not in app.alarms(), "reader opened")
        os.write(master, b"C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|\r")
        assert events.get(timeout=TIMEOUT)["reason"] == "no_health_data"
    finally:
        app.stop()
        thread.join(TIMEOUT)
        if master is not None:
            os.close(master)
    assert result["r"].journal_rows == 1

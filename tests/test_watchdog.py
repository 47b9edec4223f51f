"""sd_notify over a real AF_UNIX datagram socket; watchdog pings stop when the loop stalls."""
from __future__ import annotations

import os
import socket
import threading

import pytest

from fakes import ManualTime, StallingCamera
from kiosk.watchdog import Notifier, Watchdog, watchdog_interval


@pytest.fixture
def systemd_socket(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def received(sock) -> list[str]:
    """Everything queued on the socket (the sends are synchronous, so nothing is in flight)."""
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(2.0)


def test_ready_status_stopping(systemd_socket):
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready() and notifier.status("scanning\nsecond line") and notifier.stopping()
    assert received(sock) == ["READY=1", "STATUS=scanning", "STOPPING=1"]


def test_abstract_namespace_socket():
    name = f"kiosk-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_no_op_without_notify_socket():
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready() and not notifier.watchdog()


def test_missing_socket_never_raises(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready() and not notifier.ready()
    assert len([r for r in caplog.records if "notification failed" in r.getMessage()]) == 1  # logged once


def test_pings_while_progressing_and_stop_when_stalled(systemd_socket):
    sock, path = systemd_socket
    manual = ManualTime()
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), interval=15.0, monotonic=manual.monotonic)
    dog.ready()
    assert received(sock) == ["READY=1"]
    for _ in range(4):  # a healthy loop: progress on every iteration, 125 ms apart
        for _ in range(120):
            manual.advance(0.125)
            dog.progress()
            dog.tick()
    assert received(sock) == ["WATCHDOG=1"] * 4  # one per interval, not one per iteration
    for _ in range(600):  # the loop stalls: it still ticks (e.g. a timer thread) but makes no progress
        manual.advance(0.1)
        dog.tick()
    assert received(sock) == []
    dog.progress()  # it recovers
    assert dog.tick()
    assert received(sock) == ["WATCHDOG=1"]


def test_tick_with_explicit_time(systemd_socket):
    sock, path = systemd_socket
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), interval=10.0, monotonic=ManualTime(monotonic=0.0).monotonic)
    dog.progress()
    assert not dog.tick(now=5.0)
    assert dog.tick(now=10.0)
    dog.progress()
    assert not dog.tick(now=19.0) and dog.tick(now=20.0)
    assert received(sock) == ["WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_off_without_watchdog_usec(systemd_socket, monkeypatch):
    sock, path = systemd_socket
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), monotonic=ManualTime().monotonic)
    dog.progress()
    assert dog.interval is None and not dog.tick(now=1e9)
    assert received(sock) == []


def test_interval_is_half_of_watchdog_usec():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({}) is None


def test_interval_taken_from_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "8000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Watchdog(Notifier({})).interval == 4.0


def next_ping(sock) -> bytes:
    """The next notification that is not a status line."""
    while (message := sock.recv(256)).startswith(b"STATUS="):
        pass
    return message


def test_status_line_follows_the_alarms_once_per_change(systemd_socket):
    sock, path = systemd_socket
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), interval=0.0)  # service.watchdog = false: no pings
    for alarms in ([], [], ["mqtt_offline"], ["mqtt_offline"], ["mqtt_offline", "clock_unsynced"], []):
        dog.report(alarms)
    dog.progress()
    assert not dog.tick(now=10_000.0)
    assert received(sock) == ["STATUS=scanning", "STATUS=scanning with alarms: mqtt_offline",
                              "STATUS=scanning with alarms: mqtt_offline, clock_unsynced", "STATUS=scanning"]


def test_the_real_loop_stops_feeding_the_watchdog_while_it_hangs(systemd_socket, tmp_path):
    from kiosk import config
    from kiosk.app import App

    sock, path = systemd_socket
    cfg = config.load(data={"camera": {"type": "picamera2"}, "display": {"type": "none"}, "mqtt": {"enabled": False},
                            "gpio": {"pin_factory": "mock"}},
                      overrides=[f"journal.path={tmp_path}/j.sqlite", f"roster.path={tmp_path}/r.json",
                                 f"trust.path={tmp_path}/t.json"])
    camera = StallingCamera()
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), interval=0.02)
    built, result = threading.Event(), {}

    def serve():  # the journal's SQLite connection belongs to the thread that runs the kiosk
        result["app"] = app = App(cfg, devices={"camera": camera, "display": None})
        built.set()
        result["run"] = app.run(watchdog=dog)

    runner = threading.Thread(target=serve, daemon=True)
    runner.start()
    assert built.wait(10.0)
    app = result["app"]
    try:
        assert next_ping(sock) == b"READY=1"
        assert [next_ping(sock) for _ in range(3)] == [b"WATCHDOG=1"] * 3  # fed while frames flow
        camera.stall.set()
        assert camera.stalled.wait(5.0)
        received(sock)  # a ping sent just before the hang
        sock.settimeout(0.5)  # 25 intervals of silence
        with pytest.raises(socket.timeout):
            sock.recv(64)
        camera.release.set()  # the driver comes back: so do the pings
        sock.settimeout(2.0)
        assert next_ping(sock) == b"WATCHDOG=1"
    finally:
        camera.release.set()
        app.stop()
        runner.join(10.0)
    assert not runner.is_alive() and result["run"].stopped_because == "stopped"

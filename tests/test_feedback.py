"""Feedback on luma's real dummy device and gpiozero MockFactory pins (via drivers.gpio)."""
import logging
import threading
import time

import pytest
from luma.core.device import dummy

from drivers import display_png
from drivers.display_luma import LumaDisplay
from fakes import BlockingDisplay, BrokenDisplay, BrokenIndicator, ManualTime
from kiosk import config
from kiosk.app import build_gpio
from kiosk.errors import DeviceError
from kiosk.feedback import Feedback
from kiosk.model import BLACK, GREEN, INVALID, Decision
from kiosk.screens import IdleView, render


def wait_until(predicate, timeout=3.0):
    """Poll with a deadline (gpiozero's pin history has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.005)
    return True


def decision(verdict, reason="checked_in"):
    return Decision(kind="personal_qr", verdict=verdict, reason=reason, screen_subject={"name": "N.V. THỬ"})


def highs(pin):
    """How many times a mock pin went high after its initial state."""
    states = [bool(s.state) for s in pin.states]
    return sum(1 for before, after in zip(states, states[1:]) if after and not before)


@pytest.fixture
def parts():
    cfg = config.load(data={"gpio": {"pin_factory": "mock", "relay": 23, "relay_active_high": False}})
    p = build_gpio(cfg)
    yield p
    p.close()


@pytest.fixture
def panel():
    return LumaDisplay(dummy(width=128, height=64, mode="1"))


def make(panel, parts, **kw):
    kw.setdefault("lang", "vi")
    kw.setdefault("result_seconds", 3.0)
    kw.setdefault("relay_seconds", 0.05)
    return Feedback(panel, parts.indicator, parts.buzzer, parts.relay, **kw)


def test_green_lights_green_beeps_once_and_pulses_an_active_low_relay(panel, parts):
    fb = make(panel, parts)
    fb.show(decision(GREEN))
    assert parts.indicator.green.pin.state and not parts.indicator.red.pin.state
    buzzer, relay = parts.buzzer.device.pin, parts.relay.device.pin
    assert wait_until(lambda: highs(buzzer) == 1 and not buzzer.state)
    # active low: idle high, pulled low for the pulse, high again
    assert wait_until(lambda: [bool(s.state) for s in relay.states][1:] == [True, False, True])
    assert fb.wait_drawn(3.0)
    assert panel.device.image.tobytes() == render(decision(GREEN), (128, 64), "1", "vi").tobytes()
    assert {"indicator", "buzzer", "relay", "display", "display_shown"} <= set(fb.last_command_at)
    fb.close()


def test_black_lights_red_and_beeps_twice_without_the_relay(panel, parts):
    fb = make(panel, parts)
    fb.show(decision(BLACK, "no_health_data"))
    assert parts.indicator.red.pin.state and not parts.indicator.green.pin.state
    buzzer = parts.buzzer.device.pin
    assert wait_until(lambda: highs(buzzer) == 2 and not buzzer.state)
    assert [bool(s.state) for s in parts.relay.device.pin.states][1:] == [True]  # active low: only its idle level
    fb.close()


def test_invalid_lights_amber_and_beeps_three_times(panel, parts):
    fb = make(panel, parts)
    fb.show(decision(INVALID, "malformed"))
    assert parts.indicator.red.pin.state and parts.indicator.green.pin.state
    buzzer = parts.buzzer.device.pin
    assert wait_until(lambda: highs(buzzer) == 3 and not buzzer.state)
    fb.close()


def test_active_high_relay_pulses_high():
    cfg = config.load(data={"gpio": {"pin_factory": "mock", "relay": 23, "relay_active_high": True}})
    p = build_gpio(cfg)
    fb = Feedback(None, None, None, p.relay, result_seconds=1.0, relay_seconds=0.05)
    fb.show(decision(GREEN))
    relay = p.relay.device.pin
    assert wait_until(lambda: [bool(s.state) for s in relay.states][1:] == [True, False])
    p.close()


def test_tonal_buzzer_plays_the_right_number_of_tones():
    cfg = config.load(data={"gpio": {"pin_factory": "mock", "buzzer_tonal": True, "led": "none"}})
    p = build_gpio(cfg)
    fb = Feedback(None, None, p.buzzer, None, result_seconds=1.0)
    fb.show(decision(INVALID))
    pin = p.buzzer.device.pwm_device.pin
    assert wait_until(lambda: highs(pin) == 3 and not pin.state)
    p.close()


def test_show_returns_before_a_slow_display_and_only_the_newest_screen_is_drawn(parts):
    display = BlockingDisplay()
    fb = Feedback(display, parts.indicator, parts.buzzer, parts.relay, result_seconds=3.0)
    assert display.entered.wait(3.0)  # the worker is stuck drawing the first idle screen
    started = time.perf_counter()
    fb.show(decision(GREEN))
    fb.show(decision(BLACK))
    fb.show(decision(INVALID))
    assert time.perf_counter() - started < 0.5  # did not wait for the display
    assert parts.indicator.red.pin.state  # the LED already answered
    display.release.set()
    assert fb.wait_drawn(3.0)
    assert display.views == ["idle", INVALID]
    fb.close()


def test_tick_brings_back_the_idle_screen_after_result_seconds(panel):
    manual = ManualTime()
    fb = Feedback(panel, None, None, None, result_seconds=3.0, monotonic=manual.monotonic)
    fb.show(decision(GREEN))
    assert fb.wait_drawn(3.0)
    green = panel.device.image.tobytes()
    manual.advance(2.9)
    fb.tick()
    assert fb.wait_drawn(3.0) and panel.device.image.tobytes() == green
    manual.advance(0.2)
    fb.tick()
    assert fb.wait_drawn(3.0)
    assert panel.device.image.tobytes() == render(IdleView(), (128, 64), "1", "vi").tobytes()
    fb.close()


def test_alarms_redraw_the_idle_screen_only_when_they_change(panel):
    fb = Feedback(panel, None, None, None, lang="en")
    assert fb.wait_drawn(3.0) and fb.shown == 1
    fb.set_alarms(["mqtt_offline"])
    assert fb.wait_drawn(3.0) and fb.shown == 2
    fb.set_alarms(["mqtt_offline"])
    assert fb.wait_drawn(3.0) and fb.shown == 2
    expected = render(IdleView(alarms=("mqtt_offline",)), (128, 64), "1", "en")
    assert panel.device.image.tobytes() == expected.tobytes()
    fb.close()


def test_device_failures_are_counted_logged_once_and_never_raised(parts, caplog):
    caplog.set_level(logging.ERROR, logger="kiosk.feedback")
    fb = Feedback(BrokenDisplay(), BrokenIndicator(), parts.buzzer, None)
    assert fb.wait_drawn(3.0)  # the idle screen first: a result queued before it is drawn would replace it
    for _ in range(3):
        fb.show(decision(BLACK))
        assert fb.wait_drawn(3.0)
    fb.close()
    buzzer = parts.buzzer.device.pin
    assert wait_until(lambda: highs(buzzer) >= 2)  # the buzzer still answered
    assert fb.errors == 3 + 4 + 1  # 3 flashes, idle + 3 screens, close
    messages = [r.getMessage() for r in caplog.records]
    assert sum("display failed" in m for m in messages) == 1
    assert sum("indicator failed" in m for m in messages) == 1


def test_png_display_writes_each_screen(tmp_path):
    cfg = config.load(data={"display": {"type": "png", "path": str(tmp_path / "screens"), "width": 320,
                                        "height": 240}})
    fb = Feedback(display_png.create(cfg), None, None, None)
    assert fb.wait_drawn(3.0)  # else the green result replaces the idle screen before it is drawn
    fb.show(decision(GREEN))
    assert fb.wait_drawn(3.0)
    fb.close()
    names = sorted(p.name for p in (tmp_path / "screens").iterdir())
    assert names == ["00001-idle.png", "00002-green.png"]


def test_a_missing_font_stops_start_up_naming_the_package(monkeypatch, tmp_path, capsys):
    from kiosk import screens
    from kiosk.cli import main

    monkeypatch.setattr(screens, "FONT_DIR", tmp_path)
    screens._font_path.cache_clear()
    try:
        with pytest.raises(DeviceError, match="apt install fonts-dejavu-core"):
            Feedback(display_png.create(config.load(data={"camera": {"type": "none"}, "display": {
                "type": "png", "path": str(tmp_path / "s")}})), None, None, None)
        argv = ["run", "--max-frames", "1"]
        for key in ("journal.path=j.sqlite", "roster.path=r.json", "trust.path=t.json", "display.path=screens",
                    "mqtt.enabled=false"):
            argv += ["--set", key.replace("=", f"={tmp_path}/", 1) if "path" in key else key]
        assert main(argv) == 69
        err = capsys.readouterr().err
        assert "font DejaVuSans.ttf not found: apt install fonts-dejavu-core" in err and "Traceback" not in err
        assert not (tmp_path / "screens").exists() or not list((tmp_path / "screens").iterdir())
    finally:
        monkeypatch.undo()
        screens._font_path.cache_clear()

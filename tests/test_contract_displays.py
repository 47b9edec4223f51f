"""Display port contract: one behavioural suite over the PNG display, luma's dummy device through
drivers/display_luma (as configured, and as luma drives a 128x64 monochrome panel), and the fake.

A display says its size and Pillow mode; it shows a screen rendered for that size and mode (what it holds
afterwards is that screen); the core's Feedback drives it; close() may be called more than once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest
from PIL import Image

from drivers import display_luma
from fakes import RecordingDisplay
from kiosk import config
from kiosk.app import build_display
from kiosk.feedback import Feedback
from kiosk.model import BLACK, GREEN, INVALID, Decision
from kiosk.screens import IdleView, render

SCREENS = [IdleView(), IdleView(alarms=("mqtt_offline", "clock_unsynced")),
           Decision(kind="personal_qr", verdict=GREEN, reason="vaccinated_14d",
                    screen_subject={"name": "N.V. THU", "birth": "1990"}),
           Decision(kind="cccd", verdict=BLACK, reason="dose_too_recent",
                    screen_subject={"name": "T.T. MẪU", "birth": "1995"}),
           Decision(kind=None, verdict=INVALID, reason="malformed")]


@dataclass
class Panel:
    display: Any
    held: Callable[[], Image.Image | None]  # what the panel shows now


def png(tmp_path) -> Panel:
    display = build_display(config.load(data={"display": {"type": "png", "path": str(tmp_path / "screens"),
                                                          "width": 800, "height": 480}}))

    def held() -> Image.Image | None:
        files = sorted((tmp_path / "screens").glob("*.png"))
        if not files:
            return None
        with Image.open(files[-1]) as image:
            return image.copy()

    return Panel(display, held)


def luma_dummy(tmp_path) -> Panel:
    display = build_display(config.load(data={"display": {"type": "dummy", "width": 128, "height": 128}}))
    return Panel(display, lambda: display.device.image)


def luma_mono(tmp_path) -> Panel:
    from luma.core.device import dummy

    display = display_luma.LumaDisplay(dummy(width=128, height=64, mode="1"))
    return Panel(display, lambda: display.device.image)


def fake(tmp_path) -> Panel:
    display = RecordingDisplay((128, 64), "1")
    return Panel(display, lambda: display.images[-1] if display.images else None)


PANELS = {"png": png, "luma-dummy": luma_dummy, "luma-dummy-mono": luma_mono, "fake": fake}


@pytest.fixture(params=PANELS)
def panel(request, tmp_path) -> Panel:
    made = PANELS[request.param](tmp_path)
    yield made
    made.display.close()


def same_picture(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def test_says_its_size_and_mode(panel):
    width, height = panel.display.size
    assert isinstance(width, int) and isinstance(height, int) and width >= 64 and height >= 64
    assert panel.display.mode in ("1", "RGB")


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_shows_each_rendered_screen(panel, lang):
    display = panel.display
    for view in SCREENS:
        image = render(view, display.size, display.mode, lang)
        assert display.show(image) is None
        assert same_picture(panel.held(), image), view


def test_the_newest_screen_is_the_one_held(panel):
    display = panel.display
    first, second = (render(view, display.size, display.mode, "vi") for view in (SCREENS[2], SCREENS[3]))
    display.show(first)
    display.show(second)
    assert same_picture(panel.held(), second) and not same_picture(panel.held(), first)


def test_feedback_drives_it(panel):
    display = panel.display
    feedback = Feedback(display, None, None, None, lang="en")
    try:
        assert feedback.wait_drawn(5.0)
        assert same_picture(panel.held(), render(IdleView(), display.size, display.mode, "en"))
        feedback.show(SCREENS[2])
        assert feedback.wait_drawn(5.0)
        assert same_picture(panel.held(), render(SCREENS[2], display.size, display.mode, "en"))
        assert feedback.errors == 0 and feedback.shown == 2
    finally:
        feedback.close()
    assert feedback.errors == 0  # closing it went through the display's close as well


def test_close_twice_is_harmless(panel):
    panel.display.show(render(SCREENS[0], panel.display.size, panel.display.mode, "vi"))
    panel.display.close()
    panel.display.close()

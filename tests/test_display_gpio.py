"""Display and GPIO adapters: luma dummy device, PNG folder, gpiozero MockFactory; errors name the fix."""
import sys
import threading

import pytest
from PIL import Image

from drivers import display_luma, display_png, gpio
from kiosk import config, screens
from kiosk.errors import DeviceError
from kiosk.feedback import Feedback
from kiosk.model import GREEN, Decision
from kiosk.screens import IdleView, render


def cfg_with(**sections):
    return config.load(data=sections)


# ---------------------------------------------------------------- luma
def test_dummy_display_keeps_the_last_image():
    display = display_luma.create(cfg_with(display={"type": "dummy", "width": 800, "height": 480}))
    assert display.size == (800, 480) and display.mode == "RGB"
    image = render(IdleView(), display.size, display.mode, "en")
    display.show(image)
    assert display.device.image.tobytes() == image.tobytes()


def test_oled_without_i2c_names_the_fix(monkeypatch):
    from luma.core.error import DeviceNotFoundError
    from luma.core.interface import serial

    def no_bus(*args, **kwargs):  # what luma raises on a machine without /dev/i2c-N
        raise DeviceNotFoundError("I2C device not found: /dev/i2c-1")

    monkeypatch.setattr(serial, "i2c", no_bus)
    with pytest.raises(DeviceError) as err:
        display_luma.create(cfg_with(display={"type": "ssd1306"}))
    assert "raspi-config" in str(err.value) and "i2cdetect -y 1" in str(err.value) and "i2c group" in str(err.value)


def test_hdmi_without_luma_emulator_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "luma.emulator", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "luma.emulator.device", None)
    with pytest.raises(DeviceError, match="pip install luma.emulator"):
        display_luma.create(cfg_with(display={"type": "hdmi"}))


def test_missing_font_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(screens, "FONT_DIR", tmp_path)
    screens._font_path.cache_clear()
    screens._font.cache_clear()
    try:
        with pytest.raises(DeviceError, match="apt install fonts-dejavu-core"):
            render(IdleView(), (128, 64), "1", "vi")
    finally:
        monkeypatch.undo()
        screens._font_path.cache_clear()
        screens._font.cache_clear()


# ---------------------------------------------------------------- png
def test_png_display_numbers_after_existing_files(tmp_path):
    folder = tmp_path / "screens"
    folder.mkdir()
    (folder / "00007-green.png").write_bytes(b"")
    display = display_png.create(cfg_with(display={"type": "png", "path": str(folder), "width": 128,
                                                   "height": 128}))
    assert display.size == (128, 128) and display.mode == "RGB"
    display.show(render(Decision(kind=None, verdict="black", reason="expired"), display.size, "RGB", "en"))
    assert (folder / "00008-black.png").is_file() and display.count == 8
    assert Image.open(folder / "00008-black.png").size == (128, 128)


def test_png_write_error_is_counted_by_feedback(tmp_path):
    folder = tmp_path / "screens"
    display = display_png.create(cfg_with(display={"type": "png", "path": str(folder)}))
    fb = Feedback(display, None, None, None)
    assert fb.wait_drawn(3.0) and fb.errors == 0
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()  # the folder disappears under the running kiosk
    fb.show(Decision(kind=None, verdict=GREEN, reason="checked_in"))
    assert fb.wait_drawn(3.0)
    assert fb.errors == 1
    fb.close()


def test_png_folder_that_cannot_be_created_is_a_device_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DeviceError, match="display.path"):
        display_png.create(cfg_with(display={"type": "png", "path": str(blocker / "screens")}))


# ---------------------------------------------------------------- gpio
def test_mock_factory_builds_every_part():
    parts = gpio.create(cfg_with(gpio={"pin_factory": "mock", "relay": 23, "button": 5}))
    try:
        assert isinstance(parts.indicator, gpio.LedPairIndicator)
        assert isinstance(parts.buzzer, gpio.ActiveBuzzer)
        assert isinstance(parts.relay, gpio.PulseRelay)
        assert parts.button is not None
        assert not parts.relay.device.pin.state  # relay starts de-energised
    finally:
        parts.close()


def test_parts_set_to_none_are_not_built():
    parts = gpio.create(cfg_with(gpio={"pin_factory": "mock", "led": "none", "buzzer": -1}))
    assert parts == gpio.GpioParts()


def test_button_press_calls_when_pressed():
    parts = gpio.create(cfg_with(gpio={"pin_factory": "mock", "button": 5}))
    pressed = threading.Event()
    parts.button.when_pressed = pressed.set
    parts.button.pin.drive_low()  # pull-up button: pressing pulls the pin low
    assert pressed.wait(3.0)
    parts.close()


def test_rgb_led_shows_amber_as_red_and_green():
    parts = gpio.create(cfg_with(gpio={"pin_factory": "mock", "led": "rgb", "buzzer": -1}))
    parts.indicator.flash("amber", 5.0)
    red, green, blue = parts.indicator.led._leds
    pause = threading.Event()
    for _ in range(600):  # bounded wait: the blink thread sets the pins
        if red.pin.state and green.pin.state:
            break
        pause.wait(0.005)
    assert red.pin.state and green.pin.state and not blue.pin.state
    parts.close()


def test_pin_in_use_is_a_device_error_and_pins_already_claimed_are_released(monkeypatch):
    import gpiozero
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    monkeypatch.setattr(gpio, "_factory", lambda name: factory)
    other = gpiozero.LED(18, pin_factory=factory)  # something else holds the buzzer pin
    with pytest.raises(DeviceError) as err:
        gpio.create(cfg_with(gpio={"pin_factory": "mock"}))
    assert "GPIO18" in str(err.value) and "gpio group" in str(err.value)
    gpiozero.LED(17, pin_factory=factory).close()  # the LEDs built before the failure were closed
    other.close()


def test_missing_pin_library_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiozero.pins.lgpio", None)
    with pytest.raises(DeviceError, match="python3-lgpio"):
        gpio.create(cfg_with(gpio={"pin_factory": "lgpio"}))


def test_hdmi_through_the_pygame_emulator_full_screen(monkeypatch):
    pytest.importorskip("luma.emulator.device")  # optional: pip install luma.emulator
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # SDL's own headless driver
    display = display_luma.create(cfg_with(display={"type": "hdmi", "width": 800, "height": 480}))
    display.show(render(IdleView(), display.size, display.mode, "vi"))
    assert display.device._screen.get_size() == (800, 480)
    display.close()

"""Display and GPIO adapters: luma dummy device, PNG folder, gpiozero MockFactory; errors name the fix."""
import errno
import sys
import threading
import types

import pytest
from PIL import Image

from drivers import display_png, gpio
from kiosk import config, screens
from kiosk.app import build_display, build_gpio
from kiosk.errors import DeviceError
from kiosk.feedback import Feedback
from kiosk.model import GREEN, Decision
from kiosk.screens import IdleView, render


def cfg_with(**sections):
    return config.load(data=sections)


# ---------------------------------------------------------------- luma
def test_dummy_display_keeps_the_last_image():
    display = build_display(cfg_with(display={"type": "dummy", "width": 800, "height": 480}))
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
        build_display(cfg_with(display={"type": "ssd1306"}))
    assert "raspi-config" in str(err.value) and "i2cdetect -y 1" in str(err.value) and "i2c group" in str(err.value)


class StandInSMBus:
    """Mimics the smbus2.SMBus calls luma's real i2c interface makes (SMBus(port), write_i2c_block_data,
    i2c_rdwr, close): the real luma i2c and OLED driver code run on top of it."""

    opened: list["StandInSMBus"] = []
    absent_address: int | None = None  # nothing answers at this address (errno EREMOTEIO, as on a Pi)

    def __init__(self, bus=None):
        self.port, self.commands, self.data_bytes, self.closed = bus, [], 0, False
        StandInSMBus.opened.append(self)

    def write_i2c_block_data(self, address, register, data):
        if address == StandInSMBus.absent_address:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        self.address = address
        self.commands.append(list(data)) if register == 0x00 else None

    def i2c_rdwr(self, *messages):
        self.data_bytes += sum(len(m) - 1 for m in messages)  # minus the control byte

    def close(self):
        self.closed = True


@pytest.fixture
def smbus(monkeypatch):
    import smbus2

    StandInSMBus.opened, StandInSMBus.absent_address = [], None
    monkeypatch.setattr(smbus2, "SMBus", StandInSMBus)
    return StandInSMBus


@pytest.mark.parametrize("panel", ["ssd1306", "sh1106"])
def test_i2c_oled_gets_port_address_rotation_and_contrast(smbus, panel):
    display = build_display(cfg_with(display={"type": panel, "i2c_port": 3, "i2c_address": 0x3D,
                                                    "rotate": 1, "contrast": 80}))
    bus = smbus.opened[-1]
    assert bus.port == 3 and bus.address == 0x3D
    assert [0x81, 80] in bus.commands  # SETCONTRAST
    assert display.size == (64, 128) and display.mode == "1"  # a quarter turn: portrait
    display.show(render(IdleView(), display.size, display.mode, "vi"))
    assert bus.data_bytes >= 128 * 64 // 8  # a whole frame went over the bus
    display.close()
    assert bus.closed


def test_i2c_oled_not_at_the_address_names_i2cdetect(smbus):
    smbus.absent_address = 0x3C
    with pytest.raises(DeviceError) as err:
        build_display(cfg_with(display={"type": "sh1106"}))
    message = str(err.value)
    assert "0x3c" in message and "i2cdetect -y 1" in message and "display.i2c_address" in message
    assert "raspi-config" in message and "i2c group" in message


class StandInSpiDev:
    """Mimics spidev.SpiDev as luma's spi interface uses it (open, max_speed_hz, writebytes, close)."""

    opened: list["StandInSpiDev"] = []

    def __init__(self):
        self.bus = None
        self.writes: list[list[int]] = []
        StandInSpiDev.opened.append(self)

    def open(self, port, device):
        self.bus = (port, device)

    def writebytes(self, data):
        self.writes.append(list(data))

    def close(self):
        self.bus = None


class StandInGPIO(types.ModuleType):
    """Mimics RPi.GPIO as luma uses it for the DC and RST lines (setmode, setup, output, cleanup)."""

    BCM, OUT, LOW, HIGH = 11, 0, 0, 1

    def __init__(self):
        super().__init__("RPi.GPIO")
        self.pins: dict[int, int] = {}

    def setmode(self, mode):
        assert mode == self.BCM

    def setup(self, pin, direction):
        self.pins[pin] = self.LOW

    def output(self, pin, value):
        assert pin in self.pins, "output on a pin that was not set up"
        self.pins[pin] = value

    def cleanup(self, pins=None):
        pass


@pytest.fixture
def spi_stand_ins(monkeypatch):
    StandInSpiDev.opened = []
    gpio_module = StandInGPIO()
    rpi = types.ModuleType("RPi")
    rpi.GPIO = gpio_module
    monkeypatch.setitem(sys.modules, "spidev", types.SimpleNamespace(SpiDev=StandInSpiDev))
    monkeypatch.setitem(sys.modules, "RPi", rpi)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio_module)
    return gpio_module


def test_ssd1351_on_spi_gets_bus_pins_rotation_and_contrast(spi_stand_ins):
    display = build_display(cfg_with(display={"type": "ssd1351", "spi_port": 0, "spi_device": 1,
                                                    "gpio_dc": 23, "gpio_rst": 22, "rotate": 2, "contrast": 128}))
    spi = StandInSpiDev.opened[-1]
    assert spi.bus == (0, 1) and set(spi_stand_ins.pins) == {23, 22}
    levels = [spi.writes[i + 1] for i, w in enumerate(spi.writes[:-1]) if w == [0xC1]]  # SETCONTRAST + data
    assert levels[-1] == [128, 128, 128]  # after luma's own initial 255: one level per colour
    assert display.size == (128, 128) and display.mode == "RGB" and display.device.rotate == 2
    display.show(render(IdleView(), display.size, display.mode, "en"))
    assert sum(len(w) for w in spi.writes) >= 128 * 128 * 2  # a 16-bit colour frame
    display.close()


def test_ssd1351_without_spidev_names_the_packages(spi_stand_ins, monkeypatch):
    monkeypatch.setitem(sys.modules, "spidev", None)
    with pytest.raises(DeviceError, match="python3-spidev.*raspi-config"):
        build_display(cfg_with(display={"type": "ssd1351"}))


def test_hdmi_without_luma_emulator_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "luma.emulator", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "luma.emulator.device", None)
    with pytest.raises(DeviceError, match="pip install luma.emulator"):
        build_display(cfg_with(display={"type": "hdmi"}))


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
    parts = build_gpio(cfg_with(gpio={"pin_factory": "mock", "relay": 23, "button": 5}))
    try:
        assert isinstance(parts.indicator, gpio.LedPairIndicator)
        assert isinstance(parts.buzzer, gpio.ActiveBuzzer)
        assert isinstance(parts.relay, gpio.PulseRelay)
        assert parts.button is not None
        assert not parts.relay.device.pin.state  # relay starts de-energised
    finally:
        parts.close()


def test_parts_set_to_none_are_not_built():
    parts = build_gpio(cfg_with(gpio={"pin_factory": "mock", "led": "none", "buzzer": -1}))
    assert parts == gpio.GpioParts()


def test_button_press_calls_when_pressed():
    parts = build_gpio(cfg_with(gpio={"pin_factory": "mock", "button": 5}))
    pressed = threading.Event()
    parts.button.when_pressed = pressed.set
    parts.button.pin.drive_low()  # pull-up button: pressing pulls the pin low
    assert pressed.wait(3.0)
    parts.close()


def test_rgb_led_shows_amber_as_red_and_green():
    parts = build_gpio(cfg_with(gpio={"pin_factory": "mock", "led": "rgb", "buzzer": -1}))
    parts.indicator.flash("amber", 5.0)
    red, green, blue = parts.indicator.led._leds
    pause = threading.Event()
    for _ in range(600):  # bounded wait: the blink thread sets the pins
        if red.pin.state and green.pin.state:
            break
        pause.wait(0.005)
    assert red.pin.state and green.pin.state and not blue.pin.state
    parts.close()


def states_when(pin, done, limit: float = 5.0) -> list:
    """The mock pin's recorded states once `done(states)` holds (bounded wait for gpiozero's background thread)."""
    pause = threading.Event()
    for _ in range(int(limit / 0.005)):
        states = [s.state for s in pin.states]
        if done(states):
            return states
        pause.wait(0.005)
    raise AssertionError(f"pin states never completed: {[s.state for s in pin.states]}")


@pytest.mark.parametrize("active_high, idle, energised", [(True, 0, 1), (False, 1, 0)])
def test_relay_pulse_honours_active_high_or_low(active_high, idle, energised):
    parts = build_gpio(cfg_with(gpio={"pin_factory": "mock", "led": "none", "buzzer": -1, "relay": 23,
                                       "relay_active_high": active_high}))
    pin = parts.relay.device.pin
    try:
        assert pin.state == idle  # claimed de-energised (the mock pin's own power-on False comes first)
        parts.relay.pulse(0.05)
        states = states_when(pin, lambda s: s[-3:] == [idle, energised, idle])
        assert states[-3:] == [idle, energised, idle]  # one click, back to rest
    finally:
        parts.close()


def test_passive_buzzer_plays_tones_through_pwm():
    parts = build_gpio(cfg_with(gpio={"pin_factory": "mock", "led": "none", "buzzer": 18, "buzzer_tonal": True}))
    try:
        assert isinstance(parts.buzzer, gpio.ToneBuzzer)
        pin = parts.buzzer.device.pwm_device.pin  # a MockPWMPin: TonalBuzzer needs PWM
        parts.buzzer.beep(0.02, 0.02, 2)
        states = states_when(pin, lambda s: s.count(0.5) == 2 and s[-1] == 0)
        assert [x for x in states[1:] if x is not False] == [0.5, 0, 0.5, 0]  # two tones at 50 % duty
        assert pin.frequency is None  # silent afterwards
    finally:
        parts.close()


def test_active_buzzer_and_led_pair_colours():
    parts = build_gpio(cfg_with(gpio={"pin_factory": "mock", "led": "pair", "buzzer": 18}))
    green, red = parts.indicator.green.pin, parts.indicator.red.pin
    try:
        parts.indicator.flash("green", 0.02)
        assert states_when(green, lambda s: s[-2:] == [1, 0])[-2:] == [1, 0]
        assert not any(s.state for s in red.states)  # green only
        parts.indicator.flash("amber", 0.02)
        states_when(red, lambda s: s[-2:] == [1, 0])
        assert states_when(green, lambda s: s.count(1) == 2)  # amber lights both
        parts.buzzer.beep(0.02, 0.02, 3)
        assert states_when(parts.buzzer.device.pin, lambda s: s.count(1) == 3 and s[-1] == 0)
    finally:
        parts.close()


def test_pin_in_use_is_a_device_error_and_pins_already_claimed_are_released():
    import gpiozero
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    other = gpiozero.LED(18, pin_factory=factory)  # something else holds the buzzer pin
    with pytest.raises(DeviceError) as err:
        gpio.create(cfg_with(gpio={"pin_factory": "mock"}), factory)
    assert "GPIO18" in str(err.value) and "gpio group" in str(err.value)
    gpiozero.LED(17, pin_factory=factory).close()  # the LEDs built before the failure were closed
    other.close()


def test_missing_pin_library_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiozero.pins.lgpio", None)
    with pytest.raises(DeviceError, match="python3-lgpio"):
        build_gpio(cfg_with(gpio={"pin_factory": "lgpio"}))


def test_hdmi_through_the_pygame_emulator_full_screen(monkeypatch):
    pytest.importorskip("luma.emulator.device")  # optional: pip install luma.emulator
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # SDL's own headless driver
    display = build_display(cfg_with(display={"type": "hdmi", "width": 800, "height": 480}))
    display.show(render(IdleView(), display.size, display.mode, "vi"))
    assert display.device._screen.get_size() == (800, 480)
    import pygame

    pygame.event.post(pygame.event.Event(pygame.QUIT))  # a window-close event or Escape: the emulator would exit
    display.show(render(IdleView(), display.size, display.mode, "vi"))  # the kiosk's screen carries on
    display.close()

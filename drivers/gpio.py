"""LED, buzzer, door relay and button on gpiozero.

Every device gets the pin factory from `gpio.pin_factory` explicitly (never gpiozero's global), so a
mock factory in one test cannot leak into another. Every command runs in gpiozero's background threads
(or our own, for tones): nothing here blocks the caller. gpiozero is imported inside functions.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from kiosk.errors import DeviceError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import Gpio

PIN_FIX = ("check the pin number (BCM) is free, add the user to the gpio group (sudo usermod -aG gpio $USER), "
           "and install the pin library: apt install python3-lgpio")


@dataclass
class GpioParts:
    """The configured parts (the kiosk.ports.Gpio port); None where not configured."""

    indicator: LedPairIndicator | RgbIndicator | None = None
    buzzer: ActiveBuzzer | ToneBuzzer | None = None
    relay: PulseRelay | None = None
    button: Any = None  # a gpiozero Button

    def close(self) -> None:
        for part in (self.indicator, self.buzzer, self.relay, self.button):
            if part is not None:
                part.close()


# ---------------------------------------------------------------- ports
class LedPairIndicator:
    """Separate green and red LEDs; amber lights both."""

    def __init__(self, green: Any, red: Any):
        self.green, self.red = green, red

    def flash(self, colour: str, seconds: float) -> None:
        self.off()
        leds = {"green": (self.green,), "red": (self.red,), "amber": (self.green, self.red)}.get(colour, (self.red,))
        for led in leds:
            led.blink(on_time=seconds, off_time=0, n=1, background=True)

    def off(self) -> None:
        self.green.off()
        self.red.off()

    def close(self) -> None:
        self.green.close()
        self.red.close()


class RgbIndicator:
    """One RGB LED (on/off per channel; amber shows as red + green)."""

    COLOURS = {"green": (0, 1, 0), "red": (1, 0, 0), "amber": (1, 1, 0)}

    def __init__(self, led: Any):
        self.led = led

    def flash(self, colour: str, seconds: float) -> None:
        self.led.blink(on_time=seconds, off_time=0, on_color=self.COLOURS.get(colour, (1, 0, 0)), n=1,
                       background=True)

    def off(self) -> None:
        self.led.off()

    def close(self) -> None:
        self.led.close()


class ActiveBuzzer:
    """A buzzer that sounds when powered (gpiozero Buzzer)."""

    def __init__(self, device: Any):
        self.device = device

    def beep(self, on_time: float, off_time: float, n: int) -> None:
        self.device.beep(on_time=on_time, off_time=off_time, n=n, background=True)

    def close(self) -> None:
        self.device.close()


class ToneBuzzer:
    """A passive buzzer driven with a PWM tone (gpiozero TonalBuzzer), played in a background thread.

    A new beep cancels the one still playing.
    """

    def __init__(self, device: Any):
        self.device = device
        self._cancel = threading.Event()
        self._lock = threading.Lock()  # one player at a time

    def beep(self, on_time: float, off_time: float, n: int) -> None:
        self._cancel.set()
        cancel = self._cancel = threading.Event()
        threading.Thread(target=self._play, args=(on_time, off_time, n, cancel), name="tone", daemon=True).start()

    def _play(self, on_time: float, off_time: float, n: int, cancel: threading.Event) -> None:
        with self._lock:
            for _ in range(n):
                if cancel.is_set():
                    break
                self.device.play(self.device.max_tone)
                stopped = cancel.wait(on_time)
                self.device.stop()
                if stopped or cancel.wait(off_time):
                    break

    def close(self) -> None:
        self._cancel.set()
        with self._lock:
            self.device.close()


class PulseRelay:
    """Door/turnstile relay (a DigitalOutputDevice: plain OutputDevice has no blink); `pulse` runs in the background."""

    def __init__(self, device: Any):
        self.device = device

    def pulse(self, seconds: float) -> None:
        self.device.blink(on_time=seconds, off_time=0, n=1, background=True)

    def close(self) -> None:
        self.device.close()


# ---------------------------------------------------------------- construction
# Builders named in kiosk.driver_names.PIN_FACTORIES.
def mock_factory(cfg: Config) -> Any:
    """gpiozero's mock pins (development, tests): PWM-capable, for TonalBuzzer."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    return MockFactory(pin_class=MockPWMPin)


def lgpio_factory(cfg: Config) -> Any:
    """lgpio: Raspberry Pi 5 and the current OS."""
    return _pin_library("lgpio", "LGPIOFactory", apt_package="python3-lgpio")


def rpigpio_factory(cfg: Config) -> Any:
    """RPi.GPIO, where it is installed."""
    return _pin_library("rpigpio", "RPiGPIOFactory", apt_package="python3-rpi.gpio")


def _pin_library(name: str, factory_class: str, *, apt_package: str) -> Any:
    try:
        return getattr(importlib.import_module(f"gpiozero.pins.{name}"), factory_class)()
    except ImportError as exc:
        raise DeviceError(f"gpio.pin_factory {name}: {exc.name or 'its library'} is missing: install {apt_package} "
                          "(apt) or set gpio.pin_factory") from None
    except Exception as exc:  # the library loaded but cannot open the GPIO chip
        raise DeviceError(f"gpio.pin_factory {name} cannot open the GPIO chip ({exc}): {PIN_FIX}") from None


def _make(what: str, pin: int, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except Exception as exc:  # gpiozero: BadPinFactory, GPIOPinInUse, PinInvalidPin, PermissionError...
        raise DeviceError(f"{what} on GPIO{pin}: {type(exc).__name__}: {exc}: {PIN_FIX}") from None


def create(cfg: Config, factory: Any) -> Gpio:
    """Every configured part, on pins from `factory` (a gpiozero pin factory; None: gpiozero's own choice)."""
    import gpiozero

    g = cfg.gpio
    parts = GpioParts()
    try:
        if g.led == "pair":
            green = _make("green LED", g.led_green, lambda: gpiozero.LED(g.led_green, pin_factory=factory))
            try:
                red = _make("red LED", g.led_red, lambda: gpiozero.LED(g.led_red, pin_factory=factory))
            except DeviceError:
                green.close()
                raise
            parts.indicator = LedPairIndicator(green, red)
        elif g.led == "rgb":
            parts.indicator = RgbIndicator(_make("RGB LED", g.led_red, lambda: gpiozero.RGBLED(
                g.led_red, g.led_green, g.led_blue, pwm=False, pin_factory=factory)))
        if g.buzzer >= 0:
            if g.buzzer_tonal:
                parts.buzzer = ToneBuzzer(_make("tonal buzzer", g.buzzer, lambda: gpiozero.TonalBuzzer(
                    g.buzzer, octaves=2, pin_factory=factory)))
            else:
                parts.buzzer = ActiveBuzzer(_make("buzzer", g.buzzer, lambda: gpiozero.Buzzer(
                    g.buzzer, pin_factory=factory)))
        if g.relay >= 0:
            parts.relay = PulseRelay(_make("relay", g.relay, lambda: gpiozero.DigitalOutputDevice(
                g.relay, active_high=g.relay_active_high, initial_value=False, pin_factory=factory)))
        if g.button >= 0:
            parts.button = _make("button", g.button, lambda: gpiozero.Button(g.button, pin_factory=factory))
    except DeviceError:
        parts.close()  # release the pins already claimed
        raise
    return parts

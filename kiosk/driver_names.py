"""Driver name tables, one per family: the configuration's choices are a table's names (`kiosk.config`) and
the composition root builds from its entries (`kiosk.app`). Adding a driver is one module in `drivers/` and
one entry here.

An entry names a module in `drivers/` and its builder, a function of the configuration. `None` is "no device"
(for pin factories: gpiozero's own choice). A module is imported only when it is built, so a driver's library
is needed only where that driver is configured. Dict order is the order the example configuration lists.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from kiosk.ports import Camera, Decoder, Display, Reader

T = TypeVar("T")


@dataclass(frozen=True)
class Driver(Generic[T]):
    """`drivers.<module>.<builder>(cfg)` makes the adapter, of type T."""

    module: str
    builder: str = "create"


CAMERAS: dict[str, Driver[Camera] | None] = {
    "replay": Driver("camera_replay"),
    "picamera2": Driver("camera_picamera2"),
    "v4l2": Driver("camera_v4l2"),
    "none": None,
}

READERS: dict[str, Driver[Reader] | None] = {
    "none": None,
    "serial": Driver("reader_serial"),
    "evdev": Driver("reader_evdev"),
}

DECODERS: dict[str, Driver[Decoder]] = {
    "auto": Driver("decoder_auto"),
    "zxing": Driver("decoder_zxing"),
    "zbar": Driver("decoder_zbar"),
}

DISPLAYS: dict[str, Driver[Display] | None] = {
    "ssd1306": Driver("display_luma", "oled_i2c"),
    "sh1106": Driver("display_luma", "oled_i2c"),
    "ssd1351": Driver("display_luma", "ssd1351"),
    "hdmi": Driver("display_luma", "hdmi"),
    "png": Driver("display_png"),
    "dummy": Driver("display_luma", "dummy"),
    "none": None,
}

# The gpiozero pin factory that `drivers.gpio.create(cfg, pin_factory)` builds every GPIO part with.
PIN_FACTORIES: dict[str, Driver[object] | None] = {
    "mock": Driver("gpio", "mock_factory"),
    "lgpio": Driver("gpio", "lgpio_factory"),
    "rpigpio": Driver("gpio", "rpigpio_factory"),
    "auto": None,
}

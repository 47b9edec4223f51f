"""Display port on luma: SSD1306/SH1106 (128x64 I2C), SSD1351 (128x128 SPI colour), HDMI through the
luma.emulator pygame device, and luma's own `dummy` device (keeps the last image, for tests).

luma and pygame are imported inside functions so the suite runs without them.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from kiosk.errors import DeviceError

if TYPE_CHECKING:
    from PIL import Image

    from kiosk.config import Config, DisplayConfig
    from kiosk.ports import Display

I2C_FIX = ("enable I2C with raspi-config (Interface Options > I2C), check the wiring and the address with "
           "`i2cdetect -y {port}` (set display.i2c_address), add the user to the i2c group "
           "(sudo usermod -aG i2c $USER)")
SPI_FIX = ("enable SPI with raspi-config (Interface Options > SPI), check display.spi_port/spi_device and the "
           "DC/RST pins, add the user to the spi and gpio groups")


class LumaDisplay:
    """Wraps a luma device as the kiosk's Display port."""

    def __init__(self, device: Any):
        self.device = device
        self.size: tuple[int, int] = (int(device.size[0]), int(device.size[1]))
        self.mode: str = device.mode

    def show(self, image: Image.Image) -> None:
        self.device.display(image)

    def close(self) -> None:
        self.device.cleanup()


# ---------------------------------------------------------------- builders, named in kiosk.driver_names.DISPLAYS
def dummy(cfg: Config) -> Display:
    """luma's dummy device: keeps the last image (tests, benchmarks)."""
    from luma.core.device import dummy as dummy_device

    d = cfg.display
    return LumaDisplay(dummy_device(width=d.width, height=d.height, rotate=d.rotate, mode="RGB"))


def oled_i2c(cfg: Config) -> Display:
    """A 128x64 I2C OLED; display.type names luma's device class (ssd1306, sh1106)."""
    from luma.core.error import Error as LumaError
    from luma.core.interface.serial import i2c
    from luma.oled import device as oled

    d = cfg.display
    try:
        serial = i2c(port=d.i2c_port, address=d.i2c_address)
        return _with_contrast(getattr(oled, d.type)(serial, width=128, height=64, rotate=d.rotate), d)
    except (LumaError, OSError) as exc:
        raise DeviceError(f"{d.type} panel at I2C bus {d.i2c_port} address {d.i2c_address:#04x} not usable "
                          f"({exc}): {I2C_FIX.format(port=d.i2c_port)}") from None


def ssd1351(cfg: Config) -> Display:
    """The 128x128 SPI colour OLED."""
    from luma.core.error import Error as LumaError
    from luma.core.interface.serial import spi
    from luma.oled.device import ssd1351 as ssd1351_device

    d = cfg.display
    try:
        serial = spi(port=d.spi_port, device=d.spi_device, gpio_DC=d.gpio_dc, gpio_RST=d.gpio_rst)
        return _with_contrast(ssd1351_device(serial, width=128, height=128, rotate=d.rotate), d)
    except ImportError as exc:  # spidev or RPi.GPIO missing
        raise DeviceError(f"ssd1351 needs {exc.name or 'spidev'}: apt install python3-spidev python3-rpi-lgpio, "
                          f"then {SPI_FIX}") from None
    except (LumaError, OSError, RuntimeError) as exc:
        raise DeviceError(f"ssd1351 panel on SPI {d.spi_port}.{d.spi_device} not usable ({exc}): {SPI_FIX}") from None


def hdmi(cfg: Config) -> Display:
    """An HDMI screen through luma.emulator's pygame device."""
    d = cfg.display
    try:
        from luma.emulator.device import pygame as pygame_device
    except ImportError:
        raise DeviceError("display.type hdmi needs luma.emulator: pip install luma.emulator") from None
    try:
        device = pygame_device(width=d.width, height=d.height, rotate=d.rotate, mode="RGB",
                               transform="none", scale=1)
        if d.fullscreen:
            # The emulator has no full-screen option; it opens its window on the first frame unless a
            # screen surface is already set, so open it full screen here.
            pg = device._pygame
            device._screen = pg.display.set_mode((device._w, device._h), pg.FULLSCREEN | pg.SCALED)  # unrotated size
            pg.mouse.set_visible(False)
        # The emulator calls sys.exit() on Escape or a window-close event: a passer-by with a keyboard must not
        # be able to stop the kiosk's screen (the service is stopped through systemd).
        device._abort = lambda: False
    except Exception as exc:  # pygame.error: no video device
        raise DeviceError(f"no screen for display.type hdmi ({exc}): run on the Pi's console with "
                          f"SDL_VIDEODRIVER=kmsdrm, or in a desktop session with DISPLAY set"
                          f"{'' if os.environ.get('DISPLAY') else ' (DISPLAY is not set)'}") from None
    return _with_contrast(device, d)


def _with_contrast(device: Any, d: DisplayConfig) -> LumaDisplay:
    device.contrast(d.contrast)
    return LumaDisplay(device)

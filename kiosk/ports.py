"""Ports: the only way the core reaches hardware, storage and the network.

Adapters live in `drivers/` (one per library, importing it lazily) and are built by the composition
root `kiosk.app`. Tests and the demo plug in the fakes from `drivers.fake`.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:  # numpy and Pillow types only for annotations
    import numpy as np
    from PIL import Image


@runtime_checkable
class Camera(Protocol):
    """A source of greyscale frames (2-D uint8 numpy arrays, the Y plane)."""

    def start(self) -> None: ...

    def read(self) -> "np.ndarray | None":
        """Next frame; None at end of input (replay) . Raises DeviceError on failure."""

    def close(self) -> None: ...


@runtime_checkable
class Reader(Protocol):
    """A dedicated QR reader that delivers decoded text (serial, HID keyboard wedge)."""

    def start(self) -> None: ...

    def read(self, timeout: float) -> str | None:
        """One complete read (terminator stripped), or None when nothing arrived within timeout."""

    def close(self) -> None: ...


class Decoder(Protocol):
    name: str

    def decode(self, frame: "np.ndarray") -> list[str]:
        """Texts of the QR codes in a grey frame. Never a text the decoder is not sure of."""


class Display(Protocol):
    size: tuple[int, int]
    mode: str  # Pillow mode the panel takes: "1" monochrome or "RGB"

    def show(self, image: "Image.Image") -> None: ...

    def close(self) -> None: ...


class Indicator(Protocol):
    """Status light: green/red LED pair or one RGB LED."""

    def flash(self, colour: str, seconds: float) -> None:
        """Light `colour` ("green", "red", "amber") for `seconds`, in the background."""

    def off(self) -> None: ...

    def close(self) -> None: ...


class Buzzer(Protocol):
    def beep(self, on_time: float, off_time: float, n: int) -> None:
        """Beep n times, in the background (never blocks the caller)."""

    def close(self) -> None: ...


class Relay(Protocol):
    def pulse(self, seconds: float) -> None:
        """Energise the door/turnstile relay for `seconds`, in the background."""

    def close(self) -> None: ...


class Button(Protocol):
    when_pressed: Callable[[], None] | None

    def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware datetime in the site's time zone."""

    def synced(self) -> bool:
        """True when system time is known to be right (NTP synchronised)."""

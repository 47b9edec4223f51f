"""USB HID keyboard-wedge QR readers through evdev (`/dev/input/by-id/...-event-kbd`).

The device is grabbed so its keystrokes reach only the kiosk (not a console login). Key presses are mapped
with a US layout (Shift included). A read ends at Enter, keypad Enter or Tab (the suffixes readers are set
to; no code the kiosk reads contains a tab); a reader configured without a
suffix (or one that drops control characters) is handled by the inter-key gap: no key for `IDLE_GAP_S`
ends the read, so a valid code is neither lost nor merged with the next one. Bursts already queued are
split on the events' own timestamps, so a slow main loop does not merge two codes either.

Vietnamese: a keyboard wedge cannot type diacritics reliably (it depends on the host's layout and input
method). Readers of CCCD codes with diacritics must be set to serial / USB-CDC mode (drivers.reader_serial).
Alt+numpad and Unicode-hex sequences are not decoded: any key that has no US-layout character, or a key
pressed with Ctrl/Alt/Meta held, is put into the read as SUB (U+001A, the ASCII "substitute" character),
so the core answers invalid/malformed instead of accepting a silently altered code.
"""
from __future__ import annotations

import logging
import select
import time
from types import ModuleType
from typing import TYPE_CHECKING, Callable, NoReturn

from kiosk.errors import DeviceError

if TYPE_CHECKING:
    import evdev

    from kiosk.config import Config
    from kiosk.ports import Reader

log = logging.getLogger(__name__)

IDLE_GAP_S = 0.1  # a wedge types a whole code in one burst; a longer pause ends the read
SUBSTITUTE = "\x1a"
KEY_DOWN = 1  # evdev key values: 0 up, 1 down, 2 autorepeat (ignored: a reader never holds a key)

# US layout: key name -> (plain, with Shift)
_KEYMAP: dict[str, tuple[str, str]] = {
    **{f"KEY_{c}": (c.lower(), c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{f"KEY_{d}": (d, s) for d, s in zip("1234567890", "!@#$%^&*()")},
    "KEY_MINUS": ("-", "_"), "KEY_EQUAL": ("=", "+"), "KEY_LEFTBRACE": ("[", "{"), "KEY_RIGHTBRACE": ("]", "}"),
    "KEY_BACKSLASH": ("\\", "|"), "KEY_SEMICOLON": (";", ":"), "KEY_APOSTROPHE": ("'", '"'),
    "KEY_GRAVE": ("`", "~"), "KEY_COMMA": (",", "<"), "KEY_DOT": (".", ">"), "KEY_SLASH": ("/", "?"),
    "KEY_SPACE": (" ", " "), "KEY_102ND": ("\\", "|"),
    **{f"KEY_KP{d}": (d, d) for d in "0123456789"},  # NumLock assumed on
    "KEY_KPDOT": (".", "."), "KEY_KPMINUS": ("-", "-"), "KEY_KPPLUS": ("+", "+"),
    "KEY_KPASTERISK": ("*", "*"), "KEY_KPSLASH": ("/", "/"),
}
_ENTER = ("KEY_ENTER", "KEY_KPENTER", "KEY_TAB")  # keys that end a read
_SHIFT = ("KEY_LEFTSHIFT", "KEY_RIGHTSHIFT")
_OTHER_MODIFIERS = ("KEY_LEFTCTRL", "KEY_RIGHTCTRL", "KEY_LEFTALT", "KEY_RIGHTALT", "KEY_LEFTMETA", "KEY_RIGHTMETA")
_IGNORED = ("KEY_CAPSLOCK", "KEY_NUMLOCK", "KEY_SCROLLLOCK")  # state keys some readers send at power-up


class KeyDecoder:
    """Turns (code, value, timestamp) key events into complete reads."""

    def __init__(self, ecodes: ModuleType, max_length: int, idle_gap: float = IDLE_GAP_S):
        """`ecodes`: the `evdev.ecodes` module (key names to codes)."""
        codes = ecodes.ecodes
        self._ev_key = ecodes.EV_KEY
        self._chars = {codes[name]: chars for name, chars in _KEYMAP.items() if name in codes}
        self._enter = {codes[n] for n in _ENTER}
        self._shift = {codes[n] for n in _SHIFT}
        self._modifiers = {codes[n] for n in _OTHER_MODIFIERS}
        self._ignored = {codes[n] for n in _IGNORED}
        self.max_length = max_length
        self.idle_gap = idle_gap
        self._held: set[int] = set()
        self._text: list[str] = []
        self._last_key_at: float | None = None  # event timestamp of the last key press
        self.reads: list[str] = []

    @property
    def pending(self) -> bool:
        return bool(self._text)

    def feed(self, event: evdev.InputEvent) -> None:
        if event.type != self._ev_key:
            return
        if event.value == 0:
            self._held.discard(event.code)
            return
        if event.value != KEY_DOWN:
            return
        if event.code in self._shift or event.code in self._modifiers:
            self._held.add(event.code)
            return
        stamp = event.timestamp()
        if self._text and self._last_key_at is not None and stamp - self._last_key_at > self.idle_gap:
            self.finish()  # a queued burst from a reader without Enter: the gap separates two codes
        self._last_key_at = stamp
        if event.code in self._enter:
            self.finish()
        elif event.code not in self._ignored:
            self._type(self._character(event.code))

    def finish(self) -> None:
        if self._text:
            self.reads.append("".join(self._text))
        self._text.clear()

    def _character(self, code: int) -> str:
        chars = self._chars.get(code)
        if chars is None or self._held & self._modifiers:
            return SUBSTITUTE
        return chars[1] if self._held & self._shift else chars[0]

    def _type(self, char: str) -> None:
        if len(self._text) <= self.max_length:  # one beyond the limit: the core reports too_long
            self._text.append(char)


class EvdevReader:
    def __init__(self, device: str, max_length: int = 4096, idle_gap: float = IDLE_GAP_S,
                 monotonic: Callable[[], float] = time.monotonic):
        self.device = device
        self.max_length = max_length
        self.idle_gap = idle_gap
        self._monotonic = monotonic
        self._input: evdev.InputDevice[str] | None = None
        self._keys: KeyDecoder | None = None
        self._last_arrival = 0.0

    def _fix(self) -> str:
        return (f"check reader.device = {self.device} (`ls /dev/input/by-id/`) and the cable; "
                "add the user to the input group")

    def start(self) -> None:
        """Open and grab the device (or reopen it after an unplug)."""
        import evdev

        self.close()
        try:
            device = evdev.InputDevice(self.device)
        except OSError as exc:
            raise DeviceError(f"cannot open keyboard-wedge reader {self.device}: {exc}; {self._fix()}") from None
        try:
            device.grab()
        except OSError as exc:
            device.close()
            raise DeviceError(f"cannot grab {self.device} (another program holds it?): {exc}; "
                              "stop the other reader of this device") from None
        self._input = device
        self._keys = KeyDecoder(evdev.ecodes, self.max_length, self.idle_gap)
        log.info("keyboard-wedge reader %s open and grabbed", self.device)

    def read(self, timeout: float) -> str | None:
        device, keys = self._input, self._keys
        if device is None or keys is None:
            raise DeviceError(f"keyboard-wedge reader {self.device} is not open: {self._fix()}")
        deadline = self._monotonic() + timeout
        while not keys.reads:
            now = self._monotonic()
            idle_end = self._last_arrival + self.idle_gap
            if keys.pending and now >= idle_end:
                keys.finish()  # no Enter came: the pause ends the read
                break
            if now >= deadline and not self._wait_readable(device, 0.0):
                return None
            until = min(deadline, idle_end) if keys.pending else deadline
            if self._wait_readable(device, max(0.0, until - now)):
                self._drain(device, keys)
        return keys.reads.pop(0)

    def close(self) -> None:
        if self._input is not None:
            for release in (self._input.ungrab, self._input.close):
                try:
                    release()
                except OSError:
                    pass  # already gone (unplugged)
            self._input = None

    # ------------------------------------------------------------------ internals
    def _wait_readable(self, device: evdev.InputDevice[str], seconds: float) -> bool:
        try:
            ready, _, _ = select.select([device], [], [], seconds)
        except (OSError, ValueError) as exc:
            self._fail(exc)
        return bool(ready)

    def _drain(self, device: evdev.InputDevice[str], keys: KeyDecoder) -> None:
        try:
            event = device.read_one()
            while event is not None:
                keys.feed(event)
                event = device.read_one()
        except OSError as exc:
            self._fail(exc)
        self._last_arrival = self._monotonic()

    def _fail(self, exc: Exception) -> NoReturn:
        self.close()
        raise DeviceError(f"keyboard-wedge reader {self.device} failed (unplugged?): {exc}; {self._fix()}") from None


def create(cfg: Config) -> Reader:
    return EvdevReader(cfg.reader.device, cfg.codes.max_length)

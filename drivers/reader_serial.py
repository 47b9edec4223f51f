"""Serial / USB-CDC QR readers through pyserial (`/dev/ttyACM0`, `/dev/ttyUSB0`, RS-232).

Framing: a read ends at CR, LF or CRLF (set the reader's suffix to CR). Chunks are assembled until the
terminator; empty lines (the LF of a CRLF split across chunks) are skipped. A reader configured without a
suffix still works: a pause of `IDLE_GAP_S` after the last byte ends the read, so two codes never merge
and the remains of a read cut off by a glitch do not end up in front of the next code.

Decisions:
- Length: a line is kept up to `max_length + 1` bytes and the rest is discarded up to its terminator, so
  memory stays bounded and the core still classifies the read as `too_long` (it is longer than the limit).
- Encoding: UTF-8 (Vietnamese CCCD payloads). Invalid bytes are kept via `surrogateescape`, never replaced:
  a replacement character could turn one code into another, while a lone surrogate makes the core answer
  `invalid`/`malformed`, and the exact bytes remain recoverable (`text.encode("utf-8", "surrogateescape")`).
"""
from __future__ import annotations

import logging
import select
import time
from typing import TYPE_CHECKING, Callable

from kiosk.errors import DeviceError

if TYPE_CHECKING:
    import serial

    from kiosk.config import Config
    from kiosk.ports import Reader

log = logging.getLogger(__name__)

TERMINATORS = b"\r\n"
IDLE_GAP_S = 0.3  # a code arrives in one burst; a pause this long ends a read that has no terminator


class SerialReader:
    def __init__(self, port: str, baudrate: int = 9600, max_length: int = 4096, idle_gap: float = IDLE_GAP_S,
                 monotonic: Callable[[], float] = time.monotonic):
        self.port = port
        self.baudrate = baudrate
        self.max_length = max_length
        self.idle_gap = idle_gap
        self._last_byte_at = 0.0
        self._monotonic = monotonic
        self._serial: serial.Serial | None = None
        self._partial = bytearray()
        self._discarding = False  # inside an over-long line: drop bytes until its terminator
        self._lines: list[bytes] = []

    def _fix(self) -> str:
        return (f"check the cable and reader.port = {self.port} (`ls /dev/serial/by-id/`); "
                "add the user to the dialout group")

    def start(self) -> None:
        """Open, or reopen after an unplug. Bytes of a read cut short by the failure are discarded."""
        import serial

        self.close()
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"cannot open serial reader {self.port}: {exc}; {self._fix()}") from None
        log.info("serial reader %s open at %d baud", self.port, self.baudrate)

    def read(self, timeout: float) -> str | None:
        if self._lines:
            return self._decode(self._lines.pop(0))
        port = self._serial
        if port is None:
            raise DeviceError(f"serial reader {self.port} is not open: {self._fix()}")
        deadline = self._monotonic() + timeout
        while not self._lines:
            now = self._monotonic()
            idle_end = self._last_byte_at + self.idle_gap
            if (self._partial or self._discarding) and now >= idle_end:
                self._end_line()  # no terminator came (reader without suffix, or cut off): the pause ends it
                break
            until = min(deadline, idle_end) if self._partial else deadline
            data = self._receive(port, max(0.0, until - now))
            if data:
                self._last_byte_at = self._monotonic()
                self._feed(data)
            elif now >= deadline:
                return None
        return self._decode(self._lines.pop(0))

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except OSError:
                pass  # already gone (unplugged)
            self._serial = None
        self._partial.clear()
        self._discarding = False

    # ------------------------------------------------------------------ internals
    def _receive(self, port: serial.Serial, timeout: float) -> bytes:
        """What arrived within timeout (waiting with select: changing pyserial's timeout reconfigures the tty)."""
        import serial

        try:
            ready, _, _ = select.select([port.fileno()], [], [], timeout)
            return port.read(max(1, port.in_waiting)) if ready else b""
        except (serial.SerialException, OSError, ValueError) as exc:
            self.close()
            raise DeviceError(f"serial reader {self.port} failed (unplugged?): {exc}; {self._fix()}") from None

    def _feed(self, data: bytes) -> None:
        start = 0
        for i, byte in enumerate(data):
            if byte in TERMINATORS:
                self._append(data[start:i])
                self._end_line()
                start = i + 1
        self._append(data[start:])

    def _end_line(self) -> None:
        if self._partial:
            self._lines.append(bytes(self._partial))
        self._partial.clear()
        self._discarding = False

    def _append(self, chunk: bytes) -> None:
        if self._discarding or not chunk:
            return
        room = self.max_length + 1 - len(self._partial)
        self._partial += chunk[:room]
        if len(chunk) > room:
            self._discarding = True
            log.warning("serial reader: a read longer than %d bytes was cut (reported as too long)", self.max_length)

    @staticmethod
    def _decode(line: bytes) -> str:
        return line.decode("utf-8", "surrogateescape")


def create(cfg: Config) -> Reader:
    return SerialReader(cfg.reader.port, cfg.reader.baudrate, cfg.codes.max_length)

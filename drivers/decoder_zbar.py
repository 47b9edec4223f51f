"""QR decoder on pyzbar (libzbar0), the alternative to zxing-cpp.

zbar converts a QR code's bytes to text by guessing a character set (Shift_JIS, ISO-8859-1 or UTF-8)
and hands back that guess re-encoded as UTF-8, which turns Vietnamese UTF-8 names into mojibake
("HU盻ｲNH" for "HUỲNH"). The guess is undone here: the text is re-encoded in each character set zbar
may have used and kept only when that gives back valid UTF-8. What cannot be recovered is dropped.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from drivers.frames import sure_text, to_grey
from kiosk.errors import DeviceError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import Decoder

log = logging.getLogger(__name__)

# The character sets zbar guesses for QR byte segments, in the order they are undone.
GUESSED_CHARSETS = ("shift_jis", "cp932", "latin-1")
# CJK and half-width katakana left in a text mean an unrecovered Shift_JIS guess: the kiosk's codes have none.
_SJIS_MOJIBAKE = re.compile("[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")


def recover_utf8(data: bytes) -> str | None:
    """The original UTF-8 text of a zbar result, or None when it cannot be known for sure."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.isascii():
        return text
    for charset in GUESSED_CHARSETS:
        try:
            original = text.encode(charset).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if original != text:
            return original
    # Nothing to undo: zbar read the bytes as UTF-8 already, unless Shift_JIS leftovers say otherwise.
    return None if _SJIS_MOJIBAKE.search(text) else text


class ZbarDecoder:
    name = "zbar"

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar
        except ImportError as exc:
            # pyzbar raises ImportError both when it is missing and when libzbar.so cannot be loaded.
            raise DeviceError("the zbar decoder cannot load: run `sudo apt install libzbar0` and "
                              f"`pip install pyzbar` (or set decoder.type = \"zxing\"): {exc}") from None
        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, frame: Any) -> list[str]:
        grey = to_grey(frame)
        if grey is None:
            return []
        try:
            found = self._pyzbar.decode(grey, symbols=self._symbols)
        except Exception:  # pyzbar raises its own PyZbarError and ctypes errors on odd buffers
            log.debug("zbar rejected a frame of shape %s", grey.shape)
            return []
        texts: list[str] = []
        for symbol in found:
            text = recover_utf8(symbol.data)
            if text is not None and sure_text(text) and text not in texts:
                texts.append(text)
        return texts


def create(cfg: Config | None) -> Decoder:
    return ZbarDecoder()

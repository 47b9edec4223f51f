"""Reading the roster file of earlier versions (a TinyDB JSON document) once, to migrate it to SQLite.

Such a file is one JSON object, `{"meta": {"1": {...}}, "people": {"1": {...}, ...}}`, as large as the roster
(tens of MB for 200,000 people): it is read in 64 KB pieces and its people one at a time, so migrating
takes the memory of one row, not of the file.
"""
from __future__ import annotations

import json
from datetime import date
from typing import IO, Any, Iterator

from kiosk.model import Dose, HealthRecord
from kiosk.stores.roster_rows import RosterEntry

CHUNK = 64 * 1024
MAX_VALUE = 1024 * 1024  # one person is under 2 KB: a value that runs on longer is a broken file
_DECODER = json.JSONDecoder()


class LegacyFormatError(ValueError):
    """The file is not a roster of an earlier version."""


def looks_like_tinydb(head: bytes) -> bool:
    return head.lstrip()[:1] == b"{"


class TinyDbRoster:
    """The people of a TinyDB roster file as RosterEntry objects, read one at a time, and its meta document
    (filled in as the file is read: TinyDB writes `meta` before `people`)."""

    def __init__(self, f: IO[str]):
        self._f = f
        self._buf = ""
        self._pos = 0
        self._eof = False
        self.meta: dict[str, Any] = {}

    def entries(self) -> Iterator[RosterEntry]:
        """Every person in the file; LegacyFormatError when the file is not a TinyDB roster."""
        try:
            self._expect("{")
            for table in self._members():
                if table == "people":
                    self._expect("{")
                    for _ in self._members():
                        yield _entry(self._value())
                elif table == "meta":
                    self.meta = dict((self._value() or {}).get("1") or {})
                else:
                    self._value()  # another table: not the roster's
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LegacyFormatError(str(exc)) from None

    # ------------------------------------------------------------------ a streaming JSON object reader
    def _members(self) -> Iterator[str]:
        """The keys of the object being read (its opening brace already read); the caller reads each value."""
        if self._peek() == "}":
            self._pos += 1
            return
        while True:
            key = self._value()
            if not isinstance(key, str):
                raise LegacyFormatError("expected a key")
            self._expect(":")
            yield key
            ch = self._peek()
            self._pos += 1
            if ch == "}":
                return
            if ch != ",":
                raise LegacyFormatError("expected ',' or '}'")

    def _value(self) -> Any:
        self._peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                if len(self._buf) - self._pos > MAX_VALUE or not self._fill():
                    raise LegacyFormatError("truncated or not JSON") from None
                continue
            if end == len(self._buf) and not self._eof and self._fill():
                continue  # a number at the end of the piece may go on in the next one
            self._pos = end
            return value

    def _expect(self, ch: str) -> None:
        if self._peek() != ch:
            raise LegacyFormatError(f"expected {ch!r}")
        self._pos += 1

    def _peek(self) -> str:
        """The next character that is not white space (reading more as needed); '' at the end."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos].isspace():
                self._pos += 1
            if self._pos < len(self._buf) or not self._fill():
                return self._buf[self._pos:self._pos + 1]

    def _fill(self) -> bool:
        if self._eof:
            return False
        more = self._f.read(CHUNK)
        if not more:
            self._eof = True
            return False
        self._buf = self._buf[self._pos:] + more
        self._pos = 0
        return True


def _entry(doc: dict[str, Any]) -> RosterEntry:
    """One person as the TinyDB roster stored it (checked when it was written)."""
    health = HealthRecord(doses=tuple(Dose(date.fromisoformat(day), product) for day, product in doc["doses"]),
                          recovered=date.fromisoformat(doc["recovered"]) if doc["recovered"] else None)
    for field in ("id", "qid", "name"):
        if doc[field] is not None and not isinstance(doc[field], str):
            raise TypeError(field)
    if doc["staff"] not in (True, False, None):
        raise TypeError("staff")
    return RosterEntry(id=doc["id"], qid=doc["qid"], name=doc["name"], health=health, staff=doc["staff"])

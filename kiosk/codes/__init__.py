"""Classify one scanned payload and parse it (spec/codes.md section 1).

`classify` is the only entry point. Every payload is hostile input: the size limit is checked before any
other work, control characters make it malformed, and the parsers validate every field. The raw text is
never logged.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Protocol

from kiosk.codes import cccd, personal_qr
from kiosk.codes.fields import Malformed
from kiosk.model import BADGE, CCCD, DCC, PERSONAL_QR, UNKNOWN, ParsedCode, Person

BADGE_ID = re.compile(r"[!-~]{1,64}")  # printable ASCII, no space
CCCD_FIRST_FIELD = re.compile(r"[0-9]{12}|[0-9]{9}")
# Characters no code carries: C0/C1 controls (NUL, tab, CR...), line/paragraph separators, lone surrogates.
FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class DccParser(Protocol):
    def parse(self, text: str, now: datetime) -> ParsedCode: ...


def classify(text: str, *, max_length: int = 4096, badge_prefix: str = "", dcc: DccParser | None = None,
             now: datetime | None = None) -> ParsedCode:
    """The kind of code and the parsed person, or a reason code in `error` (spec section 1, first match wins)."""
    if not isinstance(text, str) or len(text) > max_length + 2:  # cheap bound before any other work
        return ParsedCode(UNKNOWN, error="too_long" if isinstance(text, str) else "malformed")
    text = _strip_terminator(text)
    if len(text.encode("utf-8", "surrogatepass")) > max_length:
        return ParsedCode(UNKNOWN, error="too_long")
    kind = _kind(text, badge_prefix)
    if kind == UNKNOWN:
        return ParsedCode(UNKNOWN, error="unrecognised")
    if FORBIDDEN_CHARACTERS.search(text):
        return ParsedCode(kind, error="malformed", detail="control_character")
    if kind == DCC:
        if dcc is None:
            return ParsedCode(DCC, error="unsupported")
        return dcc.parse(text, now or datetime.now(timezone.utc))
    try:
        if kind == BADGE:
            return _badge(text[len(badge_prefix):])
        fields = text.split("|")
        person = personal_qr.parse(fields) if kind == PERSONAL_QR else cccd.parse(fields)
    except Malformed as exc:
        return ParsedCode(kind, error="malformed", detail=exc.field)
    return ParsedCode(kind, person=person)


def _strip_terminator(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\r", "\n")):
        return text[:-1]
    return text


def _kind(text: str, badge_prefix: str) -> str:
    if text.startswith("HC1:"):
        return DCC
    if badge_prefix and text.startswith(badge_prefix):
        return BADGE
    # At most 8 splits: enough to tell the shapes apart without splitting a payload made of pipes.
    fields = text.split("|", 7)
    if len(fields) == 6 and fields[3] in ("0", "1"):
        return PERSONAL_QR
    if len(fields) >= 7 and CCCD_FIRST_FIELD.fullmatch(fields[0]):
        return CCCD
    return UNKNOWN


def _badge(rest: str) -> ParsedCode:
    if not BADGE_ID.fullmatch(rest):
        return ParsedCode(BADGE, error="malformed", detail="badge_id")
    return ParsedCode(BADGE, person=Person(id_number=rest))

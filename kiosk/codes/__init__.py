"""Classify one scanned payload and parse it (spec/codes.md section 1).

`classify` is the only entry point. Every payload is hostile input: the size limit is checked before any
other work, control characters make it malformed, and the parsers validate every field. The raw text is
never logged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from kiosk.codes import cccd, personal_qr
from kiosk.codes.fields import Malformed
from kiosk.model import BADGE, CCCD, DCC, PERSONAL_QR, UNKNOWN, ParsedCode, Person
from kiosk.ports import DccParser

BADGE_ID = re.compile(r"[!-~]{1,64}")  # printable ASCII, no space
CCCD_FIRST_FIELD = re.compile(r"[0-9]{12}|[0-9]{9}")
# Characters no code carries: C0/C1 controls (NUL, tab, CR...), line/paragraph separators, lone surrogates.
FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class Scan:
    """One payload being classified, with what the site configured for it (a plain class: one is made per scan)."""

    __slots__ = ("text", "badge_prefix", "dcc", "now", "shape")

    def __init__(self, text: str, badge_prefix: str, dcc: DccParser | None, now: datetime | None):
        self.text = text  # terminator stripped, within the size limit
        self.badge_prefix = badge_prefix
        self.dcc = dcc
        self.now = now  # None: the current time, when a parser needs one
        # At most 8 `|`-separated fields: enough to tell the shapes apart without splitting a payload of pipes.
        self.shape = text.split("|", 7)


@dataclass(frozen=True)
class CodeType:
    """One kind of code: `detect` says whether a payload has its shape, `parse` reads it (raising Malformed or
    returning a ParsedCode with its reason)."""

    kind: str
    detect: Callable[[Scan], bool]
    parse: Callable[[Scan], ParsedCode]


def classify(text: str, *, max_length: int = 4096, badge_prefix: str = "", dcc: DccParser | None = None,
             now: datetime | None = None) -> ParsedCode:
    """The kind of code and the parsed person, or a reason code in `error` (spec section 1, first match wins)."""
    if not isinstance(text, str) or len(text) > max_length + 2:  # cheap bound before any other work
        return ParsedCode(UNKNOWN, error="too_long" if isinstance(text, str) else "malformed")
    text = _strip_terminator(text)
    if len(text.encode("utf-8", "surrogatepass")) > max_length:
        return ParsedCode(UNKNOWN, error="too_long")
    scan = Scan(text, badge_prefix, dcc, now)
    for code_type in CODE_TYPES:
        if code_type.detect(scan):
            break
    else:
        return ParsedCode(UNKNOWN, error="unrecognised")
    if FORBIDDEN_CHARACTERS.search(text):
        return ParsedCode(code_type.kind, error="malformed", detail="control_character")
    try:
        return code_type.parse(scan)
    except Malformed as exc:
        return ParsedCode(code_type.kind, error="malformed", detail=exc.field)


def _strip_terminator(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\r", "\n")):
        return text[:-1]
    return text


# ---------------------------------------------------------------- the code types
def _is_personal_qr(scan: Scan) -> bool:
    return len(scan.shape) == 6 and scan.shape[3] in ("0", "1")


def _is_cccd(scan: Scan) -> bool:
    return len(scan.shape) >= 7 and CCCD_FIRST_FIELD.fullmatch(scan.shape[0]) is not None


def _now(scan: Scan) -> datetime:
    """The instant of the scan (the site's time zone when the decider gives it): it bounds dates of birth and a
    signed certificate's validity."""
    return scan.now or datetime.now(timezone.utc)


def _dcc(scan: Scan) -> ParsedCode:
    if scan.dcc is None:
        return ParsedCode(DCC, error="unsupported")
    return scan.dcc.parse(scan.text, _now(scan))


def _badge(scan: Scan) -> ParsedCode:
    rest = scan.text[len(scan.badge_prefix):]
    if not BADGE_ID.fullmatch(rest):
        return ParsedCode(BADGE, error="malformed", detail="badge_id")
    return ParsedCode(BADGE, person=Person(id_number=rest))


# Spec section 1 order: the first type whose `detect` matches reads the payload. A new code type is one
# parser module and one entry here.
CODE_TYPES: tuple[CodeType, ...] = (
    CodeType(DCC, lambda scan: scan.text.startswith("HC1:"), _dcc),
    CodeType(BADGE, lambda scan: bool(scan.badge_prefix) and scan.text.startswith(scan.badge_prefix), _badge),
    CodeType(PERSONAL_QR, _is_personal_qr,
             lambda scan: ParsedCode(PERSONAL_QR, person=personal_qr.parse(scan.text.split("|"), _now(scan).date()))),
    CodeType(CCCD, _is_cccd,
             lambda scan: ParsedCode(CCCD, person=cccd.parse(scan.text.split("|"), _now(scan).date()))),
)

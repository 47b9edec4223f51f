"""The health certificate inside a verified `HC1:` code (EU DCC schema), read the way real issuers write it.

Strict where the decision depends on a field; a bad value there makes the code `malformed` (`Malformed(field)`):
- the name shown (masked) on screen and in events: `nam` with `fnt`/`gnt` (or `fn`/`gn` when there is no
  `fnt`), text without control, separator or bidi-override characters, at most NAME_PART_MAX characters;
- the date of birth: `YYYY-MM-DD`, `YYYY-MM`, `YYYY` or empty, a real date and not after today;
- every entry's date (`v.dt`, `r.fr`, `t.sc`) and the dose numbers (`v.dn`, `v.sd`).
A test result (`t.tr`) that is neither SNOMED code is never read as negative or positive: the entry stays
(it is in the certificate) with an unknown result, and is noted. EU reference certificates of schema 1.0
carry an empty result and must still verify (dgc-testdata NL), which is why this is not `malformed`.

Everything else is read leniently: a JSON null, an empty string, a wrong type or an unreadable value in a
field the decision does not use is ignored and noted in `warnings` (`v[0].ma:empty`), never fatal; unknown
keys are ignored. Quirks of real issuers that read correctly: dates as CBOR tags (RFC 8943 full-date 1004
and 100, date/time 0 and 1), dates with a time part (the calendar day as written is used, noted), sample
times with offsets or fractions of a second, partial or empty dates of birth, coded values in other letter
cases (nothing the decision compares is letter-case sensitive). Warnings name the field and the problem,
never the value: it may be personal data.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from kiosk.codes.fields import Malformed, birth_date, calendar_date
from kiosk.model import Dose, HealthRecord, TestResult

TEST_RESULTS = {"260415000": False, "260373001": True}  # SNOMED CT "not detected", "detected"
TEST_DETECTED = "260373001"
NAME_PART_MAX = 80  # the schema's maxLength for fn, fnt, gn, gnt
DOSE_NUMBER_MAX = 99  # schema 1.3 says 1 to 9; 1.0 certificates carry 0 (dgc-testdata NL/104, NL/121)
MAX_WARNINGS = 20
# Optional text fields per entry type: read for display or not at all, so only noted when odd.
OPTIONAL_TEXT = {"v": ("tg", "vp", "mp", "ma", "co", "is", "ci"),
                 "t": ("tg", "tt", "nm", "ma", "tc", "co", "is", "ci"),
                 "r": ("tg", "co", "is", "ci")}
_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_BIRTH = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
# Never in a name that is shown and published: C0/C1 controls, line/paragraph separators, bidi embeddings,
# overrides and isolates (they reorder what a reader sees).
_NAME_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Certificate:
    name: str
    birth: str | None
    health: HealthRecord
    warnings: tuple[str, ...]


def read(dgc: Mapping[Any, Any], today: date) -> Certificate:
    """The holder and health entries of one certificate; raises Malformed naming the first bad strict field."""
    return _Reader(today).certificate(dgc)


def ucis(dgc: Mapping[Any, Any]) -> list[str]:
    """The unique certificate identifiers (`ci`) of every entry, as issued (revocation lists hash them so)."""
    found = []
    for key in ("v", "t", "r"):
        entries = dgc.get(key)
        if isinstance(entries, (list, tuple)):
            found += [e["ci"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("ci"), str) and e["ci"]]
    return found


class _Reader:
    def __init__(self, today: date):
        self.today = today
        self.warnings: list[str] = []

    def note(self, where: str, problem: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(f"{where}:{problem}")

    def certificate(self, dgc: Mapping[Any, Any]) -> Certificate:
        name = self.name(dgc.get("nam"))
        birth = self.birth(dgc.get("dob"))
        doses = tuple(self.dose(i, v) for i, v in enumerate(self.entries(dgc, "v")))
        recoveries = [self.recovery(i, r) for i, r in enumerate(self.entries(dgc, "r"))]
        tests = tuple(self.test(i, t) for i, t in enumerate(self.entries(dgc, "t")))
        health = HealthRecord(doses=doses, recovered=max(recoveries) if recoveries else None, tests=tests)
        return Certificate(name, birth, health, tuple(self.warnings))

    # ---------------------------------------------------------------- strict: what the decision uses
    def name(self, nam: Any) -> str:
        if not isinstance(nam, Mapping):
            raise Malformed("nam")
        parts = [_name_part(nam.get("fnt")), _name_part(nam.get("gnt"))]
        if not parts[0]:  # the ICAO-transliterated form is what the national codes show too; else as written
            parts = [_name_part(nam.get("fn")), _name_part(nam.get("gn"))]
        name = " ".join(" ".join(p.replace("<", " ") for p in parts if p).split())
        if not name:
            raise Malformed("nam")
        return name

    def birth(self, dob: Any) -> str | None:
        if dob is None or dob == "":
            return None  # the schema allows an unknown date of birth
        if isinstance(dob, date):  # a CBOR date or date/time tag (datetime is a date too)
            self.note("dob", "cbor_date")
            return birth_date(dob.year, dob.month, dob.day, "dob", self.today)
        if not isinstance(dob, str):
            raise Malformed("dob")
        text = dob.strip()
        match = _BIRTH.match(text)
        if not match:
            raise Malformed("dob")
        year, month, day = int(match[1]), _number(match[2]), _number(match[3])
        if match.end() < len(text):  # older issuers wrote a time part: the calendar day as written
            if day is None or not _is_datetime(text):
                raise Malformed("dob")
            self.note("dob", "time_part")
        return birth_date(year, month, day, "dob", self.today)

    def entries(self, dgc: Mapping[Any, Any], key: str) -> list[Mapping[Any, Any]]:
        entries = dgc.get(key)
        if entries is None:
            if key in dgc:
                self.note(key, "null")
            return []
        if not isinstance(entries, (list, tuple)) or not all(isinstance(e, Mapping) for e in entries):
            raise Malformed(key)
        return list(entries)

    def day(self, value: Any, field: str, where: str) -> date:
        """A calendar date (a dose, a first positive test); a time part or a CBOR date/time is noted."""
        if isinstance(value, datetime):
            self.note(where, "cbor_date")
            return value.date()
        if isinstance(value, date):
            self.note(where, "cbor_date")
            return value
        if not isinstance(value, str):
            raise Malformed(field)
        match = _DAY.match(value)
        if not match:
            raise Malformed(field)
        if match.end() < len(value):
            if not _is_datetime(value):
                raise Malformed(field)
            self.note(where, "time_part")
        return calendar_date(int(match[1]), int(match[2]), int(match[3]), field)

    def dose_number(self, entry: Mapping[Any, Any], key: str) -> None:
        value = entry.get(key)
        if type(value) is not int or not 0 <= value <= DOSE_NUMBER_MAX:
            raise Malformed(f"v.{key}")

    def dose(self, i: int, v: Mapping[Any, Any]) -> Dose:
        day = self.day(v.get("dt"), "v.dt", f"v[{i}].dt")
        self.dose_number(v, "dn")
        self.dose_number(v, "sd")
        self.optional_texts("v", i, v)
        product = v.get("mp")
        return Dose(day, product.strip() if isinstance(product, str) and product.strip() else None)

    def recovery(self, i: int, r: Mapping[Any, Any]) -> date:
        first_positive = self.day(r.get("fr"), "r.fr", f"r[{i}].fr")
        for key in ("df", "du"):  # validity of the recovery certificate: the site's rule decides, not these
            try:
                self.day(r.get(key), key, f"r[{i}].{key}")
            except Malformed:
                self.note(f"r[{i}].{key}", _problem(r.get(key)))
        self.optional_texts("r", i, r)
        return first_positive

    def test(self, i: int, t: Mapping[Any, Any]) -> TestResult:
        taken = _moment(t.get("sc"), "t.sc")
        self.optional_texts("t", i, t)
        result = t.get("tr")
        positive = TEST_RESULTS.get(result.strip()) if isinstance(result, str) else None
        if positive is None:
            self.note(f"t[{i}].tr", "unknown_result")
        return TestResult(taken, positive)

    # ---------------------------------------------------------------- lenient: noted, never fatal
    def optional_texts(self, kind: str, i: int, entry: Mapping[Any, Any]) -> None:
        for key in OPTIONAL_TEXT[kind]:
            if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
                self.note(f"{kind}[{i}].{key}", _problem(entry[key]))


def _number(digits: str | None) -> int | None:
    return int(digits) if digits else None


def _problem(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "empty" if not value.strip() else "unreadable"
    return "wrong_type"


def _name_part(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed("nam")
    text = unicodedata.normalize("NFC", value.strip())
    if len(text) > NAME_PART_MAX or _NAME_FORBIDDEN.search(text):
        raise Malformed("nam")
    return text or None


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _moment(value: Any, field: str) -> date | datetime:
    """A sample-collection time: an aware datetime (a naive one is UTC, as the schema intends), or a date.

    Offsets (`+07:00`, `+0700`, `Z`), fractions of a second and CBOR date/time tags all read."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return value
    match = _DAY.match(value) if isinstance(value, str) else None
    if match is None:
        raise Malformed(field)
    if match.end() == len(value):
        return calendar_date(int(match[1]), int(match[2]), int(match[3]), field)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed(field) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)

"""One roster row, checked: the shapes of an ID number, a QID, doses, recovery and staff (spec section 8).

The same checks serve the CSV import, the MQTT `roster` command and the console's upload. An ID must be an ID
a code can carry: a CCCD (12 digits), a CMND (9 digits), a passport number (6 to 20 upper-case letters and
digits, at least one letter: the personal QR's SoGiayTo), or, when the site configured a badge prefix, the
id of one of the product's badges. A QID is the national platform's opaque id (at least 6 characters). A row
needs one of them. Messages name the column and the problem, never the value of an ID (personal data).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterable

from kiosk.codes.fields import ISO_DATE, Malformed, iso_date
from kiosk.errors import DataError
from kiosk.model import Dose, HealthRecord

COLUMNS = ("id", "qid", "name", "doses", "recovered", "staff")
CCCD_OR_CMND = re.compile(r"[0-9]{12}|[0-9]{9}")
PASSPORT = re.compile(r"(?=[0-9]*[A-Z])[A-Z0-9]{6,20}")
# A badge id as the roster keeps it (what follows the badge prefix): printable ASCII but space, '*' and '|'.
BADGE_ID = re.compile(r"[!-)+-{}~]{1,64}")
QID = re.compile(r"[!-;=-{}~]{6,64}")  # the code's QID alphabet (kiosk.codes.fields.QID), at least 6 long
SPREADSHEET_NUMBER = re.compile(r"[0-9.,]+[eE]\+?[0-9]+")  # 7.9009E+10: a spreadsheet's rendering of an ID
SPREADSHEET_DATE = re.compile(r"[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}")
PRODUCT = re.compile(r"[^\x00-\x1f\x7f;]{1,64}")
NAME_MAX = 100
MAX_DOSES = 16
STAFF_VALUES = {"": None, "yes": True, "no": False}
TEXT_HINT = "format the column as Text in the spreadsheet"


@dataclass(frozen=True)
class RosterEntry:
    id: str | None
    qid: str | None
    name: str | None
    health: HealthRecord
    staff: bool | None = None

    def keys(self) -> list[str]:
        return [k for k in (self.id and "id:" + self.id, self.qid and "qid:" + self.qid) if k]


class RowError(ValueError):
    """One row is wrong; the message names every bad column."""


@dataclass(frozen=True)
class RowRules:
    """What a row may hold at this site: badge ids only where badges are configured."""

    badges: bool = False

    def entry(self, row: Any) -> RosterEntry:
        """The entry of one row given as a dict (CSV columns or a downlink object); RowError naming every problem."""
        if not isinstance(row, dict):
            raise RowError("expected an object with id, qid, name, doses, recovered, staff")
        unknown = sorted(str(k) for k in row if k not in COLUMNS)
        if unknown:
            raise RowError(f"unknown field(s) {', '.join(unknown)}")
        errors = []
        values: dict[str, Any] = {}
        for column in COLUMNS:
            parse = self.id if column == "id" else _PARSERS[column]
            try:
                values[column] = parse(row.get(column))
            except RowError as exc:
                errors.append(f"{column}: {exc}")
        if not errors and not values["id"] and not values["qid"]:
            errors.append("needs an id or a qid")
        if errors:
            raise RowError("; ".join(errors))
        return RosterEntry(id=values["id"], qid=values["qid"], name=values["name"],
                           health=HealthRecord(doses=values["doses"], recovered=values["recovered"]),
                           staff=values["staff"])

    def id(self, value: Any) -> str | None:
        text = _text(value)
        if not text or CCCD_OR_CMND.fullmatch(text) or PASSPORT.fullmatch(text):
            return text or None
        if self.badges and BADGE_ID.fullmatch(text):
            return text
        raise RowError(_id_problem(text, self.badges))

    def checked(self, row: Any) -> RosterEntry | str:
        """The entry of one row, or the text of its problems."""
        try:
            return self.entry(row)
        except RowError as exc:
            return str(exc)

    def entries(self, rows: Any) -> list[RosterEntry]:
        """Rows given as dicts (the MQTT downlink), all checked: DataError lists every bad row (1-based)."""
        if not isinstance(rows, list):
            raise DataError("roster: 'entries' must be a list of rows (id, qid, name, doses, recovered, staff)")
        return collect(((n, self.checked(row)) for n, row in enumerate(rows, 1)), "row", "roster update rejected")


def collect(items: Iterable[tuple[int, RosterEntry | str]], label: str, message: str) -> list[RosterEntry]:
    """The entries of checked rows held in memory (a downlink command, an upload in the console), duplicates
    included among the problems; DataError(message) lists them, each named `{label} {number}`."""
    problems = Problems()
    entries: list[RosterEntry] = []
    seen: dict[str, int] = {}
    for number, item in items:
        if isinstance(item, str):
            problems.add(number, item)
            continue
        for key in item.keys():
            if key in seen:
                problems.add(number, f"duplicate {key.partition(':')[0]} (also on {label} {seen[key]})")
            else:
                seen[key] = number
        entries.append(item)
    problems.raise_if_any(message, label)
    return entries


def _id_problem(text: str, badges: bool) -> str:
    shapes = "a CCCD (12 digits), a CMND (9 digits)" + (", a badge id" if badges else "") + \
             " or a passport number (6-20 upper-case letters and digits)"
    if text.isdigit():
        hint = f"; a spreadsheet drops leading zeros: {TEXT_HINT}" if len(text) in (8, 11) else ""
        return f"not an ID number: {len(text)} digit{'s' * (len(text) > 1)}, expected {shapes}{hint}"
    if SPREADSHEET_NUMBER.fullmatch(text):
        return f"not an ID number: a spreadsheet wrote it as a number in exponent form ({TEXT_HINT})"
    if text.upper() != text and PASSPORT.fullmatch(text.upper()):
        return "not an ID number: the letters of a passport number are upper case"
    return f"not an ID number: expected {shapes}"


class Problems:
    """Bad rows of one change: the first DataError.MAX_LISTED by line, and how many there were in all
    (a wrong file can have a million bad lines; listing them all would take the memory the import saves)."""

    def __init__(self) -> None:
        self.listed: list[tuple[int, str]] = []
        self.total = 0

    def add(self, number: int, text: str) -> None:
        self.total += 1
        if len(self.listed) < DataError.MAX_LISTED:
            self.listed.append((number, text))

    def extend(self, found: list[tuple[int, str]], total: int) -> None:
        """More problems (`found`: the first ones by line of `total`), merged in line order."""
        self.listed = sorted(self.listed + found)[:DataError.MAX_LISTED]
        self.total += total

    def raise_if_any(self, message: str, label: str) -> None:
        if self.total:
            raise DataError(message, [f"{label} {n}: {text}" for n, text in self.listed],
                            omitted=self.total - len(self.listed))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"expected text, got {type(value).__name__}")
    return value.strip()


def qid(value: Any) -> str | None:
    text = _text(value)
    if text and not QID.fullmatch(text):
        raise RowError("not a QID (6 to 64 printable characters, no spaces, '<' or '|')")
    return text or None


def name(value: Any) -> str | None:
    text = _text(value)
    if len(text) > NAME_MAX or not text.isprintable():
        raise RowError(f"longer than {NAME_MAX} characters or contains control characters")
    return text or None


def _day(text: str) -> date:
    if not ISO_DATE.fullmatch(text):
        hint = f" (a spreadsheet writes dates in its own format: {TEXT_HINT})" if SPREADSHEET_DATE.fullmatch(text) \
            else ""
        raise RowError(f"{text[:20]!r} is not a date YYYY-MM-DD{hint}")
    try:
        return iso_date(text, "date")
    except Malformed:
        raise RowError(f"{text!r} is not a calendar date") from None


def doses(value: Any) -> tuple[Dose, ...]:
    items = value if isinstance(value, list) else _text(value).split(";")
    found = []
    for item in items:
        day, _, product = _text(item).partition(":")
        if not day and not product:
            continue
        product = product.strip()
        if product and not PRODUCT.fullmatch(product):
            raise RowError("product name: up to 64 characters, no ';' or control characters")
        found.append(Dose(_day(day.strip()), product or None))
    if len(found) > MAX_DOSES:
        raise RowError(f"more than {MAX_DOSES} doses")
    return tuple(sorted(found, key=lambda d: d.day))


def recovered(value: Any) -> date | None:
    text = _text(value)
    return _day(text) if text else None


def staff(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text not in STAFF_VALUES:
        raise RowError("expected yes, no or empty")
    return STAFF_VALUES[text]


_PARSERS: dict[str, Callable[[Any], Any]] = {"qid": qid, "name": name, "doses": doses, "recovered": recovered,
                                             "staff": staff}


def doses_text(health: HealthRecord) -> str:
    """The CSV form of an entry's doses (`2021-11-01:Pfizer;2021-12-01`), as the store keeps it."""
    return ";".join(d.day.isoformat() + (f":{d.product}" if d.product else "") for d in health.doses)


def doses_from_text(text: str) -> tuple[Dose, ...]:
    """Doses back from `doses_text` (stored by this program: already checked)."""
    return tuple(Dose(date.fromisoformat(item[:10]), item[11:] or None) for item in text.split(";")) if text else ()

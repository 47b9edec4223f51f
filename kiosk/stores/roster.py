"""The local roster: people with doses, recovery date and staff permission (spec section 8).

Stored as TinyDB documents (`people` and `meta` tables) in one file written atomically. Every change
(CSV import, MQTT replace/upsert/remove) is validated in full first and written with one storage write,
so a rejected or failed change leaves the roster as it was. The file is re-read when another process
(`kiosk roster import` next to the running service) has replaced it.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable

from kiosk.codes.fields import ISO_DATE, Malformed, iso_date
from kiosk.config import did_you_mean
from kiosk.errors import DataError
from kiosk.model import Dose, HealthRecord, Person
from kiosk.stores.documents import DocumentStore

COLUMNS = ("id", "qid", "name", "doses", "recovered", "staff")
# Roster ids cover ID numbers, passport numbers and the product's badge ids: bounded printable ASCII.
ROSTER_ID = re.compile(r"[!-)+-{}~]{1,64}")  # printable ASCII except space, '*' and '|'
QID = re.compile(r"[!-;=-{}~]{1,64}")
PRODUCT = re.compile(r"[^\x00-\x1f\x7f;]{1,64}")
NAME_MAX = 100
MAX_DOSES = 16
# A roster is at most a few hundred thousand people (~100 bytes a row): anything larger is a wrong file.
MAX_CSV_BYTES = 64 * 1024 * 1024
STAFF_VALUES = {"": None, "yes": True, "no": False}


@dataclass(frozen=True)
class RosterEntry:
    id: str | None
    qid: str | None
    name: str | None
    health: HealthRecord
    staff: bool | None = None

    def keys(self) -> list[str]:
        return [k for k in (self.id and "id:" + self.id, self.qid and "qid:" + self.qid) if k]


class Roster(DocumentStore[RosterEntry]):
    TABLE, WHAT, FIX = "people", "roster", "import the roster CSV again"

    # ------------------------------------------------------------------ reading
    @property
    def version(self) -> int | None:
        self._refresh()
        return self._meta.get("version")

    @property
    def count(self) -> int:
        self._refresh()
        return len(self._entries)

    def lookup(self, person: Person) -> RosterEntry | None:
        """By full ID number (personal QR, CCCD, badge), else by QID (a personal QR with a masked ID)."""
        self._refresh()
        if person.id_number and not person.id_masked:
            entry = self._index.get("id:" + person.id_number)
            if entry is not None:
                return entry
        return self._index.get("qid:" + person.qid) if person.qid else None

    # ------------------------------------------------------------------ changes
    def import_csv(self, path: str | os.PathLike[str]) -> int:
        """Replace the roster with a CSV file's rows. All or nothing: DataError lists every bad line."""
        entries = parse_csv(Path(path))
        self.replace_all(entries, None)
        return len(entries)

    @staticmethod
    def parse_entries(rows: list[dict[str, Any]]) -> list[RosterEntry]:
        """Validate rows given as dicts (MQTT downlink); DataError lists every bad row (1-based)."""
        if not isinstance(rows, list):
            raise DataError("roster: entries must be a list of rows")
        return _parse_rows(((f"row {i}", row) for i, row in enumerate(rows, 1)), "roster update rejected")

    def replace_all(self, entries: list[RosterEntry], version: int | None) -> None:
        """The roster becomes `entries`; version is the given one, else the previous one plus 1."""
        _check_unique(entries)
        self._refresh()
        new_version = version if version is not None else (self._meta.get("version") or 0) + 1
        self._write(list(entries), version=new_version)

    def upsert(self, entries: list[RosterEntry]) -> None:
        """Add entries, replacing existing ones with a shared ID or QID. The version stays the same."""
        _check_unique(entries)
        self._refresh()
        replaced = {k for e in entries for k in e.keys()}
        kept = [e for e in self._entries if not replaced.intersection(e.keys())]
        self._write(kept + list(entries), version=self._meta.get("version"))

    def remove(self, keys: list[str]) -> int:
        """Remove the entries whose ID or QID is one of `keys`; returns how many were removed."""
        self._refresh()
        wanted = set(keys)
        kept = [e for e in self._entries if e.id not in wanted and e.qid not in wanted]
        removed = len(self._entries) - len(kept)
        if removed:
            self._write(kept, version=self._meta.get("version"))
        return removed

    # ------------------------------------------------------------------ storage
    @staticmethod
    def _to_doc(entry: RosterEntry) -> dict[str, Any]:
        return {"id": entry.id, "qid": entry.qid, "name": entry.name, "staff": entry.staff,
                "doses": [[d.day.isoformat(), d.product] for d in entry.health.doses],
                "recovered": entry.health.recovered.isoformat() if entry.health.recovered else None}

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> RosterEntry:
        health = HealthRecord(doses=tuple(Dose(date.fromisoformat(day), product) for day, product in doc["doses"]),
                              recovered=date.fromisoformat(doc["recovered"]) if doc["recovered"] else None)
        return RosterEntry(id=doc["id"], qid=doc["qid"], name=doc["name"], health=health, staff=doc["staff"])

    def _adopt(self, entries: list[RosterEntry]) -> None:
        self._entries = entries
        self._index = {k: e for e in entries for k in e.keys()}


# ---------------------------------------------------------------------- CSV and row validation
def parse_csv(path: Path) -> list[RosterEntry]:
    """Rows of a roster CSV (UTF-8 with or without BOM, header row, columns in any order)."""
    raw = _read_bounded(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} rejected, nothing imported", [f"line {line}: not UTF-8 (save the file as UTF-8)"]) \
            from None
    if not text.strip():
        raise DataError(f"{path} is empty: expected a header row ({','.join(COLUMNS)}) and one row per person")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise DataError(f"{path} rejected, nothing imported", [f"line 1: {exc}"]) from None
    _check_header(path, header)
    rows: list[tuple[str, dict[str, str] | str]] = []
    first_line = reader.line_num + 1  # a quoted field may span lines: a row is named by its first line
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over csv's size limit: report it and read on
            rows.append((f"line {first_line}", str(exc)))
            first_line = reader.line_num + 1
            continue
        label, first_line = f"line {first_line}", reader.line_num + 1
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) != len(header):
            rows.append((label, f"expected {len(header)} fields, found {len(fields)}"))
        else:
            rows.append((label, dict(zip(header, fields))))
    if not rows:
        raise DataError(f"{path} has a header but no rows: nothing imported")
    return _parse_rows(rows, f"{path} rejected, nothing imported")


def _read_bounded(path: Path) -> bytes:
    """The file's bytes; a file over MAX_CSV_BYTES is refused without reading it all (it may be /dev/zero)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_CSV_BYTES:
        raise DataError(f"{path} is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB: not a roster CSV, "
                        "nothing imported")
    return raw


def _check_header(path: Path, header: list[str]) -> None:
    problems = []
    unknown = [h for h in header if h not in COLUMNS]
    if unknown and not set(header) & set(COLUMNS):
        problems.append(f"line 1: a header row is required (columns: {', '.join(COLUMNS)})")
    else:
        problems += [f"line 1: unknown column {h!r}{did_you_mean(h, COLUMNS)} (known: {', '.join(COLUMNS)})"
                     for h in unknown]
        problems += [f"line 1: column {h!r} appears twice" for h in sorted({h for h in header if header.count(h) > 1})]
        if "id" not in header and "qid" not in header:
            problems.append("line 1: needs an 'id' or a 'qid' column")
    if problems:
        raise DataError(f"{path} rejected, nothing imported", problems)


def _parse_rows(rows: Iterable[tuple[str, Any]], message: str) -> list[RosterEntry]:
    entries: list[RosterEntry] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for label, row in rows:
        if isinstance(row, str):
            problems.append(f"{label}: {row}")
            continue
        try:
            entry = _entry(row)
        except _RowError as exc:
            problems.append(f"{label}: {exc}")
            continue
        problems += [f"{label}: {p}" for p in _duplicates(entry, label, seen)]
        entries.append(entry)
    if problems:
        raise DataError(message, problems)
    return entries


class _RowError(ValueError):
    pass


def _entry(row: Any) -> RosterEntry:
    if not isinstance(row, dict):
        raise _RowError("expected an object with id, qid, name, doses, recovered, staff")
    unknown = sorted(str(k) for k in row if k not in COLUMNS)
    if unknown:
        raise _RowError(f"unknown field(s) {', '.join(unknown)}")
    errors = []
    values = {}
    for column in COLUMNS:
        try:
            values[column] = _COLUMN_PARSERS[column](row.get(column))
        except _RowError as exc:
            errors.append(f"{column}: {exc}")
    if not errors and not values["id"] and not values["qid"]:
        errors.append("needs an id or a qid")
    if errors:
        raise _RowError("; ".join(errors))
    return RosterEntry(id=values["id"], qid=values["qid"], name=values["name"],
                       health=HealthRecord(doses=values["doses"], recovered=values["recovered"]),
                       staff=values["staff"])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _RowError(f"expected text, got {type(value).__name__}")
    return value.strip()


def _id(value: Any) -> str | None:
    text = _text(value)
    if text and not ROSTER_ID.fullmatch(text):
        raise _RowError("not an ID number (up to 64 letters/digits, no spaces or '*')")
    return text or None


def _qid(value: Any) -> str | None:
    text = _text(value)
    if text and not QID.fullmatch(text):
        raise _RowError("not a QID (up to 64 printable characters, no spaces)")
    return text or None


def _name(value: Any) -> str | None:
    text = _text(value)
    if len(text) > NAME_MAX or not text.isprintable():
        raise _RowError(f"longer than {NAME_MAX} characters or contains control characters")
    return text or None


def _day(text: str) -> date:
    if not ISO_DATE.fullmatch(text):
        raise _RowError(f"{text[:20]!r} is not a date YYYY-MM-DD")
    try:
        return iso_date(text, "date")
    except Malformed:
        raise _RowError(f"{text!r} is not a calendar date") from None


def _doses(value: Any) -> tuple[Dose, ...]:
    items = value if isinstance(value, list) else _text(value).split(";")
    doses = []
    for item in items:
        day, _, product = _text(item).partition(":")
        if not day and not product:
            continue
        product = product.strip()
        if product and not PRODUCT.fullmatch(product):
            raise _RowError("product name: up to 64 characters, no ';' or control characters")
        doses.append(Dose(_day(day.strip()), product or None))
    if len(doses) > MAX_DOSES:
        raise _RowError(f"more than {MAX_DOSES} doses")
    return tuple(sorted(doses, key=lambda d: d.day))


def _recovered(value: Any) -> date | None:
    text = _text(value)
    return _day(text) if text else None


def _staff(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text not in STAFF_VALUES:
        raise _RowError("expected yes, no or empty")
    return STAFF_VALUES[text]


_COLUMN_PARSERS: dict[str, Callable[[Any], Any]] = {
    "id": _id, "qid": _qid, "name": _name, "doses": _doses, "recovered": _recovered, "staff": _staff}


def _duplicates(entry: RosterEntry, label: str, seen: dict[str, str]) -> list[str]:
    problems = []
    for key in entry.keys():
        if key in seen:
            kind, _, _ = key.partition(":")
            problems.append(f"duplicate {kind} (also on {seen[key]})")
        else:
            seen[key] = label
    return problems


def _check_unique(entries: list[RosterEntry]) -> None:
    seen: dict[str, str] = {}
    problems = [f"entry {i}: {p}" for i, e in enumerate(entries, 1) for p in _duplicates(e, f"entry {i}", seen)]
    if problems:
        raise DataError("roster update rejected", problems)

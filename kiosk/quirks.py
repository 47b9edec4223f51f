"""What real national issuers put in valid EU certificates, as edits the issuing tool (`kiosk.issuing`,
`kiosk issue cert --quirk NAME`) applies to a health certificate before signing it.

Each is something the verifier met in the field: JSON nulls and empty strings in optional fields, dates as
CBOR tags or with a time part, sample times with offsets or fractions of a second, unknown extra keys, coded
values in lower case, the key id only in the unprotected header. Kept apart from the signing code so the
command line can list them without loading the crypto libraries.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import cbor2


def _entries(cert: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("v", "t", "r"):
        yield from cert.get(key, [])


def _set_present(cert: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for entry in _entries(cert):
        entry.update({key: value for key in keys if key in entry})


def _null_optional(cert: dict[str, Any]) -> None:
    cert["nam"].update(fn=None, gn=None)  # the transliterated fnt/gnt carry the name
    _set_present(cert, ("ma", "is", "tc"), None)


def _empty_strings(cert: dict[str, Any]) -> None:
    _set_present(cert, ("ma", "is"), "")


def _cbor_date_tags(cert: dict[str, Any]) -> None:
    """RFC 8943 full-date strings (tag 1004) for the date of birth and doses, days since 1970 (tag 100) for
    recoveries, epoch seconds (tag 1) for sample times. Values another quirk already changed stay as they are."""
    if _is_day(cert["dob"]):
        cert["dob"] = cbor2.CBORTag(1004, cert["dob"])
    for v in cert.get("v", []):
        if _is_day(v["dt"]):
            v["dt"] = cbor2.CBORTag(1004, v["dt"])
    for r in cert.get("r", []):
        for key in ("fr", "df", "du"):
            if _is_day(r[key]):
                r[key] = cbor2.CBORTag(100, (date.fromisoformat(r[key]) - date(1970, 1, 1)).days)
    for t in cert.get("t", []):
        if isinstance(t["sc"], str):
            t["sc"] = cbor2.CBORTag(1, int(datetime.fromisoformat(t["sc"]).timestamp()))


def _date_time_part(cert: dict[str, Any]) -> None:
    if _is_day(cert["dob"]):
        cert["dob"] += "T00:00:00"
    for v in cert.get("v", []):
        if _is_day(v["dt"]):
            v["dt"] += "T10:30:00+07:00"
    for r in cert.get("r", []):
        if _is_day(r["fr"]):
            r["fr"] += "T00:00:00Z"


def _is_day(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 10


def _sample_time(text: str) -> Callable[[dict[str, Any]], None]:
    def edit(cert: dict[str, Any]) -> None:
        for t in cert.get("t", []):
            if isinstance(t["sc"], str):
                t["sc"] = t["sc"][:10] + text
    return edit


def _extra_keys(cert: dict[str, Any]) -> None:
    cert["xv"] = {"note": "not in the schema"}
    cert["nam"]["xn"] = "?"
    for entry in _entries(cert):
        entry["xe"] = 1


def _lowercase_codes(cert: dict[str, Any]) -> None:
    for entry in _entries(cert):
        for key in ("co", "mp", "ma", "tt", "ci"):
            if isinstance(entry.get(key), str):
                entry[key] = entry[key].lower()


@dataclass(frozen=True)
class Quirk:
    help: str
    edit: Callable[[dict[str, Any]], None] = lambda cert: None  # changes the health certificate in place
    kid_unprotected: bool = False


QUIRKS: dict[str, Quirk] = {
    "null-optional": Quirk("JSON null in optional fields (fn, gn, ma, is, tc)", _null_optional),
    "empty-strings": Quirk('empty strings where a value is expected (ma, is: "")', _empty_strings),
    "cbor-date-tags": Quirk("dates as CBOR tags (full-date 1004, days 100, epoch 1)", _cbor_date_tags),
    "date-time-part": Quirk("date of birth, dose and recovery dates with a time part", _date_time_part),
    "sc-offset": Quirk("sample-collection time with an offset (15:00:00+07:00)", _sample_time("T15:00:00+07:00")),
    "sc-fraction": Quirk("sample-collection time with a fraction of a second", _sample_time("T08:00:00.250Z")),
    "extra-keys": Quirk("unknown extra keys in the certificate, the name and each entry", _extra_keys),
    "lowercase-codes": Quirk("coded values in lower case (co, mp, ma, tt, ci)", _lowercase_codes),
    "kid-unprotected": Quirk("the key id only in the unprotected COSE header", kid_unprotected=True),
}


def with_quirks(cert: dict[str, Any], names: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    """`cert` edited by each named quirk, and whether the key id goes in the unprotected header."""
    for name in names:
        QUIRKS[name].edit(cert)
    return cert, any(QUIRKS[name].kid_unprotected for name in names)

"""National personal QR, Decision 1405/QĐ-BTTTT v1.1 (spec section 2).

`SoGiayTo|HoTen|NgaySinh|LoaiDinhDanh|QID|EXT`, EXT = `proxyQID<gender<insurance<phone<...`.
Plain text: it identifies, it never proves (no signature, no health data).
"""
from __future__ import annotations

import re
from datetime import date

from kiosk.codes.fields import ID_NUMBER, ISO_DATE, MASKED_ID_NUMBER, QID, Malformed, birth_date
from kiosk.model import Person

NAME = re.compile(r"[A-Z]+( [A-Z]+)*")
NAME_MAX = 100
MASKED_BIRTH = re.compile(r"([0-9]{4})-\*\*-\*\*")
GENDERS = {"": "unknown", "*": "unknown", "0": "unknown", "1": "male", "2": "female"}
# Insurance card number (15 chars) and phone (10 digits); a masked value need not keep its length.
INSURANCE = re.compile(r"[A-Z0-9]{15}|(?=.*\*)[A-Z0-9*]{1,15}")
PHONE = re.compile(r"[0-9]{10}|(?=.*\*)[0-9*]{1,10}")
# Further EXT values (a signature slot is mentioned, none is specified): ignored, but bounded.
EXT_MAX_VALUES = 16


def parse(fields: list[str], today: date) -> Person:
    """Person from the 6 fields; raises Malformed naming the first bad field. `today` (the site's date) bounds
    the date of birth: one in the future is malformed."""
    id_number, name, birth, declared, qid, ext = fields
    if not (ID_NUMBER.fullmatch(id_number) or MASKED_ID_NUMBER.fullmatch(id_number)):
        raise Malformed("id_number")
    if len(name) > NAME_MAX or not NAME.fullmatch(name):
        raise Malformed("name")
    if declared not in ("0", "1"):
        raise Malformed("declared_by")
    if not QID.fullmatch(qid):
        raise Malformed("qid")
    gender, extra = _extension(ext)
    return Person(id_number=id_number, qid=qid, name=name, birth=_birth(birth, today), gender=gender,
                  declared_by_proxy=declared == "1", extra=extra)


def _birth(text: str, today: date) -> str:
    masked = MASKED_BIRTH.fullmatch(text)
    if masked:
        return birth_date(int(masked.group(1)), None, None, "birth", today)
    if not ISO_DATE.fullmatch(text):
        raise Malformed("birth")
    return birth_date(int(text[:4]), int(text[5:7]), int(text[8:]), "birth", today)


def _extension(ext: str) -> tuple[str, dict[str, str]]:
    values = ext.split("<", EXT_MAX_VALUES) if ext else []
    if len(values) > EXT_MAX_VALUES:
        raise Malformed("ext")
    proxy_qid, gender, insurance, phone = (values + ["", "", "", ""])[:4]
    extra: dict[str, str] = {}
    if proxy_qid:
        if not QID.fullmatch(proxy_qid):
            raise Malformed("proxy_qid")
        extra["proxy_qid"] = proxy_qid
    if gender not in GENDERS:
        raise Malformed("gender")
    if insurance:
        if not INSURANCE.fullmatch(insurance):
            raise Malformed("insurance")
        extra["insurance"] = insurance
    if phone:
        if not PHONE.fullmatch(phone):
            raise Malformed("phone")
        extra["phone"] = phone
    return GENDERS[gender], extra

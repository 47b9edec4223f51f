"""Chip citizen-ID card (CCCD) QR (spec section 3).

`ID12|oldID9|Họ và tên|ddMMyyyy|Nam/Nữ|address|issued ddMMyyyy`; fields after the 7th are ignored.
UTF-8 text with diacritics: compared after NFC normalisation.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import date

from kiosk.codes.fields import Malformed, birth_date, calendar_date
from kiosk.model import Person

ID = re.compile(r"[0-9]{12}|[0-9]{9}")
OLD_ID = re.compile(r"[0-9]{9}|[0-9]{12}")
DIGITS = re.compile(r"[0-9]+")
NAME_MAX = 100
ADDRESS_MAX = 256
GENDERS = {"Nam": "male", unicodedata.normalize("NFC", "Nữ"): "female"}


def parse(fields: list[str], today: date) -> Person:
    """Person from the first 7 fields; raises Malformed naming the first bad field. `today` (the site's date)
    bounds the date of birth: one in the future is malformed."""
    id_number, old_id, name, birth, gender, address, issued = fields[:7]
    if not ID.fullmatch(id_number):
        raise Malformed("id_number")
    if old_id and not OLD_ID.fullmatch(old_id):
        raise Malformed("old_id")
    name = _name(name)
    gender_name = GENDERS.get(unicodedata.normalize("NFC", gender))
    if gender_name is None:
        raise Malformed("gender")
    address = unicodedata.normalize("NFC", address)
    if len(address) > ADDRESS_MAX or not address.isprintable():
        raise Malformed("address")
    extra = {"address": address} if address else {}
    if old_id:
        extra["old_id"] = old_id
    if issued:
        extra["issued"] = _issued(issued)
    return Person(id_number=id_number, name=name, birth=_birth(birth, today), gender=gender_name,
                  extra=extra)


def _name(text: str) -> str:
    """Words of letters (with diacritics) separated by single spaces; `'` and `-` inside a word for names
    such as `H'Hen Niê` or `Y-Moan`."""
    name = unicodedata.normalize("NFC", text)
    words = name.split(" ")
    if len(name) > NAME_MAX or not all(words) or not all(_is_word(w) for w in words):
        raise Malformed("name")
    return name


def _is_word(word: str) -> bool:
    inner = word[1:-1].replace("'", "").replace("’", "").replace("-", "")
    return all(unicodedata.category(ch)[0] in "LM" for ch in word[0] + inner + word[-1])


def _issued(text: str) -> str:
    """`ddMMyyyy` -> `YYYY-MM-DD`."""
    if not (DIGITS.fullmatch(text) and len(text) == 8):
        raise Malformed("issued")
    return calendar_date(int(text[4:]), int(text[2:4]), int(text[:2]), "issued").isoformat()


def _birth(text: str, today: date) -> str:
    """`ddMMyyyy` -> `YYYY-MM-DD`, `MMyyyy` -> `YYYY-MM`, `yyyy` -> `YYYY`; a real date, not after `today`."""
    if not DIGITS.fullmatch(text):
        raise Malformed("birth")
    if len(text) == 8:
        return birth_date(int(text[4:]), int(text[2:4]), int(text[:2]), "birth", today)
    if len(text) == 6:
        return birth_date(int(text[2:]), int(text[:2]), None, "birth", today)
    if len(text) == 4:
        return birth_date(int(text), None, None, "birth", today)
    raise Malformed("birth")

"""How many identities fit what is published about a person: the structure of each kind of ID (issue 12, item 1).

`subject_ref` is an HMAC of a person's identity (kiosk.identity). Whoever holds the site key (a stolen SD card
has it) can test guesses offline, so what is published beside the ref (kiosk.masking) must leave many guesses.
`candidates` counts them from the published subject alone, the way such an attacker would, granting them what
they can know without it: the person's gender (a Vietnamese name usually tells it) and province of birth
registration (most people at a kiosk were registered in its province). The product's rule is at least
MIN_CANDIDATES; `bench/subject_ref.py` turns the counts into time at the measured cost of one guess.

Structures:
- CCCD, 12 digits `PPP G YY SSSSSS` (Circular 07/2016/TT-BCA): province code, century-and-gender digit (0/1 for
  men/women born 1900-1999, 2/3 for 2000-2099, ...), the last two digits of the birth year, 6 serial digits.
  Gender and province known, the unknown birth year gives one (G, YY) pair per plausible year.
- CMND, 9 digits: a 2-digit province code and 7 serial digits.
- other numbers (passport `C0000004`): a letter series (known) and digits.
- QID: the national platform's 18-digit id, never published; counted as 10^10, what a millisecond timestamp of
  the platform's first four months alone would give.
- holder of a signed certificate: name and date of birth. A hidden name counts as HIDDEN_NAMES (a floor: the
  given names in use; the family and middle names are granted as known); a published word or initial as known.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from kiosk.codes.fields import MIN_YEAR

MIN_CANDIDATES = 1_000_000
QID_SPACE = 10 ** 10
HIDDEN_NAMES = 100
DAYS_PER_YEAR = 365.25
CCCD_SERIAL_DIGITS = 6
CMND_SERIAL_DIGITS = 7


def candidates(identity: str, subject: Mapping[str, Any], today: date) -> int:
    """Identities consistent with the published `subject` of a person whose subject_ref hashes an identity of
    type `identity`: "id", "qid" or "holder" (the prefix of `Person.identity_key()`, never its value)."""
    if identity == "qid":
        return QID_SPACE
    if identity == "holder":
        return _holders(subject, today)
    if identity == "id":
        return _id_numbers(str(subject.get("id") or ""), subject, today)
    raise ValueError(f"unknown identity type {identity!r}")


def _birth_years(subject: Mapping[str, Any], today: date) -> int:
    """Plausible birth years given what is published: one if the year is, else every year since MIN_YEAR."""
    birth = str(subject.get("birth") or "")
    return 1 if birth[:4].isdigit() else today.year - MIN_YEAR + 1


def _id_numbers(masked: str, subject: Mapping[str, Any], today: date) -> int:
    shown = len(masked) - (masked.rfind("*") + 1)  # trailing characters published
    if len(masked) == 12:
        years = _birth_years(subject, today) if shown <= CCCD_SERIAL_DIGITS else 1  # G YY hidden unless shown
        return int(years * 10 ** max(0, CCCD_SERIAL_DIGITS - shown))
    if len(masked) == 9:
        return int(10 ** max(0, CMND_SERIAL_DIGITS - shown))
    hidden = len(masked) - shown
    return int(10 ** max(0, hidden - 1))  # the first hidden character granted as a known letter series


def _holders(subject: Mapping[str, Any], today: date) -> int:
    names = 1 if subject.get("name") else HIDDEN_NAMES
    birth = str(subject.get("birth") or "")
    if len(birth) >= 7 and birth[5:7].isdigit():
        days = 31.0
    elif birth[:4].isdigit():
        days = DAYS_PER_YEAR
    else:
        days = DAYS_PER_YEAR * (today.year - MIN_YEAR + 1)
    return int(names * days)

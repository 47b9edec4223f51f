"""Masking of personal fields for the screen, the journal, MQTT and exports (spec section 6, made stricter).

What is published about a person (journal, MQTT check-in, `kiosk tail`, CSV export, the console) together must
leave at least a million candidates for the identity that `subject_ref` hashes, even for someone who also holds
the site key and knows the person's province of registration (`kiosk.idspace` counts them; the test computes
the count for every code type). The spec's default keeps the last 6 ID digits and the birth year: with the
gender beside them, a 12-digit CCCD is then fixed but for its 3-digit province code (63 candidates, recovered
in milliseconds with the key file). So:
- ID: at most the last 2 digits of a 12-digit CCCD (`**********01`: 1.2 million candidates even with the province
  known), the last digit of a 9-digit CMND or of a passport-style number, nothing of a staff badge;
- date of birth: not published (no rule needs it; an age band would cut the CCCD candidates tenfold);
- name: initials plus the last word (`NGUYEN VAN THU` -> `N.V. THU`) for the national codes, whose identity is
  the ID number; nothing for a signed certificate, whose identity is the name and date of birth themselves;
- gender: published (the candidate counts already assume it is known: a Vietnamese name usually tells it);
- phone, insurance, QID, proxy QID, old ID, address and issue date: never leave this module.
On screen the name is the given name only (the last word, `THU`): the person at the gate recognises it, the
queue behind learns the least. `authorised=True` (hospitals, quarantine checkpoints) keeps full fields.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kiosk.model import BADGE, DCC, Person

# (shape of the ID, characters kept at its end). The counts behind each are in kiosk.idspace.
KEPT_BY_SHAPE = ((re.compile(r"[0-9*]{12}"), 2),  # CCCD (or the personal QR's own `******000002` form)
                 (re.compile(r"[0-9*]{9}"), 1))   # CMND
KEPT_OTHER = 1          # a passport-style number: a letter and 7 digits
OTHER_MIN_DIGITS = 7    # fewer digits than that: nothing kept


def kept_characters(id_number: str) -> int:
    """How many trailing characters of `id_number` a published masked form keeps."""
    for shape, kept in KEPT_BY_SHAPE:
        if shape.fullmatch(id_number):
            return kept
    return KEPT_OTHER if sum(ch.isdigit() for ch in id_number) >= OTHER_MIN_DIGITS else 0


def mask_id(id_number: str | None) -> str | None:
    """`079090000001` -> `**********01`; the length stays (it tells the kind of document, nothing more)."""
    if not id_number:
        return None
    visible = len(id_number) - (id_number.rfind("*") + 1)  # a code may carry the ID masked already
    kept = min(kept_characters(id_number), visible)
    tail = id_number[len(id_number) - kept:] if kept else ""
    return "*" * (len(id_number) - len(tail)) + tail


def mask_name(name: str | None) -> str | None:
    """Initials of every word but the last, then the last word: `Nguyễn Văn Thử` -> `N.V. Thử`."""
    words = (name or "").split()
    if not words:
        return None
    initials = "".join(w[0] + "." for w in words[:-1])
    return f"{initials} {words[-1]}" if initials else words[-1]


def given_name(name: str | None) -> str | None:
    """The on-screen form: the last word only."""
    words = (name or "").split()
    return words[-1] if words else None


def subject(kind: str | None, person: Person | None, *, authorised: bool, for_screen: bool) -> dict[str, Any]:
    """The subject fields of a decision (`id`, `name`, `birth`, `gender`); absent ones are omitted."""
    if person is None:
        return {}
    if authorised:
        fields = {"id": person.id_number, "name": person.name, "birth": person.birth, "gender": person.gender}
    elif for_screen:
        fields = {"name": given_name(person.name)}
    elif kind in (DCC, BADGE):
        fields = {}  # a certificate's identity is its name and birth date; a badge number is the site's own
    else:
        fields = {"id": mask_id(person.id_number), "name": mask_name(person.name), "gender": person.gender}
    return {k: v for k, v in fields.items() if v}


def remask(kind: str | None, subject: Mapping[str, Any]) -> dict[str, Any]:
    """A subject journaled under the spec's default masking (6 ID digits kept, `YYYY-**-**`) in today's form.

    Full subjects (an authorised site) and current ones come back unchanged. Used once per journal on upgrade,
    so check-ins stored before it are not published, exported or sent again with more than the rules allow."""
    name = str(subject.get("name") or "")
    legacy = ("*" in str(subject.get("id") or "") or str(subject.get("birth") or "").endswith("-**-**")
              or (kind == DCC and "." in name))
    if not legacy:
        return dict(subject)
    if kind in (DCC, BADGE):
        return {}
    out = {k: v for k, v in subject.items() if k in ("id", "name", "gender")}
    if out.get("id"):
        out["id"] = mask_id(str(out["id"]))
    return out

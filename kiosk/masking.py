"""Masking of personal fields for the screen, the journal and MQTT (spec section 6).

Defaults: ID with its first 6 characters replaced by `*`, birth as `YYYY-**-**`, name as initials plus the
last word (`NGUYEN VAN THU` -> `N.V. THU`). Phone and insurance numbers never leave this module.
On screen the name is the given name only (the last word, `THU`): the person at the gate recognises it,
the queue behind learns the least. `authorised=True` (hospitals, quarantine checkpoints) keeps full fields.
"""
from __future__ import annotations

from typing import Any

from kiosk.model import Person

MASK_PREFIX = 6


def mask_id(id_number: str | None) -> str | None:
    if not id_number:
        return None
    return "*" * min(MASK_PREFIX, len(id_number)) + id_number[MASK_PREFIX:]


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


def mask_birth(birth: str | None) -> str | None:
    """Year only, whatever the precision: `1990-12-01`, `1990-12` and `1990` all give `1990-**-**`."""
    if not birth or len(birth) < 4:
        return None
    return birth[:4] + "-**-**"


def subject(kind: str | None, person: Person | None, *, authorised: bool, for_screen: bool) -> dict[str, Any]:
    """The subject fields of a decision (`id`, `name`, `birth`, `gender`); absent ones are omitted.

    `kind` is accepted so a kind-specific form can be added without changing callers; every kind is
    masked the same way today (badge numbers included).
    """
    if person is None:
        return {}
    if authorised:
        fields = {"id": person.id_number, "name": person.name, "birth": person.birth}
    else:
        name = given_name(person.name) if for_screen else mask_name(person.name)
        fields = {"id": mask_id(person.id_number), "name": name, "birth": mask_birth(person.birth)}
    fields["gender"] = person.gender
    return {k: v for k, v in fields.items() if v}

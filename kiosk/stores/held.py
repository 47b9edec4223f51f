"""Check-ins the journal could not take, saved at stop and journaled at the next start.

While the journal cannot be written (disk full past the reserve, read-only, deleted and not yet put back) the
pipeline holds check-ins in memory. At stop they go to `<journal>.held.jsonl` (written to a temporary file,
fsynced, renamed: all of them or none), whose first line is a random token. At start they are journaled in one
transaction that also records the token in `meta`, so a kill between that commit and deleting the file never
journals them twice. The file sits next to the journal: the only folder the service may write.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import datetime
from pathlib import Path

from kiosk.model import Decision
from kiosk.stores.documents import fsync_dir

log = logging.getLogger(__name__)

_FIELDS = ("kind", "verdict", "reason", "subject", "subject_ref", "latency_ms", "clock_synced", "direction", "mode",
           "override")


def held_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".held.jsonl")


def save(path: Path, decisions: list[Decision]) -> None:
    """Write every held check-in (replacing an older file, whose check-ins the caller holds too)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(json.dumps({"token": uuid.uuid4().hex}) + "\n")
        for d in decisions:
            out.write(json.dumps({**{f: getattr(d, f) for f in _FIELDS},
                                  "at": d.at.isoformat() if d.at else None}, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def load(path: Path) -> tuple[str, list[Decision]] | None:
    """(token, check-ins) of a held file, None when there is none. Unreadable lines are logged and skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    try:
        token = str(json.loads(lines[0])["token"])
    except (IndexError, ValueError, KeyError, TypeError):
        token = ""
    decisions = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            item = json.loads(line)
            at = datetime.fromisoformat(item["at"]) if item.get("at") else None
            decisions.append(Decision(**{f: item[f] for f in _FIELDS}, at=at))
        except (ValueError, KeyError, TypeError):
            log.error("%s line %d is not a held check-in: skipped", path, number)
    return token, decisions

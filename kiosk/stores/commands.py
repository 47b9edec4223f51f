"""The downlink command ledger: the last accepted version of each command kind, and its issue time.

One small JSON document beside the journal (`<journal.path>.commands.json`), rewritten atomically on every
accepted command (commands are rare: a few a day). It must survive a reboot: with the versions forgotten, a
replay after the reboot would be accepted. A corrupt or unreadable file is logged as an error and moved aside;
the kiosk then starts with no versions (scanning goes on), and the issue-time bound
(`mqtt.command_max_age_hours`) still refuses old commands.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from kiosk.errors import StorageError
from kiosk.stores.documents import atomic_write_bytes

log = logging.getLogger(__name__)


def ledger_path(journal_path: str | os.PathLike[str]) -> Path:
    return Path(f"{journal_path}.commands.json")


class CommandLedger:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._last: dict[str, tuple[int, datetime]] = self._load()
        self._write_failed = False

    def last(self, kind: str) -> tuple[int, datetime] | None:
        return self._last.get(kind)

    def accept(self, kind: str, version: int, issued: datetime) -> None:
        self._last[kind] = (version, issued)
        doc = {k: {"version": v, "issued": at.isoformat()} for k, (v, at) in sorted(self._last.items())}
        try:
            atomic_write_bytes(self.path, json.dumps(doc, indent=1).encode("utf-8"))
        except StorageError as exc:
            if not self._write_failed:
                log.error("command versions not saved (%s): until a later write works, a restart forgets them", exc)
            self._write_failed = True
            return
        if self._write_failed:
            log.warning("command versions saved again in %s", self.path)
            self._write_failed = False

    def _load(self) -> dict[str, tuple[int, datetime]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:     # scanning matters more than the downlink: run, and say so
            log.error("cannot read %s (%s): command versions start afresh (check its permissions)", self.path,
                      exc.strerror)
            return {}
        try:
            return {str(kind): _entry(value) for kind, value in json.loads(text).items()}
        except (ValueError, TypeError, AttributeError, KeyError):
            aside = self.path.with_name(self.path.name + ".corrupt")
            try:
                os.replace(self.path, aside)
            except OSError:
                aside = self.path     # left where it is: the next accepted command replaces it
            log.error("%s was corrupt and is kept as %s: command versions start afresh (commands issued longer "
                      "ago than mqtt.command_max_age_hours are still refused)", self.path, aside.name)
            return {}


def _entry(value: Any) -> tuple[int, datetime]:
    version, issued = value["version"], datetime.fromisoformat(value["issued"])
    if isinstance(version, bool) or not isinstance(version, int) or issued.tzinfo is None:
        raise ValueError("not a ledger entry")
    return version, issued

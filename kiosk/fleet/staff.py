"""Staff lists (factories): a roster CSV uploaded in the browser, checked with the kiosk's own parser,
compared with the list last pushed, then sent to the site's kiosks with the MQTT `roster` command.

The console never keeps the list itself: per site it keeps one keyed digest per person and per row (the
site's hash key), enough to count what an upload adds, removes and changes. A validated upload waits in
this process's memory (30 minutes at most) until the owner pushes it; each kiosk's answer arrives on
`.../cmd/roster/result` with the push's correlation id. Each push carries the envelope every command needs
(`issued`, and a `version` greater than the site's last push: `kiosk.mqtt.downlink.stamp`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Engine, delete, func, select

from kiosk.errors import DataError
from kiosk.fleet import schema
from kiosk.fleet.events import now_ms, upsert
from kiosk.mqtt.downlink import MAX_COMMAND_BYTES, stamp
from kiosk.stores.roster import RosterEntry, parse_csv

PENDING_SECONDS = 1800
MAX_PENDING = 20


def entry_row(entry: RosterEntry) -> dict[str, str]:
    """The CSV/downlink form of an entry (what `Roster.parse_entries` reads back)."""
    doses = ";".join(d.day.isoformat() + (f":{d.product}" if d.product else "") for d in entry.health.doses)
    staff = {True: "yes", False: "no", None: ""}[entry.staff]
    return {"id": entry.id or "", "qid": entry.qid or "", "name": entry.name or "", "doses": doses,
            "recovered": entry.health.recovered.isoformat() if entry.health.recovered else "", "staff": staff}


@dataclass
class Upload:
    token: str
    site: str
    user: str
    rows: list[dict[str, str]]
    digests: dict[str, str]          # person -> row digest
    added: int
    removed: int
    changed: int
    at: float


class StaffLists:
    def __init__(self, engine: Engine, key: bytes, publish: Callable[[str, dict[str, Any]], bool],
                 command_topic: Callable[[str, str, str], str]):
        self.engine, self.key = engine, key
        self.publish, self.command_topic = publish, command_topic
        self._pending: dict[str, Upload] = {}
        self._lock = threading.Lock()

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def check(self, site: str, user: str, data: bytes) -> Upload:
        """Validate an uploaded CSV (DataError lists every bad line) and count the changes."""
        with tempfile.TemporaryDirectory(prefix="kiosk-staff-") as folder:
            path = Path(folder) / "staff.csv"
            path.write_bytes(data)
            try:
                entries = parse_csv(path)
            except DataError as exc:   # the parser names the temporary file: say "the file" instead
                raise DataError(str(exc.args[0]).split("\n")[0].replace(str(path), "the file"), exc.problems) \
                    from None
        rows = [entry_row(e) for e in entries]
        digests = {self._mac("|".join(e.keys())): self._mac(json.dumps(r, sort_keys=True))
                   for e, r in zip(entries, rows)}
        before = self.current(site)
        upload = Upload(token=secrets.token_urlsafe(16), site=site, user=user, rows=rows, digests=digests,
                        added=len(digests.keys() - before.keys()), removed=len(before.keys() - digests.keys()),
                        changed=sum(1 for p, d in digests.items() if p in before and before[p] != d),
                        at=time.monotonic())
        if len(json.dumps({"entries": rows}).encode()) > MAX_COMMAND_BYTES - 4096:
            raise DataError(f"the list is too large for one roster command ({len(rows)} rows; a kiosk accepts "
                            f"{MAX_COMMAND_BYTES // (1024 * 1024)} MB): split the site or import it on the kiosks")
        with self._lock:
            now = time.monotonic()
            for token in [t for t, u in self._pending.items() if now - u.at > PENDING_SECONDS]:
                del self._pending[token]
            while len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[upload.token] = upload
        return upload

    def pending(self, token: str, site: str, user: str) -> Upload | None:
        with self._lock:
            upload = self._pending.get(token)
        if upload is None or upload.site != site or upload.user != user:
            return None
        return upload

    def current(self, site: str) -> dict[str, str]:
        s = schema.staff.c
        with self.engine.connect() as conn:
            return {str(p): str(d) for p, d in conn.execute(select(s.person, s.digest).where(s.site == site))}

    def push(self, upload: Upload, devices: list[str]) -> str:
        """Send the list to every kiosk of the site (its `all/cmd/roster`); returns the correlation id.

        The command's version (which the kiosks' roster also takes) is the push's time in milliseconds, kept
        greater than the site's last push should this machine's clock have stepped back; it is stored as the
        push's `at_ms`, so the next push of any console process on this database follows it."""
        push_id = uuid.uuid4().hex
        p = schema.roster_pushes.c
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(p.at_ms)).where(p.site == upload.site)).scalar()
        body = stamp({"v": 1, "id": push_id, "op": "replace", "entries": upload.rows}, now_ms() / 1000,
                     int(last or 0))
        if not self.publish(self.command_topic(upload.site, "all", "roster"), body):
            raise DataError("the broker is not connected: nothing was sent, try again when the console is online")
        with self.engine.begin() as conn:
            conn.execute(schema.roster_pushes.insert().values(id=push_id, site=upload.site, at_ms=body["version"],
                                                              user_name=upload.user, rows=len(upload.rows),
                                                              devices=json.dumps(devices)))
            conn.execute(delete(schema.staff).where(schema.staff.c.site == upload.site))
            upsert(conn, schema.staff, [{"site": upload.site, "person": p, "digest": d}
                                        for p, d in upload.digests.items()], ("site", "person"))
        with self._lock:
            self._pending.pop(upload.token, None)
        return push_id

    def on_result(self, site: str, device: str, command: str, answer: dict[str, Any]) -> None:
        """A kiosk answered a command (collector thread): keep the answer to a push of ours."""
        push_id = answer.get("id")
        if command != "roster" or not isinstance(push_id, str) or len(push_id) > 40:
            return
        error = answer.get("error")
        with self.engine.begin() as conn:
            if conn.execute(select(schema.roster_pushes.c.site).where(schema.roster_pushes.c.id == push_id)
                            ).scalar() != site:
                return
            upsert(conn, schema.roster_results, {"push_id": push_id, "device": device, "ok": answer.get("ok") is True,
                                                 "error": str(error)[:500] if error else None, "at_ms": now_ms()},
                   ("push_id", "device"), replace=("ok", "error", "at_ms"))

    def push_status(self, push_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The push and one line per kiosk: ok, error (with the kiosk's message) or waiting."""
        p, r = schema.roster_pushes.c, schema.roster_results.c
        with self.engine.connect() as conn:
            push = conn.execute(select(schema.roster_pushes).where(p.id == push_id)).first()
            if push is None:
                return None
            answers = {row.device: row for row in conn.execute(select(schema.roster_results)
                                                               .where(r.push_id == push_id))}
        devices = sorted(set(json.loads(push.devices)) | set(answers))
        lines = []
        for device in devices:
            a = answers.get(device)
            state = "waiting" if a is None else ("ok" if a.ok else "error")
            lines.append({"device": device, "state": state, "error": a.error if a is not None else None})
        return dict(push._mapping), lines

"""The console's side of offline bundles (`kiosk.stores.bundle`): check, import once, sign a receipt."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select

from kiosk.errors import DataError
from kiosk.fleet import schema
from kiosk.fleet.collector import REQUIRED
from kiosk.fleet.events import EventStore, insert_new, now_ms, safe_id
from kiosk.fleet.db import IMMEDIATE
from kiosk.identity import KeyRing
from kiosk.stores import bundle as fmt

log = logging.getLogger("kiosk.fleet.bundle")

MAX_EVENTS = 2_000_000


@dataclass(frozen=True)
class Outcome:
    digest: str
    site: str
    device: str
    events: int
    added: int
    refused: int
    repeat: bool         # this very file was imported before
    receipt: bytes


class BundleImporter:
    def __init__(self, store: EventStore, keys: KeyRing):
        self.store, self.keys = store, keys

    def import_bytes(self, data: bytes, *, allowed_sites: set[str] | None = None, user: str | None = None) -> Outcome:
        doc, key = fmt.unseal(data, [k.key for k in self.keys.keys], fmt.BUNDLE)
        site, device = doc["site"], doc["device"]
        if not (safe_id(site) and safe_id(device)):
            raise DataError("the bundle names an unusable site or device id")
        if allowed_sites is not None and site not in allowed_sites:
            raise DataError(f"this bundle is for site {site!r}, not one you may import into here")
        events = doc.get("events")
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise DataError("the bundle's events are not a list (or more than 2,000,000)")
        digest = hashlib.sha256(data).hexdigest()
        b = schema.bundles.c
        with self.store.engine.connect() as conn:
            before = conn.execute(select(schema.bundles).where(b.digest == digest)).first()
        if before is not None:
            return Outcome(digest, site, device, before.events, 0, 0, True, before.receipt.encode("utf-8"))
        # every event must be the device's own, with the fields a published check-in has
        usable = [e for e in events if isinstance(e, dict) and e.get("site") == site and e.get("device") == device
                  and all(isinstance(e.get(k), t) and not isinstance(e.get(k), bool) for k, t in REQUIRED.items())]
        rows, refused = self.store.prepare(usable, source="bundle")
        ids = [e["id"] for e in usable]
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        receipt = fmt.receipt(site, device, digest, ids, created, key)
        with self.store.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            added = len(insert_new(conn, rows))
            conn.execute(schema.bundles.insert().values(digest=digest, site=site, device=device, at_ms=now_ms(),
                                                        user_name=user, events=len(events), added=added,
                                                        receipt=receipt.decode("utf-8")))
            detail = {"device": device, "events": len(events), "added": added, "bundle": digest}
            conn.execute(schema.audit.insert().values(at_ms=now_ms(), user_name=user, action="bundle_import",
                                                      site=site, detail=json.dumps(detail)))
        log.info("bundle from %s/%s imported: %d events, %d new", site, device, len(events), added)
        return Outcome(digest, site, device, len(events), added, len(refused) + len(events) - len(usable), False,
                       receipt)

    def receipt_for(self, digest: str, allowed_sites: set[str]) -> bytes | None:
        b = schema.bundles.c
        with self.store.engine.connect() as conn:
            row = conn.execute(select(b.site, b.receipt).where(b.digest == digest[:64])).first()
        if row is None or row.site not in allowed_sites:
            return None
        return str(row.receipt).encode("utf-8")

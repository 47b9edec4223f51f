"""Offline bundles: a kiosk that never had a network hands its unconfirmed check-ins over as a file.

`kiosk journal export --bundle FILE` writes them as one JSON document with an HMAC-SHA256 over its canonical
form; the console imports it (`kiosk console import FILE` or the upload page), idempotently, and hands back
a receipt MACed the same way that names the ids it now holds; `kiosk outbox confirm --bundle-receipt FILE`
marks those confirmed on the kiosk.

The key: the site's subject_ref key ring (`kiosk sitekey`; or `journal.hash_key`, `console.hash_key`), which
the console already needs for tracing. The MAC key is derived from the key in use (HMAC with a fixed label),
so a bundle MAC never equals a subject_ref; either side accepts a MAC by any key of its ring. Anyone holding
the site key can make bundles for that site's devices: the same trust the site key already carries. A kiosk
with only a key of its own (no site ring installed) cannot make a bundle the console accepts.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from kiosk.errors import DataError

VERSION = 1
BUNDLE, RECEIPT = "kiosk-bundle", "kiosk-bundle-receipt"
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
_LABEL = b"kiosk offline bundle v1"


def mac_key(site_key: bytes) -> bytes:
    return hmac.new(site_key, _LABEL, hashlib.sha256).digest()


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def seal(body: dict[str, Any], site_key: bytes) -> bytes:
    """The document with its `mac` (over every other field), as UTF-8 JSON."""
    mac = hmac.new(mac_key(site_key), _canonical(body), hashlib.sha256).hexdigest()
    return json.dumps({**body, "mac": mac}, ensure_ascii=False, indent=None).encode("utf-8") + b"\n"


def unseal(data: bytes, site_keys: list[bytes], kind: str) -> tuple[dict[str, Any], bytes]:
    """The document and the site key whose MAC it carries (any key of the ring: a rotation may have happened
    between export and import), once it is of `kind`; DataError saying what is wrong otherwise."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise DataError(f"larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MB: not a bundle")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DataError("not a bundle file (expected the JSON written by kiosk journal export --bundle)") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind or doc.get("v") != VERSION:
        raise DataError(f"not a {kind} file (version {VERSION})")
    mac = doc.pop("mac", None)
    body = _canonical(doc)
    key = next((k for k in site_keys if isinstance(mac, str) and hmac.compare_digest(
        mac, hmac.new(mac_key(k), body, hashlib.sha256).hexdigest())), None)
    if key is None:
        raise DataError("the MAC does not match: the file was changed, or it was made with another site key "
                        "(the kiosk and the console need the same site key ring: kiosk sitekey import)")
    if not isinstance(doc.get("site"), str) or not isinstance(doc.get("device"), str):
        raise DataError("the file names no site and device")
    return doc, key


def bundle(site: str, device: str, created: str, events: list[dict[str, Any]], site_key: bytes) -> bytes:
    return seal({"v": VERSION, "kind": BUNDLE, "site": site, "device": device, "created": created,
                 "events": events}, site_key)


def receipt(site: str, device: str, digest: str, ids: list[str], created: str, site_key: bytes) -> bytes:
    return seal({"v": VERSION, "kind": RECEIPT, "site": site, "device": device, "bundle": digest, "ids": ids,
                 "created": created}, site_key)

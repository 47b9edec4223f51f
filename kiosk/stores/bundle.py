"""Offline bundles: a kiosk that never had a network hands its unconfirmed check-ins over as a file.

`kiosk journal export --bundle FILE` writes them as one JSON document with an HMAC-SHA256 over its canonical
form; the console imports it (`kiosk console import FILE` or the upload page), idempotently, and hands back
a receipt MACed the same way that names the ids it now holds; `kiosk outbox confirm --bundle-receipt FILE`
marks those confirmed on the kiosk.

The key: the site's subject_ref key (`journal.hash_key` on the kiosks, `console.hash_key` on the console),
which the console already needs for tracing. The MAC key is derived from it (HMAC with a fixed label), so a
bundle MAC never equals a subject_ref. Anyone holding the site key can make bundles for that site's devices:
the same trust the site key already carries. A kiosk with only its random per-journal key cannot make a
bundle the console accepts: set `journal.hash_key` to the site key first.
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


def unseal(data: bytes, site_key: bytes, kind: str) -> dict[str, Any]:
    """The document, once its MAC checked out and it is of `kind`; DataError saying what is wrong otherwise."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise DataError(f"larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MB: not a bundle")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DataError("not a bundle file (expected the JSON written by kiosk journal export --bundle)") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind or doc.get("v") != VERSION:
        raise DataError(f"not a {kind} file (version {VERSION})")
    mac = doc.pop("mac", None)
    expected = hmac.new(mac_key(site_key), _canonical(doc), hashlib.sha256).hexdigest()
    if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
        raise DataError("the MAC does not match: the file was changed, or it was made with another site key "
                        "(journal.hash_key on the kiosk must equal console.hash_key)")
    if not isinstance(doc.get("site"), str) or not isinstance(doc.get("device"), str):
        raise DataError("the file names no site and device")
    return doc


def bundle(site: str, device: str, created: str, events: list[dict[str, Any]], site_key: bytes) -> bytes:
    return seal({"v": VERSION, "kind": BUNDLE, "site": site, "device": device, "created": created,
                 "events": events}, site_key)


def receipt(site: str, device: str, digest: str, ids: list[str], created: str, site_key: bytes) -> bytes:
    return seal({"v": VERSION, "kind": RECEIPT, "site": site, "device": device, "bundle": digest, "ids": ids,
                 "created": created}, site_key)

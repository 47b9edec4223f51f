"""The revocation list: hashes of revoked signed certificates, EU DCC style (2022), checked offline.

EU member states publish revoked certificates as batches of hashes, each batch for one signer (`kid`) and one
hash type (see kiosk.codes.dcc.revocation_hashes):
- `UCI`: SHA-256 of the unique certificate identifier (`ci`) as issued,
- `COUNTRYCODEUCI`: SHA-256 of the issuing country (the CWT `iss`) followed by the identifier,
- `SIGNATURE`: SHA-256 of the COSE signature (its r half for ECDSA),
each cut to its first 16 bytes. A batch is `{"kid": base64, "hashType": "UCI", "expires": ISO-8601,
"entries": [{"hash": base64}, ...]}` (`kid` and `expires` optional); a file or a `trust` command carries one
batch, a list of them, or `{"revocations": [...]}`. Full 32-byte hashes are accepted and cut to 16.

A lookup is set membership: constant time per hash, a few hashes per certificate. A hash revokes the
certificate whichever signer's batch lists it (128-bit hashes do not collide by accident). A batch past its
`expires` is dropped on import: everything it lists has expired. Stored like the trust list (TinyDB documents,
one atomic write per update, re-read when another process replaced the file), in `<trust list>.revocations.json`.

The list's age is its last update (an empty update is a valid "nothing is revoked" and refreshes it). Once a
list has been imported it goes stale after `trust.revocation_max_age_hours`, like the trust list; a kiosk that
never received one is not using revocation and is not stale.
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kiosk.codes.dcc import COUNTRY_UCI, REVOCATION_HASH_BYTES, SIGNATURE, UCI
from kiosk.errors import DataError
from kiosk.stores.documents import DocumentStore, decode_b64, json_object, read_limited

HASH_TYPES = (UCI, COUNTRY_UCI, SIGNATURE)
# At about 110 bytes of memory per hash in a Python set, the limit keeps the list near 110 MB at most; the EU's
# whole list in 2022 held a few hundred thousand hashes.
MAX_HASHES = 1_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024
BATCH_KEYS = {"kid", "hashType", "expires", "entries", "country", "date"}


@dataclass(frozen=True)
class Batch:
    hash_type: str
    hashes: tuple[bytes, ...]
    kid: bytes | None = None
    expires: str | None = None
    source: str | None = None


def path_for(trust_path: str | os.PathLike[str]) -> Path:
    """Where the revocation list of the trust list at `trust_path` is kept: beside it."""
    path = Path(trust_path)
    return path.with_name(path.stem + ".revocations.json")


class RevocationList(DocumentStore[Batch]):
    TABLE, WHAT = "batches", "revocation list"
    FIX = "import the revocation list again (`kiosk trust import --replace FILE`)"

    # ------------------------------------------------------------------ reading
    def revoked(self, hashes: Iterable[tuple[str, bytes]]) -> str | None:
        """The hash type under which one of `hashes` (type, digest) is listed, or None."""
        self._refresh()
        for hash_type, digest in hashes:
            if digest[:REVOCATION_HASH_BYTES] in self._sets.get(hash_type, ()):
                return hash_type
        return None

    @property
    def count(self) -> int:
        self._refresh()
        return sum(len(s) for s in self._sets.values())

    def summary(self) -> dict[str, Any]:
        """Batches, hashes per type and the last update: what `trust show` and command answers report."""
        self._refresh()
        updated = self.updated_at
        return {"batches": len(self._batches), "hashes": {t: len(self._sets[t]) for t in HASH_TYPES},
                "updated_at": updated.isoformat() if updated else None}

    def is_stale(self, now: datetime, max_age_hours: float) -> bool:
        """Imported at least once and not updated for `max_age_hours` (0 or less: never stale)."""
        updated = self.updated_at
        return max_age_hours > 0 and updated is not None and now - updated > timedelta(hours=max_age_hours)

    # ------------------------------------------------------------------ changes
    def store(self, batches: list[Batch], *, replace: bool) -> int:
        """Add (or with `replace`, install only) these batches; those already expired are dropped. Hashes kept."""
        self._refresh()
        now = self._now()
        live = [b for b in batches if b.expires is None or datetime.fromisoformat(b.expires) > now]
        kept = live if replace else self._batches + live
        total = sum(len(b.hashes) for b in kept)
        if total > MAX_HASHES:
            raise DataError(f"revocation update rejected: {total} hashes, more than {MAX_HASHES} "
                            "(the current list is kept)")
        self._write(kept)
        return sum(len(b.hashes) for b in live)

    # ------------------------------------------------------------------ storage
    @staticmethod
    def _to_doc(b: Batch) -> dict[str, Any]:
        return {"hash_type": b.hash_type, "hashes": [base64.b64encode(h).decode("ascii") for h in b.hashes],
                "kid": base64.b64encode(b.kid).decode("ascii") if b.kid else None, "expires": b.expires,
                "source": b.source}

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> Batch:
        if doc["hash_type"] not in HASH_TYPES:
            raise ValueError("hash type")
        return Batch(doc["hash_type"], tuple(base64.b64decode(h, validate=True) for h in doc["hashes"]),
                     base64.b64decode(doc["kid"], validate=True) if doc.get("kid") else None,
                     doc.get("expires"), doc.get("source"))

    def _adopt(self, batches: list[Batch]) -> None:
        sets: dict[str, set[bytes]] = {t: set() for t in HASH_TYPES}
        for batch in batches:
            sets[batch.hash_type].update(batch.hashes)
        self._batches, self._sets = batches, sets


# ---------------------------------------------------------------------- parsing and validation
def is_revocation_document(obj: Any) -> bool:
    """A revocation batch, a list of them, or `{"revocations": [...]}` (anything else may be a signer list)."""
    if isinstance(obj, dict):
        return "revocations" in obj or "hashType" in obj
    return isinstance(obj, list) and bool(obj) and all(isinstance(e, dict) and "hashType" in e for e in obj)


def parse_file(path: Path) -> list[Batch] | None:
    """The batches of a revocation JSON file; None when the file is not one (a signer certificate or list)."""
    raw = read_limited(path, MAX_FILE_BYTES)
    if raw.lstrip()[:1] not in (b"[", b"{"):
        return None
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # the signer parser reports what is wrong with it
    if not is_revocation_document(obj):
        return None
    return parse_batches(obj, f"{path} rejected, nothing imported", path.name)


def parse_batches(obj: Any, message: str, source: str = "mqtt") -> list[Batch]:
    """Validate every batch of a revocation document; DataError lists each problem (nothing is imported)."""
    if isinstance(obj, dict) and "revocations" in obj:
        obj = obj["revocations"]
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise DataError(message, ['expected revocation batches: [{"hashType": "UCI", "entries": [{"hash": '
                                  'base64}]}]'])
    batches, problems = [], []
    for i, entry in enumerate(obj, 1):
        try:
            batches.append(_batch(entry, source))
        except ValueError as exc:
            problems.append(f"batch {i}: {exc}")
    if sum(len(b.hashes) for b in batches) > MAX_HASHES:
        problems.append(f"more than {MAX_HASHES} hashes")
    if problems:
        raise DataError(message, problems)
    return batches


def _batch(entry: Any, source: str) -> Batch:
    entry = json_object(entry, BATCH_KEYS)
    hash_type = entry.get("hashType")
    if hash_type not in HASH_TYPES:
        raise ValueError(f"hashType must be one of {', '.join(HASH_TYPES)}")
    hashes = entry.get("entries")
    if not isinstance(hashes, list):
        raise ValueError('entries must be a list of {"hash": base64}')
    digests = []
    for n, item in enumerate(hashes, 1):
        value = item.get("hash") if isinstance(item, dict) else item  # a bare base64 string is fine too
        digest = decode_b64(value, f"entry {n}")
        if len(digest) not in (REVOCATION_HASH_BYTES, 32):
            raise ValueError(f"entry {n}: a hash is {REVOCATION_HASH_BYTES} bytes (or a full 32-byte SHA-256)")
        digests.append(digest[:REVOCATION_HASH_BYTES])
    kid = decode_b64(entry["kid"], "kid") if entry.get("kid") is not None else None
    expires = entry.get("expires")
    if expires is not None:
        try:
            if not isinstance(expires, str) or datetime.fromisoformat(expires.replace("Z", "+00:00")).tzinfo is None:
                raise ValueError
        except ValueError:
            raise ValueError("expires must be an ISO-8601 time with an offset") from None
        expires = datetime.fromisoformat(expires.replace("Z", "+00:00")).isoformat()
    return Batch(hash_type, tuple(digests), kid, expires, source)

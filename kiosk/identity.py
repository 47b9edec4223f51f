"""subject_ref: a keyed hash of a person's identity, for de-identified tracing across check-ins and kiosks.

`subject_ref(key, person)` is HMAC-SHA256 of `person.identity_key()` under a key, cut to 32 hex characters.
The key is the site's: every kiosk of a site and its console hold the same key ring, so one person has one ref
at every gate of the site. Whoever holds the key can test guesses of an identity offline (a stolen SD card
holds it): kiosk.masking keeps what is published beside the ref to at least a million candidates, and the
README's threat model gives the measured cost of a guess.

The key ring is a JSON file, mode 0600, owned by the service user (`journal.key_file`, by default next to
the journal):  `{"v": 1, "keys": [{"id": "2022-05", "key": base64 of 32 bytes, "since": ISO-8601}]}`.
- The key in use at an instant is the newest whose `since` has passed. A key given a future `since` is
  installed everywhere first and every kiosk switches at that instant: rotation without a gap.
- A superseded key stays, for tracing the rows it made, until its successor has been in use for
  `journal.retention_days` (those rows are purged by then); then it is deleted on the next change of the ring.
- Rotation is due when the key in use is older than `journal.key_rotate_days` (`kiosk sitekey show`,
  telemetry); `kiosk sitekey rotate` makes the next key where the site's keys are kept, and the file or the
  MQTT `trust` command (`site_keys`) brings it to the kiosks and the console.
- Keys are never logged, never in an answer or an error message; a ring's `repr` shows ids only.
- A kiosk with no site key yet makes a key of its own (`origin: local`, logged once): its refs match no other
  kiosk's until the site's ring arrives; its own key stays in the ring for its rows. The key file of earlier
  versions (`<journal>.key`, 32 raw bytes) is taken into the ring the same way, so its refs stay valid.
- `journal.hash_key` (a configured secret) is a fixed one-key ring, as before; it cannot be rotated remotely.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.errors import DataError, StorageError
from kiosk.model import Person
from kiosk.stores.documents import atomic_write_bytes, decode_b64

if TYPE_CHECKING:
    from kiosk.config import Config

log = logging.getLogger(__name__)

KEY_BYTES = 32
REF_HEX_CHARS = 32
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_KEYS = 64
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LOCAL = "local"  # origin of a key this kiosk made itself


def subject_ref(key: bytes, person: Person | None) -> str | None:
    """HMAC-SHA256 of `person.identity_key()`, first 32 hex characters; None without a usable identity."""
    identity = person.identity_key() if person is not None else None
    if identity is None:
        return None
    return hmac.new(key, identity.encode("utf-8"), hashlib.sha256).hexdigest()[:REF_HEX_CHARS]


@dataclass(frozen=True)
class SiteKey:
    id: str
    key: bytes = field(repr=False)
    since: datetime
    origin: str = "site"
    # When this kiosk stopped using it because other keys were installed (a local key, or a site key replaced
    # by one whose `since` had already passed): its rows date from before then.
    retired: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": base64.b64encode(self.key).decode("ascii"), **self.describe()}

    def describe(self) -> dict[str, Any]:
        """Everything but the key."""
        out: dict[str, Any] = {"id": self.id, "since": self.since.isoformat(), "origin": self.origin}
        if self.retired:
            out["retired"] = self.retired.isoformat()
        return out


def new_key(key_id: str | None = None, since: datetime | None = None, origin: str = "site") -> SiteKey:
    since = since or datetime.now(timezone.utc)
    return SiteKey(key_id or f"{since:%Y%m%d}-{os.urandom(3).hex()}", os.urandom(KEY_BYTES), since, origin)


class KeyRing:
    """The site's subject_ref keys. Re-read when another process replaced the file (`kiosk sitekey import`)."""

    def __init__(self, path: Path | None, keys: list[SiteKey], *, retention_days: int = 21,
                 rotate_days: int = 0):
        self.path = path
        self.retention = timedelta(days=retention_days)
        self.rotate_days = rotate_days
        self._keys = sorted(keys, key=lambda k: k.since)
        self._stamp = _stamp(path) if path else None

    def __repr__(self) -> str:
        return f"<KeyRing {self.path} {[k.id for k in self._keys]}>"

    # ------------------------------------------------------------------ using it
    def key_at(self, when: datetime) -> bytes:
        """The key in use at `when`: the newest whose `since` has passed (the oldest if none has)."""
        return self.current(when).key

    def current(self, when: datetime) -> SiteKey:
        self._refresh()
        return _current(self._keys, when)

    def refs(self, person: Person) -> list[str]:
        """The person's ref under every key kept: tracing finds rows made before a rotation too."""
        self._refresh()
        refs = (subject_ref(k.key, person) for k in self._keys)
        return list(dict.fromkeys(r for r in refs if r))

    def describe(self, now: datetime) -> dict[str, Any]:
        """Ids, dates and the rotation schedule; never a key."""
        in_use = self.current(now)
        due = bool(self.rotate_days) and in_use.since + timedelta(days=self.rotate_days) <= now and \
            not any(k.since > now for k in self._keys)
        return {"in_use": in_use.id, "keys": [k.describe() for k in self._keys], "rotation_due": due,
                "path": str(self.path) if self.path else None}

    @property
    def keys(self) -> list[SiteKey]:
        self._refresh()
        return list(self._keys)

    # ------------------------------------------------------------------ changing it
    def install(self, keys: list[SiteKey], now: datetime) -> list[str]:
        """Add the site's keys (from a file or the MQTT `trust` command); prune; write. The ids now kept.

        A key id already present with another key is refused: keys are never silently replaced."""
        if self.path is None:
            raise DataError("the site key is set in the configuration (journal.hash_key); remove it to use a "
                            "key ring that can be rotated and distributed")
        self._refresh()
        was = self.current(now)
        by_id = {k.id: k for k in self._keys}
        for k in keys:
            if k.id in by_id and not hmac.compare_digest(by_id[k.id].key, k.key):
                raise DataError(f"site key {k.id} is already installed with another key; give the new key a new id")
            by_id.setdefault(k.id, k)
        merged = sorted(by_id.values(), key=lambda k: k.since)
        if _current(merged, now).id != was.id:  # in use until now, whatever the new keys' `since` says
            merged = [replace(k, retired=now) if k.id == was.id else k for k in merged]
        self._keys = _pruned(merged, now, self.retention)
        save(self.path, self._keys)
        self._stamp = _stamp(self.path)
        return [k.id for k in self._keys]

    def rotate(self, now: datetime, at: datetime | None = None) -> SiteKey:
        """Make the next key, in use from `at` (default: now); the ring is written."""
        key = new_key(since=at or now)
        self.install([key], now)
        return key

    def _refresh(self) -> None:
        if self.path is not None and _stamp(self.path) != self._stamp:
            self._keys = load_keys(self.path)
            self._stamp = _stamp(self.path)


def _current(keys: list[SiteKey], when: datetime) -> SiteKey:
    started = [k for k in keys if k.since <= when]
    return started[-1] if started else keys[0]


def _pruned(keys: list[SiteKey], now: datetime, retention: timedelta) -> list[SiteKey]:
    """Drop keys out of use for longer than `retention` (the rows they made are purged by then)."""
    kept = []
    for i, key in enumerate(keys):
        successor = keys[i + 1] if i + 1 < len(keys) else None
        ended = max(successor.since, key.retired or successor.since) if successor else None
        if ended is None or ended > now or now - ended <= retention:
            kept.append(key)
    return kept[-MAX_KEYS:]


# ---------------------------------------------------------------------- the file
def parse_keys(obj: Any, what: str = "site keys") -> list[SiteKey]:
    """Validate `[{"id", "key", "since"}]` (or a ring document); DataError names each bad entry, never a key."""
    if isinstance(obj, dict) and "keys" in obj:
        obj = obj["keys"]
    if not isinstance(obj, list) or not obj:
        raise DataError(f"{what}: expected a non-empty list of {{id, key, since}}")
    keys, problems = [], []
    for i, entry in enumerate(obj, 1):
        try:
            keys.append(_key(entry))
        except ValueError as exc:
            problems.append(f"key {i}: {exc}")
    if len(obj) > MAX_KEYS:
        problems.append(f"more than {MAX_KEYS} keys")
    if len({k.id for k in keys}) != len(keys):
        problems.append("the same id is given twice")
    if problems:
        raise DataError(f"{what} rejected, nothing changed", problems)
    return keys


def _key(entry: Any) -> SiteKey:
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    key_id = entry.get("id")
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise ValueError("id must be 1 to 64 letters, digits, '.', '_' or '-'")
    key = decode_b64(entry.get("key"), f"key of {key_id}")
    if len(key) != KEY_BYTES:
        raise ValueError(f"key of {key_id} is not {KEY_BYTES} bytes")
    since = _instant(entry.get("since"), f"since of {key_id}")
    origin = entry.get("origin", "site")
    retired = _instant(entry["retired"], f"retired of {key_id}") if entry.get("retired") else None
    return SiteKey(key_id, key, since, origin if origin in ("site", LOCAL) else "site", retired)


def _instant(value: Any, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what} is not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise ValueError(f"{what} needs an offset")
    return when


def load_keys(path: Path) -> list[SiteKey]:
    """The keys of a ring file, after making sure only its owner can read it (0600 is restored if wider)."""
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("site key file %s was readable by other users; its mode is 0600 again", path)
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise StorageError(f"cannot read or protect the site key file {path}: it must belong to the service user "
                           f"with mode 0600 (chown kiosk: {path} && chmod 600 {path})") from None
    except OSError as exc:
        raise StorageError(f"cannot read the site key file {path}: {exc.strerror}") from None
    try:
        return parse_keys(json.loads(text), f"site key file {path}")
    except (json.JSONDecodeError, DataError):
        raise StorageError(f"{path} is not a valid site key ring; restore it from a backup or install the site's "
                           "keys again (kiosk sitekey import FILE)") from None


def save(path: Path, keys: list[SiteKey], *, exclusive: bool = False) -> None:
    """Write the ring atomically with mode 0600 (mkstemp's), keeping the owner of the file (or of its folder when
    new), so a ring written by root for the service stays the service user's. `exclusive`: only if there is no
    ring yet (two processes starting at once then share the one that won)."""
    owner = _owner(path)
    payload = json.dumps({"v": 1, "keys": [k.to_json() for k in keys]}, indent=1).encode("utf-8")
    atomic_write_bytes(path, payload, exclusive=exclusive)
    if os.geteuid() == 0 and owner is not None:
        os.chown(path, *owner)


def _owner(path: Path) -> tuple[int, int] | None:
    for candidate in (path, path.parent):
        try:
            st = candidate.stat()
            return st.st_uid, st.st_gid
        except FileNotFoundError:
            continue
    return None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# ---------------------------------------------------------------------- from the configuration
def key_file(cfg: Config) -> Path:
    return Path(cfg.journal.key_file) if cfg.journal.key_file else Path(str(cfg.journal.path) + ".keys.json")


def load_keys_for(cfg: Config) -> KeyRing:
    """The site's key ring: `journal.hash_key` when set, else the ring file (made on first use, see above)."""
    retention, rotate = cfg.journal.retention_days, cfg.journal.key_rotate_days
    if cfg.journal.hash_key:
        return KeyRing(None, [SiteKey("config", cfg.journal.hash_key.encode("utf-8"), EPOCH)],
                       retention_days=retention)
    path = key_file(cfg)
    if not path.exists():
        _first_ring(path, Path(str(cfg.journal.path) + ".key"))
    return KeyRing(path, load_keys(path), retention_days=retention, rotate_days=rotate)


def _first_ring(path: Path, legacy: Path) -> None:
    """A ring with the key file of earlier versions, or a key of this kiosk's own until the site's arrives."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if legacy.exists():
            raw = legacy.read_bytes()
            if len(raw) != KEY_BYTES:
                raise StorageError(f"{legacy} is not a {KEY_BYTES}-byte key; restore it from a backup or delete it")
            key = SiteKey("journal-key", raw, EPOCH, LOCAL)
        else:
            key = SiteKey(f"local-{os.urandom(3).hex()}", os.urandom(KEY_BYTES), EPOCH, LOCAL)
        save(path, [key], exclusive=True)
    except OSError as exc:
        raise StorageError(f"cannot create the site key file {path}: {exc.strerror} (check permissions, or set "
                           "journal.key_file)") from None
    log.warning("no site key yet: this kiosk uses a key of its own (%s), so its subject_refs match no other "
                "kiosk's until the site's keys are installed (kiosk sitekey import, or the MQTT trust command)",
                key.id)


def load_hash_key(cfg: Config) -> bytes:
    """The key in use now (kept for callers that hash with one key; tracing should use `KeyRing.refs`)."""
    return load_keys_for(cfg).key_at(datetime.now(timezone.utc))


class FixedKey:
    """One key for every instant: tests, and callers that were given a key."""

    def __init__(self, key: bytes):
        self._key = key

    def __repr__(self) -> str:
        return "<FixedKey>"

    def key_at(self, when: datetime) -> bytes:
        return self._key

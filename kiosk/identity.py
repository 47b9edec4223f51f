"""subject_ref: a keyed hash of a person's identity, for de-identified tracing across check-ins."""
from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.errors import StorageError
from kiosk.stores.documents import fsync_dir
from kiosk.model import Person

if TYPE_CHECKING:
    from kiosk.config import Config

KEY_BYTES = 32
REF_HEX_CHARS = 32


def subject_ref(key: bytes, person: Person | None) -> str | None:
    """HMAC-SHA256 of `person.identity_key()`, first 32 hex characters; None without a usable identity."""
    identity = person.identity_key() if person is not None else None
    if identity is None:
        return None
    return hmac.new(key, identity.encode("utf-8"), hashlib.sha256).hexdigest()[:REF_HEX_CHARS]


def load_hash_key(cfg: Config) -> bytes:
    """`journal.hash_key` when set, else a random key kept in `<journal.path>.key` (made on first use, 0600)."""
    if cfg.journal.hash_key:
        return cfg.journal.hash_key.encode("utf-8")
    path = Path(str(cfg.journal.path) + ".key")
    try:
        if not path.exists():
            _create_key(path)
        key = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read or create the hash key {path}: {exc.strerror} "
                           "(check permissions, or set journal.hash_key)") from None
    if len(key) != KEY_BYTES:
        raise StorageError(f"{path} is not a {KEY_BYTES}-byte key; restore it from a backup (subject_ref values "
                           "change with a new key) or delete it to start a new one")
    return key


def _create_key(path: Path) -> None:
    """Write a new key to a temp file (mkstemp: mode 0600), fsync, then link it into place.

    os.link fails if another process created the key meanwhile: both then use that one key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        fsync_dir(path.parent)
    finally:
        os.unlink(tmp)

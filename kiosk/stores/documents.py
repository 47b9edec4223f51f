"""TinyDB storage that never leaves a half-written file: write a temp file, fsync, rename, fsync the folder.

Used for small documents that are read often and replaced rarely (roster, trust list, device state).
The check-in journal is SQLite (see DESIGN section 4 for the measurements behind that split).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from tinydb import TinyDB
from tinydb.storages import Storage

from kiosk.errors import DataError, StorageError

if TYPE_CHECKING:
    from kiosk.ports import Clock

R = TypeVar("R")  # a store's record type


class AtomicJSONStorage(Storage):
    def __init__(self, path: str | os.PathLike[str], create_dirs: bool = True):
        self.path = Path(path)
        if create_dirs:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            data: dict[str, Any] = json.loads(text)
            return data
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.path} is corrupt ({exc}); restore it from a backup or delete it "
                               "and import the data again") from None

    def write(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.path, json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8"))

    def close(self) -> None:
        pass


def atomic_write_bytes(path: Path, payload: bytes, *, exclusive: bool = False) -> bool:
    """Write `payload` to a temp file beside `path` (mkstemp: mode 0600), fsync it, then put it in place.

    exclusive: link it into place only if `path` does not exist yet (two processes creating the same file both
    end up using the one that won); False when it already existed. Otherwise it replaces `path`: True."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror} (check free space and permissions)") from None
    return True


def read_limited(path: Path, max_bytes: int) -> bytes:
    """The bytes of an input file of at most `max_bytes`; DataError (nothing imported) otherwise."""
    try:
        if path.stat().st_size > max_bytes:
            raise DataError(f"{path} is larger than {max_bytes // (1024 * 1024)} MB; nothing imported")
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def decode_b64(value: Any, field: str) -> bytes:
    """Base64 text of a JSON document (whitespace allowed); ValueError naming `field`, never the value."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field} is not valid base64") from None


def json_object(entry: Any, allowed: set[str]) -> dict[str, Any]:
    """`entry` as an object of a JSON document with only `allowed` keys; ValueError naming the unknown ones."""
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    unknown = sorted(map(str, set(entry) - allowed))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    return entry


def open_db(path: str | os.PathLike[str]) -> TinyDB:
    """A TinyDB on atomic storage. Every insert/update rewrites the small file atomically."""
    return TinyDB(path, storage=AtomicJSONStorage)


def fsync_dir(path: Path) -> None:
    """Make a rename or link in folder `path` durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DocumentStore(Generic[R]):
    """A list of records and one meta document in a TinyDB file (tables `TABLE` and `meta`).

    Every change is one atomic file replace, adopted in memory only once written, so a failed write leaves
    the store as it was. A file replaced by another process (`kiosk roster import` beside the running
    service) is re-read on the next access. Subclasses give TABLE, WHAT and FIX (for a corrupt file),
    `_to_doc`/`_from_doc`, and `_adopt` to index their records.
    """

    TABLE: str
    WHAT: str
    FIX: str

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None):
        """`clock` stamps `updated_at` (default: system time, UTC)."""
        self.path = Path(path)
        self._now: Callable[[], datetime] = clock.now if clock is not None else lambda: datetime.now(timezone.utc)
        self._db = open_db(self.path)
        self._meta: dict[str, Any] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._load()

    @property
    def updated_at(self) -> datetime | None:
        self._refresh()
        text = self._meta.get("updated_at")
        return datetime.fromisoformat(text) if text else None

    def _to_doc(self, record: R) -> dict[str, Any]:
        raise NotImplementedError

    def _from_doc(self, doc: dict[str, Any]) -> R:
        raise NotImplementedError

    def _adopt(self, records: list[R]) -> None:
        raise NotImplementedError

    def _write(self, records: list[R], **meta: Any) -> None:
        meta = {**meta, "updated_at": self._now().isoformat()}
        data = {self.TABLE: {str(i): self._to_doc(r) for i, r in enumerate(records, 1)}, "meta": {"1": meta}}
        self._db.storage.write(data)
        self._db.clear_cache()
        self._adopt(records)
        self._meta, self._stamp = meta, self._file_stamp()

    def _load(self) -> None:
        stamp = self._file_stamp()
        data = self._db.storage.read() or {}
        try:
            records = [self._from_doc(doc) for doc in (data.get(self.TABLE) or {}).values()]
            meta = dict((data.get("meta") or {}).get("1") or {})
            self._adopt(records)
        except (KeyError, TypeError, ValueError, AttributeError):  # binascii.Error is a ValueError
            raise StorageError(f"{self.path} does not hold a valid {self.WHAT}; {self.FIX}") from None
        self._meta, self._stamp = meta, stamp

    def _refresh(self) -> None:
        if self._file_stamp() != self._stamp:
            self._load()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

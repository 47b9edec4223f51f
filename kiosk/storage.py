"""TinyDB storage that never leaves a half-written file: write a temp file, fsync, rename, fsync the folder.

Used for small documents that are read often and replaced rarely (roster, trust list, device state).
The check-in journal is SQLite (see DESIGN section 4 for the measurements behind that split).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from kiosk.errors import StorageError


class AtomicJSONStorage(Storage):
    def __init__(self, path: str | os.PathLike, create_dirs: bool = True):
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
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.path} is corrupt ({exc}); restore it from a backup or delete it "
                               "and import the data again") from None

    def write(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.path, json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8"))

    def close(self) -> None:
        pass


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror} (check free space and permissions)") from None


def open_db(path: str | os.PathLike) -> TinyDB:
    """A TinyDB on atomic storage. Every insert/update rewrites the small file atomically."""
    return TinyDB(path, storage=AtomicJSONStorage)

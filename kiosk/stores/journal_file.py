"""The journal as a file on the SD card: its identity, the disk reserve, moving a damaged file aside,
putting back a file deleted under a running kiosk, and consistent copies through SQLite's backup API.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from kiosk.stores.documents import fsync_dir

log = logging.getLogger(__name__)

BACKUP_STEP_PAGES = 1024   # pages copied per step; the kiosk may write between steps
SIDE_FILES = ("", "-wal", "-shm")


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


# ---------------------------------------------------------------- the disk reserve
def reserve_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".reserve")


class Reserve:
    """Space held back for the journal: a file of `size` bytes allocated up front (posix_fallocate: blocks
    reserved, nothing written) and deleted the moment the journal hits a full disk, so check-ins keep being
    stored while an operator frees space. Put back once there is room for it three times over."""

    def __init__(self, path: Path, size: int):
        self.path = path
        self.size = size

    @property
    def released(self) -> bool:
        return self.size > 0 and not self.path.exists()

    def ensure(self) -> None:
        if not self.released:
            return
        try:
            if shutil.disk_usage(self.path.parent).free < 3 * self.size:
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            log.info("journal reserve of %d MB in place at %s", self.size >> 20, self.path)
        except OSError as exc:
            log.debug("journal reserve not made: %s", exc)

    def release(self) -> bool:
        """Free the reserve; False when there was none to free."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True


# ---------------------------------------------------------------- damaged files
def move_aside(path: Path, tag: str) -> Path:
    """Rename the journal and its -wal/-shm to PATH.TAG-STAMP[-wal|-shm] (kept for recovery, never deleted)."""
    target = path.with_name(f"{path.name}.{tag}-{_stamp()}")
    for suffix in SIDE_FILES:
        side = Path(str(path) + suffix)
        if side.exists():
            os.replace(side, Path(str(target) + suffix))
    fsync_dir(path.parent)
    return target


def moved_aside(path: Path) -> list[Path]:
    """Damaged journals moved aside next to `path` and not yet dealt with by an operator."""
    return sorted(p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm")))


def readable_last_seq(path: Path) -> int:
    """The highest seq a damaged journal still shows (0 when nothing can be read)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    best = 0
    try:
        for sql in ("SELECT max(seq) FROM checkins", "SELECT value FROM meta WHERE key = 'seq_floor'",
                    "SELECT seq FROM sqlite_sequence WHERE name = 'checkins'"):
            try:
                row = db.execute(sql).fetchone()
                best = max(best, int(row[0])) if row and row[0] is not None else best
            except (sqlite3.Error, ValueError):
                continue
    finally:
        db.close()
    return best


# ---------------------------------------------------------------- a file deleted under us
def restore(db: sqlite3.Connection, path: Path) -> None:
    """Put the journal that `db` still has open back at `path` (it was deleted, or replaced by another file,
    which is moved aside first, never deleted). `db` is closed on success.

    SQLite notices a moved file and refuses to write it (SQLITE_READONLY_DBMOVED), and then neither
    checkpoints nor deletes the WAL when its connections close; reading still works, WAL included. So: copy
    through the backup API, remove the old file's -wal and -shm names (connections still open on the old file,
    the outbox's, keep their own descriptors and can only fail), and rename the copy into place.
    """
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.replaced-{_stamp()}"))
    tmp = path.with_name(path.name + ".restore")
    _copy(db, tmp)
    for suffix in SIDE_FILES[1:]:
        Path(str(path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    db.close()


def _copy(db: sqlite3.Connection, target: Path) -> None:
    """Copy `db` to `target` through a temporary file, fsynced and renamed into place."""
    tmp = target.with_name(target.name + ".tmp")
    for suffix in SIDE_FILES:
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    dest = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        db.backup(dest, pages=BACKUP_STEP_PAGES)
        dest.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    finally:
        dest.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def backup(db: sqlite3.Connection, target: Path, site: str, device: str) -> int:
    """A consistent copy of the live journal at `target` (rows copied). The copy gets a journal epoch of its
    own, so check-ins appended to it if it is ever restored never reuse an event id of the original."""
    from kiosk.stores.journal_schema import new_uid

    target = target.resolve()
    _copy(db, target)
    copy = sqlite3.connect(str(target), isolation_level=None)
    try:
        check = [r[0] for r in copy.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise sqlite3.DatabaseError(f"the copy does not pass quick_check: {'; '.join(check)}")
        copy.execute("BEGIN IMMEDIATE")
        copy.execute("INSERT INTO id_epochs (first_seq, uid) VALUES ((SELECT max(coalesce((SELECT max(seq) "
                     "FROM checkins), 0), coalesce((SELECT value FROM meta WHERE key = 'seq_floor'), 0)) + 1), ?)",
                     (new_uid(site, device),))
        copy.execute("COMMIT")
        rows: int = copy.execute("SELECT count(*) FROM checkins").fetchone()[0]
        return rows
    finally:
        copy.close()


# ---------------------------------------------------------------- reads that see one state
class ReadTransaction:
    """BEGIN (deferred) ... COMMIT around several SELECTs, unless a transaction is already open."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.began = False

    def __enter__(self) -> "ReadTransaction":
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
            self.began = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.began and self.db.in_transaction:
            self.db.execute("COMMIT")

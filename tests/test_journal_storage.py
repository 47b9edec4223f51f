"""The journal's file under a running kiosk (issue 12, storage): deleted, read-only, a full disk, damaged,
copied live; and the window between showing a check-in and storing it. Real SQLite files, the real App with a
scripted reader, a real tmpfs where the test may mount one."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import journal_events
from kiosk import config
from kiosk.app import App
from kiosk.cli import main
from kiosk.errors import StorageError
from kiosk.model import Decision
from kiosk.stores import held, journal as journal_module
from kiosk.stores.journal import JOURNAL_SIZE_LIMIT, Journal
from kiosk.stores.outbox import Outbox

REPO = Path(__file__).resolve().parents[1]


def code(i: int) -> str:
    """A well-formed personal QR of person i (trace mode: green, one check-in each)."""
    return f"0790{i:08d}|NGUYEN VAN THU|1990-12-01|0|1630{i:014d}|<1<<"


class ScriptedReader:
    """A dedicated-reader port playing a script on the App's thread: a text is a read, a callable is run."""

    def __init__(self, script):
        self.script = list(script)

    def start(self):
        pass

    def close(self):
        pass

    def read(self, timeout):
        while self.script:
            item = self.script.pop(0)
            if callable(item):
                item()
                continue
            return item
        return None


def make_app(tmp_path: Path, journal: Path, script: list, *extra: str) -> App:
    cfg = config.load(None, [
        f"journal.path={journal}", f"roster.path={tmp_path}/roster.json", f"trust.path={tmp_path}/trust.json",
        "camera.type=none", "display.type=none", "gpio.pin_factory=mock", "mqtt.enabled=false",
        "clock.source=assume_synced", "site.id=s1", "site.device=d1", *extra])
    app = App(cfg, devices={"camera": None, "reader": ScriptedReader(script)})
    app.reader.script.append(app.stop)
    return app


rows = journal_events


def refs(path: Path) -> list[str]:
    return [r["subject_ref"] for r in rows(path)]


def decision(i: int = 0) -> Decision:
    return Decision(kind="personal_qr", verdict="green", reason="valid", subject={"name": "N***"},
                    subject_ref=f"ref{i}", at=datetime.now(timezone.utc))


# ---------------------------------------------------------------- 8. deleted or read-only
@pytest.mark.parametrize("deleted", [("",), ("", "-wal", "-shm")], ids=["file", "file-wal-shm"])
def test_a_journal_deleted_under_the_running_kiosk_is_put_back_with_every_checkin(tmp_path, deleted):
    path = tmp_path / "data" / "journal.sqlite"
    seen = []

    def delete():
        for suffix in deleted:
            os.unlink(str(path) + suffix)

    app = make_app(tmp_path, path, [code(0), code(1), delete, code(2), code(3),
                                    lambda: seen.append(app.alarms()), code(4)])
    result = app.run()
    assert result.counters["journaled"] == 5 and result.held_at_stop == 0
    assert "journal_restored" in seen[0]
    stored = rows(path)
    assert [r["seq"] for r in stored] == [1, 2, 3, 4, 5]
    assert len({r["id"] for r in stored}) == 5 and len(set(refs(path))) == 5
    j = Journal(path, site="s1", device="d1")
    assert j.check() == ["ok"]
    j.close()


def test_an_outbox_open_on_a_deleted_journal_follows_the_file_put_back(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, site="s1", device="d1", service=True)
    box = Outbox(path)
    ids = [journal.append(decision(i))["id"] for i in range(3)]
    box.mark_published(ids[:1])
    os.unlink(path)
    with pytest.raises(StorageError, match="missing"):
        box.mark_published(ids[1:2])          # nothing written into the unlinked file
    journal.append(decision(3))               # put back, then written
    assert journal.restored and "journal_restored" in journal.alarms()
    assert box.mark_published(ids[1:2]) == 1  # the outbox follows the file that is back
    assert [r["up_state"] for r in rows(path)] == ["published", "published", "pending", "pending"]
    assert [r["id"] for r in rows(path)][:3] == ids
    box.close()
    journal.close()


def _ran_once(tmp_path: Path, path: Path) -> None:
    """A kiosk that ran before (journal, key file): then its card or file goes read-only."""
    make_app(tmp_path, path, [code(100), code(101)]).run()


@pytest.fixture(params=["read-only-mount", "immutable-file"])
def read_only(request, tmp_path, tmpfs):
    """(journal path, make it read-only, make it writable): a tmpfs remounted read-only, or the file made
    immutable (chattr +i: it opens read-only, as a file of another owner does; root ignores modes)."""
    if request.param == "read-only-mount":
        disk = tmpfs("8m")
        path = disk / "journal.sqlite"
        _ran_once(tmp_path, path)
        yield path, lambda: tmpfs.remount(disk, "ro"), lambda: tmpfs.remount(disk, "rw")
        return
    path = tmp_path / "journal.sqlite"
    _ran_once(tmp_path, path)
    chattr = lambda flag: subprocess.run(["chattr", flag, str(path)], capture_output=True)  # noqa: E731
    if shutil.which("chattr") is None or chattr("+i").returncode:
        pytest.skip("chattr +i does not work here (needs root and a file system with the immutable flag)")
    chattr("-i")
    yield path, lambda: chattr("+i"), lambda: chattr("-i")
    chattr("-i")


def test_a_read_only_journal_alarms_holds_checkins_and_stores_them_when_writable(tmp_path, read_only, monkeypatch):
    path, make_read_only, make_writable = read_only
    make_read_only()
    monkeypatch.setattr(journal_module, "REOPEN_EVERY_S", 0.0)
    seen = []
    app = make_app(tmp_path, path, [code(0), code(1), lambda: seen.append(app.alarms()), make_writable, code(2)])
    result = app.run()
    assert {"journal_unavailable", "journal_failed"} <= set(seen[0])
    assert result.counters["checkins"] == 3 and result.held_at_stop == 0
    assert len(rows(path)) == 5 and result.counters["journaled"] == 3


CHECK = ["--set", "camera.type=none", "--set", "display.type=none", "--set", "gpio.pin_factory=mock",
         "--set", "mqtt.enabled=false", "--set", "clock.source=assume_synced"]


def test_kiosk_check_says_a_read_only_journal_is_not_writable(tmp_path, read_only, capsys):
    path, make_read_only, make_writable = read_only
    sets = ["--set", f"journal.path={path}", "--set", f"roster.path={tmp_path}/roster.json",
            "--set", f"trust.path={tmp_path}/trust.json", *CHECK]
    make_read_only()
    status = main(["check", *sets])
    checks = {c["check"]: c for c in map(json.loads, capsys.readouterr().out.splitlines())}
    assert status == 1 and checks["journal"]["ok"] is False
    assert "read-only" in checks["journal"]["detail"]
    make_writable()
    main(["check", *sets])
    checks = {c["check"]: c for c in map(json.loads, capsys.readouterr().out.splitlines())}
    assert checks["journal"]["ok"] is True and "writable" in checks["journal"]["detail"]


def test_checkins_held_at_stop_are_saved_and_journaled_once_at_the_next_start(tmp_path):
    path = tmp_path / "journal.sqlite"

    def break_journal():
        app.journal.db.execute("PRAGMA query_only = ON")  # SQLITE_READONLY on every write, as root too

    app = make_app(tmp_path, path, [code(0), break_journal, code(1), code(2)])
    result = app.run()
    assert result.held_at_stop == 2
    saved = held.held_path(path)
    assert saved.exists()
    kept = saved.read_bytes()
    assert (subprocess.run([sys.executable, "-m", "kiosk", "run", "--set", f"journal.path={path}",
                            "--set", "camera.type=none", "--set", "display.type=none", "--set", "mqtt.enabled=false",
                            "--set", f"roster.path={tmp_path}/roster.json", "--set", f"trust.path={tmp_path}/trust.json",
                            "--set", "gpio.pin_factory=mock", "--set", "clock.source=assume_synced",
                            "--max-frames", "0"], cwd=REPO, capture_output=True, timeout=60).returncode == 0)
    assert len(rows(path)) == 3 and not saved.exists()
    saved.write_bytes(kept)        # as if killed between that commit and deleting the file
    make_app(tmp_path, path, [code(3)]).run()
    assert len(rows(path)) == 4 and not saved.exists()


def test_kiosk_run_exits_74_when_it_stops_with_checkins_it_could_not_store(tmp_path, tmpfs):
    disk = tmpfs("8m")
    path = disk / "journal.sqlite"
    _ran_once(tmp_path, path)
    tmpfs.remount(disk, "ro")   # the whole card: nowhere to save them either
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    shutil.copy(REPO / "kiosk" / "data" / "scenes" / "02_thu_phone.jpg", scenes)
    done = subprocess.run([sys.executable, "-m", "kiosk", "run", *(a for s in (
        f"journal.path={path}", f"roster.path={tmp_path}/roster.json", f"trust.path={tmp_path}/trust.json",
        "camera.type=replay", f"camera.path={scenes}", "display.type=none", "gpio.pin_factory=mock",
        "mqtt.enabled=false", "clock.source=assume_synced") for a in ("--set", s))],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    # nowhere on that card to save it: said, and the exit status shows it (it used to exit 0)
    assert done.returncode == 74, done.stderr
    assert "could not store" in done.stderr and json.loads(done.stdout.splitlines()[-1])["held_at_stop"] == 1


# ---------------------------------------------------------------- 9. a full disk
def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_uses_the_reserve_then_holds_and_loses_nothing(tmp_path, tmpfs):
    disk = tmpfs("6m")
    path = disk / "journal.sqlite"
    state = {}

    def fill_disk():
        state["filler"] = _fill(disk)
        state["before_full"] = app.pipeline.counters.journaled

    def look():
        state["alarms"] = app.alarms()
        state["journaled_on_full_disk"] = app.pipeline.counters.journaled - state["before_full"]
        state["held"] = app.pipeline.unwritten
        state["wal"] = (disk / "journal.sqlite-wal").stat().st_size
        state["filler"].unlink()

    n = 6000
    script = [code(i) for i in range(20)] + [fill_disk] + [code(i) for i in range(20, n)] + [look]
    app = make_app(tmp_path, path, script, "journal.reserve_mb=1")
    assert journal_module.journal_file.reserve_path(path).stat().st_size == 1 << 20
    result = app.run()
    assert {"journal_reserve_used", "journal_failed"} <= set(state["alarms"])
    assert state["journaled_on_full_disk"] > 100, "the reserve kept check-ins being stored on a full disk"
    assert state["held"] > 0, "the disk filled past the reserve: check-ins held"
    assert result.held_at_stop == 0 and result.counters["journaled"] == n
    assert len(set(refs(path))) == n, "every check-in stored once, none lost"
    assert state["wal"] <= JOURNAL_SIZE_LIMIT


# ---------------------------------------------------------------- 10. integrity
def _damaged(path: Path, n: int = 600) -> None:
    journal = Journal(path, site="s1", device="d1")
    journal.append_many([decision(i) for i in range(n)])
    journal.maintain(force=True)
    journal.close()
    with open(path, "r+b") as f:     # a page in the middle of the table: garbage, as a torn copy has
        f.seek(1024 * 40)
        f.write(os.urandom(1024))


def test_a_damaged_journal_is_moved_aside_and_a_fresh_one_started_with_an_alarm(tmp_path, capsys):
    path = tmp_path / "journal.sqlite"
    _damaged(path)
    seen = []
    app = make_app(tmp_path, path, [code(0), lambda: seen.append(app.alarms())])
    assert app.journal.quick_check_s is not None
    result = app.run()
    assert "journal_moved_aside" in seen[0]
    [moved] = [p for p in tmp_path.glob("journal.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert result.counters["journaled"] == 1 and [r["seq"] for r in rows(path)] == [601]  # seq goes on
    conf = ["--set", "camera.type=none"]
    assert main(["journal", "check", "--set", f"journal.path={moved}", *conf]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["integrity_check"] != ["ok"]
    assert main(["journal", "check", "--set", f"journal.path={path}", *conf]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["rows"] == 1 and report["moved_aside"] == [str(moved)]


def test_commands_report_a_damaged_journal_and_never_move_it(tmp_path, capsys):
    path = tmp_path / "journal.sqlite"
    _damaged(path)
    status = main(["journal", "export", "--format", "jsonl", "--set", f"journal.path={path}",
                   "--set", "camera.type=none"])
    err = capsys.readouterr().err
    assert status == StorageError.exit_status and "damaged" in err and "Traceback" not in err
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))


CHILD = """
import sys
from datetime import datetime, timezone
from kiosk.stores.journal import Journal
from kiosk.model import Decision
j = Journal(sys.argv[1], site="s1", device="d1")
while True:
    e = j.append(Decision(kind="badge", verdict="green", reason="on_staff_list", subject={"name": "A***"},
                          subject_ref="r", at=datetime.now(timezone.utc)))
    j.maintain()
    sys.stdout.write(e["id"] + "\\n")
    sys.stdout.flush()
"""


def test_backup_copies_a_live_journal_consistently_and_gives_the_copy_ids_of_its_own(tmp_path, capsys):
    path, copy = tmp_path / "journal.sqlite", tmp_path / "copy" / "backup.sqlite"
    copy.parent.mkdir()
    Journal(path, site="s1", device="d1").close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        acknowledged = [child.stdout.readline().strip() for _ in range(300)]
        status = main(["journal", "backup", str(copy), "--set", f"journal.path={path}", "--set", "camera.type=none"])
        report = json.loads(capsys.readouterr().out)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert status == 0 and report["rows"] >= 300
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"   # one self-contained file
    db.close()
    assert set(acknowledged) <= {r["id"] for r in rows(copy)}
    original, restored = Journal(path, site="s1", device="d1"), Journal(copy, site="s1", device="d1")
    a, b = original.append(decision()), restored.append(decision())
    assert b["seq"] <= a["seq"] and b["id"] != a["id"]      # a restored copy never reuses an id
    assert b["id"][:16] != a["id"][:16]
    original.close()
    restored.close()


# ---------------------------------------------------------------- 11. shown, not yet stored
def test_the_window_between_feedback_and_commit_is_measured(tmp_path):
    app = make_app(tmp_path, tmp_path / "journal.sqlite", [code(i) for i in range(30)])
    result = app.run()
    p50, p99 = result.counters["shown_to_stored_p50_ms"], result.counters["shown_to_stored_p99_ms"]
    assert 0 < p50 <= p99
    assert app.telemetry(app.alarms())["shown_to_stored_p99_ms"] == p99

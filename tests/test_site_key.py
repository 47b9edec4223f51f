"""The subject_ref site key as a first-class secret (issue 12, item 2): one ring for the site's kiosks and console,
by file or the MQTT trust command, never logged; rotated with the old key kept for the retention window; the file
0600 and owned by the service user."""
from __future__ import annotations

import base64
import json
import logging
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from kiosk import config
from kiosk.cli import main
from kiosk.errors import DataError
from kiosk.identity import KeyRing, key_file, load_keys, load_keys_for, new_key, save, subject_ref
from kiosk.model import Decision, Person
from kiosk.stores.journal import Journal
from test_uplink import PREFIX, running_app  # noqa: F401  (the real App on a real broker)

NOW = datetime(2021, 11, 15, 9, 0, tzinfo=timezone(timedelta(hours=7)))
THU = Person(id_number="079090000001")
THU_QR = "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<DN4790000000001<0900000001"


def cfg_for(folder, **journal):
    return config.load(data={"camera": {"type": "none"}, "journal": {"path": str(folder / "journal.sqlite"), **journal}})


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_use_makes_a_local_key_0600_and_says_so_once(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cfg = cfg_for(tmp_path / "data")
    ring = load_keys_for(cfg)
    path = tmp_path / "data" / "journal.sqlite.keys.json"
    assert key_file(cfg) == path and mode(path) == 0o600 and path.stat().st_uid == os.geteuid()
    [key] = ring.keys
    assert key.origin == "local" and len(key.key) == 32
    assert load_keys_for(cfg).key_at(NOW) == key.key  # kept across restarts
    assert caplog.text.count("uses a key of its own") == 1
    assert base64.b64encode(key.key).decode() not in caplog.text and key.key.hex() not in caplog.text
    assert "key=" not in repr(key) and repr(ring).count(key.id) == 1
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_key_file_of_earlier_versions_keeps_its_refs(tmp_path):
    (tmp_path / "journal.sqlite.key").write_bytes(b"L" * 32)
    ring = load_keys_for(cfg_for(tmp_path))
    assert [k.id for k in ring.keys] == ["journal-key"]
    assert subject_ref(ring.key_at(NOW), THU) == subject_ref(b"L" * 32, THU)


def test_a_configured_hash_key_is_a_fixed_ring_that_cannot_be_changed_remotely(tmp_path):
    ring = load_keys_for(cfg_for(tmp_path, hash_key="s3cret"))
    assert ring.key_at(NOW) == b"s3cret" and not key_file(cfg_for(tmp_path)).exists()
    with pytest.raises(DataError, match="journal.hash_key"):
        ring.install([new_key()], NOW)


def test_a_ring_readable_by_others_is_made_0600_again(tmp_path, caplog):
    cfg = cfg_for(tmp_path)
    load_keys_for(cfg)
    os.chmod(key_file(cfg), 0o644)
    load_keys_for(cfg)
    assert mode(key_file(cfg)) == 0o600 and "mode is 0600 again" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_ring_written_by_root_stays_the_service_users(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    os.chown(folder, 4321, 4321)  # the service user's state folder
    cfg = cfg_for(folder)
    ring = load_keys_for(cfg)
    assert key_file(cfg).stat().st_uid == 4321  # new: the folder's owner
    ring.install([new_key(since=NOW)], NOW)
    assert (key_file(cfg).stat().st_uid, mode(key_file(cfg))) == (4321, 0o600)


def test_two_kiosks_of_one_site_give_one_person_one_ref(tmp_path, capsys):
    from kiosk.app import build_decider

    site_ring = tmp_path / "site-keys.json"
    assert main(["sitekey", "new", "--out", str(site_ring)]) == 0
    assert mode(site_ring) == 0o600
    refs = []
    for kiosk in ("gate-1", "gate-2"):
        sets = ["--set", f"journal.path={tmp_path / kiosk / 'journal.sqlite'}"]
        assert main(["sitekey", "import", str(site_ring), *sets]) == 0
        cfg = config.load(None, [s for s in sets if s != "--set"] + [f"roster.path={tmp_path / kiosk / 'r.json'}",
                                                                     f"trust.path={tmp_path / kiosk / 't.json'}"])
        refs.append(build_decider(cfg).decide(THU_QR, datetime.now(timezone.utc), True).subject_ref)
    shown = capsys.readouterr().out
    assert refs[0] == refs[1] and refs[0] is not None
    site_key = load_keys(site_ring)[0]
    assert refs[0] == subject_ref(site_key.key, THU)
    assert base64.b64encode(site_key.key).decode() not in shown  # import and new print ids only


def test_rotation_switches_at_its_instant_and_keeps_the_old_key_for_the_retention_window(tmp_path):
    path = tmp_path / "ring.json"
    first = new_key("k1", since=NOW - timedelta(days=100))
    save(path, [first])
    ring = KeyRing(path, load_keys(path), retention_days=21, rotate_days=90)
    assert ring.describe(NOW)["rotation_due"] is True  # in use for 100 days
    second = ring.rotate(NOW, at=NOW + timedelta(days=2))  # sent out two days ahead
    assert ring.describe(NOW)["rotation_due"] is False  # the next key is scheduled
    assert ring.key_at(NOW + timedelta(days=1)) == first.key and ring.key_at(NOW + timedelta(days=2)) == second.key
    assert ring.refs(THU) == [subject_ref(first.key, THU), subject_ref(second.key, THU)]
    later = NOW + timedelta(days=2 + 21)
    ring.install([], later)  # still within 21 days of the switch
    assert [k.id for k in ring.keys] == ["k1", second.id]
    ring.install([], later + timedelta(days=1))
    assert [k.id for k in load_keys(path)] == [second.id]
    with pytest.raises(DataError, match="already installed with another key"):
        ring.install([new_key(second.id, since=NOW)], NOW)


def test_a_local_key_is_kept_for_the_retention_window_after_the_site_key_arrives(tmp_path):
    ring = load_keys_for(cfg_for(tmp_path))
    local = ring.keys[0]
    site = new_key("site-1", since=NOW - timedelta(days=200))  # the site has used it for long
    ring.install([site], NOW)
    assert ring.key_at(NOW) == site.key and [k.id for k in ring.keys] == [local.id, "site-1"]
    ring.install([], NOW + timedelta(days=22))
    assert [k.id for k in ring.keys] == ["site-1"]


def test_tracing_finds_visits_made_before_a_rotation(tmp_path, capsys):
    cfg = cfg_for(tmp_path)
    ring = load_keys_for(cfg)
    ring.install([new_key("site-a", since=NOW - timedelta(days=10))], NOW - timedelta(days=10))
    ring.rotate(NOW - timedelta(days=5), at=NOW - timedelta(days=3))
    journal = Journal(cfg.journal.path, site="s", device="d")
    for days_ago in (8, 1):  # one visit under each key
        at = NOW - timedelta(days=days_ago)
        journal.append(Decision(kind="personal_qr", verdict="green", reason="checked_in", at=at,
                                subject_ref=subject_ref(ring.key_at(at), THU)))
    journal.close()
    assert len(set(ring.refs(THU))) == 3  # local, site-a, the rotated key
    assert main(["journal", "trace", "079090000001", "--since", "2021-11-01", "--set",
                 f"journal.path={cfg.journal.path}"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_cli_rotate_show_and_export(tmp_path, capsys):
    ring_file = tmp_path / "site.json"
    assert main(["sitekey", "new", "--out", str(ring_file)]) == 0
    assert main(["sitekey", "new", "--out", str(ring_file)]) == 1  # never overwrites a ring
    assert main(["sitekey", "rotate", "--file", str(ring_file), "--at", "2030-01-01T00:00:00+07:00"]) == 0
    assert main(["sitekey", "show", "--file", str(ring_file)]) == 0
    out = capsys.readouterr()
    shown = json.loads(out.out.splitlines()[-1])
    assert len(shown["keys"]) == 2 and shown["keys"][1]["since"] == "2030-01-01T00:00:00+07:00"
    for key in load_keys(ring_file):
        assert base64.b64encode(key.key).decode() not in out.out + out.err
    assert main(["sitekey", "export", "--file", str(ring_file)]) == 0
    out = capsys.readouterr()
    assert "holds the site's keys" in out.err
    exported = json.loads(out.out)["site_keys"]
    assert [base64.b64decode(k["key"]) for k in exported] == [k.key for k in load_keys(ring_file)]


def test_site_keys_over_mqtt_are_installed_never_logged_nor_answered(broker, watcher_factory, running_app, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    app, reader = running_app
    watcher = watcher_factory(broker.port, f"{PREFIX}/checkin", f"{PREFIX}/cmd/trust/result", f"{PREFIX}/status")
    watcher.next(f"{PREFIX}/status", where=lambda b: b["state"] == "online")
    key = new_key("site-2021-11", since=NOW - timedelta(days=1))
    secret = base64.b64encode(key.key).decode()

    def scan_ref():
        reader.texts.put(THU_QR)
        return watcher.next(f"{PREFIX}/checkin")["subject_ref"]

    local_ref = scan_ref()
    assert local_ref != subject_ref(key.key, THU)
    bad = {"site_keys": [{"id": "x", "key": base64.b64encode(b"short").decode(), "since": NOW.isoformat()}]}
    watcher.command(f"{PREFIX}/cmd/trust", bad, at=app.clock.now().timestamp())
    answer = watcher.next(f"{PREFIX}/cmd/trust/result")
    assert answer["ok"] is False and "32 bytes" in answer["error"]
    watcher.command("kiosk/s1/all/cmd/trust", {"id": "k-1", "site_keys": [key.to_json()]},  # site-wide
                    at=app.clock.now().timestamp())
    answer = watcher.next(f"{PREFIX}/cmd/trust/result")
    assert answer["ok"] and answer["result"]["site_keys"]["in_use"] == "site-2021-11", answer
    assert scan_ref() == subject_ref(key.key, THU)
    assert secret not in json.dumps(answer) and secret not in caplog.text
    assert secret not in "".join(p.read_text(errors="replace") for p in broker.folder.glob("*.log"))
    ring_file = key_file(app.cfg)
    assert mode(ring_file) == 0o600 and [k.id for k in load_keys(ring_file)][-1] == "site-2021-11"

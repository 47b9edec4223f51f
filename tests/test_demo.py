"""`kiosk demo` end to end on the bundled scenes: real decoder, decider, feedback, journal."""
import json
import sqlite3
from pathlib import Path

from kiosk.cli import main


def run_demo(tmp_path, capsys, *extra):
    sets = [f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
            f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens",
            "mqtt.port=1"]  # nothing listens on port 1: the uplink queues
    argv = ["demo", "--drain-seconds", "0"]
    for s in sets + list(extra):
        argv += ["--set", s]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [x for x in lines if x["event"] == "checkin"], lines[-1]


def test_demo_runs_the_full_pipeline(tmp_path, capsys):
    checkins, summary = run_demo(tmp_path, capsys)
    assert summary["event"] == "summary"
    assert summary["frames"] > 0 and summary["checkins"] == len(checkins) > 0
    assert summary["green"] > 0 and summary["black"] > 0 and summary["invalid"] > 0
    assert summary["green"] + summary["black"] + summary["invalid"] == summary["checkins"]
    assert summary["repeats_suppressed"] > 0  # the same person shown twice is one check-in
    assert summary["journal_rows"] == summary["checkins"]
    rows = sqlite3.connect(tmp_path / "journal.sqlite").execute(
        "SELECT verdict, up_state, subject FROM checkins").fetchall()
    assert len(rows) == summary["checkins"]
    assert {r[1] for r in rows} == {"pending"}  # no broker: queued for upload
    screens = sorted(Path(summary["screens"]).glob("*.png"))
    assert screens, "the demo writes its screens as PNG files"
    for c in checkins:
        assert {"kind", "verdict", "reason", "subject", "latency_ms"} <= set(c)
        # masked: no full 12-digit ID anywhere in the output
        assert not any(ch.isdigit() for ch in c["subject"].get("id", "")[:6])


def test_demo_output_never_contains_raw_ids_or_names(tmp_path, capsys):
    from kiosk.demo_people import PEOPLE

    run_demo(tmp_path, capsys)
    journal = sqlite3.connect(tmp_path / "journal.sqlite").execute("SELECT * FROM checkins").fetchall()
    dump = json.dumps(journal, ensure_ascii=False)
    for person in PEOPLE:
        if person.id_number and "*" not in person.id_number:
            assert person.id_number not in dump


def test_demo_never_stores_or_logs_a_raw_payload(tmp_path, capsys, caplog):
    import logging

    from kiosk.demo_people import PEOPLE

    caplog.set_level(logging.DEBUG)
    run_demo(tmp_path, capsys, "site.debounce_seconds=0")
    captured = capsys.readouterr()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*"))  # the file, its WAL and shm
    texts = {"logs": caplog.text, "stderr": captured.err,
             "journal": stored.decode("utf-8", "replace"),
             "roster": b"".join(p.read_bytes() for p in tmp_path.glob("roster.json*")).decode("utf-8", "replace")}
    assert caplog.records, "the demo logs something at DEBUG level"
    for person in PEOPLE:
        fields = [f for f in person.code.split("|") + person.code.split("<") if len(f) >= 8 and "*" not in f]
        for where, text in texts.items():
            assert person.code not in text, (person.key, where)
            if where == "roster":
                continue  # the roster holds IDs and QIDs by design, but never phone or insurance numbers
            for field in fields:
                assert field not in text, (person.key, where, field)
        for secret in ("DN4790000000001", "0900000001", "0900000005"):
            assert secret not in texts["roster"]


def test_demo_scenes_give_the_expected_verdicts(tmp_path, capsys):
    manifest = json.loads((Path(__file__).resolve().parents[1] / "kiosk/data/scenes/manifest.json").read_text())
    checkins, summary = run_demo(tmp_path, capsys)
    got = {(c["kind"], c["verdict"], c["reason"]) for c in checkins}
    expected = {(e["kind"], e["verdict"], e["reason"]) for e in manifest["entries"] if e.get("verdict")}
    assert got == expected
    assert summary["frames"] == len(manifest["entries"])


def test_a_second_demo_says_it_starts_afresh_and_keep_keeps_the_journal(tmp_path, capsys):
    def demo(*flags):
        argv = ["demo", *flags, "--drain-seconds", "0"]
        for s in (f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
                  f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens", "mqtt.port=1"):
            argv += ["--set", s]
        assert main(argv) == 0
        out = capsys.readouterr()
        return json.loads(out.out.splitlines()[-1]), out.err

    first, said = demo()
    assert "starting afresh" not in said  # nothing was there to remove
    second, said = demo()
    assert f"starting afresh: removed the previous demo's" in said and "--keep keeps them" in said
    assert second["journal_rows"] == first["journal_rows"]
    kept, said = demo("--keep")
    assert "starting afresh" not in said
    assert kept["journal_rows"] == second["journal_rows"] + kept["checkins"]  # --keep added to the journal


def demo_argv(tmp_path, port, *extra):
    argv = ["demo", "--drain-seconds", "30", *extra]
    for s in (f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
              f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens", f"mqtt.port={port}",
              f"console.database_url={tmp_path}/console.sqlite"):
        argv += ["--set", s]
    return argv


def test_the_demo_waits_for_a_running_consumers_confirmations(tmp_path, capsys, broker):
    """Before, the demo ended at the broker's PUBACKs: its last check-ins were never confirmed."""
    from conftest import journal_states, kiosk_config, running_collector

    with running_collector(kiosk_config(tmp_path, broker.port), tmp_path / "collector.sqlite") as collector:
        assert main(demo_argv(tmp_path, broker.port)) == 0
        stored = collector.result.stored
    out, err = capsys.readouterr()
    summary = json.loads(out.splitlines()[-1])
    assert journal_states(tmp_path / "journal.sqlite") == {"confirmed": summary["checkins"]} and stored > 0
    assert summary["uplink"]["outbox"]["published_unconfirmed"] == 0
    assert "every check-in confirmed by the consumer" in err


def test_without_a_consumer_the_demo_says_what_is_unconfirmed(tmp_path, capsys, broker):
    from conftest import journal_states

    assert main(demo_argv(tmp_path, broker.port)) == 0     # bounded: it gives up once nothing is confirmed
    out, err = capsys.readouterr()
    summary = json.loads(out.splitlines()[-1])
    assert journal_states(tmp_path / "journal.sqlite") == {"published": summary["checkins"]}
    assert f"{summary['checkins']} check-ins published but not confirmed by a consumer" in err


def test_demo_console_confirms_the_replay_through_its_own_collector(tmp_path, broker):
    """`kiosk demo --console`: the console's collector runs during the replay and confirms every check-in."""
    from conftest import journal_states
    from kiosk import config
    from kiosk.app import App
    from kiosk.commands.demo import _start_console

    cfg = config.load(config.DEFAULT_CONFIG, [a for a in demo_argv(tmp_path, broker.port)[3:] if a != "--set"])
    console = _start_console(cfg)
    try:
        assert console.collector.client is not None
        result = App(cfg).run(drain_seconds=30, consumer=True)
        assert journal_states(tmp_path / "journal.sqlite") == {"confirmed": result.journal_rows}
        assert len(console.store.ids()) == result.journal_rows
    finally:
        console.stop()

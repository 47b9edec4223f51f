"""The reference consumer and the operator commands: validation, idempotent store, shared load, tail, status."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import (collected_ids, fill_journal, journal_states, kiosk_config, running_collector,
                      wait_for)
from kiosk.fleet.collector import validate
from kiosk.fleet.tail import Tail

EVENT = {"v": 1, "id": "a" * 32, "seq": 1, "ts": "2021-11-15T09:00:00+07:00", "site": "s1", "device": "d1",
         "verdict": "green"}
TOPIC = "kiosk/s1/d1/checkin"


def payload(**changes):
    return json.dumps({**EVENT, **changes}).encode()


def test_validate_accepts_a_well_formed_event_of_its_topic():
    assert validate(payload(), TOPIC)["id"] == "a" * 32


def test_validate_rejects_bad_events():
    assert validate(b"\xff", TOPIC) is None
    assert validate(b"[]", TOPIC) is None
    assert validate(payload(v=2), TOPIC) is None
    assert validate(payload(seq="1"), TOPIC) is None
    assert validate(payload(id=""), TOPIC) is None
    assert validate(payload(device="d9"), TOPIC) is None          # not the publishing device's own event
    assert validate(b" " * 70_000, TOPIC) is None
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):      # Python's json reads them; JSON has none
        assert validate(payload()[:-1] + f', "latency_ms": {number}}}'.encode(), TOPIC) is None, number


def test_kiosk_state_with_non_finite_numbers_is_refused():
    from kiosk.fleet.collector import _json_object

    assert _json_object(b'{"outbox": {"pending": 3}}', 1000) == {"outbox": {"pending": 3}}
    assert _json_object(b'{"outbox": {"pending": NaN}}', 1000) is None
    assert _json_object(b'{"uptime_s": 1e400}', 1000) is None


def test_two_collectors_share_the_load_without_duplicates(tmp_path, broker):
    from kiosk.mqtt.uplink import Uplink

    n = 2_000
    cfg = kiosk_config(tmp_path, broker.port, max_inflight=50)
    fill_journal(cfg.journal.path, n)
    with running_collector(cfg, tmp_path / "a.sqlite", client_id="c-a") as a, \
            running_collector(cfg, tmp_path / "b.sqlite", client_id="c-b") as b:
        up = Uplink(cfg, cfg.journal.path)
        up.start()
        try:
            wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": n}, 60, what="all confirmed")
        finally:
            up.stop()
        assert a.result.stored > 0 and b.result.stored > 0
    got_a, got_b = collected_ids(tmp_path / "a.sqlite"), collected_ids(tmp_path / "b.sqlite")
    assert not set(got_a) & set(got_b) and len(got_a) + len(got_b) == n


def test_tail_prints_a_readable_line_with_hostile_fields_inert():
    from kiosk.fleet.tail import json_line, line

    event = json.loads(payload(direction="in", reason="vaccinated_14d", subject_ref="ab" * 16,
                               subject={"name": "N.V. \x1b]52;c;cm0gLXJmIH4=\x07THU\u202e", "id": "******000001"}))
    text = line(event)
    assert text.startswith("2021-11-15T09:00:00+07:00  s1/d1  in   GREEN    vaccinated_14d  N.V. ")
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b]52" in text and "\\u202e" in text and "ref=abababababab" in text
    assert "\x1b" not in json_line(event) and json.loads(json_line(event)) == event


def test_tail_prints_each_checkin_once(tmp_path):
    cfg = kiosk_config(tmp_path, 1883)
    printed = []
    tail = Tail(cfg, "s1", printed.append)
    assert tail.show(TOPIC, payload())
    assert not tail.show(TOPIC, payload())             # a re-send
    assert not tail.show(TOPIC, b"garbage")
    assert tail.show(TOPIC, payload(id="b" * 32))
    assert [e["id"] for e in printed] == ["a" * 32, "b" * 32]


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, timeout=timeout)


def cli_settings(tmp_path, port):
    return ["--set", "camera.type=none", "--set", 'roster.seed_csv=""', "--set", 'trust.seed_file=""',
            "--set", "site.id=s1", "--set", "site.device=d1", "--set", f"mqtt.port={port}",
            "--set", f'journal.path="{tmp_path / "journal-d1.sqlite"}"']


def test_outbox_status_command(tmp_path):
    cfg = kiosk_config(tmp_path, 1883)
    fill_journal(cfg.journal.path, 4)
    out = run_cli("outbox", "status", *cli_settings(tmp_path, 1883))
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["pending"] == 4 and status["oldest_pending_ts"] and status["last_ack_at"] is None


def test_outbox_status_without_a_journal_says_so(tmp_path):
    out = run_cli("outbox", "status", *cli_settings(tmp_path, 1883))
    assert out.returncode == 74 and "no journal" in out.stderr


@pytest.mark.parametrize("subscription", [[], ["--plain"]], ids=["shared", "plain"])
def test_tail_and_collector_commands(tmp_path, broker, watcher_factory, subscription):
    from kiosk.mqtt.uplink import Uplink

    cfg = kiosk_config(tmp_path, broker.port)
    ids = fill_journal(cfg.journal.path, 5)
    watcher = watcher_factory(broker.port, "kiosk/s1/d1/ack")
    common = cli_settings(tmp_path, broker.port)
    results = {}

    def run(name, *args):
        results[name] = run_cli(name, *common, *args)

    threads = [threading.Thread(target=run, args=("tail", "--json", "--max-events", "5")),
               threading.Thread(target=run, args=("collector", "--db", str(tmp_path / "c.sqlite"),
                                                  "--max-events", "5", *subscription))]
    for t in threads:
        t.start()
    wait_for(lambda: broker_has_subscribers(broker.port), 30, what="tail and collector subscribed")
    up = Uplink(cfg, cfg.journal.path)
    up.start()
    try:
        for t in threads:
            t.join(60)
        acked = watcher.next("kiosk/s1/d1/ack")
    finally:
        up.stop()
    assert results["tail"].returncode == 0, results["tail"].stderr
    assert [json.loads(line)["id"] for line in results["tail"].stdout.splitlines()] == ids
    summary = json.loads(results["collector"].stdout.splitlines()[-1])
    assert summary["stored"] == 5 and summary["invalid"] == 0
    log = results["collector"].stderr                      # the collector says what it does, once
    assert "collector connected to 127.0.0.1" in log and "kiosk/s1/+/checkin" in log
    assert "stored 5 check-ins" in log
    assert set(acked["ids"]) <= set(ids)


def broker_has_subscribers(port):
    """True once two clients besides the watcher are connected ($SYS client count)."""
    import queue as q

    import paho.mqtt.client as mqtt

    got: q.Queue = q.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("$SYS/broker/clients/connected")
    c.on_message = lambda cl, u, m: got.put(int(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        return got.get(timeout=5) >= 4   # watcher, tail, collector and this probe
    except q.Empty:
        return False
    finally:
        c.disconnect()
        c.loop_stop()


def test_example_acl_confines_each_kiosk(tmp_path, broker_factory, watcher_factory):
    """config/mosquitto's ACL: the collector reads through $share and confirms; a kiosk cannot publish as another."""
    import paho.mqtt.client as mqtt

    from kiosk.mqtt.uplink import Uplink

    example = Path(__file__).resolve().parents[1] / "config" / "mosquitto"
    acl = tmp_path / "kiosk.acl"
    acl.write_text((example / "kiosk.acl.example").read_text()
                   + subprocess.run([str(example / "make-acl.sh"), "s1", "d2"], capture_output=True, text=True,
                                    check=True).stdout)
    passwd = tmp_path / "passwd"
    for i, user in enumerate(("kiosk-s1-d1", "kiosk-s1-d2", "collector")):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, "pw-" + user],
                       check=True)
    broker = broker_factory("acl", extra=("allow_anonymous false", f"password_file {passwd}",
                                          f"acl_file {acl}")).start()
    kiosk = kiosk_config(tmp_path, broker.port, username="kiosk-s1-d1", password="pw-kiosk-s1-d1")
    collector_cfg = kiosk_config(tmp_path, broker.port, username="collector", password="pw-collector")
    ids = fill_journal(kiosk.journal.path, 20)
    with running_collector(collector_cfg, tmp_path / "c.sqlite") as collector:
        # d1 tries to publish an event in d2's name: the broker drops it
        rogue = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kiosk-s1-d1-rogue")
        rogue.username_pw_set("kiosk-s1-d1", "pw-kiosk-s1-d1")
        rogue.connect("127.0.0.1", broker.port)
        rogue.loop_start()
        rogue.publish("kiosk/s1/d2/checkin", payload(device="d2", id="f" * 32), qos=1).wait_for_publish(10)
        rogue.disconnect()
        rogue.loop_stop()
        up = Uplink(kiosk, kiosk.journal.path)
        up.start()
        try:
            wait_for(lambda: journal_states(kiosk.journal.path) == {"confirmed": 20}, 30, what="confirmed via ACL")
        finally:
            up.stop()
        assert collector.result.stored == 20
    assert sorted(collected_ids(tmp_path / "c.sqlite")) == sorted(ids)


def test_example_broker_config_runs_with_tls_passwords_and_acl(tmp_path, shipped_broker, uplinks):
    """config/mosquitto/mosquitto.conf as shipped, with only its paths and ports moved into tmp_path."""
    from kiosk.mqtt.uplink import Uplink

    broker = shipped_broker(("kiosk-s1-d1", "collector"))
    kiosk = broker.kiosk(tmp_path, "kiosk-s1-d1")
    ids = fill_journal(kiosk.journal.path, 30)
    with running_collector(broker.local(tmp_path, "collector"), tmp_path / "c.sqlite"):
        uplinks.append(Uplink(kiosk, kiosk.journal.path))
        uplinks[-1].start()
        wait_for(lambda: journal_states(kiosk.journal.path) == {"confirmed": 30}, 30, what="confirmed")
    assert sorted(collected_ids(tmp_path / "c.sqlite")) == sorted(ids)


def test_bad_messages_are_counted_by_kind_and_logged_once_each(tmp_path, broker, watcher_factory, caplog):
    """Not JSON, missing fields, hostile ids, bad times, duplicates: stored once or refused, never a crash."""
    import logging

    from kiosk.fleet.events import EventStore

    cfg = kiosk_config(tmp_path, broker.port)
    watcher = watcher_factory(broker.port, "kiosk/s1/d1/ack")
    good = json.loads(payload())
    messages = [(TOPIC, b"not json"), (TOPIC, payload(id="d" * 32)[:-1] + b', "latency_ms": NaN}'),
                (TOPIC, b"[1, 2]"),
                (TOPIC, payload(seq=None)), (TOPIC, payload(device="d9")),
                (TOPIC, payload(id="b" * 32, ts="yesterday")), (TOPIC, payload(id="c" * 32, verdict="<b>x</b>")),
                ("kiosk/s1/d1/status", b'{"state": "online", "since": Infinity}'),
                ("kiosk/s1/d1/telemetry", b"{}"),
                (TOPIC, json.dumps(good).encode()), (TOPIC, json.dumps(good).encode())]
    with caplog.at_level(logging.WARNING, logger="kiosk.fleet.collector"), \
            running_collector(cfg, tmp_path / "c.sqlite") as collector:
        for topic, body in messages:
            watcher.publish(topic, body)
        wait_for(lambda: collector.result.received == 9 and collector.result.telemetry == 1, 20,
                 what="every message handled")
        acked = watcher.next("kiosk/s1/d1/ack", where=lambda b: good["id"] in b["ids"])
    assert collector.result.rejected == {"not_json": 2, "not_an_object": 1, "missing_seq": 1, "wrong_topic": 1,
                                         "bad_ts": 1, "bad_verdict": 1, "bad_status": 1}
    assert collector.result.stored == 1 and collector.result.duplicates == 1
    assert acked["v"] == 1
    lines = [r.getMessage() for r in caplog.records if "rejected a message" in r.getMessage()]
    assert len(lines) == 7 and not any("NaN" in line for line in lines)      # one per kind, no content
    store = EventStore(tmp_path / "c.sqlite")
    assert store.ids() == [good["id"]]
    store.close()

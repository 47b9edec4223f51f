"""The shipped broker configuration (config/mosquitto) as the fleet uses it: every login has one client id, its
user name, so no login can take another client's id and session; the kiosk's probes, the collectors, the
consoles and the operators' tails work under it, each with a user of its own; commands over the kiosk's limit
never reach a kiosk. Each test starts the shipped mosquitto.conf with only its paths and ports moved."""
from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

from conftest import collected_ids, fill_journal, journal_states, running_collector, stamped, wait_for
from kiosk.fleet.tail import Tail
from kiosk.mqtt.downlink import MAX_COMMAND_BYTES
from kiosk.mqtt.probe import probe, round_trip
from kiosk.mqtt.uplink import Uplink


def online(up: Uplink) -> bool:
    return up.state["state"] == "online"


def connect_as(broker, user: str, client_id: str) -> int:
    """Log in as `user` (TLS listener) asking for `client_id`; the CONNACK's reason code value."""
    answered, outcome = threading.Event(), {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.username_pw_set(user, "pw-" + user)
    client.tls_set(ca_certs=str(broker.ca_file))
    client.on_connect = lambda c, u, f, rc, p: (outcome.update(rc=rc.value), answered.set())
    client.connect("127.0.0.1", broker.tls_port)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
        return outcome["rc"]
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_kiosk_login_cannot_take_the_collectors_or_another_kiosks_client_id(tmp_path, shipped_broker, uplinks):
    broker = shipped_broker(("kiosk-s1-d1", "kiosk-s1-d2", "collector"), acl=(("s1", "d2"),))
    d2 = broker.kiosk(tmp_path, "kiosk-s1-d2")
    fill_journal(d2.journal.path, 0, device="d2")
    with running_collector(broker.local(tmp_path, "collector"), tmp_path / "c.sqlite") as collector:
        closed = []
        collector.client.on_disconnect = lambda *args: closed.append("collector")
        up = Uplink(d2, d2.journal.path)
        uplinks.append(up)
        up.start()
        wait_for(lambda: online(up), 10, what="d2 online")
        for victim in (collector.client_id, "kiosk-s1-d2"):
            assert connect_as(broker, "kiosk-s1-d1", victim) == 0    # accepted: as kiosk-s1-d1, nobody else
        ids = fill_journal(d2.journal.path, 20, device="d2")
        up.notify()
        wait_for(lambda: journal_states(d2.journal.path) == {"confirmed": 20}, 30, what="d2's check-ins confirmed")
        assert closed == [] and up.counters["reconnects"] == 1       # neither was closed nor lost its session
    assert sorted(collected_ids(tmp_path / "c.sqlite")) == sorted(ids)
    assert "as kiosk-s1-d1" in broker.log() and f"as {collector.client_id}" not in broker.log()


def test_check_and_selftest_log_in_as_the_kiosk_and_leave_its_queued_commands(tmp_path, shipped_broker, uplinks,
                                                                               watcher_factory, capsys):
    from kiosk.cli import main

    broker = shipped_broker(("kiosk-s1-d1", "operator"))
    cfg = broker.kiosk(tmp_path, "kiosk-s1-d1")
    fill_journal(cfg.journal.path, 0)
    up = Uplink(cfg, cfg.journal.path)
    up.start()
    wait_for(lambda: online(up), 10, what="the kiosk online once (its persistent session subscribes)")
    up.stop()
    operator = watcher_factory(broker.port, "kiosk/s1/d1/cmd/+/result", login=("operator", "pw-operator"))
    operator.command("kiosk/s1/d1/cmd/ping", {"id": "queued while away"})
    assert probe(cfg) == f"connected to 127.0.0.1:{broker.tls_port}"
    assert round_trip(cfg) == "round trip on kiosk/s1/d1/selftest ok"
    sets = [f"{k}={v}" for k, v in (("site.id", "s1"), ("site.device", "d1"), ("mqtt.enabled", "true"),
                                    ("mqtt.port", broker.tls_port), ("mqtt.tls", "true"),
                                    ("mqtt.ca_file", broker.ca_file), ("mqtt.username", "kiosk-s1-d1"),
                                    ("mqtt.password", "pw-kiosk-s1-d1"), ("journal.path", cfg.journal.path),
                                    ("camera.type", "none"), ("display.type", "none"))]
    assert main(["check", *[a for s in sets for a in ("--set", s)]]) == 0, capsys.readouterr()
    checks = {c["check"]: c for c in map(json.loads, capsys.readouterr().out.splitlines()) if "check" in c}
    assert checks["mqtt"]["ok"], checks["mqtt"]
    up = Uplink(cfg, cfg.journal.path)                 # back: the command waited in its session
    uplinks.append(up)
    up.start()
    wait_for(lambda: len(up.commands) == 1, 10, what="the queued command delivered to the kiosk")
    arrival = up.commands.take()
    assert arrival.name == "ping" and json.loads(arrival.payload)["id"] == "queued while away"
    assert up.commands.take() is None                  # nothing else: the selftest subscription was removed


def test_collectors_and_tails_each_with_their_own_login_split_and_see_the_fleet(tmp_path, shipped_broker, uplinks):
    broker = shipped_broker(("kiosk-s1-d1", "collector", "collector-b", "operator"),
                            acl=(("--role", "collector", "collector-b"),))
    kiosk = broker.kiosk(tmp_path, "kiosk-s1-d1")
    printed: list[dict] = []
    tail = Tail(broker.local(tmp_path, "operator"), "s1", printed.append)
    tail_thread = threading.Thread(target=tail.run, kwargs={"max_events": 300, "until_idle": 30}, daemon=True)
    tail_thread.start()
    with running_collector(broker.local(tmp_path, "collector"), tmp_path / "a.sqlite") as a, \
            running_collector(broker.local(tmp_path, "collector-b"), tmp_path / "b.sqlite") as b:
        wait_for(lambda: "operator" in broker.log(), 10, what="the tail connected")
        ids = fill_journal(kiosk.journal.path, 300)
        up = Uplink(kiosk, kiosk.journal.path)
        uplinks.append(up)
        up.start()
        wait_for(lambda: journal_states(kiosk.journal.path) == {"confirmed": 300}, 60, what="all confirmed")
        assert a.result.stored > 0 and b.result.stored > 0
    tail_thread.join(30)
    got_a, got_b = collected_ids(tmp_path / "a.sqlite"), collected_ids(tmp_path / "b.sqlite")
    assert not set(got_a) & set(got_b) and sorted(got_a + got_b) == sorted(ids)
    assert sorted(e["id"] for e in printed) == sorted(ids)


def test_the_shipped_broker_drops_commands_larger_than_a_kiosk_takes(tmp_path, shipped_broker, uplinks,
                                                                      watcher_factory):
    broker = shipped_broker(("kiosk-s1-d1", "operator"))
    cfg = broker.kiosk(tmp_path, "kiosk-s1-d1")
    fill_journal(cfg.journal.path, 0)
    up = Uplink(cfg, cfg.journal.path)
    uplinks.append(up)
    up.start()
    wait_for(lambda: online(up), 10, what="online")
    operator = watcher_factory(broker.port, "kiosk/s1/d1/cmd/+/result", login=("operator", "pw-operator"))
    operator.publish("kiosk/s1/d1/cmd/roster", b"x" * (MAX_COMMAND_BYTES + 1))
    operator.publish("kiosk/s1/d1/cmd/roster", b"y" * MAX_COMMAND_BYTES)
    last = json.dumps(stamped({"id": "last"})).encode()
    operator.publish("kiosk/s1/d1/cmd/ping", last)
    wait_for(lambda: len(up.commands) == 2, 20, what="the commands the broker passed on")
    assert [up.commands.take().size for _ in range(2)] == [MAX_COMMAND_BYTES, len(last)]


def test_make_acl_prints_the_example_acls_stanzas_for_further_users_of_each_role():
    """A second collector, console or operator gets exactly the rights of the first (no drift between the two)."""
    import subprocess

    from conftest import CONFIG_MOSQUITTO

    example = (CONFIG_MOSQUITTO / "kiosk.acl.example").read_text()
    stanzas = {block.splitlines()[0]: block.splitlines()[1:] for block in example.split("\nuser ")[1:]}
    for role in ("collector", "console", "operator"):
        out = subprocess.run([str(CONFIG_MOSQUITTO / "make-acl.sh"), "--role", role, role], capture_output=True,
                             text=True, check=True).stdout
        printed = out.strip().splitlines()
        assert printed[0] == f"user {role}"
        assert printed[1:] == [line for line in stanzas[role] if line.startswith("topic ")], role
    kiosk = subprocess.run([str(CONFIG_MOSQUITTO / "make-acl.sh"), "s1", "d1"], capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()
    assert kiosk[1:] == [line for line in stanzas["kiosk-s1-d1"] if line.startswith("topic ")]
    for bad in (["--role", "admin", "x"], ["--role", "operator", "a/b"], ["--role", "operator", "#"]):
        assert subprocess.run([str(CONFIG_MOSQUITTO / "make-acl.sh"), *bad], capture_output=True).returncode == 2


def test_the_console_with_its_own_login_stores_the_fleet_and_sends_commands(tmp_path, shipped_broker, uplinks):
    from dataclasses import replace

    from kiosk.fleet.console import ConsoleProcess

    broker = shipped_broker(("kiosk-s1-d1", "console"))
    kiosk = broker.kiosk(tmp_path, "kiosk-s1-d1")
    ids = fill_journal(kiosk.journal.path, 50)
    cfg = broker.local(tmp_path, "console")
    console = ConsoleProcess(replace(cfg, console=replace(cfg.console,
                                                          database_url=str(tmp_path / "console.sqlite"))))
    console.start_collector()
    try:
        wait_for(lambda: console.collector.client is not None, 10, what="the console's collector subscribed")
        up = Uplink(kiosk, kiosk.journal.path)
        uplinks.append(up)
        up.start()
        wait_for(lambda: journal_states(kiosk.journal.path) == {"confirmed": 50}, 30, what="confirmed by the console")
        wait_for(lambda: [d["status"] for d in console.store.devices(["s1"])] == ["online"], 10,
                 what="the kiosk's retained status at the console")
        assert sorted(console.store.ids()) == sorted(ids)
        assert console.collector.publish("kiosk/s1/all/cmd/roster", stamped({"id": "push", "entries": []}))
        wait_for(lambda: len(up.commands) == 1, 10, what="the console's command at the kiosk")
    finally:
        console.stop()
    assert "as console (" in broker.log()         # the broker's id for it: its login, not console-console-8080

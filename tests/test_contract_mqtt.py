"""One behavioural suite for the MqttClient port (kiosk.ports), run over every implementation: paho (the
product's `make_client`) on a real mosquitto, and tests/fakes.py's FakeMqttClient on its FakeBroker.

What is checked is what the uplink relies on: the CONNACK and every other callback arrive on the client's
network thread with the userdata; QoS 1 PUBACKs carry the publish's mid, in order; messages come back to a
subscriber (filters, retain flag); publishing without a connection fails with a code; a clean disconnect is
not a failure and sends no will, an abrupt one is and does; a refused CONNACK and a closed port are told apart.
"""
from __future__ import annotations

import queue
import socket
import subprocess
import threading
import uuid

import pytest

from conftest import free_port, kiosk_config
from fakes import FakeBroker
from kiosk.mqtt.client import make_client

TIMEOUT = 10.0


class PahoWorld:
    """paho clients, built as the product builds them, on a real mosquitto."""

    def __init__(self, broker_factory, tmp_path):
        self.broker_factory, self.tmp_path = broker_factory, tmp_path
        self.port = broker_factory("contract").start().port

    def client(self, client_id=None, *, port=None, password=None):
        cfg = kiosk_config(self.tmp_path, port or self.port, username="u" if password else "",
                           password=password or "")
        return make_client(cfg, client_id=client_id or f"c-{uuid.uuid4().hex[:8]}", clean=True)

    def connect(self, client, port=None):
        client.connect("127.0.0.1", port or self.port, keepalive=30)
        client.loop_start()

    def sever(self, client):
        client.socket().shutdown(socket.SHUT_RDWR)   # the TCP connection ends without a DISCONNECT

    def refusing_client(self):
        folder = self.tmp_path / "auth"
        folder.mkdir()
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), "u", "right"], check=True)
        port = self.broker_factory("auth", extra=("allow_anonymous false",
                                                  f"password_file {folder / 'passwd'}")).start().port
        return self.client(port=port, password="wrong"), port

    def closed_port(self):
        return free_port()

    def check(self):
        pass


class FakeWorld:
    """FakeMqttClient on a FakeBroker."""

    def __init__(self):
        self.broker = FakeBroker()
        self.port = 1883

    def client(self, client_id=None):
        return self.broker.client(client_id=client_id or f"c-{uuid.uuid4().hex[:8]}")

    def connect(self, client, port=None):
        client.connect("127.0.0.1", port or self.port, keepalive=30)
        client.loop_start()

    def sever(self, client):
        self.broker.sever(client)

    def refusing_client(self):
        self.broker.refuse = "Not authorized"
        return self.client(), self.port

    def closed_port(self):
        self.broker.up = False
        return self.port

    def check(self):
        self.broker.settle()
        assert [e for c in self.broker.made for e in c.callback_errors] == []


# every MqttClient implementation: (pytest request, tmp_path) -> its world
WORLDS = {"paho-mosquitto": lambda request, tmp_path: PahoWorld(request.getfixturevalue("broker_factory"), tmp_path),
          "fake": lambda request, tmp_path: FakeWorld()}


@pytest.fixture(params=list(WORLDS))
def world(request, tmp_path):
    made = []
    w = WORLDS[request.param](request, tmp_path)
    real_client = w.client

    def client(*args, **kwargs):
        c = real_client(*args, **kwargs)
        made.append(c)
        return c

    w.client = client
    yield w
    w.check()
    for c in made:
        try:
            c.disconnect()
            c.loop_stop()
        except Exception:
            pass


class Recorder:
    """Every callback of one client as (name, args, thread name), taken by name in the order they came."""

    def __init__(self, client, userdata="userdata"):
        self.events: queue.Queue = queue.Queue()
        self.seen: list[tuple] = []
        client.user_data_set(userdata)

        def record(name):
            def callback(c, u, *args):
                self.events.put((name, (u, *args), threading.current_thread().name))
            return callback

        for name in ("connect", "disconnect", "publish", "message", "subscribe"):
            setattr(client, f"on_{name}", record(name))

    def next(self, name, timeout=TIMEOUT):
        """The oldest callback called `name` not yet taken: (its arguments from the userdata on, thread name)."""
        while True:
            for i, event in enumerate(self.seen):
                if event[0] == name:
                    del self.seen[i]
                    return event[1], event[2]
            try:
                self.seen.append(self.events.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"no on_{name} within {timeout:.0f} s; not taken: {[e[0] for e in self.seen]}")


def connected(world, client_id=None):
    client = world.client(client_id)
    rec = Recorder(client)
    world.connect(client)
    (userdata, flags, reason, _props), _ = rec.next("connect")
    assert not reason.is_failure, reason
    return client, rec


def subscribed(world, *filters, client_id=None):
    client, rec = connected(world, client_id)
    rc, mid = client.subscribe([(f, 1) for f in filters])
    assert rc == 0 and mid is not None
    (_, sub_mid, granted, _), _ = rec.next("subscribe")
    assert sub_mid == mid and [g.is_failure for g in granted] == [False] * len(filters)
    return client, rec


def test_the_connack_arrives_on_the_network_thread_with_the_userdata(world):
    client = world.client()
    rec = Recorder(client, userdata={"link": 1})
    world.connect(client)
    (userdata, flags, reason, _), thread = rec.next("connect")
    assert userdata == {"link": 1} and not reason.is_failure and str(reason) == "Success"
    assert isinstance(flags.session_present, bool)
    assert thread != threading.current_thread().name


def test_a_qos1_publish_is_acknowledged_with_its_mid_and_comes_back(world):
    client, rec = subscribed(world, "contract/#")
    info = client.publish("contract/a", '{"v": 1}', qos=1)
    assert info.rc == 0
    (userdata, mid, reason, _), _ = rec.next("publish")
    assert (userdata, mid) == ("userdata", info.mid) and not reason.is_failure
    info.wait_for_publish(TIMEOUT)
    assert info.is_published()
    (userdata, message), _ = rec.next("message")
    assert (message.topic, message.payload, message.qos, message.retain) == ("contract/a", b'{"v": 1}', 1, False)


def test_pubacks_come_in_publish_order_with_distinct_mids(world):
    client, rec = connected(world)
    infos = [client.publish("contract/window", str(i), qos=1) for i in range(50)]
    assert all(i.rc == 0 for i in infos) and len({i.mid for i in infos}) == 50
    acked = [rec.next("publish")[0][1] for _ in infos]
    assert acked == [i.mid for i in infos]


def test_a_callback_may_publish_and_subscribe(world):
    """The uplink subscribes and announces its status from inside on_connect."""
    watcher, watch = subscribed(world, "contract/status")
    client = world.client()
    rec = Recorder(client)
    client.on_connect = lambda c, u, f, rc, p: (c.subscribe([("contract/cmd", 1)]),
                                                c.publish("contract/status", "online", qos=1, retain=True))
    world.connect(client)
    (_, message), _ = watch.next("message")
    assert message.payload == b"online"
    rec.next("subscribe")
    rec.next("publish")


def test_publishing_without_a_connection_returns_an_error_code(world):
    client = world.client()
    info = client.publish("contract/offline", "x", qos=1)
    assert info.rc != 0


def test_filters_deliver_what_matches_and_only_that(world):
    client, rec = subscribed(world, "kiosk/s1/+/cmd/+", "kiosk/s1/all/#")
    sender, _ = connected(world)
    for topic in ("kiosk/s1/d1/cmd/ping/result", "kiosk/s2/d1/cmd/ping", "kiosk/s1/d1/cmd/roster",
                  "kiosk/s1/all/cmd/config", "kiosk/s1/d1/checkin", "kiosk/s1/all"):
        sender.publish(topic, topic, qos=1).wait_for_publish(TIMEOUT)
    got = []
    while len(got) < 3:   # in order from one sender: the last one marks the end
        (_, message), _ = rec.next("message")
        got.append(message.topic)
    assert got == ["kiosk/s1/d1/cmd/roster", "kiosk/s1/all/cmd/config", "kiosk/s1/all"]


def test_a_retained_message_reaches_a_later_subscriber_flagged_retained(world):
    sender, _ = connected(world)
    sender.publish("contract/state", "offline", qos=1, retain=True).wait_for_publish(TIMEOUT)
    _, rec = subscribed(world, "contract/state")
    (_, message), _ = rec.next("message")
    assert (message.payload, message.retain) == (b"offline", True)


def connected_with_will(world, topic, payload, retain):
    client = world.client()
    client.will_set(topic, payload, qos=1, retain=retain)
    rec = Recorder(client)
    world.connect(client)
    (_, flags, reason, _), _ = rec.next("connect")
    assert not reason.is_failure
    return client, rec


def test_a_clean_disconnect_is_not_a_failure_and_sends_no_will(world):
    _, watch = subscribed(world, "contract/will/#")
    client, rec = connected_with_will(world, "contract/will/a", "gone", retain=False)
    client.disconnect()   # paho's return code races its network thread (NO_CONN once DISCONNECT went out)
    (_, flags, reason, _), _ = rec.next("disconnect")
    assert not reason.is_failure
    marker, _ = connected(world)
    marker.publish("contract/will/marker", "after", qos=1).wait_for_publish(TIMEOUT)
    (_, message), _ = watch.next("message")
    assert message.topic == "contract/will/marker"     # no will came before it


def test_an_abrupt_close_is_a_failure_and_the_broker_sends_the_will(world):
    _, watch = subscribed(world, "contract/will/#")
    client, rec = connected_with_will(world, "contract/will/b", '{"state": "offline"}', retain=True)
    world.sever(client)
    (_, flags, reason, _), _ = rec.next("disconnect")
    assert reason.is_failure
    (_, message), _ = watch.next("message")
    assert (message.topic, message.payload) == ("contract/will/b", b'{"state": "offline"}')
    _, late = subscribed(world, "contract/will/b")
    (_, message), _ = late.next("message")
    assert message.retain is True


def test_a_second_client_with_the_same_id_takes_the_session_over(world):
    first, rec = connected(world, client_id="same-id")
    connected(world, client_id="same-id")
    (_, flags, reason, _), _ = rec.next("disconnect")
    assert reason.is_failure


def test_a_refused_connack_is_a_failure_then_a_disconnect(world):
    client, port = world.refusing_client()
    rec = Recorder(client)
    world.connect(client, port)
    (_, flags, reason, _), _ = rec.next("connect")
    assert reason.is_failure and "Not authorized" in str(reason)
    (_, flags, reason, _), _ = rec.next("disconnect")
    assert reason.is_failure


def test_a_closed_port_raises_connection_refused(world):
    client = world.client()
    with pytest.raises(ConnectionRefusedError):
        client.connect("127.0.0.1", world.closed_port(), keepalive=30)


def test_paho_is_imported_only_inside_kiosk_mqtt():
    """The port's one adapter home: no other module of kiosk/ or drivers/ imports paho (statically or not)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    importers = set()
    for path in [*root.joinpath("kiosk").rglob("*.py"), *root.joinpath("drivers").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value.startswith("paho.") else []   # importlib.import_module("paho...")
            if any(name == "paho" or name.startswith("paho.") for name in names):
                importers.add(path.relative_to(root).as_posix())
    assert importers and all(p.startswith("kiosk/mqtt/") for p in importers), sorted(importers)

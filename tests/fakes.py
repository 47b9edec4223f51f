"""Test fakes, one of each: a manual time source, cameras, a decoder, displays, an indicator, readers, the
signed-certificate verifier, the pipeline's collaborators, a watchdog, and an MQTT broker with its clients.

Fakes stand in for what cannot exist here (a camera sensor, a keyboard-wedge device) or for what a test must
script (a failure at a chosen moment). Where a product part can play the part, tests use it instead: the
product's `kiosk.clock.FixedClock` wherever a Clock is wanted (`ManualTime.clock()` makes one that follows the
test's time), luma's `dummy` device, the replay camera, gpiozero's MockFactory. The contract tests
(`tests/test_contract_*.py`) run the camera, decoder, display and reader fakes through the same suite as the
real adapters of their port; `tests/test_contract_mqtt.py` runs FakeMqttClient (on its in-memory FakeBroker,
firing paho's own callback arguments from a network thread of its own) and paho on a real mosquitto through
one suite. `FaultyClient` wraps any client to make publishing raise inside the uplink's worker. Fixtures live
in `conftest.py`.
"""
from __future__ import annotations

import json
import os
import queue
import select
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

import numpy as np
from paho.mqtt.client import ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from drivers.frames import to_grey
from kiosk.clock import FixedClock
from kiosk.errors import DeviceError, StorageError
from kiosk.model import Decision, ParsedCode

# 09:00 in Ho Chi Minh City on the day of the spec's test vectors.
T0 = datetime(2021, 11, 15, 2, 0, tzinfo=timezone.utc)
SITE_TZ = "Asia/Ho_Chi_Minh"


# ---------------------------------------------------------------- time
class ManualTime:
    """Monotonic and wall time that stand still until the test moves them, and always move together.

    With `manual = ManualTime()`, hand `manual.monotonic` to a part that wants monotonic seconds, `manual.wall`
    for epoch seconds (what `time.time` gives), and `manual.clock()` where the Clock port is wanted (the
    product's FixedClock, following this time).
    `step`: seconds that every `monotonic()` reading moves time on (a loop each of whose rounds is a
    second later, so every retry is due at once).
    """

    def __init__(self, wall: datetime = T0, monotonic: float = 1000.0, *, step: float = 0.0):
        if wall.tzinfo is None:
            raise ValueError("ManualTime needs an aware datetime")
        self._wall = wall
        self._monotonic = monotonic
        self.step = step

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        self.advance(self.step)
        return self._monotonic

    def wall(self) -> float:
        return self._wall.timestamp()

    def clock(self, *, synced: bool = True, tz: str = SITE_TZ) -> FixedClock:
        """The product's FixedClock in the site's zone, moving on as this time is advanced."""
        return FixedClock(self._wall.astimezone(ZoneInfo(tz)), synced, running=True, monotonic=lambda: self._monotonic)


# ---------------------------------------------------------------- cameras
class ScriptedCamera:
    """A camera playing a script: a frame, None (end of input), an exception to raise, or a callable run inside
    read() (on the App's thread) before moving on. After the script, read() gives None."""

    def __init__(self, script: Iterable[Any]):
        self.script = list(script)
        self.starts = self.closes = self.reads = 0

    def start(self) -> None:
        self.starts += 1

    def close(self) -> None:
        self.closes += 1

    def read(self) -> np.ndarray | None:
        self.reads += 1
        while self.script:
            item = self.script.pop(0)
            if callable(item):
                item()
                continue
            if isinstance(item, Exception):
                raise item
            return item
        return None


class StallingCamera:
    """Blank frames until `stall` is set, then read() hangs (a wedged driver) until `release` is set."""

    def __init__(self) -> None:
        self.stall, self.release, self.stalled = threading.Event(), threading.Event(), threading.Event()

    def start(self) -> None:
        pass

    def read(self) -> np.ndarray:
        if self.stall.is_set() and not self.release.is_set():
            self.stalled.set()
            self.release.wait(10.0)
        return np.full((64, 64), 200, np.uint8)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- decoders
class TableDecoder:
    """A decoder that knows the texts of the frames it was given (matched by their pixels, so a colour copy of a
    known frame matches too) and reads nothing in any other frame."""

    name = "table"

    def __init__(self, table: Iterable[tuple[np.ndarray, list[str]]] = ()):
        self._table: list[tuple[np.ndarray, list[str]]] = []
        for frame, texts in table:
            self.add(frame, texts)

    def add(self, frame: np.ndarray, texts: list[str]) -> None:
        grey = to_grey(frame)
        if grey is None:
            raise ValueError("not a frame")
        self._table.append((grey.astype(np.int16), list(texts)))

    def decode(self, frame: Any) -> list[str]:
        grey = to_grey(frame)
        if grey is None:
            return []
        for known, texts in self._table:
            # colour to grey rounds each pixel; anything else is another frame
            if known.shape == grey.shape and int(np.abs(known - grey).max(initial=0)) <= 1:
                return list(texts)
        return []


# ---------------------------------------------------------------- displays
class RecordingDisplay:
    """A display that keeps every image it is shown; `views` names what each one showed ("idle", a verdict)."""

    def __init__(self, size: tuple[int, int] = (128, 64), mode: str = "1"):
        self.size = size
        self.mode = mode
        self.images: list[Any] = []
        self.closes = 0

    @property
    def views(self) -> list[str]:
        return [image.info.get("view") for image in self.images]

    def show(self, image) -> None:
        self.images.append(image)

    def close(self) -> None:
        self.closes += 1


class BlockingDisplay(RecordingDisplay):
    """A slow panel: show() holds until `release` is set; `entered` is set when the first one starts."""

    def __init__(self, size: tuple[int, int] = (128, 64), mode: str = "1"):
        super().__init__(size, mode)
        self.release = threading.Event()
        self.entered = threading.Event()

    def show(self, image) -> None:
        self.entered.set()
        if not self.release.wait(5.0):
            raise TimeoutError("BlockingDisplay was never released")
        super().show(image)


class BrokenDisplay(RecordingDisplay):
    """A panel gone from the bus: show() and close() raise OSError while `broken`; set it False to heal."""

    def __init__(self, size: tuple[int, int] = (128, 64), mode: str = "1"):
        super().__init__(size, mode)
        self.broken = True

    def show(self, image) -> None:
        if self.broken:
            raise OSError("I2C remote I/O error")
        super().show(image)

    def close(self) -> None:
        if self.broken:
            raise OSError("I2C remote I/O error")
        super().close()


class BrokenIndicator:
    """A status light whose pins are gone: every command raises."""

    def flash(self, colour: str, seconds: float) -> None:
        raise RuntimeError("pin gone")

    def off(self) -> None:
        raise RuntimeError("pin gone")

    def close(self) -> None:
        raise RuntimeError("pin gone")


# ---------------------------------------------------------------- readers
class QueueReader:
    """A dedicated reader fed by the test (complete reads put on `texts`); the App may read it on its own thread."""

    def __init__(self) -> None:
        self.texts: queue.SimpleQueue[str] = queue.SimpleQueue()

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, timeout: float) -> str | None:
        try:
            return self.texts.get(timeout=timeout) if timeout > 0 else self.texts.get_nowait()
        except queue.Empty:
            return None


class DeadReader(QueueReader):
    """A reader that was unplugged: every read fails."""

    def read(self, timeout: float) -> str | None:
        raise DeviceError("reader unplugged")


class Typist:
    """Real evdev events as a US keyboard wedge emits them, with its own timestamps (5 ms per key)."""

    _NAMES = ([f"KEY_{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890"]
              + ["KEY_MINUS", "KEY_EQUAL", "KEY_LEFTBRACE", "KEY_RIGHTBRACE", "KEY_BACKSLASH", "KEY_SEMICOLON",
                 "KEY_APOSTROPHE", "KEY_COMMA", "KEY_DOT", "KEY_SLASH", "KEY_GRAVE", "KEY_SPACE"])
    _PLAIN = "abcdefghijklmnopqrstuvwxyz1234567890-=[]\\;',./` "
    _SHIFTED = "ABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()_+{}|:\"<>?~ "
    # character -> (key name, with Shift)
    US = {**{c: (n, False) for c, n in zip(_PLAIN, _NAMES)}, **{c: (n, True) for c, n in zip(_SHIFTED, _NAMES)}}

    def __init__(self, t0: float = 1000.0):
        self.t = t0

    def _ev(self, etype: int, code: int, value: int):
        from evdev import InputEvent

        self.t += 0.0025
        sec, usec = int(self.t), int(round((self.t % 1) * 1e6))
        return InputEvent(sec, usec, etype, code, value)

    def key(self, name: str, shift: bool = False, modifier: str | None = None) -> list:
        from evdev import ecodes

        out = []
        held = ([ecodes.ecodes["KEY_LEFTSHIFT"]] if shift else []) + ([ecodes.ecodes[modifier]] if modifier else [])
        code = ecodes.ecodes[name]
        for h in held:
            out.append(self._ev(ecodes.EV_KEY, h, 1))
        out += [self._ev(ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000), self._ev(ecodes.EV_KEY, code, 1),
                self._ev(ecodes.EV_SYN, 0, 0), self._ev(ecodes.EV_KEY, code, 0), self._ev(ecodes.EV_SYN, 0, 0)]
        for h in held:
            out.append(self._ev(ecodes.EV_KEY, h, 0))
        return out

    def text(self, text: str, enter: str | None = "KEY_ENTER") -> list:
        events = [e for ch in text for e in self.key(*self.US[ch])]
        return events + (self.key(enter) if enter else [])

    def pause(self, seconds: float) -> None:
        self.t += seconds


class StandInDevice:
    """Mimics exactly the evdev.InputDevice calls the reader uses (there is no /dev/uinput here to make a real
    one); readiness goes through a real pipe, so select() works as on a device node. Monkeypatch it over
    `evdev.InputDevice`, `plug()` a path, `push()` events (from `Typist`), and `cleanup()` at the end."""

    instances: dict[str, "StandInDevice"] = {}

    def __init__(self, path: str):
        if path not in self.instances:
            raise FileNotFoundError(2, "No such file or directory", path)
        self.__dict__ = self.instances[path].__dict__

    @classmethod
    def plug(cls, path: str) -> "StandInDevice":
        dev = object.__new__(cls)
        dev.path, dev.grabbed, dev.closed, dev.unplugged = path, False, False, False
        dev.events, dev._r, dev._w = deque(), *os.pipe()
        cls.instances[path] = dev
        return dev

    def push(self, events) -> None:
        self.events.extend(events)
        os.write(self._w, b"!")

    def fileno(self) -> int:
        return self._r

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def close(self) -> None:
        self.closed = True

    def read_one(self):
        if self.unplugged:
            raise OSError(19, "No such device")
        if not self.events:
            while select.select([self._r], [], [], 0)[0]:
                os.read(self._r, 4096)
            return None
        return self.events.popleft()

    def cleanup(self) -> None:
        os.close(self._r)
        os.close(self._w)
        self.instances.pop(self.path, None)


# ---------------------------------------------------------------- the decision core's collaborators
class StubDcc:
    """Stands in for the signed-certificate verifier (it has its own tests): a fixed result; calls recorded."""

    def __init__(self, result: ParsedCode):
        self.result = result
        self.calls: list[tuple[str, datetime]] = []

    def parse(self, text: str, now: datetime) -> ParsedCode:
        self.calls.append((text, now))
        return self.result


class StubDecider:
    """Verdict chosen by the payload's first word; subject_ref = its last word, if it has two or more, so one
    person can show two codes ("green alice", "green cccd alice")."""

    def decide(self, text: str, now: datetime, clock_synced: bool, *, roster_stale: bool = False,
               trust_stale: bool = False, revocation_stale: bool = False) -> Decision:
        words = text.split()
        ref = words[-1] if len(words) > 1 else None
        return Decision(kind="personal_qr", verdict=words[0], reason="r", subject_ref=ref, at=now,
                        clock_synced=clock_synced)


class RecordingFeedback:
    """Feedback that notes ("feedback", verdict) in a shared log, to see what came before the journal write."""

    def __init__(self, log: list):
        self.log = log

    def show(self, decision: Decision) -> None:
        self.log.append(("feedback", decision.verdict))


class FlakyJournal:
    """A journal that keeps rows in memory, noting ("journal", verdict) in the shared log; fails while `fail`."""

    def __init__(self, log: list):
        self.log, self.fail, self.rows = log, False, []
        self.transactions = 0

    def append(self, decision: Decision) -> dict:
        return self.append_many([decision])[0]

    def append_many(self, decisions: list[Decision], note: tuple[str, str] | None = None) -> list[dict]:
        if self.fail:
            raise StorageError("disk full")
        self.transactions += 1
        events = []
        for decision in decisions:
            self.rows.append(decision)
            self.log.append(("journal", decision.verdict))
            events.append({"seq": len(self.rows)})
        return events


# ---------------------------------------------------------------- the service manager
class LoopWatchdog:
    """The watchdog App.run drives: `started` is set by ready() (every device open); progress() counts loop
    rounds and, with `stop_after`, stops `app` after that many."""

    def __init__(self, app: Any = None, stop_after: int | None = None):
        self.started = threading.Event()
        self.app = app
        self.stop_after = stop_after
        self.rounds = 0

    def ready(self) -> None:
        self.started.set()

    def progress(self) -> None:
        self.rounds += 1
        if self.stop_after is not None and self.rounds >= self.stop_after:
            self.app.stop()

    def tick(self) -> None:
        pass

    def report(self, alarms: list[str]) -> None:
        pass


# ---------------------------------------------------------------- MQTT
WAIT_S = 10.0   # longest a fake waits for another thread on a test's behalf


@dataclass(frozen=True)
class Received:
    """One PUBLISH as the fake broker accepted it."""
    client_id: str | None          # None: the broker's own (a Last Will)
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


def topic_matches(subscription: str, topic: str) -> bool:
    """MQTT topic filter matching (`+` one level, `#` the rest; `$` topics only by name)."""
    if topic.startswith("$") and not subscription.startswith("$"):
        return False
    sub, top = subscription.split("/"), topic.split("/")
    for i, level in enumerate(sub):
        if level == "#":
            return True
        if i >= len(top) or (level != "+" and level != top[i]):
            return False
    return len(sub) == len(top)


class FakeBroker:
    """An MQTT broker in memory for FakeMqttClient.

    It has what the uplink relies on: QoS 0/1 routing with `+`/`#` filters, retained messages (delivered to a
    new subscription with the retain flag), PUBACKs (held on demand: `hold_pubacks`, `release_pubacks`), the
    Last Will on an abrupt close (`sever`), a refused CONNACK (`refuse`), a closed port (`up = False`) and a
    session taken over by a second client with the same id. It does not keep persistent sessions (nothing
    is queued for a disconnected client), QoS 2, MQTT 5 properties or keepalive.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.up = True                     # False: connect() raises ConnectionRefusedError, as on a closed port
        self.refuse: str | None = None     # a CONNACK reason name ("Not authorized") refusing every connection
        self.hold_pubacks = False
        self.clients: dict[str, FakeMqttClient] = {}      # connected, by client id
        self.made: list[FakeMqttClient] = []
        self.retained: dict[str, Received] = {}
        self.received: list[Received] = []
        self._held: list[tuple[FakeMqttClient, int, FakePublishInfo]] = []

    # ------------------------------------------------------------------ the tests' side
    def client(self, cfg: Any = None, *, client_id: str | None = None, **_options: Any) -> FakeMqttClient:
        """A new client: the signature of kiosk.mqtt.client.make_client, so this is a client factory."""
        if client_id is None and cfg is not None:
            from kiosk.mqtt.client import default_client_id

            client_id = default_client_id(cfg)
        client = FakeMqttClient(self, client_id or f"fake-{len(self.made) + 1}")
        with self._lock:
            self.made.append(client)
        return client

    def messages(self, subscription: str = "#") -> list[Received]:
        with self._lock:
            return [m for m in self.received if topic_matches(subscription, m.topic)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
        """Wait (no polling) until predicate() holds; it is re-checked whenever the broker's state changes."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"fake broker: timed out after {timeout:.0f} s waiting for {what}")

    def held(self, subscription: str = "#") -> int:
        """QoS 1 messages whose PUBACK is being held."""
        with self._lock:
            return sum(1 for client, mid, info in self._held if topic_matches(subscription, info.topic))

    def release_pubacks(self, n: int | None = None) -> int:
        """Send the first n held PUBACKs (all: None), each on its client's network thread."""
        with self._lock:
            n = len(self._held) if n is None else n
            released, self._held = self._held[:n], self._held[n:]
        for client, mid, info in released:
            client._puback(mid, info)
        return len(released)

    def sever(self, client: FakeMqttClient) -> None:
        """The connection drops without a DISCONNECT: the broker publishes the client's will."""
        with self._lock:
            if self.clients.get(client.client_id) is not client:
                return
            del self.clients[client.client_id]
            self._changed.notify_all()
        client._lost("Unspecified error")
        if client._will is not None:
            self._route(None, client._will)

    def settle(self, timeout: float = WAIT_S) -> None:
        """Wait until every running client's network thread has delivered all its callbacks."""
        with self._lock:
            clients = list(self.made)
        for client in clients:
            client.settle(timeout)

    # ------------------------------------------------------------------ the clients' side
    def _connect(self, client: FakeMqttClient) -> str:
        """The CONNACK reason for `client` (accepted: "Success"); a second client with its id takes over."""
        with self._lock:
            if self.refuse is not None:
                return self.refuse
            old = self.clients.get(client.client_id)
            self.clients[client.client_id] = client
            self._changed.notify_all()
        if old is not None and old is not client:
            old._lost("Unspecified error")
        return "Success"

    def _disconnect(self, client: FakeMqttClient) -> None:
        with self._lock:
            if self.clients.get(client.client_id) is client:
                del self.clients[client.client_id]
            self._changed.notify_all()

    def _connected(self, client: FakeMqttClient) -> bool:
        with self._lock:
            return self.clients.get(client.client_id) is client

    def _subscribe(self, client: FakeMqttClient, subscriptions: list[tuple[str, int]]) -> list[Received]:
        """Record the subscriptions; the retained messages they match."""
        with self._lock:
            for topic_filter, qos in subscriptions:
                client.subscriptions[topic_filter] = qos
            return [m for m in self.retained.values()
                    if any(topic_matches(f, m.topic) for f, _ in subscriptions)]

    def _route(self, sender: FakeMqttClient | None, message: Received) -> None:
        with self._lock:
            self.received.append(message)
            if message.retain:
                if message.payload:
                    self.retained[message.topic] = message
                else:
                    self.retained.pop(message.topic, None)
            targets = [(c, max(q for f, q in c.subscriptions.items() if topic_matches(f, message.topic)))
                       for c in self.clients.values()
                       if any(topic_matches(f, message.topic) for f in c.subscriptions)]
            self._changed.notify_all()
        for target, granted in targets:
            target._deliver(message, min(granted, message.qos), retained=False)

    def _acknowledge(self, client: FakeMqttClient, mid: int, info: FakePublishInfo) -> None:
        with self._lock:
            if self.hold_pubacks:
                self._held.append((client, mid, info))
                self._changed.notify_all()
                return
        client._puback(mid, info)


class FakePublishInfo:
    """paho's MQTTMessageInfo as the uplink uses it."""

    def __init__(self, mid: int, rc: int, topic: str):
        self.mid = mid
        self.rc = rc
        self.topic = topic
        self._published = threading.Event()

    def is_published(self) -> bool:
        return self._published.is_set()

    def wait_for_publish(self, timeout: float | None = None) -> None:
        if self.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"Message publish failed: rc {self.rc}")
        self._published.wait(timeout)


def _reason(packet: int, name: str) -> ReasonCode:
    return ReasonCode(packet, name)


class FakeMqttClient:
    """A client of FakeBroker with paho's calls and callbacks (callback API version 2).

    As with paho, nothing is delivered before `loop_start`; then callbacks run in order on the client's own
    network thread, with the client and the userdata as their first arguments and paho's own ConnectFlags,
    DisconnectFlags, ReasonCode and MQTTMessage objects. The CONNACK comes after connect() and loop_start();
    a refused one calls on_connect with the failure, then on_disconnect. publish() while not connected returns
    rc MQTT_ERR_NO_CONN (paho also keeps such a message for this client object's next connection; the uplink
    never reuses a client). A callback that raises is recorded in `callback_errors` (paho would end its
    network thread), so tests can assert that none did.
    """

    def __init__(self, broker: FakeBroker, client_id: str):
        self.broker = broker
        self.client_id = client_id
        self.on_connect: Callable[..., None] | None = None
        self.on_disconnect: Callable[..., None] | None = None
        self.on_publish: Callable[..., None] | None = None
        self.on_message: Callable[..., None] | None = None
        self.on_subscribe: Callable[..., None] | None = None
        self.subscriptions: dict[str, int] = {}
        self.callback_errors: list[BaseException] = []
        self.max_inflight = 20
        self.connect_args: dict[str, Any] | None = None
        self._userdata: Any = None
        self._will: Received | None = None
        self._mid = 0
        self._lock = threading.Lock()
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0                         # callbacks queued or running
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ MqttClient
    def user_data_set(self, userdata: Any) -> None:
        self._userdata = userdata

    def will_set(self, topic: str, payload: str | bytes | None = None, qos: int = 0, retain: bool = False) -> None:
        self._will = Received(None, topic, _bytes(payload), qos, retain)

    def max_inflight_messages_set(self, inflight: int) -> None:
        self.max_inflight = inflight

    def socket(self) -> object:
        return None

    def connect(self, host: str, port: int = 1883, keepalive: int = 60, *, clean_start: bool | int = 3,
                properties: Any = None) -> int:
        if not self.broker.up:
            raise ConnectionRefusedError(111, "Connection refused")
        self.connect_args = {"host": host, "port": port, "keepalive": keepalive, "clean_start": clean_start}
        self._call(self._connack)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_start(self) -> int:
        if self._thread is not None:
            return MQTTErrorCode.MQTT_ERR_INVAL
        self._thread = threading.Thread(target=self._network, name=f"fake-mqtt-{self.client_id}", daemon=True)
        self._thread.start()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_stop(self) -> int:
        thread, self._thread = self._thread, None
        if thread is None:
            return MQTTErrorCode.MQTT_ERR_INVAL
        self._calls.put(None)
        if thread is not threading.current_thread():
            thread.join(WAIT_S)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def disconnect(self) -> int:
        if not self.broker._connected(self):
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        self.broker._disconnect(self)
        self.subscriptions.clear()
        self._call(lambda: self._fire("on_disconnect", DisconnectFlags(False),
                                      _reason(PacketTypes.DISCONNECT, "Normal disconnection"), None))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def subscribe(self, topic: list[tuple[str, int]]) -> tuple[int, int | None]:
        if not self.broker._connected(self):
            return MQTTErrorCode.MQTT_ERR_NO_CONN, None
        mid = self._next_mid()
        retained = self.broker._subscribe(self, list(topic))
        granted = [_reason(PacketTypes.SUBACK, f"Granted QoS {qos}") for _, qos in topic]
        self._call(lambda: self._fire("on_subscribe", mid, granted, None))
        for message in retained:
            self._deliver(message, message.qos, retained=True)
        return MQTTErrorCode.MQTT_ERR_SUCCESS, mid

    def publish(self, topic: str, payload: str | bytes | None = None, qos: int = 0,
                retain: bool = False) -> FakePublishInfo:
        mid = self._next_mid()
        if not self.broker._connected(self):
            return FakePublishInfo(mid, MQTTErrorCode.MQTT_ERR_NO_CONN, topic)
        info = FakePublishInfo(mid, MQTTErrorCode.MQTT_ERR_SUCCESS, topic)
        self.broker._route(self, Received(self.client_id, topic, _bytes(payload), qos, retain))
        if qos == 0:
            self._puback(mid, info)        # paho calls on_publish once a QoS 0 message is sent
        else:
            self.broker._acknowledge(self, mid, info)
        return info

    # ------------------------------------------------------------------ for tests
    def settle(self, timeout: float = WAIT_S) -> None:
        """Wait until the network thread has delivered every callback queued so far (when it runs)."""
        if self._thread is None:
            return
        with self._idle:
            if not self._idle.wait_for(lambda: self._pending == 0, timeout):
                raise AssertionError(f"{self.client_id}: callbacks still pending after {timeout:.0f} s")

    def fire_puback(self, mid: int) -> None:
        """Call on_publish(mid) on the calling thread now, as paho's network thread may do for a message of
        a connection that has just been replaced (what the uplink's connection numbers are for)."""
        self._fire("on_publish", mid, _reason(PacketTypes.PUBACK, "Success"), None)

    # ------------------------------------------------------------------ the network thread
    def _connack(self) -> None:
        reason = self.broker._connect(self)
        self._fire("on_connect", ConnectFlags(False), _reason(PacketTypes.CONNACK, reason), None)
        if reason != "Success":
            self._fire("on_disconnect", DisconnectFlags(False),
                       _reason(PacketTypes.DISCONNECT, "Unspecified error"), None)

    def _puback(self, mid: int, info: FakePublishInfo) -> None:
        def run() -> None:
            info._published.set()
            self._fire("on_publish", mid, _reason(PacketTypes.PUBACK, "Success"), None)
        self._call(run)

    def _deliver(self, message: Received, qos: int, *, retained: bool) -> None:
        paho_message = MQTTMessage(mid=0, topic=message.topic.encode("utf-8"))
        paho_message.payload, paho_message.qos, paho_message.retain = message.payload, qos, retained
        self._call(lambda: self._fire("on_message", paho_message))

    def _lost(self, reason: str) -> None:
        self.subscriptions.clear()
        self._call(lambda: self._fire("on_disconnect", DisconnectFlags(False),
                                      _reason(PacketTypes.DISCONNECT, reason), None))

    def _next_mid(self) -> int:
        with self._lock:
            self._mid = self._mid % 65535 + 1
            return self._mid

    def _call(self, call: Callable[[], None]) -> None:
        with self._idle:
            self._pending += 1
        self._calls.put(call)

    def _fire(self, name: str, *args: Any) -> None:
        callback = getattr(self, name)
        if callback is None:
            return
        try:
            callback(self, self._userdata, *args)
        except Exception as exc:
            self.callback_errors.append(exc)

    def _network(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            try:
                call()
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


def _bytes(payload: str | bytes | None) -> bytes:
    if payload is None:
        return b""
    return payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)


class Faults:
    """A budget of injected faults shared by every client a factory makes: `wrap(factory)`."""

    def __init__(self, count: int = 1, topic_suffix: str = "/checkin"):
        self.left = count
        self.injected = 0
        self.topic_suffix = topic_suffix
        self._lock = threading.Lock()

    def wrap(self, factory: Callable[..., Any]) -> Callable[..., FaultyClient]:
        return lambda *args, **kwargs: FaultyClient(factory(*args, **kwargs), self)

    def take(self, topic: str) -> bool:
        with self._lock:
            if self.left <= 0 or not topic.endswith(self.topic_suffix):
                return False
            self.left -= 1
            self.injected += 1
            return True


class FaultyClient:
    """Any client (paho or fake) whose publish() on the faults' topic raises while the budget lasts."""

    def __init__(self, inner: Any, faults: Faults):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_faults", faults)

    def publish(self, topic: str, payload: str | bytes | None = None, qos: int = 0, retain: bool = False) -> Any:
        if self._faults.take(topic):
            raise RuntimeError("injected publish fault")
        return self._inner.publish(topic, payload, qos=qos, retain=retain)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)    # callbacks belong to the wrapped client, which calls them

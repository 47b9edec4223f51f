"""The reference consumer: stores every check-in once (event id as key), then confirms to each device.

Several collectors can split a fleet's load with an MQTT shared subscription. An event is acknowledged
to its device only after the transaction holding it has committed, so a crash here means a re-send,
never a loss. paho's callbacks only queue messages; this thread validates, stores and acks.
"""
from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kiosk.config import Config
from kiosk.errors import KioskError, StorageError
from kiosk.uplink import connect_kwargs, describe_error, make_client, tcp_nodelay

log = logging.getLogger("kiosk.collector")

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT,
    received_at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_device_seq ON events (site, device, seq);
"""
ACK_BATCH = 500          # ids per ack message
MAX_EVENT_BYTES = 64 * 1024
REQUIRED = {"id": str, "seq": int, "ts": str, "site": str, "device": str, "verdict": str}


def checkin_filter(cfg: Config, site: str | None) -> str:
    """`kiosk/{site}/+/checkin` (site None: every site) from the configured prefix."""
    return cfg.mqtt.prefix.format(site=site or "+", device="+") + "/checkin"


def validate(payload: bytes, topic: str) -> dict | None:
    """The event, or None when it is not a well-formed check-in published by the device of its topic."""
    if len(payload) > MAX_EVENT_BYTES:
        return None
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(event, dict) or event.get("v") != 1:
        return None
    for key, kind in REQUIRED.items():
        value = event.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None
    if not 0 < len(event["id"]) <= 64:
        return None
    levels = topic.split("/")
    if event["site"] not in levels or event["device"] not in levels:
        return None  # a device may only publish its own events (the broker's ACL enforces the topic)
    return event


class EventStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # made on one thread, then used only by the thread that runs the collector
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.executescript(_DDL)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the collector database {self.path}: {exc}") from None

    def add(self, events: list[dict]) -> int:
        """Store in one committed transaction; returns how many were new."""
        now = time.time()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO events (id, site, device, seq, ts, received_at, event) VALUES (?,?,?,?,?,?,?)",
                [(e["id"], e["site"], e["device"], e["seq"], e["ts"], now, json.dumps(e, ensure_ascii=False))
                 for e in events])
            added = self.db.total_changes - before
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StorageError(f"collector database write failed: {exc} (check free disk space)") from None
        return added

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM events")]

    def close(self) -> None:
        self.db.close()


@dataclass
class CollectorResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    acks_sent: int = 0
    devices: set = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates,
                "invalid": self.invalid, "acks_sent": self.acks_sent, "devices": len(self.devices)}


class Collector:
    def __init__(self, cfg: Config, db_path: str | Path, *, site: str | None = None, group: str = "collectors",
                 client_id: str | None = None, shared: bool = True):
        self.cfg = cfg
        self.store = EventStore(db_path)
        topic = checkin_filter(cfg, site)
        self.subscription = f"$share/{group}/{topic}" if shared else topic
        self.client_id = client_id or f"collector-{group}"
        self._messages: queue.Queue = queue.Queue()
        self._subscribed = threading.Event()
        self._error: str | None = None
        self.result = CollectorResult()
        self.client = None

    # paho callbacks: queue only
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        try:
            if reason_code.is_failure:
                self._error = f"broker refused the connection: {reason_code}"
                return
            tcp_nodelay(client)
            client.subscribe(self.subscription, qos=1)
        except Exception:
            pass

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        """Ready only once the broker holds the subscription: from then on it keeps events for this session."""
        try:
            if any(rc.is_failure for rc in reason_codes):   # a broker may also grant it and filter by ACL
                self._error = f"the broker refused the subscription to {self.subscription} (check its ACL)"
                return
            self._subscribed.set()
        except Exception:
            pass

    def _on_message(self, client, userdata, message) -> None:
        self._messages.put((message.topic, bytes(message.payload)))

    def connect(self, timeout: float = 10.0) -> None:
        client = make_client(self.cfg, client_id=self.client_id, clean=False, auto_reconnect=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        try:
            client.connect(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive,
                           **connect_kwargs(self.cfg))
        except Exception as exc:
            raise KioskError(f"collector cannot reach {self.cfg.mqtt.host}:{self.cfg.mqtt.port}: "
                             f"{describe_error(exc)}") from None
        client.loop_start()
        self.client = client
        if not self._subscribed.wait(timeout):
            self.close()
            raise KioskError(f"collector not subscribed within {timeout:.0f} s: {self._error or 'no CONNACK/SUBACK'}")

    def run(self, *, max_events: int | None = None, until_idle: float | None = None,
            should_stop: Callable[[], bool] = lambda: False, flush_seconds: float = 0.2) -> CollectorResult:
        """Consume until max_events new events are stored, until nothing arrived for until_idle seconds,
        or until should_stop() returns true."""
        last_message = time.monotonic()
        while not should_stop():
            batch = self._take(flush_seconds)
            now = time.monotonic()
            if batch:
                last_message = now
                self._store_and_ack(batch)
            if max_events is not None and self.result.stored >= max_events:
                break
            if until_idle is not None and now - last_message >= until_idle:
                break
        return self.result

    def _take(self, wait: float) -> list[tuple[str, bytes]]:
        try:
            batch = [self._messages.get(timeout=wait)]
        except queue.Empty:
            return []
        while len(batch) < 5000:
            try:
                batch.append(self._messages.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store_and_ack(self, batch: list[tuple[str, bytes]]) -> None:
        events, ack_topics = [], []
        for topic, payload in batch:
            self.result.received += 1
            event = validate(payload, topic)
            if event is None:
                self.result.invalid += 1
                continue
            events.append(event)
            ack_topics.append(topic[: -len("/checkin")] + "/ack")
        if not events:
            return
        added = self.store.add(events)  # committed before any ack leaves
        self.result.stored += added
        self.result.duplicates += len(events) - added
        per_device: dict[str, list[str]] = defaultdict(list)
        for event, topic in zip(events, ack_topics):
            per_device[topic].append(event["id"])
            self.result.devices.add(topic)
        for topic, ids in per_device.items():
            for start in range(0, len(ids), ACK_BATCH):
                self.client.publish(topic, json.dumps({"v": 1, "ids": ids[start:start + ACK_BATCH]}), qos=1)
                self.result.acks_sent += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        self.store.close()


class Tail:
    """The operator's live view: each check-in printed once, de-duplicated by id (the last 100,000 kept)."""

    def __init__(self, cfg: Config, site: str | None, emit: Callable[[dict], None], remember: int = 100_000):
        self.cfg, self.emit, self.remember = cfg, emit, remember
        self.topic = checkin_filter(cfg, site)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self._messages: queue.Queue = queue.Queue()
        self.printed = 0

    def show(self, topic: str, payload: bytes) -> bool:
        event = validate(payload, topic)
        if event is None or event["id"] in self.seen:
            return False
        self.seen[event["id"]] = None
        if len(self.seen) > self.remember:
            self.seen.popitem(last=False)
        self.emit(event)
        self.printed += 1
        return True

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def run(self, *, max_events: int | None = None, until_idle: float | None = None) -> int:
        import uuid

        client = make_client(self.cfg, client_id=f"kiosk-tail-{uuid.uuid4().hex[:8]}", clean=True,
                             auto_reconnect=True)
        client.on_connect = self._on_connect
        client.on_message = lambda c, u, m: self._messages.put((m.topic, bytes(m.payload)))
        try:
            client.connect(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive)
        except Exception as exc:
            raise KioskError(f"cannot reach {self.cfg.mqtt.host}:{self.cfg.mqtt.port}: {describe_error(exc)}") \
                from None
        client.loop_start()
        last = time.monotonic()
        try:
            while max_events is None or self.printed < max_events:
                try:
                    topic, payload = self._messages.get(timeout=0.2)
                except queue.Empty:
                    if until_idle is not None and time.monotonic() - last >= until_idle:
                        break
                    continue
                last = time.monotonic()
                self.show(topic, payload)
        finally:
            client.disconnect()
            client.loop_stop()
        return self.printed

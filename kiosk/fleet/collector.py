"""The reference consumer: stores every check-in once (event id as key), then confirms to each device.

Several collectors can split a fleet's load with an MQTT shared subscription. An event is acknowledged
to its device only after the transaction holding it has committed, so a crash here means a re-send,
never a loss. paho's callbacks only queue messages; this thread validates, stores and acks.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.fleet.events import EventStore
from kiosk.mqtt.client import close, connect_or_explain, make_client
from kiosk.mqtt.topics import ack_topic, checkin_filter

log = logging.getLogger("kiosk.fleet.collector")

ACK_BATCH = 500          # ids per ack message
MAX_EVENT_BYTES = 64 * 1024
REQUIRED = {"id": str, "seq": int, "ts": str, "site": str, "device": str, "verdict": str}


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
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        # paho reconnects by itself; every CONNACK (the first and later ones) subscribes again
        connect_or_explain(self.cfg, client, timeout=timeout, who="collector",
                           on_connected=lambda c: c.subscribe(self.subscription, qos=1))
        self.client = client
        if not self._subscribed.wait(timeout):
            self.close()
            raise KioskError(f"collector not subscribed within {timeout:.0f} s: {self._error or 'no SUBACK'}")

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
            ack_topics.append(ack_topic(topic))
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
            close(self.client)
        self.store.close()

"""The reference consumer: stores every check-in once (event id as key), then confirms to each device.

Several collectors (or console processes) split a fleet's load with an MQTT shared subscription. An event is
acknowledged to its device only after the transaction holding it has committed, so a crash here means a
re-send, never a loss. paho's callbacks only queue messages; this thread validates, stores and acks.

Besides check-ins it records each kiosk's retained status (online, or offline by its Last Will), its
telemetry, and the answers to roster commands. Bad messages are counted by kind; the first of each kind is
logged once (never its content).
"""
from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kiosk import strictjson
from kiosk.config import Config
from kiosk.errors import KioskError, StorageError
from kiosk.fleet.events import EventStore, safe_id
from kiosk.mqtt.client import close, connect_or_explain, make_client
from kiosk.mqtt.topics import ack_topic

log = logging.getLogger("kiosk.fleet.collector")

ACK_BATCH = 500          # ids per ack message
MAX_EVENT_BYTES = 64 * 1024
MAX_STATE_BYTES = 64 * 1024
REQUIRED = {"id": str, "seq": int, "ts": str, "site": str, "device": str, "verdict": str}
PROGRESS_SECONDS = 300.0     # "stored so far" at most this often, and only when it changed


def check(payload: bytes, topic: str) -> tuple[dict[str, Any] | None, str | None]:
    """(event, None) for a well-formed check-in published by the device of its topic, else (None, why)."""
    if len(payload) > MAX_EVENT_BYTES:
        return None, "too_large"
    try:
        event = strictjson.loads(payload)
    except ValueError:              # not UTF-8, not JSON, or NaN / Infinity in it
        return None, "not_json"
    if not isinstance(event, dict):
        return None, "not_an_object"
    if event.get("v") != 1:
        return None, "unknown_version"
    for key, kind in REQUIRED.items():
        value = event.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None, f"missing_{key}"
    if not 0 < len(event["id"]) <= 64:
        return None, "bad_id"
    levels = topic.split("/")
    if event["site"] not in levels or event["device"] not in levels:
        return None, "wrong_topic"   # a device may only publish its own events (the broker's ACL enforces the topic)
    return event, None


def validate(payload: bytes, topic: str) -> dict[str, Any] | None:
    """The event, or None when it is not a well-formed check-in published by the device of its topic."""
    return check(payload, topic)[0]


class TopicMap:
    """The fleet's topic filters from the configured prefix, and the (site, device) a topic belongs to."""

    def __init__(self, cfg: Config, sites: list[str] | None):
        self.template = cfg.mqtt.prefix
        self.sites = sites or ["+"]
        pattern = re.escape(self.template).replace(r"\{site\}", "(?P<site>[^/]+)").replace(
            r"\{device\}", "(?P<device>[^/]+)")
        self._parse = re.compile(f"^{pattern}/(?P<rest>.+)$")

    def filters(self, suffix: str) -> list[str]:
        return [self.template.format(site=s, device="+") + "/" + suffix for s in self.sites]

    def parse(self, topic: str) -> tuple[str, str, str] | None:
        match = self._parse.match(topic)
        return (match["site"], match["device"], match["rest"]) if match else None

    def command(self, site: str, device: str, name: str) -> str:
        return self.template.format(site=site, device=device) + f"/cmd/{name}"


@dataclass
class CollectorResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    acks_sent: int = 0
    statuses: int = 0
    telemetry: int = 0
    results: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    devices: set[str] = field(default_factory=set)

    @property
    def invalid(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates,
                "invalid": self.invalid, "rejected": dict(self.rejected), "acks_sent": self.acks_sent,
                "statuses": self.statuses, "telemetry": self.telemetry, "devices": len(self.devices)}


Listener = Callable[[list[dict[str, Any]]], None]
ResultListener = Callable[[str, str, str, dict[str, Any]], None]   # site, device, command name, answer


class Collector:
    def __init__(self, cfg: Config, database: str | Path | EventStore, *, site: str | None = None,
                 sites: list[str] | None = None, group: str = "collectors", client_id: str | None = None,
                 shared: bool = True, kiosk_state: bool = True):
        self.cfg = cfg
        self.store = database if isinstance(database, EventStore) else EventStore(database)
        self._owns_store = not isinstance(database, EventStore)
        self.topics = TopicMap(cfg, sites if sites is not None else ([site] if site else None))
        share = f"$share/{group}/" if shared else ""
        # check-ins, telemetry and command answers are split across the group; the retained status is not
        # sent on shared subscriptions, so every member subscribes to it plainly (a few bytes per kiosk)
        self.subscriptions = [(share + t, 1) for t in self.topics.filters("checkin")]
        if kiosk_state:
            self.subscriptions += [(share + t, 0) for t in self.topics.filters("telemetry")]
            self.subscriptions += [(share + t, 1) for t in self.topics.filters("cmd/+/result")]
            self.subscriptions += [(t, 1) for t in self.topics.filters("status")]
        self.subscription = self.subscriptions[0][0]
        self.client_id = client_id or f"collector-{group}"
        self._messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = threading.Event()
        self._error: str | None = None
        self.result = CollectorResult()
        self.client: Any = None
        self.listeners: list[Listener] = []
        self.result_listeners: list[ResultListener] = []
        self._progress = (time.monotonic(), 0)

    # paho callbacks: queue only
    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any = None) -> None:
        """Ready only once the broker holds the subscription: from then on it keeps events for this session."""
        try:
            if any(rc.is_failure for rc in reason_codes):   # a broker may also grant it and filter by ACL
                self._error = f"the broker refused the subscription to {self.subscription} (check its ACL)"
                return
            self._subscribed.set()
        except Exception:
            pass

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._messages.put((message.topic, bytes(message.payload)))

    def connect(self, timeout: float = 10.0) -> None:
        client = make_client(self.cfg, client_id=self.client_id, clean=False, auto_reconnect=True)
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        # paho reconnects by itself; every CONNACK (the first and later ones) subscribes again
        connect_or_explain(self.cfg, client, timeout=timeout, who="collector",
                           on_connected=lambda c: c.subscribe(self.subscriptions))
        self.client = client
        if not self._subscribed.wait(timeout):
            self.close()
            raise KioskError(f"collector not subscribed within {timeout:.0f} s: {self._error or 'no SUBACK'}")
        log.info("collector connected to %s:%s as %s, subscribed to %s", self.cfg.mqtt.host, self.cfg.mqtt.port,
                 self.client_id, ", ".join(t for t, _ in self.subscriptions))

    def publish(self, topic: str, body: dict[str, Any], qos: int = 1) -> bool:
        """Send on the collector's connection (acks, and the console's commands to kiosks)."""
        if self.client is None:
            return False
        return bool(self.client.publish(topic, json.dumps(body, ensure_ascii=False), qos=qos).rc == 0)

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
                self._handle(batch)
            self._log_progress(now)
            if max_events is not None and self.result.stored >= max_events:
                break
            if until_idle is not None and now - last_message >= until_idle:
                break
        log.info("collector stopping: stored %d check-ins (%d duplicates, %d rejected)", self.result.stored,
                 self.result.duplicates, self.result.invalid)
        return self.result

    def _log_progress(self, now: float) -> None:
        at, stored = self._progress
        if now - at >= PROGRESS_SECONDS and self.result.stored != stored:
            log.info("collector: stored %d check-ins so far from %d kiosks", self.result.stored,
                     len(self.result.devices))
            self._progress = (now, self.result.stored)

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

    def _reject(self, why: str, topic: str) -> None:
        self.result.rejected[why] += 1
        if self.result.rejected[why] == 1:   # one line per kind; the rest are counted (the summary gives them)
            log.warning("rejected a message on %s: %s (further ones of this kind are counted, not logged)",
                        topic[:200], why)

    def _handle(self, batch: list[tuple[str, bytes]]) -> None:
        checkins: list[tuple[str, bytes]] = []
        for topic, payload in batch:
            where = self.topics.parse(topic)
            if where is None:
                self._reject("unknown_topic", topic)
            elif where[2] == "checkin":
                checkins.append((topic, payload))
            else:
                self._kiosk_state(topic, payload, *where)
        if checkins:
            self._store_and_ack(checkins)

    def _kiosk_state(self, topic: str, payload: bytes, site: str, device: str, rest: str) -> None:
        if not (safe_id(site) and safe_id(device)):
            self._reject("bad_site_or_device", topic)
            return
        body = _json_object(payload, MAX_STATE_BYTES)
        if body is None:
            self._reject(f"bad_{rest.replace('/', '_').replace('+', '')[:40]}", topic)
            return
        try:
            if rest == "status":
                self.store.record_status(site, device, body)
                self.result.statuses += 1
            elif rest == "telemetry":
                self.store.record_telemetry(site, device, body)
                self.result.telemetry += 1
            elif rest.startswith("cmd/") and rest.endswith("/result"):
                self.result.results += 1
                for listener in self.result_listeners:
                    listener(site, device, rest[4:-7], body)
        except StorageError as exc:
            log.error("kiosk state not stored: %s", exc)

    def _store_and_ack(self, batch: list[tuple[str, bytes]]) -> None:
        events, ack_topics = [], []
        for topic, payload in batch:
            self.result.received += 1
            event, why = check(payload, topic)
            if event is None:
                self._reject(why or "invalid", topic)
                continue
            events.append(event)
            ack_topics.append(ack_topic(topic))
        if not events:
            return
        rows, refused = self.store.prepare(events)
        for why in refused.values():
            self._reject(why, "a check-in topic")
        new = self.store.insert(rows)  # committed before any ack leaves
        self.result.stored += len(new)
        self.result.duplicates += len(events) - len(new) - len(refused)
        per_device: dict[str, list[str]] = defaultdict(list)
        for event, topic in zip(events, ack_topics):
            per_device[topic].append(event["id"])
            self.result.devices.add(topic)
        # refused events (a time or verdict the store cannot keep) are confirmed too: a re-send would be refused
        # again, for ever; they stay in the kiosk's journal and are counted here
        for topic, ids in per_device.items():
            for start in range(0, len(ids), ACK_BATCH):
                self.publish(topic, {"v": 1, "ids": ids[start:start + ACK_BATCH]})
                self.result.acks_sent += 1
        if new:
            for listener in self.listeners:
                listener(new)

    def close(self) -> None:
        if self.client is not None:
            close(self.client)
            self.client = None
        if self._owns_store:
            self.store.close()


def _json_object(payload: bytes, limit: int) -> dict[str, Any] | None:
    if len(payload) > limit:
        return None
    try:
        body = strictjson.loads(payload)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None

"""`kiosk tail`: the operator's live view of a site's check-ins, each printed once."""
from __future__ import annotations

import json
import logging
import queue
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable

from kiosk import inert
from kiosk.config import Config
from kiosk.fleet.collector import validate
from kiosk.mqtt.client import close, connect_or_explain, make_client
from kiosk.mqtt.topics import checkin_filter

log = logging.getLogger("kiosk.fleet.tail")

SUBJECT_ORDER = ("name", "id", "birth", "gender")


def line(event: dict[str, Any]) -> str:
    """One readable line: time, site/device, direction, VERDICT, reason, masked subject, ref. Every field is
    made inert (a name can carry terminal escapes or bidi overrides)."""
    subject = event["subject"] if isinstance(event.get("subject"), dict) else {}
    who = " ".join(inert.text(subject[k]) for k in SUBJECT_ORDER if subject.get(k))
    ref = event.get("subject_ref")
    fields = [inert.text(event.get("ts")), f"{inert.text(event.get('site'))}/{inert.text(event.get('device'))}",
              f"{inert.text(event.get('direction') or '?'):<3}", f"{inert.text(event.get('verdict')).upper():<7}",
              inert.text(event.get("reason") or "-"), who or "-"]
    if isinstance(ref, str) and ref:
        fields.append("ref=" + inert.text(ref[:12]))
    if event.get("clock_synced") is False:
        fields.append("(clock not synced)")
    return "  ".join(fields)


def json_line(event: dict[str, Any]) -> str:
    """The event as one JSON line; `ensure_ascii` writes every control and bidi character as an escape."""
    return json.dumps(event, ensure_ascii=True)


class Tail:
    """The operator's live view: each check-in printed once, de-duplicated by id (the last 100,000 kept)."""

    def __init__(self, cfg: Config, site: str | None, emit: Callable[[dict[str, Any]], None], remember: int = 100_000):
        self.cfg, self.emit, self.remember = cfg, emit, remember
        self.topic = checkin_filter(cfg, site)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self._messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.printed = 0
        self._lost = False           # logged once per lost connection, not per reconnect attempt

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

    def _on_connected(self, client: Any) -> None:
        client.subscribe(self.topic, qos=1)
        if self._lost:
            log.warning("kiosk tail: connected again")
            self._lost = False

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        try:
            if not self._lost:
                self._lost = True
                log.warning("kiosk tail: connection lost (%s); reconnecting. A broker that binds client ids to user "
                            "names (the shipped configuration) closes a connection when another one logs in with "
                            "the same user: give each running tail a login of its own", reason_code)
        except Exception:  # callbacks never raise into paho
            pass

    def run(self, *, max_events: int | None = None, until_idle: float | None = None) -> int:
        client = make_client(self.cfg, client_id=f"kiosk-tail-{uuid.uuid4().hex[:8]}", clean=True,
                             auto_reconnect=True)
        client.on_message = lambda c, u, m: self._messages.put((m.topic, bytes(m.payload)))
        client.on_disconnect = self._on_disconnect
        connect_or_explain(self.cfg, client, timeout=10.0, who="kiosk tail", clean=True,
                           on_connected=self._on_connected)
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
            self._lost = True         # our own close: nothing to report
            close(client)
        return self.printed

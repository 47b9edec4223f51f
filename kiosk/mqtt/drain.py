"""The drain: the uplink worker's loop that publishes the outbox in seq order with a bounded window of
QoS 1 messages in flight, records PUBACKs and consumer acks in batches, resends what stays unconfirmed,
enforces the outbox bound and sends telemetry. It owns the worker thread's Outbox connection.
"""
from __future__ import annotations

import json
import logging
import queue
import time
from typing import TYPE_CHECKING

from kiosk.errors import StorageError
from kiosk.mqtt.downlink import parse_ack
from kiosk.stores.checkins import PENDING, event_from_row
from kiosk.stores.outbox import Outbox

if TYPE_CHECKING:
    from kiosk.mqtt.uplink import Uplink

log = logging.getLogger("kiosk.mqtt.uplink")

RESEND_SCAN_EVERY_S = 1.0
BATCH_WAIT_S = 0.005            # longest wait to gather PUBACKs into one transaction


def iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


class Drain:
    """The worker's state: what is in flight on the current connection and where the scans stand."""

    def __init__(self, uplink: Uplink, outbox: Outbox):
        self.up = uplink
        self.outbox = outbox
        self.gen = 0
        self.client = None
        self.inflight: dict[tuple[int, int], str] = {}    # (connection, mid) -> event id
        self.inflight_ids: set[str] = set()
        self.cursor = 0               # highest pending seq sent on this connection
        self.resend_cursor = 0
        self.next_resend_scan = 0.0
        self.next_telemetry = 0.0
        self.next_limit_check = 0.0
        self.sent_this_connection = 0
        self.drain_logged = True

    def run(self) -> None:
        up = self.up
        timer = time.monotonic
        while True:
            if not self._handle(self._collect_events()):
                return
            try:
                if timer() >= self.next_limit_check:
                    self._enforce_limit()
                    self.next_limit_check = timer() + 1.0
                if self.client is not None:
                    self._fill()
                self._check_drained()
                if self.client is not None and timer() >= self.next_telemetry:
                    self.next_telemetry = timer() + up.cfg.mqtt.telemetry_seconds
                    self._telemetry()
            except StorageError as exc:
                self._storage_failed(exc)

    def _collect_events(self) -> list[tuple]:
        """The next events; while messages are in flight, wait a few ms for half the window's PUBACKs so
        one transaction records many (a transaction per PUBACK would cap the drain rate)."""
        events_q = self.up._events
        try:
            events = [events_q.get(timeout=0.5)]
        except queue.Empty:
            return []
        pubacks = int(events[0][0] == "puback")
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(events) < 20_000:
            try:
                event = events_q.get_nowait()
            except queue.Empty:
                if pubacks * 2 >= len(self.inflight) or time.monotonic() >= deadline:
                    break
                try:
                    event = events_q.get(timeout=BATCH_WAIT_S / 5)
                except queue.Empty:
                    continue
            events.append(event)
            pubacks += event[0] == "puback"
        return events

    def _handle(self, events: list[tuple]) -> bool:
        acked: list[str] = []
        confirmed: list[str] = []
        upto: int | None = None
        keep_running = True
        for event in events:
            kind = event[0]
            if kind == "puback":
                event_id = self.inflight.pop((event[1], event[2]), None)
                if event_id is not None:
                    self.inflight_ids.discard(event_id)
                    acked.append(event_id)
            elif kind == "nack":  # MQTT 5 reason code failure: the row stays pending and is sent again later
                event_id = self.inflight.pop((event[1], event[2]), None)
                self.inflight_ids.discard(event_id)
            elif kind == "ack":
                ids, seq = parse_ack(event[1])
                confirmed += ids
                if seq is not None:
                    upto = max(upto or 0, seq)
            elif kind == "connected":
                self.gen, self.client = event[1], event[2]
                self._reset_window()
                self.sent_this_connection = 0
                self.drain_logged = False
                self.next_telemetry = 0.0
            elif kind == "disconnected":
                if event[1] == self.gen:
                    self.client = None
                    self._reset_window()
            elif kind == "stop":
                keep_running = False
        try:
            if acked:
                self.outbox.mark_published(acked)
                self.up.counters["published"] += len(acked)
                self.sent_this_connection += len(acked)
            if confirmed:
                self.up.counters["confirmed"] += self.outbox.confirm(confirmed)
            if upto is not None:
                self.up.counters["confirmed"] += self.outbox.confirm_upto(upto)
        except StorageError as exc:
            self._storage_failed(exc)
        return keep_running

    def _reset_window(self) -> None:
        self.inflight.clear()
        self.inflight_ids.clear()
        self.cursor = 0
        self.resend_cursor = 0
        self.next_resend_scan = 0.0

    def _storage_failed(self, exc: StorageError) -> None:
        """Rows whose state could not be written stay behind the cursor: rescan from the start."""
        if self.up._last_error != str(exc):
            log.error("%s", exc)
        self.up._last_error = str(exc)
        self._reset_window()

    def _fill(self) -> None:
        cfg = self.up.cfg.mqtt
        room = cfg.max_inflight - len(self.inflight)
        if room <= 0:
            return
        now = time.monotonic()
        resend_before = None
        if cfg.confirm and now >= self.next_resend_scan:
            resend_before = self.up.clock() - cfg.resend_after_seconds
        rows = self.outbox.next_batch(room, resend_before, after_seq=self.cursor,
                                      resend_after_seq=self.resend_cursor)
        found_resends = sum(1 for row in rows if row["up_state"] != PENDING)
        if resend_before is not None and found_resends < room - (len(rows) - found_resends):
            # the resend scan reached its end: start over after a pause
            self.resend_cursor = 0
            self.next_resend_scan = now + RESEND_SCAN_EVERY_S
        resends = 0
        for row in rows:
            if row["id"] in self.inflight_ids:
                continue
            info = self.client.publish(self.up.topics.checkin, json.dumps(
                event_from_row(row), ensure_ascii=False), qos=1)
            if info.rc != 0:  # connection going away: the disconnect event resets the window
                break
            self.inflight[(self.gen, info.mid)] = row["id"]
            self.inflight_ids.add(row["id"])
            if row["up_state"] == PENDING:
                self.cursor = max(self.cursor, row["seq"])
            else:
                self.resend_cursor = max(self.resend_cursor, row["seq"])
                resends += 1
        self.up.counters["resent"] += resends

    def _check_drained(self) -> None:
        if self.inflight or self.outbox.has_pending():
            self.up._drained.clear()
            return
        self.up._drained.set()
        if self.client is not None and not self.drain_logged:
            self.drain_logged = True
            log.info("MQTT online, drained %d", self.sent_this_connection)

    def _enforce_limit(self) -> None:
        dropped = self.outbox.enforce_limit()
        if dropped:
            self.up.counters["dropped"] += dropped
            log.warning("outbox full (%d queued allowed): %s marked %d events dropped (still in the journal)",
                        self.outbox.max_rows, self.outbox.full_policy, dropped)
        # The alarm means "full now"; what was dropped stays counted in the journal (status, telemetry).
        self.up._outbox_alarm = self.outbox.full

    def _telemetry(self) -> None:
        up = self.up
        app: dict = {}
        if up.telemetry_source is not None:
            try:
                app = dict(up.telemetry_source())
            except Exception as exc:
                app = {"telemetry_error": type(exc).__name__}
        box = self.outbox.status()
        body = {"v": 1, "ts": iso(up.clock()), "site": up.cfg.site.id, "device": up.cfg.site.device, **app,
                "outbox": {k: box[k] for k in ("pending", "published_unconfirmed", "dropped",
                                                "oldest_pending_age_s", "last_ack_at", "max_rows", "full")},
                "uplink": {"uptime_s": round(up.clock() - up._started_at, 1), "last_error": up._last_error,
                           "alarms": up.alarms(), **up.counters}}
        up._publish(up.topics.telemetry, body, qos=0)

"""The drain: the uplink worker's loop that publishes the outbox in seq order with a bounded window of
QoS 1 messages in flight, records PUBACKs and consumer acks in batches, resends what stays unconfirmed,
enforces the outbox bound and sends telemetry. It owns the worker thread's Outbox connection.

One `step` is one round (events in, then the periodic work), so a test can run the drain round by round
on its own thread; the worker thread runs `step` until the uplink stops.
"""
from __future__ import annotations

import json
import logging
import queue
import time
from typing import TYPE_CHECKING, Any

from kiosk.errors import StorageError
from kiosk.mqtt.downlink import parse_ack
from kiosk.ports import MqttClient, Outbox
from kiosk.stores.checkins import PENDING, event_from_row
from kiosk.timeparse import iso_utc

if TYPE_CHECKING:
    from kiosk.mqtt.uplink import Uplink

log = logging.getLogger("kiosk.mqtt.uplink")

RESEND_SCAN_EVERY_S = 1.0
LIMIT_CHECK_EVERY_S = 1.0
BATCH_WAIT_S = 0.005            # longest wait to gather PUBACKs into one transaction
MAX_BATCH_EVENTS = 20_000


class Drain:
    """The worker's state: what is in flight on the current connection and where the scans stand.

    A drain started while a connection is up (the worker was restarted) adopts that connection; its
    PUBACKs for messages the previous drain sent are ignored, and those rows are sent again.
    """

    def __init__(self, uplink: Uplink, outbox: Outbox):
        self.up = uplink
        self.outbox = outbox
        self.monotonic = uplink.monotonic
        self.gen = 0
        self.client: MqttClient | None = None
        self.inflight: dict[tuple[int, int], str] = {}    # (connection, mid) -> event id
        self.inflight_ids: set[str] = set()
        self.cursor = 0               # highest pending seq sent on this connection
        self.resend_cursor = 0
        self.next_resend_scan = 0.0
        self.next_telemetry = 0.0
        self.next_limit_check = 0.0
        self.sent_this_connection = 0
        self.drain_logged = True
        current = uplink.current_link()
        if current is not None:
            self._connected(*current)

    def step(self, wait: float) -> bool:
        """One round: take the events (waiting up to `wait` s for the first), record them, then enforce the
        outbox bound, fill the window, note a finished drain and send telemetry when due. False after stop."""
        if not self._handle(self._collect_events(wait)):
            return False
        try:
            if self.monotonic() >= self.next_limit_check:
                self._enforce_limit()
                self.next_limit_check = self.monotonic() + LIMIT_CHECK_EVERY_S
            if self.client is not None:
                self._fill()
            self._check_drained()
            if self.client is not None and self.monotonic() >= self.next_telemetry:
                self.next_telemetry = self.monotonic() + self.up.cfg.mqtt.telemetry_seconds
                self._telemetry()
        except StorageError as exc:
            self._storage_failed(exc)
        return True

    def _collect_events(self, wait: float) -> list[tuple[Any, ...]]:
        """The next events; while messages are in flight, wait a few ms for half the window's PUBACKs so
        one transaction records many (a transaction per PUBACK would cap the drain rate). These waits are
        on a real queue, so they use real time, not the drain's (possibly manual) monotonic source."""
        events_q = self.up.events
        try:
            events = [events_q.get(timeout=wait) if wait > 0 else events_q.get_nowait()]
        except queue.Empty:
            return []
        pubacks = int(events[0][0] == "puback")
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(events) < MAX_BATCH_EVENTS:
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

    def _handle(self, events: list[tuple[Any, ...]]) -> bool:
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
                if event_id is not None:
                    self.inflight_ids.discard(event_id)
            elif kind == "ack":
                ids, seq = parse_ack(event[1])
                confirmed += ids
                if seq is not None:
                    upto = max(upto or 0, seq)
            elif kind == "connected":
                if event[1] != self.gen or event[2] is not self.client:   # not the one adopted at start
                    self._connected(event[1], event[2])
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

    def _connected(self, gen: int, client: MqttClient) -> None:
        self.gen, self.client = gen, client
        self._reset_window()
        self.sent_this_connection = 0
        self.drain_logged = False
        self.next_telemetry = 0.0

    def _reset_window(self) -> None:
        self.inflight.clear()
        self.inflight_ids.clear()
        self.cursor = 0
        self.resend_cursor = 0
        self.next_resend_scan = 0.0

    def _storage_failed(self, exc: StorageError) -> None:
        """Rows whose state could not be written stay behind the cursor: rescan from the start."""
        if self.up.last_error != str(exc):
            log.error("%s", exc)
        self.up.last_error = str(exc)
        self._reset_window()

    def _fill(self) -> None:
        assert self.client is not None
        cfg = self.up.cfg.mqtt
        room = cfg.max_inflight - len(self.inflight)
        if room <= 0:
            return
        now = self.monotonic()
        resend_before = None
        if cfg.confirm and now >= self.next_resend_scan:
            resend_before = self.up.wall() - cfg.resend_after_seconds
        rows = self.outbox.next_batch(room, resend_before, after_seq=self.cursor,
                                      resend_after_seq=self.resend_cursor)
        found_resends = sum(1 for row in rows if row["up_state"] != PENDING)
        # fewer due rows than the room left for them: the resend scan reached its end
        scan_ended = resend_before is not None and found_resends < room - (len(rows) - found_resends)
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
        if scan_ended:   # start over from the first row after a pause (after moving the cursor, not before)
            self.resend_cursor = 0
            self.next_resend_scan = now + RESEND_SCAN_EVERY_S

    def _check_drained(self) -> None:
        if self.inflight or self.outbox.has_pending():
            self.up.drained.clear()
            return
        self.up.drained.set()
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
        if self.up.outbox_alarm != self.outbox.full:
            self.up.outbox_alarm = self.outbox.full
            self.up.announce()

    def _telemetry(self) -> None:
        up = self.up
        box = self.outbox.status()
        body = {"v": 1, "ts": iso_utc(up.wall()), "site": up.cfg.site.id, "device": up.cfg.site.device,
                **up.app_snapshot,
                "outbox": {k: box[k] for k in ("pending", "published_unconfirmed", "dropped",
                                                "oldest_pending_age_s", "last_ack_at", "max_rows", "full")},
                "uplink": {"uptime_s": round(up.wall() - up.started_at, 1), "last_error": up.last_error,
                           "alarms": up.alarms(), "worker_restarts": up.worker_restarts, **up.counters}}
        up.publish(up.topics.telemetry, body, qos=0)

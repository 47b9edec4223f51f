"""MQTT uplink: drains the journal's outbox to the broker, at least once, end to end.

Three threads, one concern each:
- the connection thread (ours) connects with backoff and jitter, one fresh paho client per connection;
- paho's network thread runs the callbacks, which only put events on queues (never the database, never raise);
- the worker thread owns the Outbox connection: it publishes in seq order with a bounded window of QoS 1
  messages in flight, records PUBACKs and consumer acks, enforces the outbox bound and sends telemetry.
Downlink commands are queued here and executed on the caller's thread by `run_pending_commands`.
"""
from __future__ import annotations

import json
import logging
import queue
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kiosk import __version__
from kiosk.config import Config
from kiosk.errors import DataError, StorageError
from kiosk.outbox import PENDING, Outbox

log = logging.getLogger("kiosk.uplink")

COMMANDS = ("roster", "trust", "config", "ping")
MAX_COMMAND_BYTES = 4 * 1024 * 1024
MAX_ACK_IDS = 10_000
MAX_QUEUED_COMMANDS = 100
SESSION_EXPIRY_S = 14 * 86400     # MQTT 5: the broker keeps our session (queued downlink) this long
STABLE_CONNECTION_S = 10.0        # a connection that lasted this long resets the backoff
RESEND_SCAN_EVERY_S = 1.0
BATCH_WAIT_S = 0.005            # longest wait to gather PUBACKs into one transaction


# ---------------------------------------------------------------- client and topics
def default_client_id(cfg: Config) -> str:
    return cfg.mqtt.client_id or f"kiosk-{cfg.site.id}-{cfg.site.device}"


def make_client(cfg: Config, *, client_id: str | None = None, clean: bool = False, auto_reconnect: bool = False):
    """A paho 2.x client with the configured protocol, credentials and TLS (not connected).

    auto_reconnect: let paho's loop reconnect by itself (consumers); the kiosk's uplink runs its own loop."""
    import paho.mqtt.client as mqtt

    v5 = cfg.mqtt.protocol == "5"
    kwargs: dict[str, Any] = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
                              "client_id": client_id or default_client_id(cfg),
                              "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                              "reconnect_on_failure": auto_reconnect}
    if not v5:
        kwargs["clean_session"] = clean
    client = mqtt.Client(**kwargs)
    if cfg.mqtt.username:
        client.username_pw_set(cfg.mqtt.username, cfg.mqtt.password or None)
    if auto_reconnect:
        client.reconnect_delay_set(cfg.mqtt.reconnect_min_seconds, cfg.mqtt.reconnect_max_seconds)
    if cfg.mqtt.tls:
        client.tls_set(ca_certs=_opt(cfg.mqtt.ca_file), certfile=_opt(cfg.mqtt.cert_file),
                       keyfile=_opt(cfg.mqtt.key_file))
    return client


def tcp_nodelay(client) -> None:
    """Send small packets (PUBLISH, PUBACK) at once. paho leaves Nagle's algorithm on, which paces a QoS 1
    window at the peer's delayed-ACK timer (measured: ~40 ms per window, 470 events/s instead of thousands)."""
    try:
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # no socket any more, or not a TCP one
        pass


def connect_kwargs(cfg: Config, *, clean: bool = False) -> dict[str, Any]:
    """Extra connect() arguments: MQTT 5 carries clean start and session expiry here."""
    if cfg.mqtt.protocol != "5":
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else SESSION_EXPIRY_S
    return {"clean_start": clean, "properties": props}


def _opt(path) -> str | None:
    return str(path) if path else None


@dataclass(frozen=True)
class Topics:
    prefix: str
    site_prefix: str

    @classmethod
    def of(cls, cfg: Config) -> "Topics":
        return cls(cfg.prefix(), cfg.mqtt.prefix.format(site=cfg.site.id, device="all"))

    @property
    def checkin(self) -> str:
        return f"{self.prefix}/checkin"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}/telemetry"

    @property
    def ack(self) -> str:
        return f"{self.prefix}/ack"

    def result(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}/result"

    def command_name(self, topic: str) -> str | None:
        for base in (self.prefix, self.site_prefix):
            head = f"{base}/cmd/"
            if topic.startswith(head) and "/" not in topic[len(head):]:
                return topic[len(head):]
        return None


def backoff_delay(attempt: int, low: float, high: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: between half and all of min(high, low * 2**(attempt-1))."""
    ceiling = min(high, low * 2 ** max(0, min(attempt - 1, 30)))
    return ceiling * (0.5 + rand() / 2)


def describe_error(exc: BaseException, tls: bool = False) -> str:
    if tls and isinstance(exc, (ConnectionResetError, ssl.SSLEOFError, EOFError)):
        return "TLS handshake failed: the broker closed the connection (is mqtt.port a TLS listener?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS failure: the broker's certificate was not accepted: {exc.verify_message} "
                "(check mqtt.ca_file and that mqtt.host matches the certificate)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc} (check mqtt.ca_file, mqtt.cert_file and the broker's certificate)"
    if isinstance(exc, socket.gaierror):
        return "unknown broker host (check mqtt.host and DNS)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (broker not running or wrong mqtt.port)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "connection timed out (network or firewall)"
    return f"{type(exc).__name__}: {exc}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Link:
    """One connection attempt: paho's callbacks get it as userdata."""
    gen: int
    settled: threading.Event = field(default_factory=threading.Event)   # CONNACK came, or the link ended
    closed: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    online_at: float | None = None


# ---------------------------------------------------------------- the uplink
class Uplink:
    def __init__(self, cfg: Config, journal_path: str | Path, *,
                 telemetry_source: Callable[[], dict] | None = None, clock: Callable[[], float] = time.time):
        from kiosk.journal import event_from_row  # the journal owns the event's shape

        self._event_from_row = event_from_row
        self.cfg = cfg
        self.journal_path = Path(journal_path)
        self.topics = Topics.of(cfg)
        self.telemetry_source = telemetry_source
        self.clock = clock
        self._events: queue.Queue = queue.Queue()           # network thread -> worker
        self._commands: queue.Queue = queue.Queue(MAX_QUEUED_COMMANDS)  # network thread -> app thread
        self._stopping = threading.Event()
        self._drained = threading.Event()
        self._lock = threading.Lock()                        # guards _client
        self._client = None
        self._online = False
        self._since = clock()
        self._last_error: str | None = None
        self._logged_offline: str | None = None
        self._attempts = 0              # failed connection attempts since the last stable connection
        self._retry_delay = 0.0         # the backoff before the next attempt
        self._outbox_alarm = False
        self._started_at = clock()
        self.counters = {"published": 0, "confirmed": 0, "resent": 0, "dropped": 0, "reconnects": 0,
                         "commands": 0, "commands_rejected": 0}
        self._threads: list[threading.Thread] = []

    # -------------------------------------------------------------- public
    def start(self) -> None:
        self._stopping.clear()
        self._started_at = self.clock()
        self._threads = [threading.Thread(target=self._work, name="uplink-worker", daemon=True),
                         threading.Thread(target=self._connect_loop, name="uplink-connect", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing, announce offline (retained) and disconnect. Unacknowledged rows stay pending."""
        self._stopping.set()
        self._events.put(("stop",))
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def notify(self) -> None:
        """A journal row was added: wake the worker. Never blocks."""
        self._drained.clear()
        self._events.put(("wake",))

    def wait_drained(self, timeout: float) -> bool:
        """Wait until nothing is pending (every event PUBACKed). Gives up early while the broker is unreachable."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._drained.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                return True
            if not self._online and self._attempts > 0 and self._last_error:
                return False
        return self._drained.is_set()

    @property
    def state(self) -> dict:
        return {"state": "online" if self._online else "offline", "since": _iso(self._since),
                "last_error": self._last_error, "broker": f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}",
                "attempts": self._attempts, "retry_delay_s": round(self._retry_delay, 2)}

    def alarms(self) -> list[str]:
        out = []
        if not self._online:
            out.append("mqtt_offline")
        if self._outbox_alarm:
            out.append("outbox_full")
        return out

    def status(self) -> dict:
        """State, counters and the outbox's counts (read on the caller's own connection)."""
        outbox = self._open_outbox()
        try:
            box = outbox.status()
        finally:
            outbox.close()
        return {**self.state, **self.counters, "outbox": box}

    def run_pending_commands(self, handlers: dict[str, Callable[[dict], dict]], limit: int = 20) -> int:
        """Execute queued downlink commands on the calling thread; answer each on .../cmd/{name}/result."""
        done = 0
        while done < limit:
            try:
                name, payload = self._commands.get_nowait()
            except queue.Empty:
                break
            done += 1
            answer = self._execute(name, payload, handlers)
            self.counters["commands"] += 1
            if not answer["ok"]:
                self.counters["commands_rejected"] += 1
            self._publish(self.topics.result(name), answer, qos=1)
        return done

    # -------------------------------------------------------------- commands
    def _execute(self, name: str, payload: bytes, handlers: dict[str, Callable[[dict], dict]]) -> dict:
        answer: dict[str, Any] = {"v": 1, "ok": False, "error": None, "result": None}
        if len(payload) > MAX_COMMAND_BYTES:
            answer["error"] = f"command too large ({len(payload)} bytes, limit {MAX_COMMAND_BYTES})"
            return answer
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            answer["error"] = "malformed command: expected a JSON object"
            return answer
        if not isinstance(body, dict):
            answer["error"] = "malformed command: expected a JSON object"
            return answer
        corr = body.get("id")
        if isinstance(corr, (str, int)) and not isinstance(corr, bool) and len(str(corr)) <= 128:
            answer["id"] = corr
        if name == "ping":
            answer.update(ok=True, result={"pong": True, "version": __version__, "ts": _iso(self.clock()),
                                           **self.state})
            return answer
        handler = handlers.get(name) if name in COMMANDS else None
        if handler is None:
            answer["error"] = f"unknown command {name!r} (known: {', '.join(COMMANDS)})"
            return answer
        try:
            answer.update(ok=True, result=handler(body))
        except (DataError, ValueError, TypeError) as exc:
            answer["error"] = str(exc)
        except Exception as exc:  # a handler bug must not stop the kiosk; nothing is logged from the payload
            log.exception("downlink command %s failed", name)
            answer["error"] = f"internal error: {type(exc).__name__}"
        log.info("downlink command %s %s", name, "applied" if answer["ok"] else "rejected")
        return answer

    # -------------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client, link: _Link, flags, reason_code, properties=None) -> None:
        try:
            if reason_code.is_failure:
                link.error = f"broker refused the connection: {reason_code} (check mqtt.username/password and ACL)"
                link.closed.set()
                link.settled.set()
                return
            tcp_nodelay(client)
            client.subscribe([(self.topics.ack, 1), (f"{self.topics.prefix}/cmd/+", 1),
                              (f"{self.topics.site_prefix}/cmd/+", 1)])
            now = self.clock()
            client.publish(self.topics.status, json.dumps(
                {"v": 1, "state": "online", "site": self.cfg.site.id, "device": self.cfg.site.device,
                 "version": __version__, "since": _iso(now)}), qos=1, retain=True)
            link.online_at = now
            self._events.put(("connected", link.gen, client))
            link.settled.set()
        except Exception:  # callbacks never raise into paho
            log.debug("on_connect failed", exc_info=True)

    def _on_disconnect(self, client, link: _Link, flags, reason_code, properties=None) -> None:
        try:
            if link.error is None and link.online_at is None:
                link.error = (f"the broker closed the connection before accepting it ({reason_code}); "
                              + ("with TLS: does it require a client certificate (mqtt.cert_file, mqtt.key_file)?"
                                 if self.cfg.mqtt.tls else "is it an MQTT listener, and does it accept this client?"))
            elif link.error is None:
                link.error = f"connection lost ({reason_code})"
            link.closed.set()
            link.settled.set()   # a link closed before its CONNACK must not be waited for until keepalive
        except Exception:
            pass

    def _on_publish(self, client, link: _Link, mid, reason_code=None, properties=None) -> None:
        try:
            failed = reason_code is not None and getattr(reason_code, "is_failure", False)
            self._events.put(("nack" if failed else "puback", link.gen, mid))
        except Exception:
            pass

    def _on_message(self, client, link: _Link, message) -> None:
        try:
            if message.topic == self.topics.ack:
                self._events.put(("ack", bytes(message.payload)))
                return
            name = self.topics.command_name(message.topic)
            if name:
                self._commands.put_nowait((name, bytes(message.payload)))
        except queue.Full:
            log.warning("downlink command dropped: %d commands already waiting", MAX_QUEUED_COMMANDS)
        except Exception:
            log.debug("on_message failed", exc_info=True)

    # -------------------------------------------------------------- connection thread
    def _connect_loop(self) -> None:
        gen = 0
        while not self._stopping.is_set():
            gen += 1
            link = _Link(gen)
            client = None
            try:
                client = self._new_client(link)
                client.connect(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive,
                               **connect_kwargs(self.cfg))
                client.loop_start()
            except Exception as exc:  # OSError, ssl.SSLError, ValueError from a bad TLS file, ...
                link.error = describe_error(exc, self.cfg.mqtt.tls)
                client = None
            if client is not None:
                if not link.settled.wait(self.cfg.mqtt.keepalive) and link.error is None:
                    link.error = "no CONNACK from the broker (TLS port without mqtt.tls?)"
                if link.online_at is not None:
                    self._went_online(client)
                    while not (link.closed.wait(0.5) or self._stopping.is_set()):
                        pass
                self._close(client, link)
            self._events.put(("disconnected", gen))
            if self._stopping.is_set():
                break
            self._went_offline(link.error or "disconnected")
            if link.online_at is not None and self.clock() - link.online_at >= STABLE_CONNECTION_S:
                self._attempts = 0
            self._attempts += 1
            self._retry_delay = backoff_delay(self._attempts, self.cfg.mqtt.reconnect_min_seconds,
                                              self.cfg.mqtt.reconnect_max_seconds)
            self._stopping.wait(self._retry_delay)

    def _new_client(self, link: _Link):
        client = make_client(self.cfg)
        client.user_data_set(link)
        client.max_inflight_messages_set(self.cfg.mqtt.max_inflight + 10)  # + status, telemetry, results
        client.max_queued_messages_set(0)
        client.will_set(self.topics.status, json.dumps(
            {"v": 1, "state": "offline", "site": self.cfg.site.id, "device": self.cfg.site.device,
             "reason": "connection lost"}), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _close(self, client, link: _Link) -> None:
        with self._lock:
            self._client = None
        self._online = False
        try:
            if self._stopping.is_set() and not link.closed.is_set():
                info = client.publish(self.topics.status, json.dumps(
                    {"v": 1, "state": "offline", "site": self.cfg.site.id, "device": self.cfg.site.device,
                     "reason": "stopped", "since": _iso(self.clock())}), qos=1, retain=True)
                info.wait_for_publish(2.0)
            client.disconnect()
            client.loop_stop()
        except Exception:
            log.debug("closing the MQTT client failed", exc_info=True)

    def _went_online(self, client) -> None:
        with self._lock:
            self._client = client
        self._online = True
        self._since = self.clock()
        self._logged_offline = None
        self.counters["reconnects"] += 1
        log.info("MQTT online: %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)

    def _went_offline(self, reason: str) -> None:
        if self._online:
            self._since = self.clock()
        self._online = False
        self._last_error = reason
        if reason != self._logged_offline:
            log.warning("MQTT offline: %s", reason)
            self._logged_offline = reason

    def _publish(self, topic: str, body: dict, qos: int) -> bool:
        with self._lock:
            client = self._client
        if client is None:
            return False
        return client.publish(topic, json.dumps(body, ensure_ascii=False), qos=qos).rc == 0

    # -------------------------------------------------------------- worker thread
    def _open_outbox(self) -> Outbox:
        return Outbox(self.journal_path, max_rows=self.cfg.mqtt.outbox_max_rows,
                      full_policy=self.cfg.mqtt.outbox_full_policy, final_on_puback=not self.cfg.mqtt.confirm,
                      clock=self.clock)

    def _work(self) -> None:
        try:
            outbox = self._open_outbox()
        except StorageError as exc:
            self._last_error = str(exc)
            log.error("uplink cannot start: %s", exc)
            return
        try:
            _Drain(self, outbox).run()
        except Exception:
            log.exception("uplink worker stopped")
        finally:
            outbox.close()


class _Drain:
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
                self.up._event_from_row(row), ensure_ascii=False), qos=1)
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
        body = {"v": 1, "ts": _iso(up.clock()), "site": up.cfg.site.id, "device": up.cfg.site.device, **app,
                "outbox": {k: box[k] for k in ("pending", "published_unconfirmed", "dropped",
                                                "oldest_pending_age_s", "last_ack_at", "max_rows", "full")},
                "uplink": {"uptime_s": round(up.clock() - up._started_at, 1), "last_error": up._last_error,
                           "alarms": up.alarms(), **up.counters}}
        up._publish(up.topics.telemetry, body, qos=0)


def parse_ack(payload: bytes) -> tuple[list[str], int | None]:
    """`{"ids": [...]}` and/or `{"upto_seq": N}` from the consumer. Anything else is ignored."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        log.warning("ignored a malformed ack on the downlink")
        return [], None
    if not isinstance(body, dict):
        return [], None
    ids = body.get("ids")
    ids = [i for i in ids[:MAX_ACK_IDS] if isinstance(i, str) and 0 < len(i) <= 64] if isinstance(ids, list) else []
    seq = body.get("upto_seq")
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None
    return ids, seq

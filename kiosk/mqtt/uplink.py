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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kiosk import __version__
from kiosk.config import Config
from kiosk.errors import StorageError
from kiosk.mqtt.backoff import backoff_delay
from kiosk.mqtt.client import connect_kwargs, describe_error, make_client, refused, tcp_nodelay
from kiosk.mqtt.downlink import Handler, execute
from kiosk.mqtt.drain import Drain, iso
from kiosk.mqtt.topics import Topics
from kiosk.stores.outbox import Outbox

log = logging.getLogger("kiosk.mqtt.uplink")

MAX_QUEUED_COMMANDS = 100
STABLE_CONNECTION_S = 10.0        # a connection that lasted this long resets the backoff


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
        return {"state": "online" if self._online else "offline", "since": iso(self._since),
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

    def run_pending_commands(self, handlers: dict[str, Handler], limit: int = 20) -> int:
        """Execute queued downlink commands on the calling thread; answer each on .../cmd/{name}/result."""
        done = 0
        while done < limit:
            try:
                name, payload = self._commands.get_nowait()
            except queue.Empty:
                break
            done += 1
            answer = execute(name, payload, {"ping": self._ping, **handlers})
            self.counters["commands"] += 1
            if not answer["ok"]:
                self.counters["commands_rejected"] += 1
            self._publish(self.topics.result(name), answer, qos=1)
        return done

    # -------------------------------------------------------------- commands
    def _ping(self, body: dict) -> dict:
        return {"pong": True, "version": __version__, "ts": iso(self.clock()), **self.state}

    # -------------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client, link: _Link, flags, reason_code, properties=None) -> None:
        try:
            if reason_code.is_failure:
                link.error = refused(reason_code)
                link.closed.set()
                link.settled.set()
                return
            tcp_nodelay(client)
            client.subscribe(self.topics.subscriptions)
            now = self.clock()
            client.publish(self.topics.status, json.dumps(
                {"v": 1, "state": "online", "site": self.cfg.site.id, "device": self.cfg.site.device,
                 "version": __version__, "since": iso(now)}), qos=1, retain=True)
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
                     "reason": "stopped", "since": iso(self.clock())}), qos=1, retain=True)
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
                      wall=self.clock)

    def _work(self) -> None:
        try:
            outbox = self._open_outbox()
        except StorageError as exc:
            self._last_error = str(exc)
            log.error("uplink cannot start: %s", exc)
            return
        try:
            Drain(self, outbox).run()
        except Exception:
            log.exception("uplink worker stopped")
        finally:
            outbox.close()

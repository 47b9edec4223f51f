"""MQTT uplink: drains the journal's outbox to the broker, at least once, end to end.

Three threads, one concern each:
- the connection thread connects with backoff and jitter, one fresh client per connection, built by the
  client factory (paho by default; `kiosk.ports.MqttClient` is what is used of it);
- the client's network thread runs the callbacks, which only put events on queues (never the database,
  never raise);
- the worker thread owns the Outbox connection and runs the `Drain`.
The connection and worker threads are supervised: one that raises is restarted with backoff and raises the
`uplink_stopped` alarm until it works again. Downlink commands are queued here and executed on the app
thread by `run_pending_commands` (a slow one hands its work on and is answered when it is done); what the
app reports in telemetry comes from the snapshot it hands over with `set_app_snapshot` (so no uplink thread
touches the roster or trust stores).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

from kiosk import __version__
from kiosk.config import Config
from kiosk.mqtt.backoff import backoff_delay
from kiosk.mqtt.client import connect_kwargs, describe_error, make_client, refused, tcp_nodelay
from kiosk.mqtt.downlink import Admission, Applying, Command, CommandQueue, execute
from kiosk.mqtt.drain import Drain
from kiosk.mqtt.supervisor import Supervised
from kiosk.mqtt.topics import Topics
from kiosk.ports import MqttClient
from kiosk.stores.outbox import COALESCE_PUBLISHED_S, Outbox
from kiosk.timeparse import iso_utc

log = logging.getLogger("kiosk.mqtt.uplink")

STABLE_CONNECTION_S = 10.0        # a connection that lasted this long resets the backoff
EVENT_WAIT_S = 0.5                # longest the worker waits for an event before its periodic work
STOPPED = "uplink_stopped"
# wait_confirmed: no change this long, and no consumer is known to run (PUBACKs reach the file within the coalescing)
CONSUMER_SILENCE_S = COALESCE_PUBLISHED_S + 1.5
LIVENESS_POLL_S = 0.25            # how often the connection thread looks at the link's silence
OWN_ALARMS = frozenset({"mqtt_offline", "outbox_full", STOPPED})   # the uplink's; the app's snapshot may lag

D = TypeVar("D")
ClientFactory = Callable[[Config], MqttClient]


@dataclass
class _Link:
    """One connection attempt: the client's callbacks get it as userdata."""
    gen: int
    client: MqttClient | None = None
    settled: threading.Event = field(default_factory=threading.Event)   # CONNACK came, or the link ended
    closed: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)     # closed, or stop() ends it
    error: str | None = None
    online_at: float | None = None
    heard_at: float = field(default_factory=time.monotonic)   # the broker's last packet that we saw
    asked_at: float | None = None                              # a liveness question (SUBSCRIBE) went out


# ---------------------------------------------------------------- the uplink
class Uplink:
    def __init__(self, cfg: Config, journal_path: str | Path, *, client_factory: ClientFactory = make_client,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.journal_path = Path(journal_path)
        self.topics = Topics.of(cfg)
        self.client_factory = client_factory
        self.wall = wall
        self.monotonic = monotonic
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()          # network thread -> worker
        self.commands = CommandQueue(monotonic=monotonic)                  # network thread -> app thread
        self._applying: list[Applying] = []                                # app thread: answered when done
        self._stopping = threading.Event()
        self.drained = threading.Event()
        self._lock = threading.Lock()    # guards _current, _announced and the order of status messages
        self._current: _Link | None = None     # the connection whose CONNACK came
        self._attempt: _Link | None = None     # the connection thread's current attempt
        self._gen = 0                          # connection number, never reused (PUBACKs carry it)
        self._was_online = False               # for the log and `since`: online is `_current is not None`
        self._since = wall()
        self.last_error: str | None = None
        self._logged_offline: str | None = None
        self._attempts = 0              # failed connection attempts since the last stable connection
        self._retry_delay = 0.0         # the backoff before the next attempt
        self.outbox_alarm = False
        self._announced: list[str] | None = None   # alarms in the last retained status
        self._app: Mapping[str, Any] = MappingProxyType({})
        self.started_at = wall()
        self.counters = {"published": 0, "confirmed": 0, "resent": 0, "dropped": 0, "reconnects": 0,
                         "commands": 0, "commands_rejected": 0, "commands_dropped": 0, "silent_links": 0}
        self._workers: list[Supervised] = []

    # -------------------------------------------------------------- public
    def start(self) -> None:
        self._stopping.clear()
        self.events = queue.Queue()     # nothing left from an earlier run (its "stop")
        self.started_at = self.wall()

        def delay(failures: int) -> float:
            return backoff_delay(failures, self.cfg.mqtt.reconnect_min_seconds, self.cfg.mqtt.reconnect_max_seconds)

        # on_change: a worker died or works again; the retained status says so now (published from the
        # supervisor's thread while the link is up), the screen at the app's next loop, telemetry next time
        common: dict[str, Any] = {"stopping": self._stopping, "delay": delay, "on_change": self.announce}
        self._workers = [Supervised("uplink-worker", self.run_worker, **common),
                         Supervised("uplink-connect", self.run_connection, on_failure=self._abandon_attempt,
                                    **common)]
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing, announce offline (retained) and disconnect. Unacknowledged rows stay pending."""
        self._stopping.set()
        attempt = self._attempt
        if attempt is not None:          # wake the connection thread now
            attempt.ended.set()
            attempt.settled.set()
        self.events.put(("stop",))
        for worker in self._workers:
            worker.join(timeout)

    def notify(self) -> None:
        """A journal row was added: wake the worker. Never blocks."""
        self.drained.clear()
        self.events.put(("wake",))

    def wait_drained(self, timeout: float) -> bool:
        """Wait until nothing is pending (every event PUBACKed). Gives up early while the broker is unreachable."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.drained.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                return True
            if not self.online and self._attempts > 0 and self.last_error:
                return False
        return self.drained.is_set()

    def wait_confirmed(self, timeout: float, *, consumer: bool) -> int:
        """After `wait_drained`: wait until the consumer confirmed every event (mqtt.confirm), at most `timeout`
        seconds; how many are still unconfirmed. Without a consumer known to run (`consumer` False) it gives up
        once nothing was confirmed for CONSUMER_SILENCE_S: nobody is confirming."""
        deadline = time.monotonic() + timeout
        outbox = self.open_outbox()
        try:
            last, quiet_since = -1, time.monotonic()
            while True:
                box = outbox.status()
                left = int(box["pending"]) + int(box["published_unconfirmed"])
                now = time.monotonic()
                if left != last:
                    last, quiet_since = left, now
                if left == 0 or now >= deadline or (not consumer and now - quiet_since >= CONSUMER_SILENCE_S):
                    return left
                self._stopping.wait(0.1)
        finally:
            outbox.close()

    def set_app_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        """The app thread's latest counters and alarms for telemetry and the retained status. Replaced whole
        (one reference swap), read-only: the uplink threads never call back into the app."""
        changed = snapshot.get("alarms") != self._app.get("alarms")
        self._app = MappingProxyType(dict(snapshot))
        if changed:
            self.announce()

    @property
    def app_snapshot(self) -> Mapping[str, Any]:
        return self._app

    @property
    def online(self) -> bool:
        """The broker accepted the current connection (its CONNACK came) and it has not ended."""
        return self._current is not None

    @property
    def state(self) -> dict[str, Any]:
        return {"state": "online" if self.online else "offline", "since": iso_utc(self._since),
                "last_error": self.last_error, "broker": f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}",
                "attempts": self._attempts, "retry_delay_s": round(self._retry_delay, 2)}

    def alarms(self) -> list[str]:
        out = []
        if not self.online:
            out.append("mqtt_offline")
        if self.outbox_alarm:
            out.append("outbox_full")
        if any(worker.down for worker in self._workers):
            out.append(STOPPED)
        return out

    def status(self) -> dict[str, Any]:
        """State, counters and the outbox's counts (read on the caller's own connection)."""
        outbox = self.open_outbox()
        try:
            box = outbox.status()
        finally:
            outbox.close()
        return {**self.state, **self.counters, "worker_restarts": self.worker_restarts, "outbox": box}

    def run_pending_commands(self, handlers: Mapping[str, Command[D]], deps: D, admission: Admission,
                             limit: int = 20) -> int:
        """Execute queued downlink commands on the calling thread; answer each on .../cmd/{name}/result (one
        whose handler handed its work to another thread once that work is done, checked on every call)."""
        for applying in [item for item in self._applying if item.work.done()]:
            self._applying.remove(applying)
            self._answer(applying.name, applying.finish())
        done = 0
        while done < limit:
            arrival = self.commands.take()
            if arrival is None:
                break
            done += 1
            outcome = execute(arrival, handlers, deps, admission)
            if isinstance(outcome, Applying):
                self._applying.append(outcome)
            else:
                self._answer(arrival.name, outcome)
        self.counters["commands_dropped"] = self.commands.dropped
        return done

    def _answer(self, name: str, answer: dict[str, Any]) -> None:
        self.counters["commands"] += 1
        if not answer["ok"]:
            self.counters["commands_rejected"] += 1
        self.publish(self.topics.result(name), answer, qos=1)

    def current_link(self) -> tuple[int, MqttClient] | None:
        """(connection number, client) of the connection whose CONNACK came, None while offline."""
        with self._lock:
            link = self._current
        return None if link is None or link.client is None else (link.gen, link.client)

    @property
    def worker_restarts(self) -> int:
        return sum(worker.restarts for worker in self._workers)

    def publish(self, topic: str, body: Mapping[str, Any], qos: int, retain: bool = False) -> bool:
        """Publish on the current connection (any thread); False while offline."""
        link = self.current_link()
        if link is None:
            return False
        return link[1].publish(topic, json.dumps(body, ensure_ascii=False), qos=qos, retain=retain).rc == 0

    def announce(self) -> None:
        """Publish the retained status again when the kiosk's alarms changed since the last one (any thread:
        the app's when its alarms change, the worker's for a full outbox, a supervisor's for a worker)."""
        alarms = self._status_alarms()
        with self._lock:
            link = self._current
            if link is None or link.client is None or alarms == self._announced:
                return
            self._announced = alarms
            link.client.publish(self.topics.status, self._status_body(alarms, link), qos=1, retain=True)

    # -------------------------------------------------------------- status
    def _status_alarms(self) -> list[str]:
        """The kiosk's alarms as the retained status carries them: the app's (from its last snapshot) and the
        uplink's own as they are now (not `mqtt_offline`: the status says online)."""
        app = set(self._app.get("alarms", ())) - OWN_ALARMS
        return sorted(app | (set(self.alarms()) - {"mqtt_offline"}))

    def _status_body(self, alarms: list[str], link: _Link) -> str:
        return json.dumps({"v": 1, "state": "online", "site": self.cfg.site.id, "device": self.cfg.site.device,
                           "version": __version__, "since": iso_utc(link.online_at or self.wall()),
                           "alarms": alarms})

    def _offline_body(self, reason: str) -> str:
        return json.dumps({"v": 1, "state": "offline", "site": self.cfg.site.id, "device": self.cfg.site.device,
                           "reason": reason, "since": iso_utc(self.wall())})

    # -------------------------------------------------------------- client callbacks (network thread)
    def _on_connect(self, client: Any, link: _Link, flags: Any, reason_code: Any, properties: Any = None) -> None:
        try:
            if reason_code.is_failure:
                link.error = refused(reason_code)
                link.closed.set()
                link.ended.set()
                link.settled.set()
                return
            link.heard_at = time.monotonic()
            mine = link.client     # the factory's object (a wrapper, in tests), not paho's own `client`
            assert mine is not None
            tcp_nodelay(mine)
            mine.subscribe(self.topics.subscriptions)
            link.online_at = self.wall()
            alarms = self._status_alarms()
            with self._lock:   # the worker sees the connection as an event and, if it restarts, here
                self._current = link
                self._since = link.online_at
                self._announced = alarms
                mine.publish(self.topics.status, self._status_body(alarms, link), qos=1, retain=True)
                self.events.put(("connected", link.gen, mine))
            link.settled.set()
        except Exception:  # callbacks never raise into the client's loop
            log.debug("on_connect failed", exc_info=True)

    def _on_disconnect(self, client: Any, link: _Link, flags: Any, reason_code: Any, properties: Any = None) -> None:
        try:
            if link.error is None and link.online_at is None:
                link.error = (f"the broker closed the connection before accepting it ({reason_code}); "
                              + ("with TLS: does it require a client certificate (mqtt.cert_file, mqtt.key_file)?"
                                 if self.cfg.mqtt.tls else "is it an MQTT listener, and does it accept this client?"))
            elif link.error is None:
                link.error = f"connection lost ({reason_code})"
            link.closed.set()
            link.ended.set()
            link.settled.set()   # a link closed before its CONNACK must not be waited for until keepalive
        except Exception:
            pass

    def _on_publish(self, client: Any, link: _Link, mid: int, reason_code: Any = None, properties: Any = None) -> None:
        try:
            link.heard_at = time.monotonic()
            failed = reason_code is not None and getattr(reason_code, "is_failure", False)
            self.events.put(("nack" if failed else "puback", link.gen, mid))
        except Exception:
            pass

    def _on_subscribe(self, client: Any, link: _Link, mid: int, reason_codes: Any, properties: Any = None) -> None:
        link.heard_at = time.monotonic()    # the answer to a liveness question (or to the first SUBSCRIBE)

    def _on_message(self, client: Any, link: _Link, message: Any) -> None:
        try:
            link.heard_at = time.monotonic()
            if message.topic == self.topics.ack:
                self.events.put(("ack", bytes(message.payload)))
                return
            name = self.topics.command_name(message.topic)
            if name:   # its size is checked here, before it is queued (a command too large is kept as its size)
                self.commands.offer(name, message.payload)
        except Exception:
            log.debug("on_message failed", exc_info=True)

    # -------------------------------------------------------------- connection thread
    def run_connection(self, working: Callable[[], None] = lambda: None) -> None:
        """The connection thread's body: connect, stay until the link ends, back off, again; until stop()."""
        while not self._stopping.is_set():
            self._gen += 1
            link = self._attempt = _Link(self._gen)
            if self._stopping.is_set():      # stop() came before it could see this attempt
                break
            try:
                link.client = self._new_client(link)
                link.client.connect(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive,
                                    **connect_kwargs(self.cfg))
                link.client.loop_start()
                started = True
            except Exception as exc:  # OSError, ssl.SSLError, ValueError from a bad TLS file, ...
                link.error = describe_error(exc, self.cfg.mqtt.tls)
                started = False
            if started:
                if not link.settled.wait(self.cfg.mqtt.keepalive) and link.error is None:
                    link.error = "no CONNACK from the broker (TLS port without mqtt.tls?)"
                if link.online_at is not None:
                    self._went_online()
                    working()
                    while not (link.ended.wait(LIVENESS_POLL_S) or self._stopping.is_set() or self._silent(link)):
                        pass
                self._close(link, "stopped" if self._stopping.is_set() else None)
            self._attempt = None
            self.events.put(("disconnected", link.gen))
            working()
            if self._stopping.is_set():
                break
            self._went_offline(link.error or "disconnected")
            if link.online_at is not None and self.wall() - link.online_at >= STABLE_CONNECTION_S:
                self._attempts = 0
            self._attempts += 1
            self._retry_delay = backoff_delay(self._attempts, self.cfg.mqtt.reconnect_min_seconds,
                                              self.cfg.mqtt.reconnect_max_seconds)
            self._stopping.wait(self._retry_delay)

    def _silent(self, link: _Link) -> bool:
        """True when the broker has not answered for a keepalive period: a half-open link (bytes stop, no FIN,
        no RST), which paho alone notices only after up to two periods (a PINGREQ one period after the last
        packet, then one more period without its PINGRESP), and TCP after many minutes. A PINGRESP has no
        callback, so after half a period of silence the uplink asks a question it sees answered: it subscribes
        to its ack topic again (the broker replaces the subscription with itself and answers with a SUBACK;
        the flow of acks is not interrupted, MQTT 3.1.1 section 3.8.4). Noticed within a period and a poll."""
        keepalive = float(self.cfg.mqtt.keepalive)
        now = time.monotonic()
        silent = now - link.heard_at
        if silent >= keepalive:
            link.error = (f"no answer from the broker for {silent:.1f} s (mqtt.keepalive {keepalive:g} s): "
                          "the link stopped carrying data without closing")
            self.counters["silent_links"] += 1
            return True
        if silent >= keepalive / 2 and (link.asked_at is None or link.asked_at < link.heard_at):
            link.asked_at = now
            if link.client is not None:
                link.client.subscribe([(self.topics.ack, 1)])
        return False

    def _abandon_attempt(self) -> None:
        """The connection thread died: close the client it left and tell the worker the link is gone."""
        link, self._attempt = self._attempt, None
        if link is not None:
            self._close(link, "restarting")
            self.events.put(("disconnected", link.gen))
        self._went_offline("the connection thread failed and is restarting")

    def _new_client(self, link: _Link) -> MqttClient:
        client = self.client_factory(self.cfg)
        client.user_data_set(link)
        client.max_inflight_messages_set(self.cfg.mqtt.max_inflight + 10)  # + status, telemetry, results
        client.will_set(self.topics.status, self._offline_body("connection lost"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _close(self, link: _Link, reason: str | None) -> None:
        """Disconnect and stop the client; with a reason, the retained status says offline first."""
        with self._lock:
            if self._current is link:
                self._current = None
        client = link.client
        if client is None:
            return
        try:
            if reason is not None and link.online_at is not None and not link.closed.is_set():
                client.publish(self.topics.status, self._offline_body(reason), qos=1,
                               retain=True).wait_for_publish(2.0)
            client.disconnect()
            client.loop_stop()
        except Exception:
            log.debug("closing the MQTT client failed", exc_info=True)

    def _went_online(self) -> None:
        self._was_online = True
        self._logged_offline = None
        self.counters["reconnects"] += 1
        log.info("MQTT online: %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)

    def _went_offline(self, reason: str) -> None:
        if self._was_online:
            self._since = self.wall()
            self._was_online = False
        self.last_error = reason
        if reason != self._logged_offline:
            log.warning("MQTT offline: %s", reason)
            self._logged_offline = reason

    # -------------------------------------------------------------- worker thread
    def open_outbox(self) -> Outbox:
        return Outbox(self.journal_path, max_rows=self.cfg.mqtt.outbox_max_rows,
                      full_policy=self.cfg.mqtt.outbox_full_policy, final_on_puback=not self.cfg.mqtt.confirm,
                      wall=self.wall, coalesce_published_s=COALESCE_PUBLISHED_S)

    def run_worker(self, working: Callable[[], None] = lambda: None) -> None:
        """The worker thread's body: the drain, on the thread's own Outbox connection, until stop().
        A StorageError opening the outbox, or anything the drain does not handle, is the supervisor's."""
        outbox = self.open_outbox()
        try:
            drain = Drain(self, outbox)
            while drain.step(EVENT_WAIT_S):
                working()
        finally:
            outbox.close()

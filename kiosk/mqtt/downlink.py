"""The downlink envelope: commands to a kiosk and consumer acks, both hostile input until validated.

A command is a JSON object on `{prefix}/cmd/{name}` (or the site's `all/cmd/{name}`), at most
MAX_COMMAND_BYTES, checked on arrival (a larger one is never queued, only answered). Every command carries
its issue time `issued` (ISO-8601 with offset) and a `version`, an integer that grows with every command of
its kind (the issue time in milliseconds, `stamp`, is what the product's senders use). The kiosk keeps the
last accepted version of each kind across restarts (`kiosk.ports.CommandLedger`) and refuses, with the
reason, a command whose version is not newer (a replay, a duplicate QoS 1 delivery, an old command queued
behind a newer one) or, while its clock is synchronised, one issued longer ago than `mqtt.command_max_age_hours`
(what a kiosk with a lost ledger still refuses) or from the future. Its optional `id` (a correlation id) comes
back in the answer on `.../cmd/{name}/result`. A handler validates the whole payload before it changes
anything and raises DataError to refuse it. A handler whose work is slow (a roster replacement) may return a
Future instead of its result, the work going on off the app thread (kiosk.worker): `execute` then gives an
`Applying`, answered once the Future is done (`Applying.finish`) with the same correlation id and the same
ok/error answer it would have had; its version counts as taken from the start (a replay meanwhile is refused)
and is recorded once the work succeeded.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, TypeVar

from kiosk import strictjson
from kiosk.errors import DataError
from kiosk.ports import Clock, CommandLedger
from kiosk.timeparse import iso_utc

log = logging.getLogger("kiosk.mqtt.downlink")

MAX_COMMAND_BYTES = 4 * 1024 * 1024
MAX_QUEUED_COMMANDS = 100
MAX_QUEUED_COMMAND_BYTES = 16 * 1024 * 1024    # four commands of the largest size
MAX_ACK_IDS = 10_000
MAX_CORRELATION_ID = 128
MAX_VERSION = 2 ** 63 - 1                      # what SQLite (the roster's meta) and every JSON reader keep exactly
FUTURE_SKEW_S = 300.0                          # a sender's clock this far ahead of the kiosk's is still believed
DROP_QUIET_S = 10.0                            # a burst of dropped commands ends after this long without a drop
ENVELOPE_KEYS = frozenset({"v", "id", "version", "issued"})

D = TypeVar("D")
Result = dict[str, Any]
Command = Callable[[dict[str, Any], D], "Result | Future[Result]"]   # (payload, dependencies) -> result


def stamp(body: Mapping[str, Any], wall: float, after: int = 0) -> dict[str, Any]:
    """`body` with the envelope a sender adds: `issued` now and `version` the time in milliseconds (or one
    more than `after`, the last version this sender used of the kind, should its clock have stepped back)."""
    return {**body, "version": max(int(wall * 1000), after + 1), "issued": iso_utc(wall)}


# ---------------------------------------------------------------- arrival (network thread) and the queue
@dataclass(frozen=True)
class Arrival:
    """A command as the network thread received it; `payload` None when it was too large to keep."""

    name: str
    payload: bytes | None
    size: int


class CommandQueue:
    """Commands waiting for the app thread, bounded in count and in bytes. `offer` runs on paho's network
    thread and never raises; a command over MAX_COMMAND_BYTES is kept as its size only, to be answered.

    Drops are logged once per burst: the first drop, then the count when no drop came for DROP_QUIET_S
    (a flood of 10,000 commands once wrote 9,040 warning lines)."""

    def __init__(self, max_count: int = MAX_QUEUED_COMMANDS, max_bytes: int = MAX_QUEUED_COMMAND_BYTES,
                 monotonic: Callable[[], float] = time.monotonic):
        self.max_count, self.max_bytes = max_count, max_bytes
        self.monotonic = monotonic
        self.dropped = 0                 # in all, for telemetry
        self._items: deque[Arrival] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._burst = 0                  # drops in the current burst
        self._last_drop = 0.0

    def offer(self, name: str, payload: bytes) -> bool:
        size = len(payload)
        arrival = Arrival(name, bytes(payload) if size <= MAX_COMMAND_BYTES else None, size)
        kept = len(arrival.payload or b"")
        with self._lock:
            self._end_burst()
            if len(self._items) >= self.max_count or self._bytes + kept > self.max_bytes:
                self.dropped += 1
                self._burst += 1
                self._last_drop = self.monotonic()
                if self._burst == 1:
                    log.warning("downlink command dropped: %d commands (%d bytes) already waiting; further drops "
                                "are counted and logged when they stop", len(self._items), self._bytes)
                return False
            self._items.append(arrival)
            self._bytes += kept
        return True

    def take(self) -> Arrival | None:
        with self._lock:
            self._end_burst()
            if not self._items:
                return None
            arrival = self._items.popleft()
            self._bytes -= len(arrival.payload or b"")
        return arrival

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _end_burst(self) -> None:
        if self._burst and self.monotonic() - self._last_drop >= DROP_QUIET_S:
            log.warning("downlink: %d commands were dropped while the queue was full", self._burst)
            self._burst = 0


# ---------------------------------------------------------------- admission: versions and issue times
class Admission:
    """Which commands may run: versions only forward per kind (the ledger, kept across restarts; a version
    whose work is still going on counts as taken), and issue times within `max_age_s` of the kiosk's clock
    while it is synchronised. Used on the app thread only."""

    def __init__(self, ledger: CommandLedger, clock: Clock, max_age_s: float):
        self.ledger, self.clock, self.max_age_s = ledger, clock, max_age_s
        self._applying: dict[str, int] = {}       # kind -> the greatest version whose work goes on

    def refusal(self, name: str, version: int, issued: datetime) -> str | None:
        last = self.ledger.last(name)
        if name in self._applying and version <= self._applying[name]:
            return (f"{name} version {version} refused: version {self._applying[name]} is being applied; "
                    "a new command needs a greater version")
        if last is not None and version <= last[0]:
            how = "repeated" if version == last[0] else "older than the last accepted"
            return (f"{name} version {version} refused: {how} (version {last[0]}, issued {last[1].isoformat()}); "
                    "a new command needs a greater version")
        if not self.clock.synced():
            return None           # no clock to judge by: the version order alone decides
        now = self.clock.now()
        if issued < now - timedelta(seconds=self.max_age_s):
            return (f"{name} refused: issued {issued.isoformat()}, more than {self.max_age_s / 3600:g} hours ago "
                    f"(this kiosk's clock: {now.isoformat(timespec='seconds')}); send it again")
        if issued > now + timedelta(seconds=FUTURE_SKEW_S):
            return (f"{name} refused: issued {issued.isoformat()}, in the future (this kiosk's clock: "
                    f"{now.isoformat(timespec='seconds')}); check the sender's clock")
        return None

    def applying(self, name: str, version: int) -> None:
        self._applying[name] = max(version, self._applying.get(name, version))

    def applied(self, name: str, version: int, issued: datetime, ok: bool) -> None:
        """The work of a command is over: its version recorded when it succeeded."""
        if self._applying.get(name) == version:
            del self._applying[name]
        if ok:
            self.ledger.accept(name, version, issued)


def envelope(body: Mapping[str, Any]) -> tuple[int, datetime]:
    """(version, issued) of a command; DataError saying what a sender must add."""
    version, issued = body.get("version"), body.get("issued")
    problems = []
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        problems.append("'version' must be a whole number that grows with every command of this kind "
                        "(e.g. the issue time in milliseconds)")
    when = None
    if isinstance(issued, str) and len(issued) <= 40:
        try:
            when = datetime.fromisoformat(issued)
        except ValueError:
            pass
    if when is None or when.tzinfo is None:
        problems.append("'issued' must be the issue time, ISO-8601 with its offset (2021-11-15T09:00:00+07:00)")
    if problems:
        raise DataError("command refused: " + "; ".join(problems))
    assert isinstance(version, int) and when is not None
    return version, when


# ---------------------------------------------------------------- running one command
@dataclass
class Applying:
    """A command whose handler handed its work on (a Future): answered by `finish` once `work` is done."""

    name: str
    answer: dict[str, Any]
    work: Future[Result]
    version: int
    issued: datetime
    admission: Admission = field(repr=False)

    def finish(self) -> dict[str, Any]:
        self.answer.update(ok=False, result=None)
        answer = _answer(self.name, self.answer, lambda: self.work.result(timeout=0))
        self.admission.applied(self.name, self.version, self.issued, bool(answer["ok"]))
        return answer


def execute(arrival: Arrival, handlers: Mapping[str, Command[D]], deps: D,
            admission: Admission) -> dict[str, Any] | Applying:
    """Run one command through its handler with `deps`: the answer to publish (`ok`, `error`, `result`, `id`),
    or an `Applying` when the handler's work goes on elsewhere. The command's version is recorded (the ledger)
    only when its work succeeded."""
    name = arrival.name
    answer: dict[str, Any] = {"v": 1, "ok": False, "error": None, "result": None}
    if arrival.payload is None:
        answer["error"] = f"command too large ({arrival.size} bytes, limit {MAX_COMMAND_BYTES})"
        return answer
    try:
        body = strictjson.loads(arrival.payload)
    except ValueError:                       # UnicodeDecodeError is one; so are NaN and Infinity
        body = None
    if not isinstance(body, dict):
        answer["error"] = "malformed command: expected a JSON object"
        return answer
    corr = body.get("id")
    if isinstance(corr, (str, int)) and not isinstance(corr, bool) and len(str(corr)) <= MAX_CORRELATION_ID:
        answer["id"] = corr
    handler = handlers.get(name)
    if handler is None:
        answer["error"] = f"unknown command {name!r} (known: {', '.join(sorted(handlers))})"
        return answer
    try:
        version, issued = envelope(body)
    except DataError as exc:
        answer["error"] = str(exc)
        return answer
    refusal = admission.refusal(name, version, issued)
    if refusal is not None:
        log.info("downlink command %s version %d refused: not newer or out of time", name, version)
        answer["error"] = refusal
        return answer
    answer = _answer(name, answer, lambda: handler(body, deps))
    if isinstance(answer["result"], Future):
        admission.applying(name, version)
        return Applying(name, answer, answer["result"], version, issued, admission)
    admission.applied(name, version, issued, bool(answer["ok"]))
    return answer


def _answer(name: str, answer: dict[str, Any], call: Callable[[], Result | Future[Result]]) -> dict[str, Any]:
    try:
        answer.update(ok=True, result=call())
        if isinstance(answer["result"], Future):
            return answer  # answered by `Applying.finish` once done
    except (DataError, ValueError, TypeError) as exc:
        answer["error"] = str(exc)
    except Exception as exc:  # a handler bug must not stop the kiosk
        # The exception's text may quote the payload (personal data): log only its type and where it came from.
        where = "; ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__))
        log.error("downlink command %s failed with %s (%s)", name, type(exc).__name__, where)
        answer["error"] = f"internal error: {type(exc).__name__}"
    log.info("downlink command %s %s", name, "applied" if answer["ok"] else "rejected")
    return answer


def parse_ack(payload: bytes) -> tuple[list[str], int | None]:
    """`{"ids": [...]}` and/or `{"upto_seq": N}` from the consumer. Anything else is ignored."""
    try:
        body = strictjson.loads(payload)
    except ValueError:
        log.warning("ignored a malformed ack on the downlink")
        return [], None
    if not isinstance(body, dict):
        return [], None
    ids = body.get("ids")
    ids = [i for i in ids[:MAX_ACK_IDS] if isinstance(i, str) and 0 < len(i) <= 64] if isinstance(ids, list) else []
    seq = body.get("upto_seq")
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None
    return ids, seq

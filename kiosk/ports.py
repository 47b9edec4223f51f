"""Ports: the only way the core reaches hardware, storage, the network and its own replaceable parts.

Every dependency injected into the core (pipeline, feedback, decider, app, device guard, stores' users) is
typed with one of these Protocols, so a reader and mypy can follow a frame or an event past a constructor.
Adapters live in `drivers/` (one per library, importing it lazily), `kiosk/stores/` and `kiosk/mqtt/`; the
composition root `kiosk.app` builds them. Tests plug in fakes that satisfy the same Protocols.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, TypeAlias, TypeVar, runtime_checkable

if TYPE_CHECKING:  # types for annotations only: importing ports costs nothing at run time
    import numpy as np
    import numpy.typing as npt
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from PIL import Image

    from kiosk.identity import SiteKey
    from kiosk.model import Decision, ParsedCode, Person
    from kiosk.mqtt.downlink import Admission, Command
    from kiosk.stores.revocation import Batch
    from kiosk.stores.roster_rows import RosterEntry
    from kiosk.stores.trust import Signer

    Frame: TypeAlias = npt.NDArray[np.uint8]  # a greyscale frame: 2-D uint8, the camera's Y plane
    Event: TypeAlias = dict[str, Any]  # a journaled check-in as published (kiosk.stores.checkins)

D = TypeVar("D")  # what downlink command handlers are given (kiosk.remote.Dependencies)


# ---------------------------------------------------------------- input devices
class Device(Protocol):
    """Something that is opened and closed: a camera or a reader, as the app's DeviceGuard sees it."""

    def start(self) -> None:
        """Open the device. Raises DeviceError naming the fix."""

    def close(self) -> None: ...


@runtime_checkable
class Camera(Device, Protocol):
    """A source of greyscale frames."""

    def read(self) -> Frame | None:
        """Next frame; None at end of input (replay). Raises DeviceError on failure."""


@runtime_checkable
class Reader(Device, Protocol):
    """A dedicated QR reader that delivers decoded text (serial, HID keyboard wedge)."""

    def read(self, timeout: float) -> str | None:
        """One complete read (terminator stripped), or None when nothing arrived within timeout."""


class Decoder(Protocol):
    name: str

    def decode(self, frame: Frame) -> list[str]:
        """Texts of the QR codes in a grey frame. Never a text the decoder is not sure of."""


# ---------------------------------------------------------------- output devices
class Display(Protocol):
    @property
    def size(self) -> tuple[int, int]: ...

    @property
    def mode(self) -> str:
        """Pillow mode the panel takes: "1" monochrome or "RGB"."""

    def show(self, image: Image.Image) -> None: ...

    def close(self) -> None: ...


class Indicator(Protocol):
    """Status light: green/red LED pair or one RGB LED."""

    def flash(self, colour: str, seconds: float) -> None:
        """Light `colour` ("green", "red", "amber") for `seconds`, in the background."""

    def off(self) -> None: ...

    def close(self) -> None: ...


class Buzzer(Protocol):
    def beep(self, on_time: float, off_time: float, n: int) -> None:
        """Beep n times, in the background (never blocks the caller)."""

    def close(self) -> None: ...


class Relay(Protocol):
    def pulse(self, seconds: float) -> None:
        """Energise the door/turnstile relay for `seconds`, in the background."""

    def close(self) -> None: ...


class Button(Protocol):
    when_pressed: Callable[[], None] | None

    def close(self) -> None: ...


class Gpio(Protocol):
    """The parts on GPIO pins; each is None when not configured."""

    @property
    def indicator(self) -> Indicator | None: ...

    @property
    def buzzer(self) -> Buzzer | None: ...

    @property
    def relay(self) -> Relay | None: ...

    @property
    def button(self) -> Button | None: ...


# ---------------------------------------------------------------- time
class Clock(Protocol):
    """Wall-clock time as the site's rules see it. Durations use monotonic seconds (`monotonic` parameters)."""

    def now(self) -> datetime:
        """Aware datetime in the site's time zone."""

    def synced(self) -> bool:
        """True when system time is known to be right (NTP synchronised)."""


# ---------------------------------------------------------------- storage
class CommandLedger(Protocol):
    """The last accepted version of each downlink command kind, kept across restarts (kiosk.stores.commands),
    so a command replayed after a reboot is refused like one replayed before it."""

    def last(self, kind: str) -> tuple[int, datetime] | None:
        """(version, issue time) of the last accepted command of `kind`, None before the first."""

    def accept(self, kind: str, version: int, issued: datetime) -> None:
        """Record an applied command. Never raises: a failed write is logged (the version holds in memory)."""


class Journal(Protocol):
    """The durable check-in journal, as the pipeline and the app use it (kiosk.stores.journal)."""

    def append(self, decision: Decision) -> Event:
        """Store one check-in durably; its event. Raises StorageError with nothing written."""

    def append_many(self, decisions: list[Decision], note: tuple[str, str] | None = None) -> list[Event]:
        """Store check-ins in one transaction (one fsync), all or none; StorageError with nothing written."""

    def purge(self, older_than: datetime, keep_unsent: bool = True) -> int: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class Outbox(Protocol):
    """The upload queue over the journal's rows, as the uplink's drain uses it (kiosk.stores.outbox)."""

    max_rows: int
    full_policy: str
    full: bool

    def next_batch(self, limit: int, resend_before_epoch: float | None = None, *, after_seq: int = 0,
                   resend_after_seq: int = 0) -> list[sqlite3.Row]: ...

    def has_pending(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...

    def mark_published(self, ids: Iterable[str]) -> int: ...

    def confirm(self, ids: Iterable[str]) -> int: ...

    def confirm_upto(self, seq: int) -> int: ...

    def enforce_limit(self) -> int: ...

    def close(self) -> None: ...


class Roster(Protocol):
    """The roster of people (kiosk.stores.roster): looked up per scan on the pipeline thread, changed by import and
    MQTT on any thread (each change is one transaction; a reader sees it on its next lookup)."""

    @property
    def updated_at(self) -> datetime | None: ...

    @property
    def count(self) -> int: ...

    @property
    def version(self) -> int | None: ...

    def lookup(self, person: Person) -> RosterEntry | None: ...

    def parse_entries(self, rows: list[dict[str, Any]]) -> list[RosterEntry]:
        """Validate rows completely (DataError listing every problem); nothing changes."""

    def apply(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The MQTT `roster` command (replace, add, remove; version, force): the roster's own rules applied,
        DataError naming why nothing changed, else the answer (count, version)."""

    def apply_isolated(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """`apply`, a large command in a child process (the caller's interpreter stays free for the pipeline)."""

    def replace_all(self, entries: Iterable[RosterEntry], version: int | None = None, *, force: bool = False) -> int: ...

    def upsert(self, entries: list[RosterEntry], *, version: int | None = None) -> int: ...

    def remove(self, keys: list[str], *, version: int | None = None) -> int: ...


class SignerKeys(Protocol):
    """What verifying a signed certificate needs of the trust list."""

    def key_for(self, kid: bytes) -> PublicKeyTypes | None: ...

    def usages_for(self, kid: bytes) -> frozenset[str] | None:
        """Certificate types ("v", "t", "r") the signer may sign; None: unrestricted."""


class SubjectKeys(Protocol):
    """The site's subject_ref keys (kiosk.identity.KeyRing; FixedKey for one key)."""

    def key_at(self, when: datetime) -> bytes:
        """The key in use at `when`."""


class SiteKeyRing(SubjectKeys, Protocol):
    """The site's key ring as the app keeps it (kiosk.identity.KeyRing): installed to, described (never a key)."""

    def install(self, keys: list[SiteKey], now: datetime) -> list[str]:
        """Add validated keys (a known id with another key is refused); the ids now kept."""

    def describe(self, now: datetime) -> dict[str, Any]: ...


class RevocationSource(Protocol):
    """What verifying a signed certificate needs of the revocation list (kiosk.stores.revocation)."""

    def revoked(self, hashes: Iterable[tuple[str, bytes]]) -> str | None:
        """The hash type under which one of `hashes` (type, digest) is listed, or None."""


class RevocationStore(RevocationSource, Protocol):
    """The revocation list as the kiosk keeps it (kiosk.stores.revocation.RevocationList)."""

    def is_stale(self, now: datetime, max_age_hours: float) -> bool: ...

    def summary(self) -> dict[str, Any]: ...

    def store(self, batches: list[Batch], *, replace: bool) -> int:
        """Add (with `replace`: install only) validated batches."""


class TrustStore(SignerKeys, Protocol):
    """The trust list of certificate signers (kiosk.stores.trust)."""

    @property
    def count(self) -> int: ...

    def is_stale(self, now: datetime, max_age_hours: float) -> bool: ...

    def import_json(self, obj: Any, replace: bool = False) -> int:
        """Signers as `[{"kid": base64, "certificate": base64 DER}]`; all or nothing (DataError)."""

    def store(self, signers: list[Signer], *, replace: bool) -> None:
        """Write validated signers (with `replace`: only these)."""


# ---------------------------------------------------------------- the core's own parts
class DccParser(Protocol):
    """Verifies a signed `HC1:` certificate (kiosk.codes.dcc.DccVerifier)."""

    def parse(self, text: str, now: datetime) -> ParsedCode: ...


class DecisionMaker(Protocol):
    """Classify, parse, verify and decide one payload (kiosk.decider.Decider). Never raises."""

    def decide(self, text: str, now: datetime, clock_synced: bool, *, roster_stale: bool = False,
               trust_stale: bool = False, revocation_stale: bool = False) -> Decision: ...


class GateFeedback(Protocol):
    """What the person at the gate sees and hears, as the pipeline drives it (kiosk.feedback.Feedback)."""

    def show(self, decision: Decision) -> None:
        """Issue LED, buzzer, relay and screen for one decision. Returns at once."""


class Publisher(Protocol):
    """The MQTT uplink as the app sees it (kiosk.mqtt.uplink.Uplink): it publishes journaled check-ins."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def notify(self) -> None:
        """New check-ins are in the journal: wake the publisher. Never blocks."""

    def wait_drained(self, timeout: float) -> bool: ...

    def wait_confirmed(self, timeout: float, *, consumer: bool) -> int:
        """Wait for the consumer's confirmations too (bounded); how many events are still unconfirmed."""

    def alarms(self) -> list[str]: ...

    def status(self) -> dict[str, Any]: ...

    @property
    def state(self) -> dict[str, Any]:
        """The connection's state (online/offline, since, last error, attempts): the `ping` answer."""

    def set_app_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        """The app thread's counters and alarms for telemetry and the retained status (read-only there)."""

    def run_pending_commands(self, handlers: Mapping[str, Command[D]], deps: D, admission: Admission,
                             limit: int = 20) -> int:
        """Run received downlink commands admitted by `admission` (versions, issue times) with `deps` on the
        caller's (the app's) thread; how many ran."""


class LoopMonitor(Protocol):
    """What the main loop reports to: systemd's watchdog and status line (kiosk.watchdog.Watchdog)."""

    def ready(self) -> None: ...

    def progress(self) -> None: ...

    def tick(self, now: float | None = None) -> bool: ...

    def report(self, alarms: list[str]) -> None: ...


# ---------------------------------------------------------------- MQTT (adapter: paho-mqtt 2.x, in kiosk.mqtt)
class PublishInfo(Protocol):
    """What `MqttClient.publish` returns (paho's MQTTMessageInfo): rc 0 when queued for sending."""

    @property
    def rc(self) -> int: ...

    @property
    def mid(self) -> int: ...

    def wait_for_publish(self, timeout: float | None = None) -> None: ...


class MqttClient(Protocol):
    """The part of a paho 2.x client (callback API version 2) the uplink uses.

    The real adapter is paho itself (`kiosk.mqtt.client.make_client`); `tests/fakes.py` has an in-memory
    one, and `tests/test_contract_mqtt.py` runs one suite over both. paho calls the callbacks on its
    network thread, with the userdata given to `user_data_set` as their second argument:
    on_connect(client, userdata, flags, reason_code, properties), on_disconnect(client, userdata, flags,
    reason_code, properties), on_publish(client, userdata, mid, reason_code, properties) once a QoS 1
    message is PUBACKed (QoS 0: once sent), on_message(client, userdata, message), on_subscribe(client,
    userdata, mid, reason_codes, properties) once a SUBACK came.
    """

    on_connect: Callable[..., None] | None
    on_disconnect: Callable[..., None] | None
    on_publish: Callable[..., None] | None
    on_message: Callable[..., None] | None
    on_subscribe: Callable[..., None] | None

    def user_data_set(self, userdata: Any) -> None: ...

    def will_set(self, topic: str, payload: str | bytes | None = None, qos: int = 0, retain: bool = False) -> None: ...

    def max_inflight_messages_set(self, inflight: int) -> None: ...

    def connect(self, host: str, port: int = 1883, keepalive: int = 60, *, clean_start: bool = ...,
                properties: Any = None) -> int:
        """TCP connect and send CONNECT (raises OSError, ssl.SSLError); the CONNACK comes to on_connect.
        clean_start and properties (session expiry) are MQTT 5 only."""

    def loop_start(self) -> int: ...

    def loop_stop(self) -> int: ...

    def disconnect(self) -> int:
        """Send DISCONNECT (no will); on_disconnect follows. paho's return code races its network thread."""

    def socket(self) -> object:
        """The connected socket (None when not connected)."""

    def subscribe(self, topic: list[tuple[str, int]]) -> tuple[int, int | None]: ...

    def publish(self, topic: str, payload: str | bytes | None = None, qos: int = 0,
                retain: bool = False) -> PublishInfo: ...

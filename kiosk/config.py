"""Typed, bounded configuration from one TOML file.

Every problem is collected and reported at once (`ConfigError`, exit status 78). Unknown keys get a
"did you mean". `--set SECTION.KEY=VALUE` overrides any key for one run. The schema below is the single
source of truth: `config/kiosk.example.toml` is generated from it (`kiosk config-example`) and a test
keeps the two in step.

Relative paths in a file are resolved against that file's folder; relative paths given with `--set`
against the current directory.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from kiosk.driver_names import CAMERAS, DECODERS, DISPLAYS, PIN_FACTORIES, READERS
from kiosk.errors import ConfigError
from kiosk.model import DIRECTIONS, MODES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config" / "demo.toml"


# ---------------------------------------------------------------- value types
@dataclass(frozen=True)
class Value:
    default: Any
    doc: str

    def convert(self, raw: Any, key: str) -> Any:  # returns value or raises ValueError(message)
        return raw

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class Str(Value):
    choices: tuple[str, ...] = ()
    max_len: int = 256

    def convert(self, raw: Any, key: str) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {type(raw).__name__}")
        if self.choices and raw not in self.choices:
            hint = difflib.get_close_matches(raw, self.choices, n=1)
            extra = f' (did you mean "{hint[0]}"?)' if hint else ""
            raise ValueError(f'{_got(raw)} is not one of {", ".join(self.choices)}{extra}')
        if len(raw) > self.max_len:
            raise ValueError(f"longer than {self.max_len} characters")
        return raw

    def describe(self) -> str:
        return "one of: " + ", ".join(self.choices) if self.choices else ""


# Site and device ids appear in MQTT topics, client ids, user names and ACL lines: a topic-safe alphabet only
# (no "+", "#", "/", spaces or controls), and "all" is reserved (`kiosk/{site}/all/cmd/...` addresses a whole site).
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
ID_RULE = 'lower-case letters, digits, "-" and "_", starting with a letter or digit, at most 32 characters'
RESERVED_IDS = ("all",)


@dataclass(frozen=True)
class Ident(Str):
    """An identifier used in MQTT topics (site id, device id)."""

    def convert(self, raw: Any, key: str) -> str:
        value = super().convert(raw, key)
        if not ID_PATTERN.fullmatch(value):
            raise ValueError(f"{_got(value)} is not a valid id ({ID_RULE})")
        if value in RESERVED_IDS:
            raise ValueError(f'"{value}" is reserved (it addresses every kiosk of a site); choose another id')
        return value

    def describe(self) -> str:
        return ID_RULE + '; "all" is reserved'


@dataclass(frozen=True)
class Int(Value):
    min: int | None = None
    max: int | None = None

    def convert(self, raw: Any, key: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"expected an integer, got {_got(raw)}")
        _bounds(raw, self.min, self.max)
        return raw

    def describe(self) -> str:
        return _bounds_doc(self.min, self.max)


@dataclass(frozen=True)
class Float(Value):
    min: float | None = None
    max: float | None = None

    def convert(self, raw: Any, key: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(f"expected a number, got {_got(raw)}")
        if not math.isfinite(raw):  # TOML reads nan and inf; nan passes every bound check (nan < x is false)
            raise ValueError(f"expected a finite number, got {raw}")
        _bounds(raw, self.min, self.max)
        return float(raw)

    def describe(self) -> str:
        return _bounds_doc(self.min, self.max)


@dataclass(frozen=True)
class Bool(Value):
    def convert(self, raw: Any, key: str) -> bool:
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {_got(raw)}")
        return raw


@dataclass(frozen=True)
class PathValue(Value):
    """A filesystem path; empty string means "not set"."""

    def convert(self, raw: Any, key: str) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a path string, got {type(raw).__name__}")
        return raw


@dataclass(frozen=True)
class Secret(Value):
    """A secret given inline, as `file:/path` or as `env:NAME`. Never printed."""

    def convert(self, raw: Any, key: str, base: Path | None = None) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {type(raw).__name__}")
        if raw.startswith("env:"):
            name = raw[4:]
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return os.environ[name]
        if raw.startswith("file:"):
            path = (base or Path.cwd()) / raw[5:]  # an absolute path stays as it is
            try:
                return path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise ValueError(f"cannot read secret file {path}: {why}") from None
        return raw

    def describe(self) -> str:
        return 'inline, "file:/path" or "env:NAME"; never printed'


def _got(raw: Any) -> str:
    """The wrong value as an error shows it: a short string quoted, anything else by its type."""
    if isinstance(raw, str):
        return f'"{raw}"' if len(raw) <= 40 else f'a {len(raw)}-character string'
    return type(raw).__name__


def _bounds(v: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and v < lo:
        raise ValueError(f"{v} is below the minimum {lo}")
    if hi is not None and v > hi:
        raise ValueError(f"{v} is above the maximum {hi}")


def _bounds_doc(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    if lo is not None:
        return f"at least {lo}"
    if hi is not None:
        return f"at most {hi}"
    return ""


# ---------------------------------------------------------------- the schema
def key(spec: Value) -> Any:
    """One configuration key: a dataclass field whose default and validation come from `spec`."""
    return field(default=spec.default, metadata={"spec": spec})


@dataclass(frozen=True)
class SiteConfig:
    id: str = key(Ident("site-1", "Site identifier, used in MQTT topics and events."))
    device: str = key(Ident("kiosk-1", "Device identifier within the site."))
    mode: str = key(Str("trace", "trace: record every valid code, green for any well-formed personal code; "
                        "health: green/black rule; staff: must be on the approved staff list.",
                        choices=MODES))
    staff_requires_health: bool = key(Bool(False, "In staff mode, also apply the health rule."))
    direction: str = key(Str("in", "Direction recorded for each check-in.", choices=DIRECTIONS))
    timezone: str = key(Str("Asia/Ho_Chi_Minh", "IANA time zone of the site; dates in rules are local dates."))
    language: str = key(Str("vi", "Language of the screens.", choices=("vi", "en")))
    authorised_site: bool = key(Bool(False, "Hospitals and quarantine checkpoints only: keep full personal fields "
                                     "on screen and in the journal. Otherwise everything is masked."))
    fail_policy: str = key(Str("black", "Verdict when a needed source is stale or the clock is not trustworthy.",
                               choices=("black", "green")))
    debounce_seconds: float = key(Float(10.0, "The same person within this window is one check-in.", min=0, max=3600))


@dataclass(frozen=True)
class HealthConfig:
    profile: str = key(Str("hcmc", "hcmc: recovered < 180 days or a dose >= 14 days ago. moh-2021-12: last dose "
                           "14 days to 6 months ago, or recovered within 6 months.", choices=("hcmc", "moh-2021-12")))
    recovered_days: int = key(Int(180, "Recovery counts while today - recovered < this many days (<= with "
                                  "recovered_inclusive).", min=1, max=3650))
    recovered_inclusive: bool = key(Bool(False, "true: today - recovered <= recovered_days; false: strictly less "
                                         "(HCMC: \"dưới 180 ngày\", under 180 days)."))
    dose_min_days: int = key(Int(14, "A dose counts once this many days have passed.", min=0, max=365))
    dose_min_inclusive: bool = key(Bool(True, "true: today - dose >= dose_min_days; false: strictly greater."))
    dose_max_days: int = key(Int(0, "A dose stops counting after this many days (0: never; the moh-2021-12 "
                                 "profile uses 180 when this is 0).", min=0, max=3650))
    accept_tests: bool = key(Bool(False, "Accept a negative test in a signed certificate as green."))
    test_valid_hours: int = key(Int(72, "A negative test counts for this many hours.", min=1, max=720))


@dataclass(frozen=True)
class CodesConfig:
    max_length: int = key(Int(4096, "Longer payloads are invalid/too_long before any other work.", min=64, max=65536))
    badge_prefix: str = key(Str("", "Prefix of the product's own staff badges (empty: badges off).", max_len=16))


@dataclass(frozen=True)
class CameraConfig:
    type: str = key(Str("picamera2", "replay (images or a video at path), picamera2, v4l2 or none.",
                        choices=tuple(CAMERAS)))
    path: str = key(PathValue("", "replay: a folder of images (name order) or a video file."))
    loop: bool = key(Bool(False, "replay: start again at the end instead of stopping."))
    width: int = key(Int(640, "Decode stream width in pixels.", min=160, max=4056))
    height: int = key(Int(480, "Decode stream height in pixels.", min=120, max=3040))
    fps: float = key(Float(30.0, "Frames per second asked of the camera.", min=1, max=120))
    device: int = key(Int(0, "v4l2: /dev/videoN index.", min=0, max=63))
    autofocus: bool = key(Bool(True, "Continuous autofocus where the camera has it (picamera2: fast, on Camera Module 3; "
                               "v4l2: the webcam's own)."))
    af_window: float = key(Float(0.5, "picamera2: autofocus metered on this centre share of the view's width and "
                                 "height, where a code is held (0: the whole view).", min=0, max=1))
    exposure_value: float = key(Float(-1.0, "picamera2: exposure compensation in stops with automatic exposure; "
                                      "below 0 keeps a bright phone screen from being blown out.", min=-8, max=8))
    exposure_us: int = key(Int(0, "Fixed exposure time in microseconds (0: automatic; picamera2 then applies "
                               "exposure_value). Phone screens read best around 8000-15000 (v4l2: in 100 us steps).",
                               min=0, max=1000000))
    retry_seconds: float = key(Float(5.0, "Wait between attempts to reopen a failed camera.", min=0.1, max=600))


@dataclass(frozen=True)
class ReaderConfig:
    type: str = key(Str("none", "Dedicated QR reader: none, serial (USB CDC / RS-232) or evdev (HID keyboard wedge).",
                        choices=tuple(READERS)))
    port: str = key(PathValue("/dev/ttyACM0", "serial: device path."))
    baudrate: int = key(Int(9600, "serial: baud rate.", min=1200, max=921600))
    device: str = key(PathValue("", "evdev: /dev/input/by-id/... path of the reader."))


@dataclass(frozen=True)
class DecoderConfig:
    type: str = key(Str("auto", "auto (recommended: zxing-cpp in stages, two cheap passes on every frame and dearer "
                        "ones only on a symbol detected but not decoded), zxing (zxing-cpp alone) or zbar (pyzbar).",
                        choices=tuple(DECODERS)))
    budget_ms: float = key(Float(25.0, "auto: most time spent on one frame; dear stages left over go on in the next "
                                 "frames (25 ms keeps 30 fps on a Raspberry Pi 4 core).", min=1, max=1000))


@dataclass(frozen=True)
class RosterConfig:
    path: str = key(PathValue("roster.sqlite", "Roster of people (SQLite file, created on first use; a TinyDB roster "
                              "of an earlier version found there, or as roster.json beside the default name, is "
                              "migrated on first start)."))
    max_age_hours: float = key(Float(0.0, "Roster older than this is stale and the fail policy applies (0: never).",
                                     min=0, max=87600))
    seed_csv: str = key(PathValue("", "Roster CSV imported when the roster has never been written "
                              "(provisioning; empty: none)."))


@dataclass(frozen=True)
class TrustConfig:
    path: str = key(PathValue("trust.json", "Trust list of certificate signers (TinyDB file); the revocation list "
                              "is kept beside it (trust.revocations.json)."))
    max_age_hours: float = key(Float(168.0, "Trust list older than this is stale (0: never).", min=0, max=87600))
    revocation_max_age_hours: float = key(Float(168.0, "A revocation list not updated for this long is stale and "
                                                "signed certificates get site.fail_policy (0: never). A kiosk that "
                                                "never received one is not stale.", min=0, max=87600))
    clock_skew_seconds: int = key(Int(300, "Tolerance for certificate issued-at in the future.", min=0, max=86400))
    seed_file: str = key(PathValue("", "Signer certificate(s) (PEM/DER/JSON) imported when the trust "
                               "list file does not exist yet (provisioning; empty: none)."))


@dataclass(frozen=True)
class JournalConfig:
    path: str = key(PathValue("journal.sqlite", "Check-in journal and outbox (SQLite)."))
    retention_days: int = key(Int(21, "Rows older than this are purged (the rules ask for at least 1).",
                                  min=1, max=3650))
    hash_key: str = key(Secret("", "A fixed key for subject_ref, the keyed hash of the ID used for de-identified "
                               "tracing. Empty (recommended): the site's key ring in journal.key_file, which can "
                               "be rotated and distributed."))
    key_file: str = key(PathValue("", "The site's subject_ref key ring (JSON, mode 0600, the same on every kiosk of "
                                  "the site and its console). Empty: <journal.path>.keys.json. Made with a key of "
                                  "this kiosk's own until the site's keys arrive (kiosk sitekey import, or the "
                                  "MQTT trust command)."))
    key_rotate_days: int = key(Int(90, "Rotation of the site key is due when the key in use is older than this "
                                   "(kiosk sitekey show, telemetry; 0: never). Superseded keys are kept for "
                                   "retention_days.", min=0, max=3650))
    check_on_start: bool = key(Bool(True, "PRAGMA quick_check when the service starts; a damaged journal is "
                                          "moved aside (kept) and a fresh one started, with an alarm."))
    reserve_mb: int = key(Int(8, "Disk space held back for the journal (a file next to it), released when the "
                                 "disk fills so check-ins keep being stored; 0: none.", min=0, max=4096))


@dataclass(frozen=True)
class DisplayConfig:
    type: str = key(Str("ssd1306", "ssd1306, sh1106 (128x64 I2C), ssd1351 (128x128 SPI colour), hdmi (pygame), "
                        "png (write each screen to a folder), dummy (luma dummy device) or none.",
                        choices=tuple(DISPLAYS)))
    path: str = key(PathValue("screens", "png: folder for the screen images."))
    i2c_port: int = key(Int(1, "I2C bus number.", min=0, max=10))
    i2c_address: int = key(Int(0x3C, "I2C address of the panel (check with `i2cdetect -y 1`).", min=0x03, max=0x77))
    spi_port: int = key(Int(0, "SPI bus.", min=0, max=6))
    spi_device: int = key(Int(0, "SPI chip select.", min=0, max=3))
    gpio_dc: int = key(Int(24, "SPI panels: data/command pin (BCM).", min=0, max=27))
    gpio_rst: int = key(Int(25, "SPI panels: reset pin (BCM).", min=0, max=27))
    rotate: int = key(Int(0, "Rotation in quarter turns.", min=0, max=3))
    contrast: int = key(Int(255, "Panel contrast.", min=0, max=255))
    width: int = key(Int(800, "hdmi/png: screen width.", min=64, max=3840))
    height: int = key(Int(480, "hdmi/png: screen height.", min=64, max=2160))
    fullscreen: bool = key(Bool(True, "hdmi: full screen."))
    result_seconds: float = key(Float(3.0, "How long a result stays before the idle screen returns.", min=0.2, max=60))


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = key(Str("auto", "gpiozero pin factory: mock (no hardware), lgpio (Pi 5, current OS), "
                               "rpigpio, or auto (gpiozero's own choice).", choices=tuple(PIN_FACTORIES)))
    led: str = key(Str("pair", "pair: separate green/red LEDs; rgb: one RGB LED; none.", choices=("pair", "rgb", "none")))
    led_green: int = key(Int(17, "Green LED pin (BCM).", min=0, max=27))
    led_red: int = key(Int(27, "Red LED pin (BCM).", min=0, max=27))
    led_blue: int = key(Int(22, "rgb: blue pin (BCM).", min=0, max=27))
    buzzer: int = key(Int(18, "Buzzer pin (BCM); 18 has hardware PWM for tones. -1: no buzzer.", min=-1, max=27))
    buzzer_tonal: bool = key(Bool(False, "Passive buzzer driven with tones (gpiozero TonalBuzzer)."))
    relay: int = key(Int(-1, "Door/turnstile relay pin (BCM), pulsed on green. -1: no relay.", min=-1, max=27))
    relay_active_high: bool = key(Bool(True, "false for relay boards that switch on a low input."))
    relay_seconds: float = key(Float(1.0, "Relay pulse length.", min=0.05, max=30))
    button: int = key(Int(-1, "Button pin (BCM). -1: no button.", min=-1, max=27))
    button_action: str = key(Str("toggle_direction", "toggle_direction (in/out) or override (guard's manual admit, "
                                 "journaled as an override).", choices=("toggle_direction", "override")))


@dataclass(frozen=True)
class ClockConfig:
    source: str = key(Str("system", "system: trust system time only when NTP-synchronised; assume_synced: always "
                          "trust it (development only); fixed: start at clock.start and run on (demo, replays).",
                          choices=("system", "assume_synced", "fixed")))
    start: str = key(Str("", "fixed: the starting instant, ISO-8601 with offset (e.g. 2021-11-15T09:00:00+07:00)."))


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = key(Bool(False, "Publish check-ins over MQTT."))
    host: str = key(Str("127.0.0.1", "Broker host."))
    port: int = key(Int(1883, "Broker port (8883 for TLS).", min=1, max=65535))
    protocol: str = key(Str("3.1.1", "MQTT protocol version.", choices=("3.1.1", "5")))
    prefix: str = key(Str("kiosk/{site}/{device}", "Topic prefix; {site} and {device} are filled in."))
    client_id: str = key(Str("", "Client id (empty: kiosk-{site}-{device}). The shipped broker configuration "
                             "uses the user name instead (use_username_as_clientid)."))
    username: str = key(Str("", "Username (empty: none)."))
    password: str = key(Secret("", "Password."))
    tls: bool = key(Bool(False, "Use TLS."))
    ca_file: str = key(PathValue("", "TLS: CA certificate file (empty: system store)."))
    cert_file: str = key(PathValue("", "TLS: client certificate (optional)."))
    key_file: str = key(PathValue("", "TLS: client key (optional)."))
    keepalive: int = key(Int(30, "Keepalive seconds.", min=5, max=3600))
    max_inflight: int = key(Int(20, "QoS 1 messages in flight at once.", min=1, max=1000))
    confirm: bool = key(Bool(True, "Wait for the consumer's ack on {prefix}/ack before an event is final "
                             "(false: the broker's PUBACK is final)."))
    resend_after_seconds: float = key(Float(300.0, "Published but unconfirmed events are sent again after this.",
                                            min=1, max=604800))
    outbox_max_rows: int = key(Int(1000000, "Most events queued for upload.", min=100, max=100000000))
    outbox_full_policy: str = key(Str("drop_oldest", "When the outbox is full: drop_oldest (stop queueing the "
                                      "oldest, keep journaling, raise an alarm) or drop_newest.",
                                      choices=("drop_oldest", "drop_newest")))
    telemetry_seconds: float = key(Float(60.0, "Telemetry period.", min=1, max=86400))
    command_max_age_hours: float = key(Float(336.0, "Downlink commands issued longer ago are refused while the "
                                             "clock is synchronised (336: the broker keeps a session 14 days).",
                                             min=1, max=8760))
    reconnect_min_seconds: float = key(Float(1.0, "First reconnect delay.", min=0.1, max=600))
    reconnect_max_seconds: float = key(Float(120.0, "Largest reconnect delay.", min=1, max=3600))


@dataclass(frozen=True)
class ServiceConfig:
    log_level: str = key(Str("info", "Log level.", choices=("debug", "info", "warning", "error")))
    watchdog: bool = key(Bool(True, "Feed systemd's watchdog from the main loop when WATCHDOG_USEC is set."))


@dataclass(frozen=True)
class ConsoleConfig:
    bind: str = key(Str("127.0.0.1", "kiosk console: address the web server listens on (behind a TLS reverse proxy "
                        "for anything but this machine)."))
    port: int = key(Int(8080, "kiosk console: web server port.", min=1, max=65535))
    database_url: str = key(Secret("console.sqlite", "Event store: a SQLite file (relative to this file's folder) or "
                                   "postgresql://user:password@host/db. May hold a password: file: or env: work."))
    session_secret: str = key(Secret("", "Key that signs session cookies (at least 32 characters). Empty: a random "
                                     "key kept in the database, shared by every console process on it."))
    secure_cookies: bool = key(Bool(False, "Mark cookies Secure (set true when the console is served over HTTPS)."))
    hash_key: str = key(Secret("", "One fixed subject_ref key for tracing and offline bundles (as the kiosks' "
                               "journal.hash_key). Empty: the site key ring of this file's [journal] (journal.key_file, "
                               "installed with kiosk sitekey import), every key kept."))
    sites: str = key(Str("", "Sites whose check-ins the collector stores, comma-separated (empty: every site)."))
    group: str = key(Str("console", "Shared subscription group: console processes in one group split the load.",
                         max_len=64))
    client_id: str = key(Str("", "MQTT client id, unique per console process (empty: console-{group}-{port}). The "
                             "shipped broker configuration uses the login's user name instead: give each console "
                             "process its own mqtt.username."))
    language: str = key(Str("vi", "Default language of the pages (a user may switch).", choices=("vi", "en")))
    timezone: str = key(Str("Asia/Ho_Chi_Minh", "Time zone of days and hours on the pages."))
    capacity: int = key(Int(0, "Default capacity of a site (people inside at once) for the occupancy warning "
                            "(0: none). Per site: kiosk console site SITE --capacity N.", min=0, max=1000000))
    capacity_warning_percent: int = key(Int(90, "Warn when occupancy reaches this share of capacity.",
                                            min=1, max=100))
    retention_days: int = key(Int(21, "Check-ins older than this are deleted from the console's store (the hourly "
                                  "counts stay: they hold no personal data).", min=1, max=3650))
    trace_days: int = key(Int(14, "Default window of a trace, in days back from now.", min=1, max=366))
    trace_copresence_minutes: int = key(Int(30, "Who else was present: check-ins at the same site within this "
                                            "many minutes of a visit.", min=1, max=1440))
    offline_after_seconds: int = key(Int(180, "A kiosk whose last message is older than this shows as silent "
                                         "(its retained status may still say online).", min=10, max=86400))
    login_attempts: int = key(Int(5, "Failed logins allowed per user name and per client address in "
                                  "login_window_seconds before logins are refused for that window.", min=1, max=1000))
    login_window_seconds: int = key(Int(900, "Login rate-limit window.", min=10, max=86400))
    session_hours: float = key(Float(12.0, "A session ends this long after login.", min=0.1, max=720))
    max_upload_bytes: int = key(Int(8 * 1024 * 1024, "Largest staff list or bundle upload.", min=1024,
                                    max=256 * 1024 * 1024))


@dataclass(frozen=True)
class Config:
    """The validated configuration: loaded once, immutable (runtime state lives in `kiosk.site.SiteState`)."""

    site: SiteConfig = field(default_factory=SiteConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    codes: CodesConfig = field(default_factory=CodesConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    roster: RosterConfig = field(default_factory=RosterConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    source: Path | None = field(default=None, compare=False)

    def as_dict(self, redact: bool = True) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, keys in SCHEMA.items():
            section = getattr(self, name)
            out[name] = {k: ("***" if redact and isinstance(spec, Secret) and getattr(section, k) else
                             getattr(section, k)) for k, spec in keys.items()}
        return out

    def prefix(self) -> str:
        return self.mqtt.prefix.format(site=self.site.id, device=self.site.device)


SECTIONS: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else globals()[f.type]
                             for f in fields(Config) if f.name != "source"}
# Every key's spec, by section: the single source of truth for validation, `kiosk config-example` and docs.
SCHEMA: dict[str, dict[str, Value]] = {name: {f.name: f.metadata["spec"] for f in fields(cls)}
                                       for name, cls in SECTIONS.items()}
PATH_KEYS: set[tuple[str, str]] = {(s, k) for s, keys in SCHEMA.items() for k, v in keys.items()
                                   if isinstance(v, PathValue)}


def _section_repr(self: object) -> str:
    name = next(n for n, cls in SECTIONS.items() if cls is type(self))
    shown = {k: ("***" if isinstance(spec, Secret) and getattr(self, k) else getattr(self, k))
             for k, spec in SCHEMA[name].items()}
    return f"<{name} {shown}>"


for _cls in SECTIONS.values():
    _cls.__repr__ = _section_repr  # type: ignore[method-assign,assignment]  # secrets never shown by repr


def parse_override(text: str) -> tuple[str, str, Any, str]:
    """`SECTION.KEY=VALUE` -> (section, key, VALUE read as a TOML value or else as a plain string, VALUE as given)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError([f'--set "{text}": expected SECTION.KEY=VALUE'])
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value, raw


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
         data: dict[str, Any] | None = None) -> Config:
    """Load, merge overrides and validate. Raises ConfigError with every problem found."""
    problems: list[str] = []
    source = None
    base = Path.cwd()
    if data is None:
        source = Path(path) if path else DEFAULT_CONFIG
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{source}: file not found (copy config/kiosk.example.toml and edit it)"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{source}: cannot read: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
        base = source.resolve().parent
    values: dict[str, dict[str, Any]] = {s: {} for s in SCHEMA}
    from_file: dict[tuple[str, str], Any] = {}
    for section, keys in data.items():
        if section not in SCHEMA:
            problems.append(f"[{section}]: unknown section{did_you_mean(section, SCHEMA)}")
            continue
        if not isinstance(keys, dict):
            problems.append(f"[{section}]: expected a table of keys")
            continue
        for key, raw in keys.items():
            from_file[(section, key)] = (raw, base)
    for text in overrides:
        try:
            section, key, raw, text_value = parse_override(text)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if section not in SCHEMA:
            problems.append(f"--set {section}.{key}: unknown section{did_you_mean(section, SCHEMA)}")
            continue
        if isinstance(SCHEMA[section].get(key), (Str, PathValue, Secret)) and not isinstance(raw, str):
            raw = text_value  # `--set site.device=7` means the string "7"
        from_file[(section, key)] = (raw, Path.cwd())
    for (section, key), (raw, origin) in from_file.items():
        spec = SCHEMA[section].get(key)
        if spec is None:
            problems.append(f"{section}.{key}: unknown key{did_you_mean(key, SCHEMA[section])}")
            continue
        try:
            value = spec.convert(raw, key, origin) if isinstance(spec, Secret) else spec.convert(raw, key)
        except ValueError as exc:
            problems.append(f"{section}.{key}: {exc}")
            continue
        if (section, key) in PATH_KEYS and value and not Path(value).is_absolute():
            value = str((origin / value).resolve())
        values[section][key] = value
    for section, keys in SCHEMA.items():
        for key, spec in keys.items():
            if key not in values[section]:
                default = spec.default
                if (section, key) in PATH_KEYS and default and not Path(default).is_absolute():
                    default = str((base / default).resolve())
                values[section][key] = default
    problems.extend(_cross_checks(values))
    if problems:
        raise ConfigError(problems)
    return Config(**{name: SECTIONS[name](**values[name]) for name in SCHEMA}, source=source)


def _cross_checks(v: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    try:
        from zoneinfo import ZoneInfo

        for section in ("site", "console"):
            ZoneInfo(v[section]["timezone"])
    except Exception:
        problems.append(f'{section}.timezone: unknown time zone "{v[section]["timezone"]}" '
                        '(example: Asia/Ho_Chi_Minh)')
    if v["console"]["session_secret"] and len(v["console"]["session_secret"]) < 32:
        problems.append("console.session_secret: at least 32 characters (e.g. from `openssl rand -hex 32`)")
    if v["camera"]["type"] == "replay" and not v["camera"]["path"]:
        problems.append("camera.path: required when camera.type is replay (a folder of images or a video file)")
    elif v["camera"]["type"] == "replay" and not Path(v["camera"]["path"]).exists():
        problems.append(f"camera.path: {v['camera']['path']} does not exist")
    if v["clock"]["source"] == "fixed":
        from datetime import datetime

        try:
            if datetime.fromisoformat(v["clock"]["start"]).tzinfo is None:
                raise ValueError
        except ValueError:
            problems.append("clock.start: required with clock.source = fixed, ISO-8601 with offset "
                            "(e.g. 2021-11-15T09:00:00+07:00)")
    if v["roster"]["seed_csv"] and not Path(v["roster"]["seed_csv"]).is_file():
        problems.append(f"roster.seed_csv: {v['roster']['seed_csv']} is not a file")
    if v["trust"]["seed_file"] and not Path(v["trust"]["seed_file"]).is_file():
        problems.append(f"trust.seed_file: {v['trust']['seed_file']} is not a file")
    for key in ("ca_file", "cert_file", "key_file"):
        if v["mqtt"][key] and not Path(v["mqtt"][key]).is_file():
            problems.append(f"mqtt.{key}: {v['mqtt'][key]} is not a file")
    if bool(v["mqtt"]["cert_file"]) != bool(v["mqtt"]["key_file"]):
        problems.append("mqtt.cert_file, mqtt.key_file: a client certificate needs both")
    if v["reader"]["type"] == "evdev" and not v["reader"]["device"]:
        problems.append("reader.device: required when reader.type is evdev (see ls /dev/input/by-id/)")
    prefix = v["mqtt"]["prefix"]
    try:
        prefix.format(site="s", device="d")
    except (KeyError, IndexError, ValueError):
        problems.append("mqtt.prefix: only {site} and {device} may appear in braces")
    else:
        if "{site}" not in prefix or "{device}" not in prefix:
            problems.append("mqtt.prefix: must contain {site} and {device} (each kiosk needs topics of its own)")
        if re.search(r"[+#\s\x00-\x1f]", prefix) or prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
            problems.append("mqtt.prefix: no wildcards (+ #), spaces, control characters or empty levels")
    g = v["gpio"]
    pins = {"led_green": g["led_green"], "led_red": g["led_red"]} if g["led"] != "none" else {}
    if g["led"] == "rgb":
        pins["led_blue"] = g["led_blue"]
    for name in ("buzzer", "relay", "button"):
        if g[name] >= 0:
            pins[name] = g[name]
    seen: dict[int, str] = {}
    for name, pin in pins.items():
        if pin in seen:
            problems.append(f"gpio.{name}: pin {pin} is already used by gpio.{seen[pin]}")
        seen[pin] = name
    if v["mqtt"]["reconnect_min_seconds"] > v["mqtt"]["reconnect_max_seconds"]:
        problems.append("mqtt.reconnect_min_seconds: larger than mqtt.reconnect_max_seconds")
    return problems


def did_you_mean(word: str, options: Iterable[str]) -> str:
    hint = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' (did you mean "{hint[0]}"?)' if hint else ""


def example_toml() -> str:
    """The documented example file: every key, its default and what it means."""
    lines = ["# Checkpoint kiosk configuration. Every key, with its default.",
             "# Generated from kiosk/config.py by `kiosk config-example`; a test keeps it in step.",
             "# Relative paths are resolved against this file's folder.", ""]
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        for key, spec in keys.items():
            lines.append(f"# {spec.doc}")
            if spec.describe():
                lines.append(f"# ({spec.describe()})")
            lines.append(f"{key} = {_toml_literal(spec.default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

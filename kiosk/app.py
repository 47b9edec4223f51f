"""Composition root: the one place that turns configuration into drivers and wires the core together.

Everything else in `kiosk/` talks to hardware through the ports in `kiosk.ports`; only this module
imports `drivers`, and each driver imports its own library lazily.
"""
from __future__ import annotations

import enum
import importlib
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, TypedDict, TypeVar

from kiosk import __version__
from kiosk.config import Config
from kiosk.driver_names import CAMERAS, DECODERS, DISPLAYS, PIN_FACTORIES, READERS, Driver
from kiosk.errors import DeviceError, KioskError
from kiosk.model import GREEN, Decision, Staleness
from kiosk.mqtt.downlink import Admission
from kiosk.ports import (Camera, Clock, Decoder, Device, Display, Gpio, LoopMonitor, Publisher, Reader,
                         RevocationSource, RevocationStore, SubjectKeys, TrustStore)
from kiosk.ports import Roster as RosterPort
from kiosk.remote import COMMAND_HANDLERS, Dependencies
from kiosk.site import SiteState
from kiosk.stores.commands import CommandLedger, ledger_path
from kiosk.worker import Worker

if TYPE_CHECKING:
    from kiosk.decider import Decider
    from kiosk.mqtt.uplink import ClientFactory
    from kiosk.ports import Event
    from kiosk.stores.revocation import RevocationList
    from kiosk.stores.roster import Roster
    from kiosk.stores.trust import TrustList

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
INPUT_WAIT_S = 0.1  # longest wait for input in one loop round (button and downlink commands run between)

T = TypeVar("T")
U = TypeVar("U")
D = TypeVar("D", bound=Device)
S = TypeVar("S", bound="TrustList")


# ---------------------------------------------------------------- builders, one per port
def _load(driver: Driver[T], cfg: Config) -> T:
    """The adapter `drivers.<module>.<builder>(cfg)` makes (the module is imported only now)."""
    built: T = getattr(importlib.import_module(f"drivers.{driver.module}"), driver.builder)(cfg)
    return built


def _build(table: Mapping[str, Driver[T] | None], name: str, cfg: Config) -> T | None:
    driver = table[name]
    return None if driver is None else _load(driver, cfg)


def build_camera(cfg: Config) -> Camera | None:
    return _build(CAMERAS, cfg.camera.type, cfg)


def build_reader(cfg: Config) -> Reader | None:
    return _build(READERS, cfg.reader.type, cfg)


def build_decoder(cfg: Config) -> Decoder:
    return _load(DECODERS[cfg.decoder.type], cfg)


def build_display(cfg: Config) -> Display | None:
    return _build(DISPLAYS, cfg.display.type, cfg)


def build_gpio(cfg: Config) -> Gpio:
    """LEDs, buzzer, relay and button, on the configured pin factory."""
    pin_factory = _build(PIN_FACTORIES, cfg.gpio.pin_factory, cfg)
    parts: Gpio = importlib.import_module("drivers.gpio").create(cfg, pin_factory)
    return parts


def build_clock(cfg: Config) -> Clock:
    from kiosk.clock import create_clock

    return create_clock(cfg)


def build_roster(cfg: Config) -> Roster:
    """The roster; one never written yet is provisioned from roster.seed_csv when one is configured."""
    from kiosk.stores.roster import Roster

    roster = Roster(cfg.roster.path, badge_prefix=cfg.codes.badge_prefix)
    if cfg.roster.seed_csv and roster.updated_at is None:
        roster.import_csv(cfg.roster.seed_csv)
    return roster


def build_trust(cfg: Config) -> TrustList:
    """The trust list; on first use it is provisioned from trust.seed_file when one is configured."""
    from kiosk.stores.trust import TrustList

    return _provisioned(TrustList, cfg.trust.path, cfg.trust.seed_file, lambda trust, seed: trust.import_file(seed))


def build_revocations(cfg: Config) -> RevocationList:
    """The revocation list of signed certificates, kept beside the trust list."""
    from kiosk.stores.revocation import RevocationList, path_for

    return RevocationList(path_for(cfg.trust.path))


def _provisioned(store_type: type[S], path: str, seed: str, provision: Callable[[S, str], int]) -> S:
    fresh = not Path(path).exists()
    store = store_type(path)
    if fresh and seed:
        provision(store, seed)
    return store


def build_decider(cfg: Config, roster: RosterPort | None = None, trust: TrustStore | None = None,
                  site: SiteState | None = None, revocations: RevocationSource | None = None,
                  keys: SubjectKeys | None = None) -> Decider:
    """The decision core: classify, parse, verify, decide. Usable without any hardware."""
    from kiosk.codes.dcc import DccVerifier
    from kiosk.decider import Decider
    from kiosk.identity import load_keys_for

    roster = roster if roster is not None else build_roster(cfg)
    trust = trust if trust is not None else build_trust(cfg)
    revocations = revocations if revocations is not None else build_revocations(cfg)
    dcc = DccVerifier(trust, revocations=revocations, clock_skew_seconds=cfg.trust.clock_skew_seconds,
                      max_input=cfg.codes.max_length)
    return Decider(cfg, roster, keys if keys is not None else load_keys_for(cfg), dcc=dcc, site=site)


def staleness(cfg: Config, roster: RosterPort, trust: TrustStore, clock: Clock,
              revocations: RevocationStore | None = None) -> Callable[[], Staleness]:
    """The sources stale now, per the configured maximum ages (0: never stale)."""

    def check() -> Staleness:
        now = clock.now()
        roster_stale = False
        if cfg.roster.max_age_hours > 0:
            updated = roster.updated_at
            roster_stale = updated is None or now - updated > timedelta(hours=cfg.roster.max_age_hours)
        trust_stale = trust.is_stale(now, cfg.trust.max_age_hours) if cfg.trust.max_age_hours > 0 else False
        revocation_stale = revocations is not None and revocations.is_stale(now, cfg.trust.revocation_max_age_hours)
        return Staleness(roster_stale, trust_stale, revocation_stale)

    return check


# ---------------------------------------------------------------- the running kiosk
class _NotRead(enum.Enum):
    """A guarded read that did not happen (device down or waiting to be retried)."""

    NOT_READ = enum.auto()


NOT_READ = _NotRead.NOT_READ


class DeviceGuard(Generic[D]):
    """Keeps a failing camera or reader from taking the kiosk down: report once, close, reopen with backoff."""

    def __init__(self, name: str, device: D, retry_seconds: float, monotonic: Callable[[], float] = time.monotonic):
        self.name = name
        self.device = device
        self.retry_seconds = retry_seconds
        self.monotonic = monotonic
        self.failed = False
        self.failures = 0
        self._down_until = 0.0

    def start(self) -> None:
        """Open the device; a failure is reported and retried like a failed read (the kiosk keeps running)."""
        self.call(self.device.start, default=None)

    def call(self, read: Callable[[], T], default: U) -> T | U:
        """read() through the guard; `default` while the device is down or waiting to be retried."""
        now = self.monotonic()
        if now < self._down_until:
            return default
        try:
            if self.failed:
                self.device.start()
            value = read()
        except DeviceError as exc:
            self.failures += 1
            delay = min(self.retry_seconds * 2 ** min(self.failures - 1, 6), 300.0)
            if not self.failed:
                log.error("%s failed, retrying with backoff: %s", self.name, exc)
            self.failed = True
            self._down_until = now + delay
            try:
                self.device.close()
            except Exception:
                log.debug("closing the failed %s raised", self.name, exc_info=True)
            return default
        if self.failed:
            log.warning("%s working again after %d failed attempt(s)", self.name, self.failures)
            self.failed = False
            self.failures = 0
        return value


class Devices(TypedDict, total=False):
    """Devices given to the App instead of the configured ones (tests, benchmarks); None: no such device."""

    camera: Camera | None
    reader: Reader | None
    decoder: Decoder
    display: Display | None
    gpio: Gpio
    mqtt_client: ClientFactory    # the uplink's client factory in place of paho's



@dataclass
class RunResult:
    frames: int
    stopped_because: str
    counters: dict[str, Any] = field(default_factory=dict)
    journal_rows: int = 0
    uplink: dict[str, Any] | None = None
    held_at_stop: int = 0       # check-ins the journal could not take by the end (saved next to it, or lost)


class App:
    """The kiosk service: owns the pipeline thread and every device."""

    def __init__(self, cfg: Config, *, clock: Clock | None = None, devices: Devices | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        from kiosk.feedback import Feedback
        from kiosk.identity import load_keys_for
        from kiosk.pipeline import Pipeline
        from kiosk.stores.journal import Journal

        devices = devices or {}
        self.cfg = cfg
        self.started_at = time.time()
        self.clock = clock or build_clock(cfg)
        self.roster = build_roster(cfg)
        self.trust = build_trust(cfg)
        self.revocations = build_revocations(cfg)
        self.keys = load_keys_for(cfg)  # the site's subject_ref keys
        self.site = SiteState.from_config(cfg)  # runtime mode and direction; the configuration stays as loaded
        self.decider = build_decider(cfg, self.roster, self.trust, self.site, self.revocations, self.keys)
        self.journal = Journal(cfg.journal.path, site=cfg.site.id, device=cfg.site.device, service=True,
                               quick_check=cfg.journal.check_on_start, reserve_bytes=cfg.journal.reserve_mb << 20)
        self.camera = devices["camera"] if "camera" in devices else build_camera(cfg)
        self.reader = devices["reader"] if "reader" in devices else build_reader(cfg)
        self.decoder = devices.get("decoder") or build_decoder(cfg)
        self.display = devices["display"] if "display" in devices else build_display(cfg)
        self.gpio = devices["gpio"] if "gpio" in devices else build_gpio(cfg)
        self.feedback = Feedback(self.display, self.gpio.indicator, self.gpio.buzzer, self.gpio.relay,
                                 lang=cfg.site.language, result_seconds=cfg.display.result_seconds,
                                 relay_seconds=cfg.gpio.relay_seconds)
        self.uplink: Publisher | None = None
        if cfg.mqtt.enabled:
            from kiosk.mqtt.uplink import Uplink

            if "mqtt_client" in devices:
                self.uplink = Uplink(cfg, cfg.journal.path, client_factory=devices["mqtt_client"])
            else:
                self.uplink = Uplink(cfg, cfg.journal.path)
        # which downlink commands may run (versions per kind kept beside the journal, issue times) and what they
        # may change; they run on this (the app's) thread, in _step, but for the work of a roster command, done on
        # the roster worker while the pipeline scans (kiosk.remote)
        self.roster_worker = Worker("roster update")
        self.admission = Admission(CommandLedger(ledger_path(cfg.journal.path)), self.clock,
                                   cfg.mqtt.command_max_age_hours * 3600)
        self.commands = Dependencies(roster=self.roster, trust=self.trust, revocations=self.revocations,
                                     keys=self.keys, site=self.site, clock=self.clock,
                                     link_state=lambda: self.uplink.state if self.uplink else {},
                                     background=self.roster_worker.submit)
        self.pipeline = Pipeline(
            decider=self.decider, feedback=self.feedback, journal=self.journal, clock=self.clock,
            decoder=self.decoder, debounce_seconds=cfg.site.debounce_seconds,
            stale=staleness(cfg, self.roster, self.trust, self.clock, self.revocations),
            on_journaled=self._journaled if self.uplink else None)
        self._take_held()
        self._button_presses: queue.SimpleQueue[str] = queue.SimpleQueue()
        if self.gpio.button is not None:
            self.gpio.button.when_pressed = lambda: self._button_presses.put("pressed")  # gpiozero thread: queue only
        self._monotonic = monotonic
        self._camera_guard = DeviceGuard("camera", self.camera, cfg.camera.retry_seconds, monotonic) \
            if self.camera is not None else None
        self._reader_guard = DeviceGuard("reader", self.reader, cfg.camera.retry_seconds, monotonic) \
            if self.reader is not None else None
        self._last_purge: float | None = None
        self._maintain_failed = False
        self._stop = threading.Event()
        self._watchdog: LoopMonitor | None = None  # set by run(): systemd's watchdog and status line
        # Replays only (demo): draw every result screen instead of skipping to the newest one.
        self.wait_for_screens = False

    def _journaled(self, event: Event) -> None:
        if self.uplink is not None:
            self.uplink.notify()

    # -------------------------------------------------------------- status
    def alarms(self) -> list[str]:
        out = [f"{guard.name}_failed" for guard in (self._camera_guard, self._reader_guard)
               if guard is not None and guard.failed]
        if self.pipeline.journal_failing:
            out.append("journal_failed")
        out.extend(self.journal.alarms())
        if self.display is not None and self.feedback.failing("display"):
            out.append("display_failed")
        out.extend(self.pipeline.stale().alarms())
        if not self.clock.synced():
            out.append("clock_unsynced")
        if self.uplink:
            out.extend(self.uplink.alarms())
        return out

    def telemetry(self, alarms: list[str]) -> dict[str, Any]:
        """The app's part of the telemetry, computed on the app thread (the uplink gets it as a snapshot)."""
        c = self.pipeline.counters
        uptime = time.time() - self.started_at
        keys = self.keys.describe(self.clock.now())
        settings = self.site.now
        return {**c.as_dict(), "alarms": alarms, "uptime_s": round(uptime, 1),
                "site_key": {"in_use": keys["in_use"], "rotation_due": keys["rotation_due"]},
                "decode_rate_fps": round(c.frames / uptime, 2) if uptime > 0 else 0.0,
                "direction": settings.direction, "mode": settings.mode, "version": __version__}

    # -------------------------------------------------------------- the loop
    def stop(self) -> None:
        self._stop.set()

    def run(self, max_frames: int | None = None, watchdog: LoopMonitor | None = None,
            drain_seconds: float = 0.0, consumer: bool = False) -> RunResult:
        """Run until stopped, until max_frames, or until a replay camera reaches its end.

        drain_seconds: at the end, give the uplink this long to deliver what is queued (demo, replays): the
        broker's PUBACKs, then (mqtt.confirm) the consumer's confirmations; `consumer`: one is known to run (the
        demo's console), so its confirmations are waited for the whole time, not only while they keep coming.
        """
        reason = "stopped"
        try:
            if self.camera is not None and self.cfg.camera.type == "replay":
                self.camera.start()  # recorded input, not hardware that comes back: a bad replay is fatal
            elif self._camera_guard is not None:
                self._camera_guard.start()
            if self._reader_guard is not None:
                self._reader_guard.start()
            self._watchdog = watchdog
            self._show_alarms()          # also the uplink's first snapshot, before it starts
            if self.uplink:
                self.uplink.start()
            if watchdog:
                watchdog.ready()
            while not self._stop.is_set():
                if max_frames is not None and self.pipeline.counters.frames >= max_frames:
                    reason = "max_frames"
                    break
                if not self._step():
                    reason = "end_of_input"
                    break
                if watchdog:
                    watchdog.progress()
                    watchdog.tick()
            while self.pipeline.flush(force=True):
                pass
            held_at_stop = self._save_held()
            if self.uplink and drain_seconds > 0:
                deadline = time.monotonic() + drain_seconds
                if self.uplink.wait_drained(drain_seconds) and self.cfg.mqtt.confirm:
                    self.uplink.wait_confirmed(max(0.0, deadline - time.monotonic()), consumer=consumer)
            try:
                journal_rows = self.journal.count()
            except KioskError:
                journal_rows = 0
            uplink = self.uplink.status() if self.uplink else None
        finally:
            self.close()
        return RunResult(self.pipeline.counters.frames, reason, self.pipeline.counters.as_dict(),
                         journal_rows, uplink, held_at_stop)

    def _step(self) -> bool:
        """One loop iteration. False when there is no more input (replay finished, nothing else to read)."""
        more, frame_read = True, False
        if self._camera_guard is not None:
            frame_read, more = self._read_camera(self._camera_guard)
        waited = frame_read
        if self._reader_guard is not None:
            more = True
            waited = self._read_reader(self._reader_guard, 0.0 if frame_read else INPUT_WAIT_S) or waited
        if more and not waited:
            self._stop.wait(INPUT_WAIT_S)  # no device blocked this round (reopening, or none): do not spin
        while not self._button_presses.empty():
            self._button_presses.get()
            self._on_button()
        self.pipeline.flush()
        self._maintain_journal()
        self.feedback.tick()
        if self.uplink:
            self.uplink.run_pending_commands(COMMAND_HANDLERS, self.commands, self.admission)
        self._show_alarms()
        self._maybe_purge()
        return more

    def _show_alarms(self) -> None:
        """Alarms to the screen, systemd's status line and (with counters) the uplink's snapshot."""
        alarms = self.alarms()
        self.feedback.set_alarms(alarms)
        if self._watchdog:
            self._watchdog.report(alarms)
        if self.uplink:
            self.uplink.set_app_snapshot(self.telemetry(alarms))

    def _read_camera(self, guard: DeviceGuard[Camera]) -> tuple[bool, bool]:
        """(a frame was read, more input may come)."""
        started = time.perf_counter()
        frame = guard.call(guard.device.read, default=NOT_READ)
        if frame is NOT_READ:
            return False, True
        if frame is None:
            return False, False
        if self.pipeline.handle_frame(frame, started=started) and self.wait_for_screens:
            self.feedback.wait_drawn(2.0)
        return True, True

    def _read_reader(self, guard: DeviceGuard[Reader], timeout: float) -> bool:
        """Wait up to `timeout` for a read. False when the reader is down (nothing was waited for)."""
        text = guard.call(lambda: guard.device.read(timeout), default=NOT_READ)
        if text is NOT_READ:
            return False
        if text is not None:
            self.pipeline.handle_text(text)
        return True

    def _on_button(self) -> None:
        if self.cfg.gpio.button_action == "toggle_direction":
            log.info("direction switched to %s by the button", self.site.toggle_direction())
            return
        now = self.clock.now()
        settings = self.site.now
        self.pipeline.handle_override(Decision(
            kind=None, verdict=GREEN, reason="override", at=now, clock_synced=self.clock.synced(),
            direction=settings.direction, mode=settings.mode, override=True))

    # -------------------------------------------------------------- check-ins the journal could not take
    def _held_path(self) -> Path:
        from kiosk.stores.held import held_path

        return held_path(self.journal.path)

    def _take_held(self) -> None:
        """Journal the check-ins saved at the last stop; if the journal cannot take them yet, hold them."""
        from kiosk.stores import held

        path = self._held_path()
        try:
            added = self.journal.import_held(path)
        except KioskError as exc:
            found = held.load(path)
            if found:
                self.pipeline.hold(found[1])
                log.error("%d check-in(s) saved at the last stop are held until the journal can take them: %s",
                          len(found[1]), exc)
            return
        if added:
            log.warning("journaled %d check-in(s) saved at the last stop", added)

    def _save_held(self) -> int:
        """At stop: write what the journal could not take next to it (journaled at the next start)."""
        from kiosk.stores import held

        decisions = self.pipeline.held()
        if not decisions:
            return 0
        path = self._held_path()
        try:
            held.save(path, decisions)
        except OSError as exc:
            log.error("stopping with %d check-in(s) the journal could not store, and %s cannot be written "
                      "either (%s): they are lost", len(decisions), path, exc.strerror)
            return len(decisions)
        log.error("stopping with %d check-in(s) the journal could not store: saved to %s, journaled at the "
                  "next start", len(decisions), path)
        return len(decisions)

    def _maintain_journal(self) -> None:
        """Between scans, with nothing held: index a due batch of rows, put the disk reserve back, and drop a
        held file whose check-ins (taken at start) are all journaled now."""
        if self.pipeline.unwritten or self.pipeline.journal_failing:
            return
        try:
            self.journal.maintain()
        except KioskError as exc:
            if not self._maintain_failed:
                log.error("journal maintenance failed: %s", exc)
            self._maintain_failed = True
            return
        self._maintain_failed = False
        path = self._held_path()
        if path.exists() and self.journal.unavailable is None:
            path.unlink(missing_ok=True)

    def _maybe_purge(self) -> None:
        now = self._monotonic()
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = now
        cutoff = self.clock.now() - timedelta(days=self.cfg.journal.retention_days)
        try:
            purged = self.journal.purge(cutoff, keep_unsent=self.cfg.mqtt.enabled)
        except KioskError as exc:
            log.error("journal purge failed: %s", exc)
            return
        if purged:
            log.info("purged %d journal rows older than %d days", purged, self.cfg.journal.retention_days)

    def close(self) -> None:
        for name, device in (("camera", self.camera), ("reader", self.reader)):
            if device is not None:
                try:
                    device.close()
                except Exception:
                    log.exception("closing %s failed", name)
        if self.uplink:
            self.uplink.stop()
        self.roster_worker.close()
        self.roster.close()
        self.feedback.close()
        for part in (self.gpio.indicator, self.gpio.buzzer, self.gpio.relay, self.gpio.button):
            if part is not None:
                try:
                    part.close()
                except Exception:
                    pass
        try:
            self.journal.maintain(force=True)  # index the last rows: the next start's queries need no tail scan
        except KioskError as exc:
            log.debug("journal not indexed at stop: %s", exc)
        self.journal.close()

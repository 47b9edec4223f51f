"""Clock trust. The Pi has no real-time clock: after an offline reboot its time is whatever `fake-hwclock`
saved at the last shutdown, hours or weeks behind. System time is trusted only once NTP has set it.

Evidence:
1. the kernel's NTP state (`adjtimex`, read-only): STA_UNSYNC clear and a sane maximum error. It also
   catches a clock that lost NTP for hours (the kernel sets STA_UNSYNC again as the error grows);
2. only where adjtimex is unavailable: `/run/systemd/timesync/synchronized`, which systemd-timesyncd creates
   on its first sync (on tmpfs, so it does not survive a reboot).
Unsynchronised with `/etc/fake-hwclock.data` present is reported as the fake-hwclock case.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from kiosk.config import Config

log = logging.getLogger(__name__)

STA_UNSYNC = 0x0040
MAX_ERROR_US = 16_000_000 - 1  # the kernel saturates maxerror at 16 s (NTP_PHASE_LIMIT) while unsynchronised
CACHE_SECONDS = 5.0  # synced() is asked per scan; the kernel state changes on a scale of minutes
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
FAKE_HWCLOCK_DATA = Path("/etc/fake-hwclock.data")


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (Linux, glibc)."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_reserved", ctypes.c_int * 11)]


@dataclass(frozen=True)
class KernelTime:
    status: int
    maxerror_us: int


def kernel_adjtimex() -> KernelTime | None:
    """The kernel's NTP state (modes = 0: read only, no privilege needed); None where unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = _Timex()
        if libc.adjtimex(ctypes.byref(timex)) < 0:
            return None
    except (OSError, AttributeError):
        return None
    return KernelTime(timex.status, timex.maxerror)


class SystemClock:
    def __init__(self, tz: str, source: str = "system", *,
                 adjtimex: Callable[[], KernelTime | None] = kernel_adjtimex,
                 timesync_flag: Path = TIMESYNC_FLAG, fake_hwclock_data: Path = FAKE_HWCLOCK_DATA,
                 monotonic: Callable[[], float] = time.monotonic, cache_seconds: float = CACHE_SECONDS):
        if source not in ("system", "assume_synced"):
            raise ValueError(f"unknown clock source {source!r}")
        self.tz = ZoneInfo(tz)
        self.source = source
        self._adjtimex = adjtimex
        self._timesync_flag = timesync_flag
        self._fake_hwclock_data = fake_hwclock_data
        self._monotonic = monotonic
        self._cache_seconds = cache_seconds
        self._state: str | None = None
        self._checked_at = float("-inf")

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def synced(self) -> bool:
        return self.state() in ("ntp", "assumed")

    def state(self) -> str:
        """ntp, assumed, fake-hwclock or unsynchronised (cached for a few seconds; changes logged once)."""
        now = self._monotonic()
        state = self._state
        if state is None or now - self._checked_at >= self._cache_seconds:
            self._checked_at = now
            state = self._probe()
            self._set(state)
        return state

    def _probe(self) -> str:
        if self.source == "assume_synced":
            return "assumed"
        kernel = self._adjtimex()
        if kernel is not None:  # authoritative: timesyncd and chrony both keep the kernel's state up to date
            synced = not kernel.status & STA_UNSYNC and 0 <= kernel.maxerror_us <= MAX_ERROR_US
        else:
            synced = self._timesync_flag.exists()
        if synced:
            return "ntp"
        return "fake-hwclock" if self._fake_hwclock_data.exists() else "unsynchronised"

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            log.log(logging.INFO if state == "ntp" else logging.WARNING, _STATE_MESSAGES[state])


_STATE_MESSAGES = {
    "ntp": "clock synchronised (NTP)",
    "assumed": "clock assumed synchronised (clock.source = assume_synced: development only)",
    "fake-hwclock": "clock not synchronised: time restored by fake-hwclock after a reboot, waiting for NTP",
    "unsynchronised": "clock not synchronised: date rules follow the fail policy until NTP sets the time",
}


class FixedClock:
    """A settable clock for tests, the demo and replays. `running`: time moves on from `at` in real time."""

    def __init__(self, at: datetime, synced: bool = True, *, running: bool = False,
                 monotonic: Callable[[], float] = time.monotonic):
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at
        self.is_synced = synced
        self.running = running
        self._monotonic = monotonic
        self._set_at = monotonic()

    def now(self) -> datetime:
        if not self.running:
            return self._at
        return self._at + timedelta(seconds=self._monotonic() - self._set_at)

    def set(self, at: datetime) -> None:
        self._at = at
        self._set_at = self._monotonic()

    def advance(self, seconds: float) -> None:
        self.set(self.now() + timedelta(seconds=seconds))

    def synced(self) -> bool:
        return self.is_synced


def create_clock(cfg: Config) -> SystemClock | FixedClock:
    if cfg.clock.source == "fixed":
        tz = ZoneInfo(cfg.site.timezone)
        return FixedClock(datetime.fromisoformat(cfg.clock.start).astimezone(tz), running=True)
    return SystemClock(cfg.site.timezone, cfg.clock.source)

"""Clock trust: NTP state from the kernel or timesyncd, the fake-hwclock case, caching and logging."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from fakes import ManualTime
from kiosk import config
from kiosk.clock import STA_UNSYNC, FixedClock, KernelTime, SystemClock, create_clock, kernel_adjtimex

SYNCED = KernelTime(status=0x2001, maxerror_us=120_000)  # STA_PLL | STA_NANO... anything without STA_UNSYNC
UNSYNCED = KernelTime(status=STA_UNSYNC, maxerror_us=16_000_000)


class Probe:
    def __init__(self, answer):
        self.answer = answer
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.answer


def make(tmp_path, answer, *, flag=False, fake_hwclock=False, source="system"):
    flag_path, data_path = tmp_path / "synchronized", tmp_path / "fake-hwclock.data"
    if flag:
        flag_path.touch()
    if fake_hwclock:
        data_path.write_text("2021-11-14 23:00:00\n")
    probe, manual = Probe(answer), ManualTime()
    clock = SystemClock("Asia/Ho_Chi_Minh", source, adjtimex=probe, timesync_flag=flag_path,
                        fake_hwclock_data=data_path, monotonic=manual.monotonic)
    return clock, probe, manual


def test_kernel_says_synchronised(tmp_path):
    clock, _, _ = make(tmp_path, SYNCED)
    assert clock.synced() and clock.state() == "ntp"


def test_kernel_unsync_flag_means_not_synchronised(tmp_path):
    clock, _, _ = make(tmp_path, UNSYNCED)
    assert not clock.synced() and clock.state() == "unsynchronised"


def test_insane_maxerror_is_not_synchronised(tmp_path):
    clock, _, _ = make(tmp_path, KernelTime(status=0, maxerror_us=16_000_000))
    assert not clock.synced()


def test_kernel_state_wins_over_a_stale_timesyncd_flag(tmp_path):
    clock, _, _ = make(tmp_path, UNSYNCED, flag=True)  # synced once, NTP lost for hours since
    assert not clock.synced()


def test_timesyncd_flag_file_counts_when_kernel_is_unavailable(tmp_path):
    clock, _, _ = make(tmp_path, None, flag=True)
    assert clock.synced()
    (tmp_path / "synchronized").unlink()  # /run is tmpfs: gone after a reboot
    clock, _, _ = make(tmp_path, None)
    assert not clock.synced() and clock.state() == "unsynchronised"


def test_fake_hwclock_after_offline_reboot(tmp_path, caplog):
    clock, probe, manual = make(tmp_path, UNSYNCED, fake_hwclock=True)
    with caplog.at_level(logging.INFO, logger="kiosk.clock"):
        assert not clock.synced()
        assert clock.state() == "fake-hwclock"
        probe.answer = SYNCED  # NTP confirms
        manual.advance(10)
        assert clock.synced()
    assert [r.getMessage() for r in caplog.records] == [
        "clock not synchronised: time restored by fake-hwclock after a reboot, waiting for NTP",
        "clock synchronised (NTP)"]


def test_answer_is_cached_and_changes_logged_once(tmp_path, caplog):
    clock, probe, manual = make(tmp_path, UNSYNCED)
    with caplog.at_level(logging.INFO, logger="kiosk.clock"):
        for _ in range(100):
            clock.synced()
        assert probe.calls == 1
        manual.advance(5.0)
        clock.synced()
        assert probe.calls == 2
        probe.answer = SYNCED
        assert not clock.synced()  # still the cached answer
        manual.advance(5.0)
        for _ in range(10):
            assert clock.synced()
            manual.advance(5.0)
        probe.answer = UNSYNCED
        manual.advance(5.0)
        assert not clock.synced()
    assert [r.getMessage().split(":")[0].split(" (")[0] for r in caplog.records] == [
        "clock not synchronised", "clock synchronised", "clock not synchronised"]


def test_assume_synced_never_probes(tmp_path):
    clock, probe, _ = make(tmp_path, UNSYNCED, source="assume_synced")
    assert clock.synced() and probe.calls == 0


def test_unknown_source_rejected():
    with pytest.raises(ValueError):
        SystemClock("UTC", "fixed")


def test_now_is_aware_in_site_zone(tmp_path):
    clock, _, _ = make(tmp_path, SYNCED)
    now = clock.now()
    assert now.utcoffset() == timedelta(hours=7)
    assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_real_kernel_adjtimex_is_readable():
    kernel = kernel_adjtimex()
    if kernel is None:
        pytest.skip("adjtimex is not available on this system")
    assert kernel.maxerror_us >= 0 and isinstance(kernel.status, int)


def test_fixed_clock_settable():
    manual = ManualTime()
    start = datetime(2021, 11, 15, 9, 0, tzinfo=timezone(timedelta(hours=7)))
    clock = FixedClock(start, monotonic=manual.monotonic)
    manual.advance(60)
    assert clock.now() == start and clock.synced()
    clock.advance(30)
    assert clock.now() == start + timedelta(seconds=30)
    clock.is_synced = False
    assert not clock.synced()
    with pytest.raises(ValueError):
        FixedClock(datetime(2021, 11, 15))


def test_fixed_clock_running_moves_on():
    manual = ManualTime()
    start = datetime(2021, 11, 15, 9, 0, tzinfo=timezone.utc)
    clock = FixedClock(start, running=True, monotonic=manual.monotonic)
    manual.advance(12.5)
    assert clock.now() == start + timedelta(seconds=12.5)


def test_create_clock_from_config():
    cfg = config.load(data={"clock": {"source": "fixed", "start": "2021-11-15T09:00:00+07:00"},
                            "site": {"timezone": "Asia/Ho_Chi_Minh"}})
    clock = create_clock(cfg)
    assert isinstance(clock, FixedClock) and clock.synced()
    assert clock.now() - datetime(2021, 11, 15, 2, 0, tzinfo=timezone.utc) < timedelta(seconds=5)
    assert clock.now().utcoffset() == timedelta(hours=7)
    system = create_clock(config.load(data={"clock": {"source": "assume_synced"}}))
    assert isinstance(system, SystemClock) and system.synced()

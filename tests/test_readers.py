"""Dedicated QR readers: serial on a real pseudo-terminal pair, evdev with real evdev events at the device seam."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drivers import reader_evdev, reader_serial
from fakes import StandInDevice, Typist
from kiosk import config
from kiosk.codes import classify
from kiosk.errors import DeviceError

CCCD = "079123456789|025123456|Nguyễn Thị Hồng Nhung|01011990|Nữ|12 Lê Lợi, Phường Bến Nghé, Quận 1, TP.HCM|15112021"


# ---------------------------------------------------------------- serial
@pytest.fixture
def pty_reader():
    master, slave = os.openpty()
    reader = reader_serial.SerialReader(os.ttyname(slave), 115200, max_length=4096)
    reader.start()
    os.close(slave)  # pyserial holds its own descriptor
    state = {"master": master}
    yield reader, state
    reader.close()
    if state["master"] is not None:
        os.close(state["master"])


def test_serial_cr_terminated_read(pty_reader):
    reader, pty = pty_reader
    os.write(pty["master"], b"BADGE-0001\r")
    assert reader.read(2.0) == "BADGE-0001"
    assert reader.read(0.05) is None


def test_serial_assembles_split_writes():
    master, slave = os.openpty()
    reader = reader_serial.SerialReader(os.ttyname(slave), 9600)
    reader.start()
    try:
        got: list[str | None] = []
        done = threading.Event()

        def consume():
            got.append(reader.read(5.0))
            done.set()

        threading.Thread(target=consume, daemon=True).start()
        for part in (b"HC1:6BF", b"OXN%TS3DH", b"0123\r"):
            os.write(master, part)
        assert done.wait(5.0)
        assert got == ["HC1:6BFOXN%TS3DH0123"]
    finally:
        reader.close()
        os.close(master)
        os.close(slave)


def test_serial_partial_read_waits_for_terminator():
    master, slave = os.openpty()
    reader = reader_serial.SerialReader(os.ttyname(slave), 9600, idle_gap=30.0)
    reader.start()
    try:
        os.write(master, b"ABC")
        assert reader.read(0.05) is None  # incomplete: kept, not returned
        os.write(master, b"DEF\r")
        assert reader.read(2.0) == "ABCDEF"
    finally:
        reader.close()
        os.close(master)
        os.close(slave)


def test_serial_reader_without_terminator_completes_after_a_pause(pty_reader):
    reader, pty = pty_reader
    os.write(pty["master"], b"BADGE-0001")
    assert reader.read(0.0) is None
    assert reader.read(5.0) == "BADGE-0001"
    os.write(pty["master"], b"BADGE-0002")  # the next code is not merged with the first
    assert reader.read(5.0) == "BADGE-0002"


def test_serial_remains_of_a_cut_read_stay_out_of_the_next_code(pty_reader):
    reader, pty = pty_reader
    os.write(pty["master"], b"079123")  # the reader glitched mid-code
    assert reader.read(5.0) == "079123"  # reported on its own (the core answers invalid)
    os.write(pty["master"], b"BADGE-0003\r")
    assert reader.read(2.0) == "BADGE-0003"


def test_serial_crlf_lf_and_two_codes_in_one_write(pty_reader):
    reader, pty = pty_reader
    os.write(pty["master"], b"FIRST\r\nSECOND\nTHIRD\r")
    assert [reader.read(2.0) for _ in range(3)] == ["FIRST", "SECOND", "THIRD"]
    assert reader.read(0.05) is None  # the LF of CRLF is not an empty read


def test_serial_crlf_split_across_writes(pty_reader):
    reader, pty = pty_reader
    os.write(pty["master"], b"ONE\r")
    assert reader.read(2.0) == "ONE"
    os.write(pty["master"], b"\nTWO\r")
    assert reader.read(2.0) == "TWO"


def test_serial_timeout_returns_none(pty_reader):
    reader, _ = pty_reader
    assert reader.read(0.05) is None


def test_serial_vietnamese_cccd_intact_and_classified(pty_reader):
    reader, pty = pty_reader
    os.write(pty["master"], CCCD.encode("utf-8") + b"\r")
    text = reader.read(2.0)
    assert text == CCCD
    assert classify(text).error is None


def test_serial_invalid_utf8_is_kept_raw_and_becomes_invalid(pty_reader):
    reader, pty = pty_reader
    raw = CCCD.encode().replace("ễ".encode(), b"\xff\xfe") + b"\r"
    os.write(pty["master"], raw)
    text = reader.read(2.0)
    assert "\ufffd" not in text
    assert text.encode("utf-8", "surrogateescape") == raw[:-1]  # nothing lost
    assert classify(text).error == "malformed"


def test_serial_over_long_line_is_bounded_and_too_long():
    master, slave = os.openpty()
    reader = reader_serial.SerialReader(os.ttyname(slave), 9600, max_length=64)
    reader.start()
    try:
        os.write(master, b"X" * 500 + b"\rNEXT\r")
        text = reader.read(2.0)
        assert len(text) == 65
        assert classify(text, max_length=64).error == "too_long"
        assert reader.read(2.0) == "NEXT"  # the next read is not merged with the discarded tail
    finally:
        reader.close()
        os.close(master)
        os.close(slave)


def test_serial_master_closed_is_device_error_and_start_reopens(pty_reader):
    reader, pty = pty_reader
    os.close(pty["master"])
    pty["master"] = None
    with pytest.raises(DeviceError) as err:
        reader.read(1.0)
    assert "dialout" in str(err.value) and "cable" in str(err.value)
    with pytest.raises(DeviceError, match="not open"):
        reader.read(0.0)


def test_serial_reopen_after_unplug():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    reader = reader_serial.SerialReader(name, 9600)
    reader.start()
    try:
        reader.start()  # start() again closes and reopens the same port
        os.write(master, b"AGAIN\r")
        assert reader.read(2.0) == "AGAIN"
    finally:
        reader.close()
        os.close(master)
        os.close(slave)


def test_serial_device_vanishes_and_comes_back(tmp_path):
    """Unplugged mid-read and plugged in again: udev gives a new tty behind the same /dev/serial/by-id link."""
    link = tmp_path / "usb-QR_Reader-if00"

    def plug() -> int:
        master, slave = os.openpty()
        link.unlink(missing_ok=True)
        link.symlink_to(os.ttyname(slave))
        os.close(slave)
        return master

    master = plug()
    reader = reader_serial.SerialReader(str(link), 9600, idle_gap=30.0)
    reader.start()
    try:
        os.write(master, b"079123")  # half a code, then the cable is pulled
        assert reader.read(0.05) is None
        os.close(master)
        link.unlink()
        with pytest.raises(DeviceError, match="unplugged"):
            reader.read(1.0)
        with pytest.raises(DeviceError, match="cannot open"):
            reader.start()  # still gone: the guard retries later
        master = plug()
        reader.start()
        os.write(master, b"BADGE-0007\r")
        assert reader.read(2.0) == "BADGE-0007"  # the half code from before the unplug is not in front of it
    finally:
        reader.close()
        os.close(master)


def test_serial_missing_port_is_device_error(tmp_path):
    reader = reader_serial.SerialReader(str(tmp_path / "ttyACM9"), 9600)
    with pytest.raises(DeviceError, match="dialout"):
        reader.start()


def test_serial_create_from_config(tmp_path):
    cfg = config.load(data={"reader": {"type": "serial", "port": "/dev/ttyUSB3", "baudrate": 115200},
                            "codes": {"max_length": 2048}})
    reader = reader_serial.create(cfg)
    assert (reader.port, reader.baudrate, reader.max_length) == ("/dev/ttyUSB3", 115200, 2048)


# ---------------------------------------------------------------- evdev (keyboard wedge)
evdev = pytest.importorskip("evdev")
from evdev import categorize, ecodes  # noqa: E402


@pytest.fixture
def wedge(monkeypatch):
    monkeypatch.setattr(evdev, "InputDevice", StandInDevice)
    dev = StandInDevice.plug("/dev/input/by-id/usb-QR_Scanner-event-kbd")
    reader = reader_evdev.EvdevReader(dev.path, max_length=4096)
    reader.start()
    yield reader, dev, Typist()
    reader.close()
    dev.cleanup()
    StandInDevice.instances.clear()


def test_stand_in_events_are_real_evdev_key_events():
    events = Typist().key("KEY_A", shift=True)
    keys = [categorize(e) for e in events if e.type == ecodes.EV_KEY]
    assert [(k.keycode, k.keystate) for k in keys] == \
        [("KEY_LEFTSHIFT", 1), ("KEY_A", 1), ("KEY_A", 0), ("KEY_LEFTSHIFT", 0)]


def test_evdev_grabs_and_releases_device(wedge):
    reader, dev, _ = wedge
    assert dev.grabbed
    reader.close()
    assert not dev.grabbed and dev.closed


def test_evdev_us_keymap_with_shift_and_enter(wedge):
    reader, dev, typist = wedge
    text = "HC1:6BF+OXN%TS3|<*>/a-b.c d_Z"
    dev.push(typist.text(text))
    assert reader.read(1.0) == text
    assert reader.read(0.0) is None


@pytest.mark.parametrize("suffix", ["KEY_KPENTER", "KEY_TAB"])
def test_evdev_other_read_suffixes(wedge, suffix):
    reader, dev, typist = wedge
    codes = ["079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<<", "HC1:6BF+OXN%TS3"]
    dev.push([event for code in codes for event in typist.text(code, enter=suffix)])
    assert [reader.read(1.0), reader.read(1.0)] == codes


def test_evdev_every_printable_ascii_character(wedge):
    reader, dev, typist = wedge
    text = "".join(Typist.US)
    dev.push(typist.text(text, enter="KEY_KPENTER"))
    assert reader.read(1.0) == text


def test_evdev_keypad_keys(wedge):
    reader, dev, typist = wedge
    names = ["KEY_KP1", "KEY_KP2", "KEY_KPDOT", "KEY_KPMINUS", "KEY_KPPLUS", "KEY_KPASTERISK", "KEY_KPSLASH"]
    dev.push([e for n in names for e in typist.key(n)] + typist.key("KEY_KPENTER"))
    assert reader.read(1.0) == "12.-+*/"


def test_evdev_cccd_ascii_part_reads_exactly(wedge):
    reader, dev, typist = wedge
    code = "079123456789|025123456|Nguyen Van A|01011990|Nam|12 Le Loi, Q1|15112021"
    dev.push(typist.text(code))
    text = reader.read(1.0)
    assert text == code
    assert classify(text).error is None


def test_evdev_reader_without_enter_completes_after_idle_gap(wedge):
    reader, dev, typist = wedge
    dev.push(typist.text("BADGE-0042", enter=None))
    assert reader.read(0.0) is None  # keys arrived, no Enter, the gap has not passed yet
    assert reader.read(1.0) == "BADGE-0042"


def test_evdev_two_codes_without_enter_queued_together_are_not_merged(wedge):
    reader, dev, typist = wedge
    first = typist.text("BADGE-0001", enter=None)
    typist.pause(0.5)  # the person presents the next code half a second later; the loop was busy
    dev.push(first + typist.text("BADGE-0002", enter=None))
    assert reader.read(1.0) == "BADGE-0001"
    assert reader.read(1.0) == "BADGE-0002"


def test_evdev_unmappable_key_or_alt_sequence_marks_the_read_invalid(wedge):
    reader, dev, typist = wedge
    dev.push(typist.key("KEY_N", shift=True) + typist.key("KEY_F5") + typist.key("KEY_ENTER"))
    assert reader.read(1.0) == "N\x1a"
    alt_numpad = [e for n in ("KEY_KP7", "KEY_KP8") for e in typist.key(n, modifier="KEY_LEFTALT")]
    dev.push(typist.text("07912345678", enter=None) + alt_numpad + typist.key("KEY_ENTER"))
    text = reader.read(1.0)
    assert text == "07912345678\x1a\x1a"
    assert classify(text).error is not None


def test_evdev_over_long_read_is_bounded(monkeypatch):
    monkeypatch.setattr(evdev, "InputDevice", StandInDevice)
    dev = StandInDevice.plug("/dev/input/event7")
    reader = reader_evdev.EvdevReader(dev.path, max_length=64)
    reader.start()
    try:
        dev.push(Typist().text("9" * 200))
        text = reader.read(1.0)
        assert len(text) == 65 and classify(text, max_length=64).error == "too_long"
    finally:
        reader.close()
        dev.cleanup()
        StandInDevice.instances.clear()


def test_evdev_unplugged_is_device_error_and_start_reopens(wedge):
    reader, dev, typist = wedge
    dev.unplugged = True
    dev.push(typist.text("X"))
    with pytest.raises(DeviceError, match="input group"):
        reader.read(1.0)
    dev.unplugged = False
    dev.events.clear()
    reader.start()
    dev.push(typist.text("BACK"))
    assert reader.read(1.0) == "BACK"


def test_evdev_device_grabbed_by_another_program(monkeypatch):
    monkeypatch.setattr(evdev, "InputDevice", StandInDevice)
    dev = StandInDevice.plug("/dev/input/event3")

    def busy():
        raise OSError(16, "Device or resource busy")

    dev.grab = busy
    try:
        with pytest.raises(DeviceError, match="another program"):
            reader_evdev.EvdevReader(dev.path).start()
        assert dev.closed
    finally:
        dev.cleanup()
        StandInDevice.instances.clear()


def test_evdev_missing_device_is_device_error_with_fix(tmp_path):
    reader = reader_evdev.EvdevReader(str(tmp_path / "event99"))  # the real evdev.InputDevice
    with pytest.raises(DeviceError) as err:
        reader.start()
    assert "input group" in str(err.value) and "/dev/input/by-id" in str(err.value)


def test_evdev_not_an_input_device_is_device_error(tmp_path):
    path = tmp_path / "not-a-device"
    path.write_bytes(b"")
    with pytest.raises(DeviceError, match="input group"):
        reader_evdev.EvdevReader(str(path)).start()


def test_evdev_create_from_config():
    cfg = config.load(data={"reader": {"type": "evdev", "device": "/dev/input/by-id/usb-x-event-kbd"}})
    reader = reader_evdev.create(cfg)
    assert reader.device == "/dev/input/by-id/usb-x-event-kbd" and reader.max_length == 4096


def test_readers_import_their_library_lazily():
    code = ("import sys, drivers.reader_serial, drivers.reader_evdev; "
            "print('serial' in sys.modules, 'evdev' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["False", "False"]

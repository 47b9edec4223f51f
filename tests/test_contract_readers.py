"""Reader port contract: one behavioural suite over the serial reader on a real pseudo-terminal, the evdev
keyboard-wedge reader (real evdev key events through `fakes.StandInDevice`: there is no /dev/uinput here) and
the fake reader.

read(timeout) gives one complete read with its terminator stripped, in the order they came and never two
merged, or None once `timeout` has passed with nothing (at once for 0); close() may be called more than
once, and start() after close() opens the reader again.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from fakes import QueueReader, StandInDevice, Typist
from kiosk import config
from kiosk.app import build_reader

# What a keyboard wedge can type (US layout, no diacritics): a personal QR, a staff badge, a signed certificate.
SCANS = ["079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<DN4790000000001<0900000001",
         "KB:STAFF-0042",
         "HC1:6BFOXN%TS3DH0YOJ58S S-W5HDC *M0II5XHC9B5G2+$N IOP-IA%NFQGRJPC%OQHIZC4.OI1RM8ZA.A5:S9MKN4NOKAN9C5"]


@dataclass
class Wired:
    reader: Any
    send: Callable[[str], None]  # what the reader device puts on the wire for one scan, suffix included
    unplug: Callable[[], None]  # the test's end of the wire goes away


def serial(monkeypatch) -> Wired:
    master, slave = os.openpty()
    cfg = config.load(data={"reader": {"type": "serial", "port": os.ttyname(slave), "baudrate": 115200}})
    reader = build_reader(cfg)
    reader.start()
    os.close(slave)  # pyserial holds its own descriptor
    return Wired(reader, lambda text: os.write(master, text.encode("utf-8") + b"\r"), lambda: os.close(master))


def evdev_wedge(monkeypatch) -> Wired:
    evdev = pytest.importorskip("evdev")
    monkeypatch.setattr(evdev, "InputDevice", StandInDevice)
    device = StandInDevice.plug("/dev/input/by-id/usb-QR_Scanner-event-kbd")
    cfg = config.load(data={"reader": {"type": "evdev", "device": device.path}})
    reader = build_reader(cfg)
    reader.start()
    typist = Typist()
    return Wired(reader, lambda text: device.push(typist.text(text)), device.cleanup)


def fake(monkeypatch) -> Wired:
    reader = QueueReader()
    reader.start()
    return Wired(reader, reader.texts.put, lambda: None)


READERS = {"serial-pty": serial, "evdev": evdev_wedge, "fake": fake}


@pytest.fixture(params=READERS)
def wired(request, monkeypatch) -> Wired:
    made = READERS[request.param](monkeypatch)
    request.addfinalizer(made.unplug)  # finalizers run last first: the reader is closed, then unplugged
    request.addfinalizer(made.reader.close)
    return made


@pytest.mark.parametrize("scan", SCANS, ids=["personal-qr", "badge", "signed"])
def test_one_complete_read_without_its_terminator(wired, scan):
    wired.send(scan)
    assert wired.reader.read(5.0) == scan
    assert wired.reader.read(0.05) is None  # nothing left over


def test_reads_in_order_never_merged(wired):
    for scan in SCANS:
        wired.send(scan)
    assert [wired.reader.read(5.0) for _ in SCANS] == SCANS


@pytest.mark.parametrize("timeout", [0.0, 0.05, 0.3])
def test_none_once_the_timeout_has_passed(wired, timeout):
    started = time.monotonic()
    assert wired.reader.read(timeout) is None
    waited = time.monotonic() - started
    assert timeout - 0.01 <= waited < timeout + 2.0  # waited for input, and came back


def test_close_twice_then_start_again(wired):
    wired.reader.close()
    wired.reader.close()
    wired.reader.start()
    wired.send(SCANS[1])
    assert wired.reader.read(5.0) == SCANS[1]

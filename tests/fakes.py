"""Test fakes, one of each: a manual time source, cameras, a decoder, displays, an indicator, readers, the
signed-certificate verifier, the pipeline's collaborators and a watchdog.

Fakes stand in for what cannot exist here (a camera sensor, a keyboard-wedge device) or for what a test must
script (a failure at a chosen moment). Where a product part can play the part, tests use it instead: the
product's `kiosk.clock.FixedClock` wherever a Clock is wanted (`ManualTime.clock()` makes one that follows the
test's time), luma's `dummy` device, the replay camera, gpiozero's MockFactory. The contract tests
(`tests/test_contract_*.py`) run the camera, decoder, display and reader fakes through the same suite as the
real adapters of their port. Fixtures live in `conftest.py`.
"""
from __future__ import annotations

import os
import queue
import select
import threading
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import numpy as np

from drivers.frames import to_grey
from kiosk.clock import FixedClock
from kiosk.errors import DeviceError, StorageError
from kiosk.model import Decision, ParsedCode

# 09:00 in Ho Chi Minh City on the day of the spec's test vectors.
T0 = datetime(2021, 11, 15, 2, 0, tzinfo=timezone.utc)
SITE_TZ = "Asia/Ho_Chi_Minh"


# ---------------------------------------------------------------- time
class ManualTime:
    """Monotonic and wall time that stand still until the test moves them, and always move together.

    With `manual = ManualTime()`, hand `manual.monotonic` to a part that wants monotonic seconds, `manual.wall`
    for epoch seconds (what `time.time` gives), and `manual.clock()` where the Clock port is wanted (the
    product's FixedClock, following this time).
    `step`: seconds that every `monotonic()` reading moves time on (a loop each of whose rounds is a
    second later, so every retry is due at once).
    """

    def __init__(self, wall: datetime = T0, monotonic: float = 1000.0, *, step: float = 0.0):
        if wall.tzinfo is None:
            raise ValueError("ManualTime needs an aware datetime")
        self._wall = wall
        self._monotonic = monotonic
        self.step = step

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        self.advance(self.step)
        return self._monotonic

    def wall(self) -> float:
        return self._wall.timestamp()

    def clock(self, *, synced: bool = True, tz: str = SITE_TZ) -> FixedClock:
        """The product's FixedClock in the site's zone, moving on as this time is advanced."""
        return FixedClock(self._wall.astimezone(ZoneInfo(tz)), synced, running=True, monotonic=lambda: self._monotonic)


# ---------------------------------------------------------------- cameras
class ScriptedCamera:
    """A camera playing a script: a frame, None (end of input), an exception to raise, or a callable run inside
    read() (on the App's thread) before moving on. After the script, read() gives None."""

    def __init__(self, script: Iterable[Any]):
        self.script = list(script)
        self.starts = self.closes = self.reads = 0

    def start(self) -> None:
        self.starts += 1

    def close(self) -> None:
        self.closes += 1

    def read(self) -> np.ndarray | None:
        self.reads += 1
        while self.script:
            item = self.script.pop(0)
            if callable(item):
                item()
                continue
            if isinstance(item, Exception):
                raise item
            return item
        return None


class StallingCamera:
    """Blank frames until `stall` is set, then read() hangs (a wedged driver) until `release` is set."""

    def __init__(self) -> None:
        self.stall, self.release, self.stalled = threading.Event(), threading.Event(), threading.Event()

    def start(self) -> None:
        pass

    def read(self) -> np.ndarray:
        if self.stall.is_set() and not self.release.is_set():
            self.stalled.set()
            self.release.wait(10.0)
        return np.full((64, 64), 200, np.uint8)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- decoders
class TableDecoder:
    """A decoder that knows the texts of the frames it was given (matched by their pixels, so a colour copy of a
    known frame matches too) and reads nothing in any other frame."""

    name = "table"

    def __init__(self, table: Iterable[tuple[np.ndarray, list[str]]] = ()):
        self._table: list[tuple[np.ndarray, list[str]]] = []
        for frame, texts in table:
            self.add(frame, texts)

    def add(self, frame: np.ndarray, texts: list[str]) -> None:
        grey = to_grey(frame)
        if grey is None:
            raise ValueError("not a frame")
        self._table.append((grey.astype(np.int16), list(texts)))

    def decode(self, frame: Any) -> list[str]:
        grey = to_grey(frame)
        if grey is None:
            return []
        for known, texts in self._table:
            # colour to grey rounds each pixel; anything else is another frame
            if known.shape == grey.shape and int(np.abs(known - grey).max(initial=0)) <= 1:
                return list(texts)
        return []


# ---------------------------------------------------------------- displays
class RecordingDisplay:
    """A display that keeps every image it is shown; `views` names what each one showed ("idle", a verdict)."""

    def __init__(self, size: tuple[int, int] = (128, 64), mode: str = "1"):
        self.size = size
        self.mode = mode
        self.images: list[Any] = []
        self.closes = 0

    @property
    def views(self) -> list[str]:
        return [image.info.get("view") for image in self.images]

    def show(self, image) -> None:
        self.images.append(image)

    def close(self) -> None:
        self.closes += 1


class BlockingDisplay(RecordingDisplay):
    """A slow panel: show() holds until `release` is set; `entered` is set when the first one starts."""

    def __init__(self, size: tuple[int, int] = (128, 64), mode: str = "1"):
        super().__init__(size, mode)
        self.release = threading.Event()
        self.entered = threading.Event()

    def show(self, image) -> None:
        self.entered.set()
        if not self.release.wait(5.0):
            raise TimeoutError("BlockingDisplay was never released")
        super().show(image)


class BrokenDisplay(RecordingDisplay):
    """A panel gone from the bus: show() and close() raise OSError while `broken`; set it False to heal."""

    def __init__(self, size: tuple[int, int] = (128, 64), mode: str = "1"):
        super().__init__(size, mode)
        self.broken = True

    def show(self, image) -> None:
        if self.broken:
            raise OSError("I2C remote I/O error")
        super().show(image)

    def close(self) -> None:
        if self.broken:
            raise OSError("I2C remote I/O error")
        super().close()


class BrokenIndicator:
    """A status light whose pins are gone: every command raises."""

    def flash(self, colour: str, seconds: float) -> None:
        raise RuntimeError("pin gone")

    def off(self) -> None:
        raise RuntimeError("pin gone")

    def close(self) -> None:
        raise RuntimeError("pin gone")


# ---------------------------------------------------------------- readers
class QueueReader:
    """A dedicated reader fed by the test (complete reads put on `texts`); the App may read it on its own thread."""

    def __init__(self) -> None:
        self.texts: queue.SimpleQueue[str] = queue.SimpleQueue()

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, timeout: float) -> str | None:
        try:
            return self.texts.get(timeout=timeout) if timeout > 0 else self.texts.get_nowait()
        except queue.Empty:
            return None


class DeadReader(QueueReader):
    """A reader that was unplugged: every read fails."""

    def read(self, timeout: float) -> str | None:
        raise DeviceError("reader unplugged")


class Typist:
    """Real evdev events as a US keyboard wedge emits them, with its own timestamps (5 ms per key)."""

    _NAMES = ([f"KEY_{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890"]
              + ["KEY_MINUS", "KEY_EQUAL", "KEY_LEFTBRACE", "KEY_RIGHTBRACE", "KEY_BACKSLASH", "KEY_SEMICOLON",
                 "KEY_APOSTROPHE", "KEY_COMMA", "KEY_DOT", "KEY_SLASH", "KEY_GRAVE", "KEY_SPACE"])
    _PLAIN = "abcdefghijklmnopqrstuvwxyz1234567890-=[]\\;',./` "
    _SHIFTED = "ABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()_+{}|:\"<>?~ "
    # character -> (key name, with Shift)
    US = {**{c: (n, False) for c, n in zip(_PLAIN, _NAMES)}, **{c: (n, True) for c, n in zip(_SHIFTED, _NAMES)}}

    def __init__(self, t0: float = 1000.0):
        self.t = t0

    def _ev(self, etype: int, code: int, value: int):
        from evdev import InputEvent

        self.t += 0.0025
        sec, usec = int(self.t), int(round((self.t % 1) * 1e6))
        return InputEvent(sec, usec, etype, code, value)

    def key(self, name: str, shift: bool = False, modifier: str | None = None) -> list:
        from evdev import ecodes

        out = []
        held = ([ecodes.ecodes["KEY_LEFTSHIFT"]] if shift else []) + ([ecodes.ecodes[modifier]] if modifier else [])
        code = ecodes.ecodes[name]
        for h in held:
            out.append(self._ev(ecodes.EV_KEY, h, 1))
        out += [self._ev(ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000), self._ev(ecodes.EV_KEY, code, 1),
                self._ev(ecodes.EV_SYN, 0, 0), self._ev(ecodes.EV_KEY, code, 0), self._ev(ecodes.EV_SYN, 0, 0)]
        for h in held:
            out.append(self._ev(ecodes.EV_KEY, h, 0))
        return out

    def text(self, text: str, enter: str | None = "KEY_ENTER") -> list:
        events = [e for ch in text for e in self.key(*self.US[ch])]
        return events + (self.key(enter) if enter else [])

    def pause(self, seconds: float) -> None:
        self.t += seconds


class StandInDevice:
    """Mimics exactly the evdev.InputDevice calls the reader uses (there is no /dev/uinput here to make a real
    one); readiness goes through a real pipe, so select() works as on a device node. Monkeypatch it over
    `evdev.InputDevice`, `plug()` a path, `push()` events (from `Typist`), and `cleanup()` at the end."""

    instances: dict[str, "StandInDevice"] = {}

    def __init__(self, path: str):
        if path not in self.instances:
            raise FileNotFoundError(2, "No such file or directory", path)
        self.__dict__ = self.instances[path].__dict__

    @classmethod
    def plug(cls, path: str) -> "StandInDevice":
        dev = object.__new__(cls)
        dev.path, dev.grabbed, dev.closed, dev.unplugged = path, False, False, False
        dev.events, dev._r, dev._w = deque(), *os.pipe()
        cls.instances[path] = dev
        return dev

    def push(self, events) -> None:
        self.events.extend(events)
        os.write(self._w, b"!")

    def fileno(self) -> int:
        return self._r

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def close(self) -> None:
        self.closed = True

    def read_one(self):
        if self.unplugged:
            raise OSError(19, "No such device")
        if not self.events:
            while select.select([self._r], [], [], 0)[0]:
                os.read(self._r, 4096)
            return None
        return self.events.popleft()

    def cleanup(self) -> None:
        os.close(self._r)
        os.close(self._w)
        self.instances.pop(self.path, None)


# ---------------------------------------------------------------- the decision core's collaborators
class StubDcc:
    """Stands in for the signed-certificate verifier (it has its own tests): a fixed result; calls recorded."""

    def __init__(self, result: ParsedCode):
        self.result = result
        self.calls: list[tuple[str, datetime]] = []

    def parse(self, text: str, now: datetime) -> ParsedCode:
        self.calls.append((text, now))
        return self.result


class StubDecider:
    """Verdict chosen by the payload's first word; subject_ref = its last word, if it has two or more, so one
    person can show two codes ("green alice", "green cccd alice")."""

    def decide(self, text: str, now: datetime, clock_synced: bool, *, roster_stale: bool = False,
               trust_stale: bool = False, revocation_stale: bool = False) -> Decision:
        words = text.split()
        ref = words[-1] if len(words) > 1 else None
        return Decision(kind="personal_qr", verdict=words[0], reason="r", subject_ref=ref, at=now,
                        clock_synced=clock_synced)


class RecordingFeedback:
    """Feedback that notes ("feedback", verdict) in a shared log, to see what came before the journal write."""

    def __init__(self, log: list):
        self.log = log

    def show(self, decision: Decision) -> None:
        self.log.append(("feedback", decision.verdict))


class FlakyJournal:
    """A journal that keeps rows in memory, noting ("journal", verdict) in the shared log; fails while `fail`."""

    def __init__(self, log: list):
        self.log, self.fail, self.rows = log, False, []

    def append(self, decision: Decision) -> dict:
        if self.fail:
            raise StorageError("disk full")
        self.rows.append(decision)
        self.log.append(("journal", decision.verdict))
        return {"seq": len(self.rows)}


# ---------------------------------------------------------------- the service manager
class LoopWatchdog:
    """The watchdog App.run drives: `started` is set by ready() (every device open); progress() counts loop
    rounds and, with `stop_after`, stops `app` after that many."""

    def __init__(self, app: Any = None, stop_after: int | None = None):
        self.started = threading.Event()
        self.app = app
        self.stop_after = stop_after
        self.rounds = 0

    def ready(self) -> None:
        self.started.set()

    def progress(self) -> None:
        self.rounds += 1
        if self.stop_after is not None and self.rounds >= self.stop_after:
            self.app.stop()

    def tick(self) -> None:
        pass

    def report(self, alarms: list[str]) -> None:
        pass

"""systemd notifications without a dependency: sd_notify is one datagram to `$NOTIFY_SOCKET`.

`Watchdog` pings only when the main loop reported progress since the last ping, so a loop that stalls
(a hung camera read, a deadlock) stops the pings and systemd restarts the service after `WatchdogSec=`.
It also keeps systemd's status line (`systemctl status kiosk`) on the kiosk's alarms, sent once per change.
Everything is a no-op outside systemd (NOTIFY_SOCKET / WATCHDOG_USEC unset).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        # "@name" is Linux's abstract namespace: a leading NUL byte instead of a file
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        """Send one notification; never raises (a lost notification must not stop the kiosk)."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notification failed: %s", exc)
            self._failed = True
            return False
        if self._failed:
            log.info("systemd notifications work again")
        self._failed = False
        return True

    def ready(self) -> bool:
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text.splitlines()[0] if text else ''}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec= (seconds), or None when the watchdog is off or meant for another process."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0"))
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 2e6


class Watchdog:
    def __init__(self, notifier: Notifier, interval: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        self.interval = watchdog_interval() if interval is None else interval
        self._monotonic = monotonic
        self._progressed = False
        self._last_ping = monotonic()
        self._status: str | None = None

    def ready(self) -> None:
        """Start-up is complete; systemd's watchdog timer runs from here."""
        self.notifier.ready()
        self._last_ping = self._monotonic()
        if self.interval:
            log.info("systemd watchdog: ping every %.1f s while the loop makes progress", self.interval)

    def progress(self) -> None:
        """The main loop completed real work (a frame read, a read handled, an idle poll returned)."""
        self._progressed = True

    def tick(self, now: float | None = None) -> bool:
        """Ping if the interval has passed and progress was made since the last ping. True when pinged."""
        if not self.interval or not self._progressed:
            return False
        now = self._monotonic() if now is None else now
        if now - self._last_ping < self.interval:
            return False
        self._progressed = False
        self._last_ping = now
        return self.notifier.watchdog()

    def report(self, alarms: list[str]) -> None:
        """Show the kiosk's alarms in `systemctl status`; a notification only when they change."""
        text = "scanning" if not alarms else "scanning with alarms: " + ", ".join(alarms)
        if text != self._status:
            self._status = text
            self.notifier.status(text)

"""A worker thread for the slow part of a downlink command, so the app thread keeps scanning meanwhile.

A 60,000-row roster applied on the app thread blocked scanning for 2.25 s. The roster store is made for
this: each change is one SQLite transaction on a connection of its own, and the pipeline's lookups read the
previous roster until its commit. A handler hands the work here and returns the Future; the uplink answers
the command with its result when it is done (kiosk.mqtt.downlink.finish), with the command's correlation id.

Jobs run one at a time in the order given (a replacement then an addition to it stay in that order). At most
MAX_WAITING wait: each holds its parsed command (a 4 MB command is some 40 MB of Python objects), so one more
is refused with a reason the sender can act on. A job's exception goes into its Future, never into the thread.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

from kiosk.errors import DataError

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_WAITING = 2


class Worker:
    def __init__(self, name: str):
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._unfinished = 0                          # the job running and those waiting
        self._thread: threading.Thread | None = None  # started by the first job
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run `job` on the worker after those before it; DataError when MAX_WAITING are already waiting."""
        future: Future[T] = Future()
        with self._lock:
            if self._unfinished > MAX_WAITING:
                raise DataError(f"{self.name}: {MAX_WAITING} earlier updates are still waiting to be applied; "
                                "send this one again once they are answered")
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._jobs.put((job, future))
        return future

    def close(self, timeout: float = 5.0) -> None:
        """Let the job in progress finish (up to `timeout`), drop the waiting ones. A job still running after
        that is abandoned with the process: its transaction rolls back, as after a power cut."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
                self._done()
        self._jobs.put(None)
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:  # the answer says what failed; the worker goes on
                    future.set_exception(exc)
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._unfinished -= 1

"""The live feed's fan-out: the collector thread hands each stored batch to every open browser stream.

Each stream is an asyncio queue on the web server's loop, fed with `call_soon_threadsafe` (the collector
never waits for a browser). A stream that falls behind (a phone on a slow link) is marked lagging and
catches up with a fresh snapshot instead of a backlog.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

QUEUE_BATCHES = 100


@dataclass(eq=False)
class Stream:
    site: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[dict[str, Any]]] = field(default_factory=lambda: asyncio.Queue(QUEUE_BATCHES))
    lagging: bool = False

    def offer(self, rows: list[dict[str, Any]]) -> None:   # on the loop's thread
        try:
            self.queue.put_nowait(rows)
        except asyncio.QueueFull:
            self.lagging = True


class Hub:
    def __init__(self) -> None:
        self._streams: set[Stream] = set()
        self._lock = threading.Lock()
        self.published = 0

    def open(self, site: str) -> Stream:
        stream = Stream(site, asyncio.get_running_loop())
        with self._lock:
            self._streams.add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def publish(self, rows: list[dict[str, Any]]) -> None:
        """Called by the collector after a commit, with the rows that were new."""
        self.published += len(rows)
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            mine = [r for r in rows if r["site"] == stream.site]
            if mine:
                try:
                    stream.loop.call_soon_threadsafe(stream.offer, mine)
                except RuntimeError:       # its loop has closed: the server is stopping
                    self.close(stream)

    @property
    def streams(self) -> int:
        with self._lock:
            return len(self._streams)

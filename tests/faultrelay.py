"""A fault relay: a small asyncio TCP proxy on loopback between a client (the kiosk) and a server (a real
Mosquitto) that makes the link as bad as 3G and shop Wi-Fi are, on demand:

- latency with jitter, per direction (bytes keep their order, as TCP keeps them);
- a bandwidth cap, per direction and connection;
- connection resets every few seconds (RST, not FIN: SO_LINGER 0 on both sockets);
- a half-open link (`freeze`): every open connection stops carrying bytes both ways and is never closed, so
  neither end gets a FIN or an RST; only an MQTT keepalive can notice it. New connections pass normally (the
  path came back), as a kiosk's reconnect over a fresh route would.

It runs its own event loop on a daemon thread, so a test or a bench drives it from plain threads:
`relay = FaultRelay(broker.port).start()`, point the kiosk at `relay.port`, change `relay.faults` at any
time, `relay.stop()` at the end. It counts connections, resets and the bytes carried each way.
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

CHUNK = 4096          # small reads, so a bandwidth cap paces smoothly


@dataclass
class LinkFaults:
    latency_s: float = 0.0              # one way, each direction
    jitter_s: float = 0.0               # +- uniformly around the latency (never below 0)
    bytes_per_s: float | None = None    # each direction of each connection
    reset_every_s: float | None = None  # each connection is reset (RST) this long after it was opened


@dataclass
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    opened: float = field(default_factory=time.monotonic)
    frozen: bool = False
    closed: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)   # the relay stops: frozen pipes end


class FaultRelay:
    def __init__(self, target_port: int, faults: LinkFaults | None = None, *, seed: int = 12):
        self.target_port = target_port
        self.faults = faults or LinkFaults()
        self.port = 0
        self.connections = 0
        self.resets = 0
        self.frozen = 0                 # connections made half-open
        self.bytes_up = 0               # client -> server
        self.bytes_down = 0
        self.log: list[tuple[float, str]] = []     # (monotonic, "accept" | "reset" | "freeze"), in order
        self._random = random.Random(seed)
        self._open: list[_Connection] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-relay", daemon=True)

    # ------------------------------------------------------------------ driven from other threads
    def start(self) -> "FaultRelay":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault relay did not start")
        return self

    def freeze(self) -> int:
        """Make every open connection half-open; how many there were."""
        def go() -> int:
            count = 0
            for conn in self._open:
                if not conn.closed and not conn.frozen:
                    conn.frozen = True
                    count += 1
                    self.log.append((time.monotonic(), "freeze"))
            self.frozen += count
            return count
        return asyncio.run_coroutine_threadsafe(_call(go), self._loop).result(10)

    def open_connections(self) -> int:
        return sum(1 for conn in self._open if not conn.closed)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ------------------------------------------------------------------ the loop's thread
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self._open:
            self._close(conn, reset=True)
            conn.released.set()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        for writer in (client_writer, server_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(client_writer, server_writer)
        self._open = [c for c in self._open if not c.closed] + [conn]
        self.connections += 1
        self.log.append((time.monotonic(), "accept"))
        tasks = [asyncio.ensure_future(self._pipe(conn, client_reader, server_writer, up=True)),
                 asyncio.ensure_future(self._pipe(conn, server_reader, client_writer, up=False)),
                 asyncio.ensure_future(self._reset_later(conn))]
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        self._close(conn, reset=False)
        for task in tasks:
            task.cancel()

    async def _pipe(self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, up: bool) -> None:
        """Read as it comes; deliver after the latency (in order), at most at the bandwidth cap. A frozen
        connection swallows everything (the sender sees its bytes leave and nothing come back)."""
        chunks: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                item = await chunks.get()
                if item is None:
                    return
                at, data = item
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if conn.frozen or conn.closed:
                    continue
                writer.write(data)
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                await writer.drain()
                cap = self.faults.bytes_per_s
                if cap:
                    await asyncio.sleep(len(data) / cap)

        sender = asyncio.ensure_future(deliver())
        last_at = 0.0
        try:
            while not sender.done():
                data = await reader.read(CHUNK)
                if not data:
                    break
                if conn.frozen:
                    continue
                faults = self.faults
                delay = max(0.0, faults.latency_s + self._random.uniform(-faults.jitter_s, faults.jitter_s))
                last_at = max(last_at, time.monotonic() + delay)      # jitter never reorders a byte stream
                chunks.put_nowait((last_at, data))
            if not conn.frozen:       # a FIN from one end goes on to the other once the bytes before it did
                chunks.put_nowait(None)
                await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            if conn.frozen:           # half-open: this end's close is never passed on
                await conn.released.wait()

    async def _reset_later(self, conn: _Connection) -> None:
        while not conn.closed:
            every = self.faults.reset_every_s
            if every is None:
                await asyncio.sleep(0.2)
                continue
            left = conn.opened + every - time.monotonic()
            if left > 0:
                await asyncio.sleep(min(left, 0.2))
                continue
            if not conn.frozen:
                self.resets += 1
                self.log.append((time.monotonic(), "reset"))
                self._close(conn, reset=True)
            return

    def _close(self, conn: _Connection, *, reset: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        for writer in (conn.client, conn.server):
            try:
                if reset:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                else:
                    writer.close()
            except (OSError, AttributeError):
                pass


async def _call(function):
    return function()

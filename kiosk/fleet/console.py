"""`kiosk console`: the collector and the web pages in one process.

The collector thread consumes the fleet's check-ins (shared subscription, store, then ack), kiosk status and
telemetry, and the kiosks' answers to roster commands; every stored batch goes to the live feed's hub. The
web server (uvicorn) runs on the main thread. When the broker is away the pages still work and the collector
keeps trying (logged once per change).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from kiosk.config import Config
from kiosk.errors import KioskError, StorageError
from kiosk.fleet.accounts import Accounts
from kiosk.fleet.collector import Collector
from kiosk.fleet.events import EventStore, stored_secret
from kiosk.fleet.live import Hub
from kiosk.fleet.staff import StaffLists
from kiosk.fleet.web import Console, create_app
from kiosk.identity import EPOCH, KeyRing, SiteKey, load_keys_for
from kiosk.mqtt.backoff import backoff_delay

log = logging.getLogger("kiosk.fleet.console")

RETENTION_EVERY_S = 3600.0


def site_keys(cfg: Config) -> KeyRing:
    """The sites' subject_ref keys: console.hash_key as one fixed key, else the key ring a kiosk would use
    (journal.hash_key, or the ring file journal.key_file installed with `kiosk sitekey import`)."""
    if cfg.console.hash_key:
        return KeyRing(None, [SiteKey("console", cfg.console.hash_key.encode("utf-8"), EPOCH)],
                       retention_days=cfg.journal.retention_days)
    return load_keys_for(cfg)


def open_store(cfg: Config) -> EventStore:
    base = cfg.source.resolve().parent if cfg.source else Path.cwd()
    return EventStore(cfg.console.database_url, base)


class ConsoleProcess:
    """Everything `kiosk console` runs, startable and stoppable from a test."""

    def __init__(self, cfg: Config, store: EventStore | None = None):
        self.cfg = cfg
        self.store = store or open_store(cfg)
        sites = [s.strip() for s in cfg.console.sites.split(",") if s.strip()] or None
        self.collector = Collector(cfg, self.store, sites=sites, group=cfg.console.group,
                                   client_id=cfg.console.client_id or f"console-{cfg.console.group}-{cfg.console.port}")
        self.hub = Hub()
        self.collector.listeners.append(self.hub.publish)
        keys = site_keys(cfg)
        self.staff = StaffLists(self.store.engine, stored_secret(self.store.engine, "staff_digest_key").encode(),
                                self.collector.publish, self.collector.topics.command)
        self.collector.result_listeners.append(self.staff.on_result)
        from kiosk.fleet.bundle import BundleImporter

        self.bundles = BundleImporter(self.store, keys)
        self.accounts = Accounts(self.store.engine)
        self.console = Console(cfg=cfg, store=self.store, accounts=self.accounts, hub=self.hub, staff=self.staff,
                               keys=keys, bundles=self.bundles, online=lambda: self.collector.client is not None)
        self.app = create_app(self.console)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.server: Any = None

    # ------------------------------------------------------------------ retention
    def purge_old(self) -> int:
        """Delete check-ins older than console.retention_days; logged when something went."""
        cutoff = int((time.time() - self.cfg.console.retention_days * 86400) * 1000)
        try:
            removed = self.store.purge(cutoff)
        except (StorageError, SQLAlchemyError) as exc:
            log.error("console retention: purge failed: %s", str(exc).splitlines()[0])
            return 0
        if removed:
            log.info("console retention: deleted %d check-ins older than %d days", removed,
                     self.cfg.console.retention_days)
        return removed

    def _retain(self) -> None:
        while not self._stop.is_set():
            self.purge_old()
            self._stop.wait(RETENTION_EVERY_S)

    # ------------------------------------------------------------------ the collector thread
    def start_collector(self) -> None:
        """The collector thread (once: `kiosk demo --console` starts it before its replay, then serves)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._collect, name="console-collector", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        attempt, said = 0, None
        while not self._stop.is_set():
            try:
                self.collector.connect()
            except KioskError as exc:
                attempt += 1
                if str(exc) != said:
                    log.warning("console: %s (the pages keep working; retrying)", exc)
                    said = str(exc)
                self._stop.wait(backoff_delay(attempt, self.cfg.mqtt.reconnect_min_seconds,
                                              self.cfg.mqtt.reconnect_max_seconds))
                continue
            try:
                self.collector.run(should_stop=self._stop.is_set)
            except Exception:      # a worker that dies says so and starts again
                log.exception("console collector stopped; restarting")
                self.collector.close()
                continue
            break

    # ------------------------------------------------------------------ the web server
    def make_server(self) -> Any:
        import uvicorn

        config = uvicorn.Config(self.app, host=self.cfg.console.bind, port=self.cfg.console.port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=2, lifespan="off")
        self.server = uvicorn.Server(config)
        return self.server

    def serve(self) -> None:
        """Run until interrupted (uvicorn handles SIGINT/SIGTERM on the main thread)."""
        self.start_collector()
        threading.Thread(target=self._retain, name="console-retention", daemon=True).start()
        server = self.make_server()
        log.info("console on http://%s:%d (database %s)", self.cfg.console.bind, self.cfg.console.port,
                 self.store.engine.url.render_as_string(hide_password=True))
        try:
            server.run()
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.collector.close()
        self.store.close()

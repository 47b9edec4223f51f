"""A bad link between the kiosk and a real Mosquitto (tests/faultrelay.py): latency with jitter, a bandwidth cap,
connection resets every few seconds and a half-open link that only a keepalive can notice. The kiosk scans
(journals) 10,000 check-ins while its uplink fights the link: none is lost, the collector stores each once, the
drain completes, scanning never waits for the link, reconnects back off, and the half-open link is noticed
within 1.5 keepalive periods. The numbers per fault are `bench/uplink.py --link bad`'s."""
from __future__ import annotations

import statistics
import threading
import time
from datetime import datetime, timezone

from conftest import assert_exactly_once, journal_states, kiosk_config, running_collector, wait_for
from faultrelay import FaultRelay, LinkFaults
from kiosk.model import GREEN, Decision
from kiosk.mqtt.client import make_client
from kiosk.mqtt.uplink import Uplink
from kiosk.stores.journal import Journal

N = 10_000
KEEPALIVE = 6
RECONNECT_MIN, RECONNECT_MAX = 0.2, 2.0


def test_ten_thousand_checkins_through_a_bad_link(tmp_path, broker, uplinks):
    relay = FaultRelay(broker.port, LinkFaults(latency_s=0.02, jitter_s=0.015, bytes_per_s=250_000,
                                               reset_every_s=2.5)).start()
    cfg = kiosk_config(tmp_path, relay.port, keepalive=KEEPALIVE, max_inflight=100, resend_after_seconds=15,
                       reconnect_min_seconds=RECONNECT_MIN, reconnect_max_seconds=RECONNECT_MAX)
    direct = kiosk_config(tmp_path, broker.port)          # the collector sits next to the broker
    Journal(cfg.journal.path, site="s1", device="d1").close()      # the journal exists before the uplink starts
    collector_db = tmp_path / "collector.sqlite"
    scanned: list[float] = []                               # seconds each check-in took to journal and hand over
    frozen_at: list[float] = []
    try:
        with running_collector(direct, collector_db) as collector:
            up = Uplink(cfg, cfg.journal.path, client_factory=make_client)
            uplinks.append(up)
            up.start()

            def scan() -> None:      # the pipeline's part: journal, then wake the uplink; about 1,000 a second
                journal = Journal(cfg.journal.path, site="s1", device="d1")   # the pipeline thread's own
                for i in range(N):
                    started = time.monotonic()
                    journal.append(Decision(kind="personal_qr", verdict=GREEN, reason="valid",
                                            subject={"name": "N*** A"}, subject_ref=f"r{i}",
                                            at=datetime.now(timezone.utc)))
                    up.notify()
                    scanned.append(time.monotonic() - started)
                    time.sleep(max(0.0, 0.001 - (time.monotonic() - started)))
                journal.close()

            scanner = threading.Thread(target=scan, daemon=True)
            scanner.start()
            wait_for(lambda: len(scanned) >= N // 3, 60, what="a third scanned")

            def freeze() -> bool:    # the kiosk's connection (online, not being reset this instant) goes half-open
                if up.online and relay.open_connections() == 1 and relay.freeze() == 1:
                    frozen_at.append(time.monotonic())
                return bool(frozen_at)

            wait_for(freeze, 60, interval=0.01, what="the kiosk online to freeze its link")
            during_freeze = len(scanned)
            wait_for(lambda: not up.online, 3 * KEEPALIVE, interval=0.02, what="the half-open link noticed")
            noticed_after = time.monotonic() - frozen_at[0]
            scanned_while_frozen = len(scanned) - during_freeze
            assert "no answer from the broker" in up.state["last_error"], up.state
            scanner.join(120)
            assert len(scanned) == N
            wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": N}, 240, what="all confirmed")
            duplicates = collector.result.duplicates
        assert noticed_after <= 1.5 * KEEPALIVE, noticed_after
        # scanning never waited for the link: it went on while nothing could flow (a check-in that waited for
        # the network would have taken the whole stall, seconds)
        assert scanned_while_frozen > 0 and max(scanned) < KEEPALIVE / 2, max(scanned)
        assert_exactly_once(collector_db, cfg.journal.path)
        # reconnects back off: each new connection came at least the backoff's lower bound after the link was
        # lost, and as short-lived links followed one another the wait grew to the cap (none lasts 10 s here)
        gaps = [at - lost for (lost, what), (at, then) in zip(relay.log, relay.log[1:])
                if what in ("reset", "freeze") and then == "accept"]
        reconnects = up.counters["reconnects"] - 1
        assert relay.resets >= 3 and len(gaps) >= 3, relay.log
        assert reconnects == len(gaps) and min(gaps) >= RECONNECT_MIN / 2, gaps
        assert statistics.median(gaps[3:] or gaps) >= RECONNECT_MAX / 2, gaps
        print(f"bad link: {N} check-ins, {reconnects} reconnects ({relay.resets} resets, 1 half-open noticed "
              f"after {noticed_after:.1f} s), {duplicates} duplicates at the collector, {up.counters['resent']} "
              f"resent, slowest check-in {max(scanned) * 1000:.0f} ms")
    finally:
        relay.stop()

"""Scale-out: several console processes on one PostgreSQL sharing the MQTT load, and a site broker bridged
to a central one (check-ins out, acks and commands back)."""
from __future__ import annotations

from pathlib import Path

from conftest import fill_journal, journal_states, kiosk_config, running_collector, wait_for
from postgres import postgres_server  # noqa: F401  (fixture)
from kiosk.fleet.events import EventStore


def test_two_consoles_on_one_postgresql_split_the_load_and_store_each_event_once(tmp_path, broker,
                                                                                 postgres_server):
    from kiosk.mqtt.uplink import Uplink

    url = postgres_server.new_database()
    n = 3000
    cfgs = [kiosk_config(tmp_path, broker.port, device=f"d{i}", max_inflight=50) for i in (1, 2)]
    ids = [fill_journal(cfg.journal.path, n // 2, device=f"d{i}") for i, cfg in enumerate(cfgs, 1)]
    with running_collector(cfgs[0], url, client_id="console-a", group="console") as a, \
            running_collector(cfgs[0], url, client_id="console-b", group="console") as b:
        uplinks = [Uplink(cfg, cfg.journal.path) for cfg in cfgs]
        for up in uplinks:
            up.start()
        try:
            for cfg in cfgs:
                wait_for(lambda: journal_states(cfg.journal.path) == {"confirmed": n // 2}, 90, what="all confirmed")
        finally:
            for up in uplinks:
                up.stop()
        assert a.result.stored > 0 and b.result.stored > 0
        assert a.result.stored + b.result.stored == n           # each event stored by one of them, once
    store = EventStore(url)
    assert sorted(store.ids()) == sorted(ids[0] + ids[1])
    from datetime import datetime, timedelta, timezone

    counts = store.counts("s1", datetime.now(timezone.utc) - timedelta(days=8), 9, timezone.utc)
    assert sum(day["green"] for day in counts.days.values()) == n   # the counts add up across both writers
    store.close()


def bridge_lines(central_port: int) -> tuple[str, ...]:
    """The site broker's side of the bridge: config/mosquitto/bridge.conf.example, pointed at `central_port`."""
    example = Path(__file__).resolve().parent.parent / "config" / "mosquitto" / "bridge.conf.example"
    lines = [line for line in example.read_text().splitlines() if line and not line.startswith("#")]
    return ("allow_anonymous true", *(f"address 127.0.0.1:{central_port}" if line.startswith("address ") else line
                                      for line in lines))


def test_checkins_at_a_bridged_site_broker_reach_the_central_console_and_acks_come_back(tmp_path,
                                                                                          broker_factory):
    from kiosk.mqtt.uplink import Uplink

    central = broker_factory("central").start()
    site = broker_factory("site", extra=bridge_lines(central.port)).start()
    n = 500
    kiosk = kiosk_config(tmp_path, site.port)                 # the kiosk talks to its site's broker only
    console = kiosk_config(tmp_path, central.port)            # the console to the central one
    ids = fill_journal(kiosk.journal.path, n)
    with running_collector(console, tmp_path / "central.sqlite", group="console") as collector:
        up = Uplink(kiosk, kiosk.journal.path)
        up.start()
        try:
            wait_for(lambda: journal_states(kiosk.journal.path) == {"confirmed": n}, 90,
                     what="acks back across the bridge")
        finally:
            up.stop()
        assert collector.result.stored == n
        wait_for(lambda: collector.result.statuses >= 1, 20, what="the kiosk's status across the bridge")
    store = EventStore(tmp_path / "central.sqlite")
    assert sorted(store.ids()) == sorted(ids)
    assert store.devices(["s1"])[0]["status"] in ("online", "offline")
    store.close()

"""`kiosk demo`: the whole pipeline on bundled scenes, no hardware needed.

Replays the bundled camera scenes through decoder, decision, feedback (PNG screens, mock GPIO),
journal and uplink (a local broker if one is reachable, otherwise the check-ins stay queued), then
prints one JSON line per check-in (masked) and a summary. It waits (--drain-seconds) for the broker's
PUBACKs and then for a consumer's confirmations (with --console the console's collector runs during the
replay), and says what is still unsent or unconfirmed.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import config
from kiosk.commands import Args, Parser, Subparsers, emit, load_config, seconds
from kiosk.errors import KioskError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.fleet.console import ConsoleProcess

CONSOLE_CONNECT_S = 5.0


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("demo", parents=[common], help="replay the bundled scenes through the full pipeline")
    p.add_argument("--keep", action="store_true", help="keep the previous demo journal instead of starting afresh")
    p.add_argument("--drain-seconds", type=seconds, default=5.0,
                   help="how long to wait for the uplink to deliver the check-ins when a broker is reachable "
                        "(PUBACKs, then a consumer's confirmations)")
    p.add_argument("--console", action="store_true",
                   help=f"then open the venue console on the demo's check-ins (user {DEMO_USER}, password "
                        f"{DEMO_PASSWORD}; on console.bind:console.port, 127.0.0.1:8080 by default)")
    p.set_defaults(func=run)


DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"


def _reset(cfg: Config) -> list[Path]:
    """Start from a clean demo state: journal, roster, trust list, screens and console store of this config only.
    The paths that existed and were removed."""
    journal, roster = Path(cfg.journal.path), Path(cfg.roster.path)
    files = [journal, journal.with_name(journal.name + "-wal"), journal.with_name(journal.name + "-shm"),
             roster, roster.with_name(roster.name + "-wal"), roster.with_name(roster.name + "-shm"),
             roster.with_name("roster.json"), Path(cfg.trust.path)]  # and the roster file of earlier versions
    console = cfg.console.database_url            # kiosk demo --console's store, a file unless a URL
    if "://" not in console:
        path = (cfg.source.resolve().parent if cfg.source else Path.cwd()) / console
        files += [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    removed = [path for path in dict.fromkeys(files) if path.exists()]  # roster.path may be roster.json itself
    for path in removed:
        path.unlink()
    if cfg.display.type == "png" and Path(cfg.display.path).exists():
        shutil.rmtree(cfg.display.path, ignore_errors=True)
        removed.append(Path(cfg.display.path))
    return removed


def run(args: Args) -> int:
    from kiosk.app import App

    cfg = load_config(args)
    if not args.keep and cfg.source != config.DEFAULT_CONFIG:
        # never wipe the journal (unsent check-ins), roster or trust list of a real configuration
        print("kiosk demo: --config given: keeping its journal, roster and trust list", file=sys.stderr)
    elif not args.keep:
        removed = _reset(cfg)
        if removed:
            print(f"kiosk demo: starting afresh: removed the previous demo's {len(removed)} files and folders "
                  f"(journal, roster, trust list, screens) in {Path(cfg.journal.path).parent} (--keep keeps them)",
                  file=sys.stderr)
    console = _start_console(cfg) if args.console else None
    app = App(cfg)
    app.pipeline.keep_decisions = True
    app.wait_for_screens = True
    result = app.run(drain_seconds=args.drain_seconds,
                     consumer=console is not None and console.collector.client is not None)
    for decision in app.pipeline.decisions:
        emit({"event": "checkin", **decision.to_json()})
    c = app.pipeline.counters
    latencies = sorted(c.latencies_ms)
    summary = {
        "event": "summary",
        "frames": c.frames,
        "frames_unreadable": result.counters.get("frames_unreadable", 0),
        "reads": c.reads,
        "checkins": c.checkins,
        "repeats_suppressed": c.repeats,
        "green": c.green,
        "black": c.black,
        "invalid": c.invalid,
        "journal_rows": result.journal_rows,
        "journal": cfg.journal.path,
        "screens": cfg.display.path if cfg.display.type == "png" else None,
        "uplink": result.uplink,
        "latency_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "latency_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2) if latencies else None,
    }
    emit(summary)
    _say_unconfirmed(cfg, result.uplink, args.drain_seconds)
    if console is not None:
        return _console(cfg, console)
    return 0


def _say_unconfirmed(cfg: Config, uplink: dict[str, Any] | None, waited: float) -> None:
    """What the uplink has not delivered end to end when the demo ends (they stay in the journal)."""
    if uplink is None:
        return
    box = uplink["outbox"]
    pending, unconfirmed = box["pending"], box["published_unconfirmed"]
    if pending:
        print(f"kiosk demo: {pending} check-ins not sent (no broker at {cfg.mqtt.host}:{cfg.mqtt.port} within "
              f"{waited:g} s); they stay queued in {cfg.journal.path}", file=sys.stderr)
    elif unconfirmed and cfg.mqtt.confirm:
        print(f"kiosk demo: {unconfirmed} check-ins published but not confirmed by a consumer within {waited:g} s "
              "(none runs? kiosk collector, or kiosk demo --console); they stay in the journal and would be sent "
              "again until confirmed", file=sys.stderr)
    elif box.get("last_ack_at"):
        print("kiosk demo: every check-in confirmed by the consumer", file=sys.stderr)


def _start_console(cfg: Config) -> ConsoleProcess:
    """The console's collector before the replay, so the demo's check-ins reach it over MQTT and are confirmed.
    Bounded: without a broker the demo goes on (the console then shows the journal's copy)."""
    from kiosk.fleet.console import ConsoleProcess, open_store

    console = ConsoleProcess(cfg, open_store(cfg))   # console.database_url: demo-out/console.sqlite here
    console.start_collector()
    deadline = time.monotonic() + CONSOLE_CONNECT_S
    while console.collector.client is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return console


def _console(cfg: Config, console: ConsoleProcess) -> int:
    """The console on the demo's check-ins: what its collector stored, and the journal's rows it did not get
    (no broker), copied in (each stored once)."""
    from kiosk.fleet.accounts import Accounts
    from kiosk.stores.checkins import SELECT_EVENTS, event_from_row
    from kiosk.stores.outbox import Outbox

    store = console.store
    outbox = Outbox(cfg.journal.path)
    try:   # what the collector would have stored had a broker run (the same rows, stored once)
        rows = outbox.db.execute(f"{SELECT_EVENTS} ORDER BY seq").fetchall()
        store.add([event_from_row(row) for row in rows])
    finally:
        outbox.close()
    accounts = Accounts(store.engine)
    if accounts.verify(DEMO_USER, DEMO_PASSWORD) is None:
        try:
            accounts.add_user(DEMO_USER, DEMO_PASSWORD)
        except KioskError:
            accounts.set_password(DEMO_USER, DEMO_PASSWORD)
    accounts.grant(DEMO_USER, cfg.site.id, "owner")
    print(f"console: http://{cfg.console.bind}:{cfg.console.port}/live?site={cfg.site.id}  user {DEMO_USER}, "
          f"password {DEMO_PASSWORD}  (Ctrl-C stops it)", file=sys.stderr, flush=True)
    console.serve()
    return 0

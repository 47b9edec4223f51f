"""`kiosk collector`: the reference consumer. Stores every check-in once in SQLite and confirms to each device.

Run several with the same --group to split the load (MQTT shared subscription). `--plain` subscribes
without sharing, for a single collector on a broker that does not keep shared subscriptions across its own
restarts (Mosquitto 2.0): the broker then keeps the collector's events while it is away.
"""
from __future__ import annotations

from kiosk.commands import Args, Parser, Subparsers, emit, load_config, seconds


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("collector", parents=[common], help="store check-ins from the broker and confirm them")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--site", help="only this site (default: the configured site.id)")
    where.add_argument("--all", action="store_true", help="every site")
    p.add_argument("--db", default="collector.sqlite", help="SQLite file for the events (default: %(default)s)")
    p.add_argument("--group", default="collectors", help="shared subscription group (default: %(default)s)")
    p.add_argument("--plain", action="store_true", help="a plain, not shared, subscription (one collector only)")
    p.add_argument("--client-id", help="MQTT client id, unique per collector (default: collector-GROUP); the "
                                       "shipped broker configuration uses the user name: one user per collector")
    p.add_argument("--max-events", type=int, help="stop after storing this many new events")
    p.add_argument("--until-idle", type=seconds, metavar="SECONDS", help="stop when nothing arrived for this long")
    p.set_defaults(func=run)


def run(args: Args) -> int:
    from kiosk.fleet.collector import Collector

    cfg = load_config(args)
    site = None if args.all else (args.site or cfg.site.id)
    collector = Collector(cfg, args.db, site=site, group=args.group, client_id=args.client_id, shared=not args.plain)
    try:
        collector.connect()
        result = collector.run(max_events=args.max_events, until_idle=args.until_idle)
    finally:
        collector.close()
    emit({"collector": "done", **result.as_dict()})
    return 0

"""`kiosk tail`: print each check-in of a site once (de-duplicated by id), one JSON line each."""
from __future__ import annotations

from kiosk.commands import Args, Parser, Subparsers, emit, load_config, seconds


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("tail", parents=[common], help="print a site's check-ins live, once each")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--site", help="site to watch (default: the configured site.id)")
    where.add_argument("--all", action="store_true", help="every site")
    p.add_argument("--max-events", type=int, help="stop after printing this many")
    p.add_argument("--until-idle", type=seconds, metavar="SECONDS", help="stop when nothing arrived for this long")
    p.set_defaults(func=run)


def run(args: Args) -> int:
    from kiosk.fleet.tail import Tail

    cfg = load_config(args)
    site = None if args.all else (args.site or cfg.site.id)
    Tail(cfg, site, emit).run(max_events=args.max_events, until_idle=args.until_idle)
    return 0

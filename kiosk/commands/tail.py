"""`kiosk tail`: print each check-in of a site once (de-duplicated by id): a readable line each, or JSON."""
from __future__ import annotations

import sys
from typing import Any

from kiosk.commands import Args, Parser, Subparsers, load_config, seconds


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("tail", parents=[common], help="print a site's check-ins live, once each")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--site", help="site to watch (default: the configured site.id)")
    where.add_argument("--all", action="store_true", help="every site")
    p.add_argument("--max-events", type=int, help="stop after printing this many")
    p.add_argument("--until-idle", type=seconds, metavar="SECONDS", help="stop when nothing arrived for this long")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a readable line")
    p.set_defaults(func=run)


def run(args: Args) -> int:
    from kiosk.fleet.tail import Tail, json_line, line

    cfg = load_config(args)
    site = None if args.all else (args.site or cfg.site.id)
    render = json_line if args.json else line

    def show(event: dict[str, Any]) -> None:
        sys.stdout.write(render(event) + "\n")
        sys.stdout.flush()

    Tail(cfg, site, show).run(max_events=args.max_events, until_idle=args.until_idle)
    return 0

"""`kiosk decide PAYLOAD [--at ISO-8601]`: classify, parse, verify and decide one payload string."""
from __future__ import annotations

import sys
import time

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.timeparse import parse_instant


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("decide", parents=[common], help="decide one payload string (no hardware)")
    p.add_argument("payload", help="the code's text, as a reader would deliver it")
    p.add_argument("--at", metavar="ISO-8601", help="decide as of this instant (default: now); "
                   "a bare date is the start of that day in the site's time zone")
    p.set_defaults(func=run)


def run(args: Args) -> int:
    from kiosk.app import build_clock, build_decider, build_revocations, build_roster, build_trust, staleness

    cfg = load_config(args)
    clock = build_clock(cfg)
    if args.at:
        try:
            now = parse_instant(args.at, cfg.site.timezone)
        except ValueError as exc:
            print(f"kiosk decide: --at: {exc}", file=sys.stderr)
            return 2
        synced = True  # the operator states the instant
    else:
        now, synced = clock.now(), clock.synced()
    roster, trust, revocations = build_roster(cfg), build_trust(cfg), build_revocations(cfg)
    decider = build_decider(cfg, roster, trust, revocations=revocations)
    # How old the roster, trust and revocation lists are is a fact of now, whatever instant --at decides for.
    stale = staleness(cfg, roster, trust, clock, revocations)()
    started = time.perf_counter()
    decision = decider.decide(args.payload, now, synced, roster_stale=stale.roster, trust_stale=stale.trust,
                              revocation_stale=stale.revocation)
    decision.latency_ms = (time.perf_counter() - started) * 1000.0
    emit(decision.to_json())
    return 0

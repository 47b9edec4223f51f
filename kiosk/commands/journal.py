"""`kiosk journal export|stats|trace|purge|check|backup`: read and maintain the check-in journal.

Dates are `YYYY-MM-DD` (start of that local day) or ISO-8601; naive values are in `site.timezone`.
"""
from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from zoneinfo import ZoneInfo

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.errors import KioskError
from kiosk.timeparse import parse_instant

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.stores.journal import Journal

Bound = datetime | None  # an optional end of a --since/--until range
USAGE_ERROR = 2
_REF = re.compile(r"[0-9a-f]{32}")


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("journal", parents=[common], help="export, count, trace or purge journaled check-ins")
    actions = p.add_subparsers(dest="journal_action", metavar="ACTION", required=True)

    export = actions.add_parser("export", parents=[common], help="write check-ins as CSV or JSON lines, or the "
                                "unconfirmed ones as an offline bundle for the console")
    what = export.add_mutually_exclusive_group(required=True)
    what.add_argument("--format", choices=("csv", "jsonl"))
    what.add_argument("--bundle", metavar="FILE", help="every check-in the console has not confirmed, MACed with "
                      "the site key, for kiosk console import")
    _add_range(export, since_required=False)
    export.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    export.set_defaults(func=run_export)

    stats = actions.add_parser("stats", parents=[common], help="in/out per day and hour, counts per verdict "
                               "and kind (one JSON object)")
    _add_range(stats, since_required=False)
    stats.set_defaults(func=run_stats)

    trace = actions.add_parser("trace", parents=[common], help="visits of one person (one JSON object a line)")
    trace.add_argument("subject", metavar="SUBJECT", help="a subject_ref, or the person's ID number or QID")
    _add_range(trace, since_required=True)
    trace.set_defaults(func=run_trace)

    purge = actions.add_parser("purge", parents=[common], help="delete rows older than journal.retention_days "
                               "(rows not yet uploaded stay while mqtt.enabled)")
    purge.set_defaults(func=run_purge)

    check = actions.add_parser("check", parents=[common], help="full integrity check of the journal file "
                               "(one JSON object; exit 1 when damaged)")
    check.set_defaults(func=run_check)

    backup = actions.add_parser("backup", parents=[common], help="copy the journal, live, with SQLite's online "
                                "backup API (the way to copy a running kiosk's journal)")
    backup.add_argument("target", metavar="FILE", help="the copy to write (replaced if it exists)")
    backup.set_defaults(func=run_backup)


def _add_range(p: Parser, *, since_required: bool) -> None:
    p.add_argument("--since", required=since_required, metavar="DATE", help="from this instant (inclusive)")
    p.add_argument("--until", metavar="DATE", help="up to this instant (exclusive)")


def _range(args: Args, tz: str) -> tuple[Bound, Bound]:
    since, until = (parse_instant(v, tz) if v else None for v in (args.since, args.until))
    return since, until


def _run(args: Args, action: Callable[[Config, Journal, Bound, Bound], int]) -> int:
    """Load config, parse the range, open the journal, run `action(cfg, journal, since, until)`."""
    from kiosk.stores.journal import Journal

    try:
        cfg = load_config(args)
    except KioskError as exc:
        print(f"kiosk journal: {exc}", file=sys.stderr)
        return exc.exit_status
    try:
        since, until = _range(args, cfg.site.timezone) if hasattr(args, "since") else (None, None)
    except ValueError as exc:
        print(f"kiosk journal: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        journal = Journal(cfg.journal.path, site=cfg.site.id, device=cfg.site.device)
        try:
            return action(cfg, journal, since, until)
        finally:
            journal.close()
    except KioskError as exc:
        print(f"kiosk journal: {exc}", file=sys.stderr)
        return exc.exit_status


def run_export(args: Args) -> int:
    if args.bundle:
        return _run(args, lambda cfg, journal, since, until: write_bundle(cfg, args.bundle))

    def export(cfg: Config, journal: Journal, since: Bound, until: Bound) -> int:
        if not args.output:
            count = journal.export(args.format, sys.stdout, since, until)
        else:
            try:
                with open(args.output, "w", encoding="utf-8", newline="") as out:
                    count = journal.export(args.format, out, since, until)
            except OSError as exc:
                print(f"kiosk journal export: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
                return 74
        print(f"{count} check-ins exported", file=sys.stderr)
        return 0

    return _run(args, export)


def write_bundle(cfg: Config, path: str) -> int:
    """The journal's unconfirmed check-ins (pending, published, dropped) as a MACed offline bundle."""
    from datetime import timezone

    from kiosk.identity import LOCAL, load_keys_for
    from kiosk.stores import bundle
    from kiosk.stores.checkins import event_from_row
    from kiosk.stores.outbox import Outbox

    now = datetime.now(timezone.utc)
    ring = load_keys_for(cfg)
    key = ring.current(now)
    if key.origin == LOCAL:
        print("kiosk journal export --bundle: this kiosk has no site key yet, only a key of its own, which the "
              "console cannot check: install the site's key ring (kiosk sitekey import FILE) or set "
              "journal.hash_key", file=sys.stderr)
        return 78
    outbox = Outbox(cfg.journal.path)
    try:
        events = [event_from_row(row) for row in outbox.unconfirmed()]
    finally:
        outbox.close()
    data = bundle.bundle(cfg.site.id, cfg.site.device, now.isoformat(timespec="seconds"), events, key.key)
    try:
        with open(path, "wb") as out:
            out.write(data)
    except OSError as exc:
        print(f"kiosk journal export: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 74
    emit({"bundle": path, "site": cfg.site.id, "device": cfg.site.device, "events": len(events)})
    return 0


def run_stats(args: Args) -> int:
    def stats(cfg: Config, journal: Journal, since: Bound, until: Bound) -> int:
        emit(journal.stats(since, until, cfg.site.timezone))
        return 0

    return _run(args, stats)


def run_trace(args: Args) -> int:
    def trace(cfg: Config, journal: Journal, since: Bound, until: Bound) -> int:
        visits = {e["seq"]: e for ref in _refs(cfg, args.subject) for e in journal.trace(ref, since, until)}
        for event in sorted(visits.values(), key=lambda e: (datetime.fromisoformat(e["ts"]), e["seq"])):
            emit(event)
        print(f"{len(visits)} visits", file=sys.stderr)
        return 0

    return _run(args, trace)


def _refs(cfg: Config, subject: str) -> list[str]:
    """The subject_ref(s) to look up: the argument itself if it is one, else its refs as an ID and as a QID under
    every site key kept (rows made before a key rotation are found too)."""
    if _REF.fullmatch(subject):
        return [subject]
    from kiosk.identity import load_keys_for
    from kiosk.model import Person

    keys = load_keys_for(cfg)
    return keys.refs(Person(id_number=subject)) + keys.refs(Person(qid=subject))


def run_purge(args: Args) -> int:
    def purge(cfg: Config, journal: Journal, since: Bound, until: Bound) -> int:
        cutoff = datetime.now(ZoneInfo(cfg.site.timezone)) - timedelta(days=cfg.journal.retention_days)
        keep_unsent = cfg.mqtt.enabled
        emit({"purged": journal.purge(cutoff, keep_unsent=keep_unsent), "older_than": cutoff.isoformat(),
              "kept_unsent": keep_unsent, "rows": journal.count()})
        return 0

    return _run(args, purge)


def run_check(args: Args) -> int:
    from kiosk.stores.journal_file import moved_aside

    def check(cfg: Config, journal: Journal, since: Bound, until: Bound) -> int:
        started = time.perf_counter()
        problems = journal.check()
        ok = problems == ["ok"]
        emit({"journal": str(journal.path), "ok": ok, "integrity_check": problems,
              "seconds": round(time.perf_counter() - started, 3), "rows": journal.count() if ok else None,
              "moved_aside": [str(p) for p in moved_aside(journal.path)]})
        return 0 if ok else 1

    return _run(args, check)


def run_backup(args: Args) -> int:
    def backup(cfg: Config, journal: Journal, since: Bound, until: Bound) -> int:
        started = time.perf_counter()
        rows = journal.backup(args.target)
        emit({"journal": str(journal.path), "backup": str(Path(args.target).resolve()), "rows": rows,
              "seconds": round(time.perf_counter() - started, 3)})
        return 0

    return _run(args, backup)

"""`kiosk sitekey new|rotate|import|show|export`: the site's subject_ref key ring (see kiosk.identity).

Where the site's keys are kept (the console host, or an operator's machine):
    kiosk sitekey new --out site-keys.json            a ring with one fresh key
    kiosk sitekey rotate --file site-keys.json [--at ISO-8601]   the next key, in use from --at (default now)
On each kiosk (and the console), by file:
    kiosk sitekey import site-keys.json               merged into journal.key_file (ids only are printed)
or over MQTT, the `trust` command with `site_keys` (TLS and the broker's ACL protect it in transit):
    kiosk sitekey export --file site-keys.json | mosquitto_pub -t kiosk/SITE/all/cmd/trust -s ...
`export` prints the command with its envelope (issued now, a version of the time in milliseconds): send it
at once, a kiosk refuses it once it is older than mqtt.command_max_age_hours.
`show` prints ids, dates and whether rotation is due; only `export` ever prints a key, and says so on stderr.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.mqtt.downlink import stamp
from kiosk.timeparse import parse_instant

if TYPE_CHECKING:
    from kiosk.identity import KeyRing


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("sitekey", parents=[common], help="the site's subject_ref key ring: make, rotate, install, "
                       "show (never prints a key but with export)")
    actions = p.add_subparsers(dest="sitekey_action", metavar="ACTION", required=True)
    new = actions.add_parser("new", parents=[common], help="write a new ring with one fresh key (mode 0600)")
    new.add_argument("--out", required=True, type=Path, metavar="FILE")
    new.set_defaults(func=run_new)
    rotate = actions.add_parser("rotate", parents=[common], help="add the next key to a ring; keys superseded for "
                                "longer than journal.retention_days are deleted")
    rotate.add_argument("--file", type=Path, metavar="FILE", help="the ring (default: journal.key_file)")
    rotate.add_argument("--at", metavar="ISO-8601", help="when the new key comes into use (default: now); give "
                        "the kiosks time to receive it first")
    rotate.set_defaults(func=run_rotate)
    imp = actions.add_parser("import", parents=[common], help="merge the keys of a ring file into this kiosk's ring")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.set_defaults(func=run_import)
    show = actions.add_parser("show", parents=[common], help="key ids, since when, the key in use, rotation due")
    show.add_argument("--file", type=Path, metavar="FILE", help="the ring (default: journal.key_file)")
    show.set_defaults(func=run_show)
    export = actions.add_parser("export", parents=[common], help="print the MQTT trust command that installs the "
                                "ring's keys (contains the keys: pipe it, do not store it)")
    export.add_argument("--file", type=Path, metavar="FILE", help="the ring (default: journal.key_file)")
    export.set_defaults(func=run_export)


def _ring(args: Args) -> KeyRing:
    from kiosk.identity import KeyRing, load_keys, load_keys_for

    cfg = load_config(args)
    if getattr(args, "file", None):
        return KeyRing(args.file, load_keys(args.file), retention_days=cfg.journal.retention_days,
                       rotate_days=cfg.journal.key_rotate_days)
    return load_keys_for(cfg)


def run_new(args: Args) -> int:
    from kiosk.identity import new_key, save

    if args.out.exists():
        print(f"kiosk sitekey new: {args.out} exists; rotate it (kiosk sitekey rotate --file) or choose another "
              "name", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    save(args.out, [key], exclusive=True)
    emit({"file": str(args.out), "keys": [key.describe()]})
    return 0


def run_rotate(args: Args) -> int:
    now = datetime.now(timezone.utc)
    try:
        at = parse_instant(args.at, load_config(args).site.timezone) if args.at else None
    except ValueError as exc:
        print(f"kiosk sitekey rotate: --at: {exc}", file=sys.stderr)
        return 2
    ring = _ring(args)
    key = ring.rotate(now, at)
    emit({"added": key.describe(), **ring.describe(now)})
    return 0


def run_import(args: Args) -> int:
    from kiosk.identity import load_keys, load_keys_for

    ring = load_keys_for(load_config(args))
    now = datetime.now(timezone.utc)
    ring.install(load_keys(args.file), now)
    emit(ring.describe(now))
    return 0


def run_show(args: Args) -> int:
    emit(_ring(args).describe(datetime.now(timezone.utc)))
    return 0


def run_export(args: Args) -> int:
    ring = _ring(args)
    print("kiosk sitekey export: the output holds the site's keys; send it over TLS to the site's kiosks and do "
          "not keep it", file=sys.stderr)
    # a command, with the envelope every command carries (issue time, version): send it soon after export
    print(json.dumps(stamp({"site_keys": [k.to_json() for k in ring.keys]}, time.time())))
    return 0

"""`kiosk trust import FILE... [--replace]` and `kiosk trust show` (key ids and dates only)."""
from __future__ import annotations

from pathlib import Path

from kiosk.commands import Args, Parser, Subparsers, emit, load_config


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("trust", parents=[common], help="import or show the trust list of certificate signers")
    actions = p.add_subparsers(dest="trust_action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", parents=[common], help="add signer certificates (PEM, DER or JSON "
                             '[{"kid": base64, "certificate": base64 DER}]); all files or nothing')
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--replace", action="store_true", help="the list becomes exactly these signers")
    imp.set_defaults(func=run_import)
    show = actions.add_parser("show", parents=[common], help="count, last update and key ids of the trust list")
    show.set_defaults(func=run_show)


def run_import(args: Args) -> int:
    from kiosk.stores.trust import TrustList, parse_files

    trust = TrustList(load_config(args).trust.path)
    signers = parse_files([Path(name) for name in args.files])  # every file validated before any write
    trust.store(signers, replace=args.replace)  # a DataError lists every problem; kiosk.cli exits 65 with it
    updated = trust.updated_at
    emit({"imported": len(signers), "count": trust.count, "updated_at": updated.isoformat() if updated else None})
    return 0


def run_show(args: Args) -> int:
    from kiosk.stores.trust import TrustList

    trust = TrustList(load_config(args).trust.path)
    updated = trust.updated_at
    emit({"count": trust.count, "updated_at": updated.isoformat() if updated else None, "kids": trust.kids()})
    return 0

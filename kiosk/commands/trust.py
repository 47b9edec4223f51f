"""`kiosk trust import FILE... [--replace]` and `kiosk trust show` (key ids, counts and dates only).

A file is either signers (PEM or DER certificates, JSON `[{"kid": base64, "certificate": base64 DER}]`) or an
EU-style revocation list (JSON batches `{"hashType": "UCI", "entries": [{"hash": base64}]}`, see
kiosk.stores.revocation). Every file is validated before anything is written; `--replace` makes each list
given (signers, revocations) exactly what the files hold.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.errors import DataError


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("trust", parents=[common], help="import or show the trust list of certificate signers "
                       "and the revocation list")
    actions = p.add_subparsers(dest="trust_action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", parents=[common], help="add signer certificates (PEM, DER or JSON "
                             '[{"kid": base64, "certificate": base64 DER}]) or revocation lists (JSON batches); '
                             "all files or nothing")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--replace", action="store_true", help="each list given becomes exactly what these files hold")
    imp.set_defaults(func=run_import)
    show = actions.add_parser("show", parents=[common], help="count, last update and key ids of the trust list; "
                              "hash counts of the revocation list")
    show.set_defaults(func=run_show)


def run_import(args: Args) -> int:
    from kiosk.app import build_revocations
    from kiosk.stores import revocation, trust as trust_store

    cfg = load_config(args)
    signers: list[trust_store.Signer] = []
    batches: list[revocation.Batch] = []
    problems: list[str] = []
    given_signers = given_batches = False
    for path in map(Path, args.files):  # every file validated before any write
        try:
            found = revocation.parse_file(path)
        except DataError as exc:
            problems.extend([f"{path}: {p}" for p in exc.problems] or [str(exc)])
            continue
        try:
            if found is None:
                signers.extend(trust_store.parse_files([path]))
                given_signers = True
            else:
                batches.extend(found)
                given_batches = True
        except DataError as exc:
            problems.extend(exc.problems or [str(exc)])
    if problems:
        raise DataError("trust import rejected, nothing imported", problems)  # kiosk.cli exits 65 with the list
    out: dict[str, Any] = {}
    if given_signers:
        trust = trust_store.TrustList(cfg.trust.path)
        trust.store(signers, replace=args.replace)
        updated = trust.updated_at
        out.update(imported=len(signers), count=trust.count, updated_at=updated.isoformat() if updated else None)
    if given_batches:
        revocations = build_revocations(cfg)
        out["revoked_hashes_imported"] = revocations.store(batches, replace=args.replace)
        out["revocations"] = revocations.summary()
    emit(out)
    return 0


def run_show(args: Args) -> int:
    from kiosk.app import build_revocations
    from kiosk.stores.trust import TrustList

    cfg = load_config(args)
    trust = TrustList(cfg.trust.path)
    updated = trust.updated_at
    emit({"count": trust.count, "updated_at": updated.isoformat() if updated else None, "kids": trust.kids(),
          "revocations": build_revocations(cfg).summary()})
    return 0

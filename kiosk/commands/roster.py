"""`kiosk roster import FILE.csv [--force]` and `kiosk roster show` (no personal data is printed)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kiosk.commands import Args, Parser, Subparsers, emit, load_config

if TYPE_CHECKING:
    from kiosk.stores.roster import Roster


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("roster", parents=[common], help="import or show the local roster")
    actions = p.add_subparsers(dest="roster_action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", parents=[common], help="replace the roster with a CSV file "
                             "(columns id, qid, name, doses, recovered, staff; ',' ';' or tab separated; "
                             "all or nothing)")
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument("--force", action="store_true",
                     help="allow a file that removes more than half of a roster of 50 people or more")
    imp.set_defaults(func=run_import)
    show = actions.add_parser("show", parents=[common], help="count, version and last update of the roster")
    show.set_defaults(func=run_show)


def _roster(args: Args) -> Roster:
    from kiosk.stores.roster import Roster

    cfg = load_config(args)
    return Roster(cfg.roster.path, badge_prefix=cfg.codes.badge_prefix)


def run_import(args: Args) -> int:
    roster = _roster(args)
    # A DataError lists every bad line and a StorageError says what to fix; kiosk.cli exits 65 or 74 with them.
    # A running service sees the new roster on its next scan: the import is one SQLite transaction.
    count = roster.import_csv(args.file, force=args.force)
    emit({"imported": count, "version": roster.version})
    return 0


def run_show(args: Args) -> int:
    roster = _roster(args)
    updated = roster.updated_at
    emit({"count": roster.count, "version": roster.version, "updated_at": updated.isoformat() if updated else None})
    return 0

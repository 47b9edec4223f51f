"""`kiosk roster import FILE.csv` and `kiosk roster show` (no personal data is printed)."""
from __future__ import annotations

from kiosk.commands import Args, Parser, Subparsers, emit, load_config


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("roster", parents=[common], help="import or show the local roster")
    actions = p.add_subparsers(dest="roster_action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", parents=[common], help="replace the roster with a CSV file "
                             "(columns id, qid, name, doses, recovered, staff; all or nothing)")
    imp.add_argument("file", metavar="FILE.csv")
    imp.set_defaults(func=run_import)
    show = actions.add_parser("show", parents=[common], help="count, version and last update of the roster")
    show.set_defaults(func=run_show)


def run_import(args: Args) -> int:
    from kiosk.stores.roster import Roster

    roster = Roster(load_config(args).roster.path)
    count = roster.import_csv(args.file)  # a DataError lists every bad line; kiosk.cli exits 65 with it
    emit({"imported": count, "version": roster.version})
    return 0


def run_show(args: Args) -> int:
    from kiosk.stores.roster import Roster

    roster = Roster(load_config(args).roster.path)
    updated = roster.updated_at
    emit({"count": roster.count, "version": roster.version, "updated_at": updated.isoformat() if updated else None})
    return 0

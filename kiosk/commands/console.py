"""`kiosk console`: the venue console (collector + web pages) and its accounts.

    kiosk console [--config FILE]                      collector and web server in one process
    kiosk console user add NAME [--password-stdin]     a new account (asks for the password)
    kiosk console user passwd NAME [--password-stdin]
    kiosk console user grant NAME SITE ROLE            owner, controller, authorised, or none
    kiosk console site SITE [--capacity N] [--authorised yes|no] [--name TEXT]
    kiosk console import FILE                          an offline bundle (kiosk journal export --bundle)

Passwords are never taken from the command line (other users see it in `ps`): typed twice, or one line on
standard input with --password-stdin.
"""
from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.errors import DataError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.fleet.accounts import Accounts
    from kiosk.fleet.events import EventStore

ROLE_CHOICES = ("owner", "controller", "authorised", "none")


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("console", parents=[common], help="the venue console: live check-ins, counts, staff list, "
                       "tracing (web) and its accounts")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="console_action", metavar="ACTION")

    user = actions.add_parser("user", parents=[common], help="console accounts")
    user_actions = user.add_subparsers(dest="user_action", metavar="ACTION", required=True)
    for name, helptext, func in (("add", "create an account", run_user_add),
                                 ("passwd", "set an account's password", run_user_passwd)):
        q = user_actions.add_parser(name, parents=[common], help=helptext)
        q.add_argument("name", help="login or phone number")
        q.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
        q.set_defaults(func=func)
    grant = user_actions.add_parser("grant", parents=[common], help="give an account a role at a site")
    grant.add_argument("name")
    grant.add_argument("site")
    grant.add_argument("role", choices=ROLE_CHOICES)
    grant.set_defaults(func=run_user_grant)

    site = actions.add_parser("site", parents=[common], help="a site's settings")
    site.add_argument("site")
    site.add_argument("--capacity", type=int, help="people inside at once for the warning (0: the default)")
    site.add_argument("--authorised", choices=("yes", "no"), help="hospital or quarantine checkpoint: full fields")
    site.add_argument("--name", help="display name")
    site.set_defaults(func=run_site)

    imp = actions.add_parser("import", parents=[common], help="import an offline bundle; writes its receipt")
    imp.add_argument("file", help="the bundle written by kiosk journal export --bundle")
    imp.add_argument("--receipt", metavar="FILE", help="where to write the receipt (default: FILE.receipt.json)")
    imp.set_defaults(func=run_import)


def _store(args: Args) -> tuple[Config, EventStore]:
    from kiosk.fleet.console import open_store

    cfg = load_config(args)
    return cfg, open_store(cfg)


def _password(args: Args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise DataError("the two passwords differ")
    return first


def run(args: Args) -> int:
    from kiosk.fleet.console import ConsoleProcess

    cfg = load_config(args)
    ConsoleProcess(cfg).serve()
    return 0


def _accounts(args: Args) -> tuple[EventStore, Accounts]:
    from kiosk.fleet.accounts import Accounts

    cfg, store = _store(args)
    return store, Accounts(store.engine)


def run_user_add(args: Args) -> int:
    return _with_password(args, "add_user", {"added": True})


def run_user_passwd(args: Args) -> int:
    return _with_password(args, "set_password", {"password": "changed"})


def _with_password(args: Args, method: str, said: dict[str, Any]) -> int:
    store, accounts = _accounts(args)
    try:
        getattr(accounts, method)(args.name, _password(args))
    finally:
        store.close()
    emit({"user": args.name, **said})
    return 0


def run_user_grant(args: Args) -> int:
    store, accounts = _accounts(args)
    try:
        accounts.grant(args.name, args.site, None if args.role == "none" else args.role)
    finally:
        store.close()
    emit({"user": args.name, "site": args.site, "role": args.role})
    return 0


def run_site(args: Args) -> int:
    from kiosk.fleet.accounts import Accounts

    cfg, store = _store(args)
    try:
        authorised = None if args.authorised is None else args.authorised == "yes"
        store.set_site(args.site, capacity=args.capacity, authorised=authorised, name=args.name)
        Accounts(store.engine).audit(None, "site_settings", args.site,
                                     {"capacity": args.capacity, "authorised": authorised, "name": args.name})
        emit(store.site(args.site) or {})
    finally:
        store.close()
    return 0


def run_import(args: Args) -> int:
    from kiosk.fleet.bundle import BundleImporter
    from kiosk.fleet.console import site_keys
    from kiosk.stores.bundle import MAX_BUNDLE_BYTES

    cfg, store = _store(args)
    try:
        path = Path(args.file)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BUNDLE_BYTES + 1)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from None
        outcome = BundleImporter(store, site_keys(cfg)).import_bytes(data)
    finally:
        store.close()
    out = Path(args.receipt or f"{path}.receipt.json")
    out.write_bytes(outcome.receipt)
    emit({"bundle": str(path), "site": outcome.site, "device": outcome.device, "events": outcome.events,
          "added": outcome.added, "refused": outcome.refused, "already_imported": outcome.repeat, "receipt": str(out)})
    return 0

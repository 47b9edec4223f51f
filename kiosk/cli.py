"""`kiosk` command line. Subcommands live in `kiosk.commands`, one module each."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from kiosk import __version__, commands
from kiosk.errors import KioskError


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="TOML configuration (default: config/demo.toml)")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append",
                   help="override one configuration key for this run (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    # The common options are accepted before and after the subcommand. The subcommands' copy uses
    # SUPPRESS so an option left out after the subcommand keeps the value given before it.
    parser = argparse.ArgumentParser(prog="kiosk", description="Checkpoint kiosk firmware.")
    _common_options(parser)
    parser.set_defaults(config=None, set=[], verbose=False)
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _common_options(common)
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"kiosk.commands.{info.name}")
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KioskError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0

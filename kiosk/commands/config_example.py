"""`kiosk config-example`: print the documented example configuration (every key and default)."""
from __future__ import annotations

import sys

from kiosk.config import example_toml
from kiosk.commands import Args, Parser, Subparsers


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("config-example", parents=[common], help="print the documented example configuration")
    p.set_defaults(func=run)


def run(args: Args) -> int:
    sys.stdout.write(example_toml())
    return 0

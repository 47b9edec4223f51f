"""Subcommands of the `kiosk` command line.

Each module here defines `register(subparsers)`, which adds its parser(s) and sets `func=run`
(or several functions) via `set_defaults`. `run(args) -> int` returns the exit status.
`kiosk.cli` discovers the modules, so adding a command never touches another command's file.
Machine-readable output is one JSON object per line (`emit`).
"""
from __future__ import annotations

import json
import sys
from typing import Any

from kiosk import config as config_mod


def load_config(args) -> config_mod.Config:
    """The configuration named by --config (default: the demo config) with --set overrides applied."""
    return config_mod.load(getattr(args, "config", None), getattr(args, "set", None) or ())


def emit(obj: dict[str, Any], stream=None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    stream.flush()

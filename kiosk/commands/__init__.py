"""Subcommands of the `kiosk` command line.

Each module here defines `register(subparsers)`, which adds its parser(s) and sets `func=run`
(or several functions) via `set_defaults`. `run(args) -> int` returns the exit status.
`kiosk.cli` discovers the modules, so adding a command never touches another command's file.
Machine-readable output is one JSON object per line (`emit`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import IO, Any, TypeAlias

from kiosk import config as config_mod

# What a command module's `register(sub, common)` and `run(args)` take.
Args: TypeAlias = argparse.Namespace
Parser: TypeAlias = argparse.ArgumentParser
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def load_config(args: Args) -> config_mod.Config:
    """The configuration named by --config (default: the demo config) with --set overrides applied."""
    return config_mod.load(getattr(args, "config", None), getattr(args, "set", None) or ())


def emit(obj: dict[str, Any], stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    stream.flush()


def seconds(text: str) -> float:
    """An argparse type for a duration: a finite, non-negative number of seconds (`nan` and `inf` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number of seconds, 0 or more")
    return value

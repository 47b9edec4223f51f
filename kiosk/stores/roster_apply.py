"""A large roster command applied in a child process, so its Python work never holds the kiosk's interpreter.

Checking 100,000 rows is a second of pure Python. On the kiosk's roster worker thread it competed with the
pipeline for the interpreter lock: scans during a 100,000-row command had p99 4.7-5.0 ms in two runs of
bench/roster.py, but p50 33 ms and p99 92 ms in a third with the machine busier (load average 3.9 on 2 cores;
the worker, descheduled while holding the lock, presumably kept the pipeline waiting). In a child process the
rows compete for a CPU only: p99 3.1-25.9 ms in four runs at load averages of 2.0-2.7.

The worker hands the command to `python -m kiosk.stores.roster_apply` on its stdin, serialised in pieces (one
`json.dumps` of 100,000 rows holds the lock for 40-100 ms), and reads its answer from stdout: the result, or
the DataError / StorageError text, raised again here as the same error with the same text. Commands of fewer
than CHILD_MIN_ROWS rows are applied in-process (starting Python costs more than they do).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping

from kiosk.errors import DataError, StorageError

if TYPE_CHECKING:
    from kiosk.stores.roster import Roster

CHILD_MIN_ROWS = 2_000
PIECE_ROWS = 2_000          # rows serialised at a time (about 1 ms), the interpreter lock released between
CHILD_TIMEOUT_S = 900.0     # a million-row replacement takes about 30 s on the reference machine
ERRORS: dict[str, type[DataError] | type[StorageError]] = {"DataError": DataError, "StorageError": StorageError}


def apply(roster: Roster, payload: Mapping[str, Any]) -> dict[str, Any]:
    """`roster.apply(payload)`, in a child process when the command has CHILD_MIN_ROWS rows or more."""
    rows = payload.get("entries")
    if not isinstance(rows, list) or len(rows) < CHILD_MIN_ROWS:
        return roster.apply(payload)
    argv = [sys.executable, "-m", "kiosk.stores.roster_apply", str(roster.path)] + (["--badges"] * roster.rules.badges)
    try:
        done = subprocess.run(argv, input=_serialised(payload, rows), stdout=subprocess.PIPE, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise StorageError(f"the roster update did not finish within {CHILD_TIMEOUT_S:.0f} s; nothing changed") \
            from None
    try:
        answer = json.loads(done.stdout)
        if answer["ok"]:
            return dict(answer["result"])
        error = ERRORS[answer["error"]]
        message = str(answer["message"])
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(f"the roster update process ended with status {done.returncode} and no answer") from None
    raise error(message)


def _serialised(payload: Mapping[str, Any], rows: list[Any]) -> bytes:
    head = json.dumps({k: v for k, v in payload.items() if k != "entries"})
    pieces = [head[:-1] + (', "entries": [' if len(head) > 2 else '"entries": [')]
    for start in range(0, len(rows), PIECE_ROWS):
        pieces.append(json.dumps(rows[start:start + PIECE_ROWS])[1:-1] + ",")
        time.sleep(0)  # let the pipeline thread have the interpreter between pieces
    pieces[-1] = pieces[-1][:-1]
    return ("".join(pieces) + "]}").encode("utf-8")


def main(argv: list[str]) -> int:
    """The child: a roster path (and --badges), the command on stdin, one JSON answer on stdout."""
    from kiosk.stores.roster import Roster

    roster = Roster(argv[0], badge_prefix="badges" if "--badges" in argv[1:] else "")
    answer: dict[str, Any]
    try:
        answer = {"ok": True, "result": roster.apply(json.load(sys.stdin.buffer))}
    except (DataError, StorageError) as exc:
        answer = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The downlink envelope: commands to a kiosk and consumer acks, both hostile input until validated.

A command is a JSON object on `{prefix}/cmd/{name}` (or the site's `all/cmd/{name}`), at most
MAX_COMMAND_BYTES; its optional `id` (a correlation id) comes back in the answer on `.../cmd/{name}/result`.
A handler validates the whole payload before it changes anything and raises DataError to refuse it. A
handler whose work is slow (a roster replacement) may return a Future instead of its result, the work going on
off the app thread (kiosk.worker): the command is then answered once the Future is done (`finish`), with the
same correlation id and the same ok/error answer it would have had.
"""
from __future__ import annotations

import json
import logging
import traceback
from concurrent.futures import Future
from typing import Any, Callable, Mapping, TypeVar

from kiosk.errors import DataError

log = logging.getLogger("kiosk.mqtt.downlink")

MAX_COMMAND_BYTES = 4 * 1024 * 1024
MAX_ACK_IDS = 10_000
MAX_CORRELATION_ID = 128

D = TypeVar("D")
Result = dict[str, Any]
Command = Callable[[dict[str, Any], D], "Result | Future[Result]"]   # (payload, dependencies) -> result


def execute(name: str, payload: bytes, handlers: Mapping[str, Command[D]], deps: D) -> dict[str, Any]:
    """Run one command through its handler with `deps`; the answer to publish (`ok`, `error`, `result`, `id`)."""
    answer: dict[str, Any] = {"v": 1, "ok": False, "error": None, "result": None}
    if len(payload) > MAX_COMMAND_BYTES:
        answer["error"] = f"command too large ({len(payload)} bytes, limit {MAX_COMMAND_BYTES})"
        return answer
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    if not isinstance(body, dict):
        answer["error"] = "malformed command: expected a JSON object"
        return answer
    corr = body.get("id")
    if isinstance(corr, (str, int)) and not isinstance(corr, bool) and len(str(corr)) <= MAX_CORRELATION_ID:
        answer["id"] = corr
    handler = handlers.get(name)
    if handler is None:
        answer["error"] = f"unknown command {name!r} (known: {', '.join(sorted(handlers))})"
        return answer
    return _answer(name, answer, lambda: handler(body, deps))


def finish(name: str, answer: dict[str, Any], pending: Future[Result]) -> dict[str, Any]:
    """The answer to a command whose handler returned `pending` (by `execute`, as its result), now done."""
    answer.update(ok=False, result=None)
    return _answer(name, answer, lambda: pending.result(timeout=0))


def _answer(name: str, answer: dict[str, Any], call: Callable[[], Result | Future[Result]]) -> dict[str, Any]:
    try:
        answer.update(ok=True, result=call())
        if isinstance(answer["result"], Future):
            return answer  # answered by `finish` once done
    except (DataError, ValueError, TypeError) as exc:
        answer["error"] = str(exc)
    except Exception as exc:  # a handler bug must not stop the kiosk
        # The exception's text may quote the payload (personal data): log only its type and where it came from.
        where = "; ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__))
        log.error("downlink command %s failed with %s (%s)", name, type(exc).__name__, where)
        answer["error"] = f"internal error: {type(exc).__name__}"
    log.info("downlink command %s %s", name, "applied" if answer["ok"] else "rejected")
    return answer


def parse_ack(payload: bytes) -> tuple[list[str], int | None]:
    """`{"ids": [...]}` and/or `{"upto_seq": N}` from the consumer. Anything else is ignored."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        log.warning("ignored a malformed ack on the downlink")
        return [], None
    if not isinstance(body, dict):
        return [], None
    ids = body.get("ids")
    ids = [i for i in ids[:MAX_ACK_IDS] if isinstance(i, str) and 0 < len(i) <= 64] if isinstance(ids, list) else []
    seq = body.get("upto_seq")
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None
    return ids, seq

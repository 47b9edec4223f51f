"""JSON from the network, as the standard says it: no `NaN`, `Infinity`, or numbers that overflow to them.

Python's `json.loads` accepts `NaN`, `Infinity` and `-Infinity` (not JSON) and reads `1e999` as infinity; a
non-finite number passes every bound check (`nan < x` and `nan > x` are both false) and comes back out of
`json.dumps` as invalid JSON. Every MQTT payload the kiosk or the fleet parses goes through `loads`.
"""
from __future__ import annotations

import json
import math
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def loads(data: bytes | str) -> Any:
    """The JSON value of UTF-8 `data`; ValueError (UnicodeDecodeError is one) for anything that is not JSON."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)

#!/usr/bin/env python3
"""What the site key buys an attacker: the cost of one guess of an identity against a subject_ref, and how long
the candidates left by the published (masked) subject, and the whole ID space, take on one core.

Three ways to compute a guess are timed and the fastest is taken as the cost (an attacker takes the fastest):
the product's `subject_ref(key, Person(...))`, a bare `hmac.new(...).digest()`, and an HMAC whose keyed state is
made once and copied per guess. Python on this machine, one core; native code or a GPU is faster (not measured).
Candidate counts come from kiosk.idspace for one published subject of every code type, masked by kiosk.masking.

    .venv/bin/python bench/subject_ref.py [--guesses 200000] [--json]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk import idspace, masking  # noqa: E402
from kiosk.codes.fields import MIN_YEAR  # noqa: E402
from kiosk.identity import subject_ref  # noqa: E402
from kiosk.model import CCCD, DCC, PERSONAL_QR, Person  # noqa: E402

TODAY = date(2021, 11, 15)
CCCD_PROVINCES = 63
SAMPLES = {  # (code type, the identity type subject_ref hashes, the person)
    "cccd (12-digit ID)": (CCCD, "id", Person(id_number="079090000001", name="Nguyễn Văn Thử", gender="male")),
    "personal_qr, CMND (9 digits)": (PERSONAL_QR, "id", Person(id_number="021000001", name="NGUYEN VAN CU",
                                                              gender="male")),
    "personal_qr, passport": (PERSONAL_QR, "id", Person(id_number="C0000004", name="PHAM MINH KHACH",
                                                       gender="unknown")),
    "personal_qr, masked ID (QID)": (PERSONAL_QR, "qid", Person(id_number="******000002", qid="163000000000000002",
                                                               name="TRAN THI MAU", gender="female")),
    "dcc (name and birth date)": (DCC, "holder", Person(name="NGUYEN VAN THU", birth="1990-12-01")),
}


def per_guess_seconds(guesses: int) -> dict[str, float]:
    key = os.urandom(32)
    ids = [f"id:{i:012d}" for i in range(guesses)]
    out = {}
    started = time.perf_counter()
    for i in range(guesses):
        subject_ref(key, Person(id_number=f"{i:012d}"))
    out["subject_ref(key, Person)"] = (time.perf_counter() - started) / guesses
    started = time.perf_counter()
    for text in ids:
        hmac.new(key, text.encode(), hashlib.sha256).digest()
    out["hmac.new(...).digest()"] = (time.perf_counter() - started) / guesses
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    started = time.perf_counter()
    for text in ids:
        h = keyed.copy()
        h.update(text.encode())
        h.digest()
    out["keyed HMAC copied per guess"] = (time.perf_counter() - started) / guesses
    return out


def human(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guesses", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    costs = per_guess_seconds(args.guesses)
    cost = min(costs.values())
    years = TODAY.year - MIN_YEAR + 1
    rows = {}
    for name, (kind, identity, person) in SAMPLES.items():
        published = masking.subject(kind, person, authorised=False, for_screen=False)
        count = idspace.candidates(identity, published, TODAY)
        rows[name] = {"published": published, "candidates": count, "seconds": count * cost}
    spaces = {  # the whole space of a 12-digit CCCD, without anything published
        "CCCD, every valid province, both genders, birth 1900-today": CCCD_PROVINCES * 2 * years * 10 ** 6,
        "CCCD, all 12-digit strings": 10 ** 12,
    }
    result = {"per_guess_us": {k: round(v * 1e6, 3) for k, v in costs.items()}, "cost_us": round(cost * 1e6, 3),
              "published": rows, "spaces": {k: {"candidates": v, "seconds": v * cost} for k, v in spaces.items()}}
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    print(f"cost of one guess ({args.guesses:,} guesses each, one core):")
    for name, us in result["per_guess_us"].items():
        print(f"  {name:32s} {us:8.3f} us")
    print(f"\ncandidates left by what is published, at {cost * 1e6:.2f} us a guess:")
    for name, row in rows.items():
        print(f"  {name:32s} {row['candidates']:>16,}  {human(row['seconds']):>14}   {row['published']}")
    print("\nthe whole ID space:")
    for name, space in result["spaces"].items():
        print(f"  {name:58s} {space['candidates']:>18,}  {human(space['seconds']):>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

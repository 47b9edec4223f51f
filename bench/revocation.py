#!/usr/bin/env python3
"""Revocation list cost as it grows: time of one certificate's check (five hash lookups), time to load the
list at start, file size and memory, at each size. The check is set membership, so it should not grow.

    .venv/bin/python bench/revocation.py [--sizes 1000,100000,1000000] [--checks 20000]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.stores.revocation import HASH_TYPES, Batch, RevocationList  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--checks", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'hashes':>10} {'check us':>9} {'load s':>7} {'file MB':>8} {'RSS MB':>7}")
    for size in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "trust.revocations.json"
            per_type = size // len(HASH_TYPES)
            RevocationList(path).store([Batch(t, tuple(os.urandom(16) for _ in range(per_type))) for t in HASH_TYPES],
                                       replace=True)
            before = rss_mb()
            started = time.perf_counter()
            revocations = RevocationList(path)
            load = time.perf_counter() - started
            memory = rss_mb() - before
            probes = [[(t, os.urandom(16)) for t in ("SIGNATURE", "UCI", "COUNTRYCODEUCI", "UCI", "COUNTRYCODEUCI")]
                      for _ in range(args.checks)]
            started = time.perf_counter()
            for hashes in probes:
                revocations.revoked(hashes)
            check = (time.perf_counter() - started) / args.checks
            print(f"{per_type * len(HASH_TYPES):>10,} {check * 1e6:>9.2f} {load:>7.2f} "
                  f"{path.stat().st_size / 1e6:>8.1f} {memory:>7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

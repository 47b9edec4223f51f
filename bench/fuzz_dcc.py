#!/usr/bin/env python3
"""Longer fuzz run of the HC1 verifier: prints how many inputs it tried and the crashes found.

A crash is: `parse` raising, an unexpected exception swallowed inside it (detail `internal`), a mutated
code accepted, or one input taking longer than --slow-ms. Generators: random bytes, character and byte
mutations of a valid code, truncations, deep CBOR, zlib bombs, and arbitrary claims signed by the trusted key
(so the certificate parsing behind the signature check is fuzzed too), and arbitrary protected and unprotected
COSE headers over a correct signature (the alg/kid handling before it). Seeded, so a crash can be replayed.

    .venv/bin/python bench/fuzz_dcc.py [--seconds 180] [--seed 1] [--json]
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cbor2  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature  # noqa: E402

from kiosk.codes import base45, cose  # noqa: E402
from kiosk.codes.dcc import DccVerifier  # noqa: E402
from kiosk.issuing import health_certificate, new_signer, sign_hc1  # noqa: E402
from kiosk.stores.trust import TrustList  # noqa: E402

NOW = datetime(2021, 11, 15, 10, 0, tzinfo=timezone.utc)
KEYS = ["v", "r", "t", "nam", "dob", "fn", "gn", "fnt", "gnt", "dt", "mp", "fr", "sc", "tr", "ver", 1, 4, 6, -260]


class Fuzzer:
    def __init__(self, rng: random.Random, verifier: DccVerifier, signer):
        self.rng, self.verifier, self.signer = rng, verifier, signer
        cert = health_certificate("NGUYEN VAN THU", "1990-12-01", doses=[(date(2021, 10, 1), None)],
                                  recovered=date(2021, 6, 1), tests=[(date(2021, 11, 14), False)])
        self.valid = sign_hc1(signer, cert, iat=NOW - timedelta(days=1), exp=NOW + timedelta(days=365))
        self.cose = zlib.decompress(base45.decode(self.valid[4:]))

    def hc1(self, data: bytes, compress: bool = True) -> str:
        return "HC1:" + base45.encode(zlib.compress(data) if compress else data)

    def random_bytes(self) -> tuple[str, bool]:
        data = self.rng.randbytes(self.rng.randint(0, 3000))
        return self.hc1(data, compress=self.rng.random() < 0.5), False

    def char_mutation(self) -> tuple[str, bool]:
        chars = list(self.valid)
        for _ in range(self.rng.randint(1, 8)):
            pos = self.rng.randrange(len(chars))
            op = self.rng.random()
            if op < 0.6:
                chars[pos] = self.rng.choice(base45.ALPHABET)
            elif op < 0.8:
                del chars[pos]
            else:
                chars.insert(pos, self.rng.choice(base45.ALPHABET))
        text = "".join(chars)
        return text, text == self.valid

    def byte_mutation(self) -> tuple[str, bool]:
        data = bytearray(self.cose)
        for _ in range(self.rng.randint(1, 6)):
            data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return self.hc1(bytes(data)), bytes(data) == self.cose

    def truncation(self) -> tuple[str, bool]:
        return self.valid[:self.rng.randrange(len(self.valid))], False

    def deep_cbor(self) -> tuple[str, bool]:
        opener = self.rng.choice([b"\x81", b"\xa1\x01", b"\xd8\x20", b"\x9f", b"\xbf\x01"])
        return self.hc1(opener * self.rng.randint(17, 20000) + b"\x00"), False

    def zlib_bomb(self) -> tuple[str, bool]:
        bomb = zlib.compress(bytes(self.rng.randint(70_000, 5_000_000)), 9)
        return "HC1:" + base45.encode(bomb[:2500]), False

    def value(self, depth: int = 0):
        kind = self.rng.randrange(12 if depth < 4 else 8)
        if kind == 0:
            return None
        if kind == 1:
            return self.rng.choice([True, False])
        if kind == 2:
            return self.rng.randint(-2 ** 70, 2 ** 70)
        if kind == 3:
            return self.rng.choice([0.5, float("nan"), float("inf"), -1e300])
        if kind == 4:
            return self.rng.choice(["", "2021-10-01", "2021-02-30", "1990", "1990-12", "2021-11-14T08:00:00Z",
                                    "x" * self.rng.randint(0, 100), "NGUYEN<VAN", "260373001", "\x00"])
        if kind == 5:
            return self.rng.randbytes(self.rng.randint(0, 20))
        if kind == 6:
            return cbor2.CBORTag(self.rng.choice([0, 1, 2, 24, 55799, 1004]), self.rng.choice(["x", 1, b"\x01"]))
        if kind == 7:
            return self.rng.randint(0, 2 ** 32)
        if kind < 10:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.rng.choice(KEYS): self.value(depth + 1) for _ in range(self.rng.randint(0, 6))}

    def signed_claims(self) -> tuple[str, bool]:
        hcert = self.value(1) if self.rng.random() < 0.3 else {k: self.value(1) for k in self.rng.sample(KEYS, 5)}
        claims = {1: "VN", 4: int(NOW.timestamp()) + 3600, 6: int(NOW.timestamp()) - 60, -260: {1: hcert}}
        if self.rng.random() < 0.2:
            claims = self.value(0)
        try:
            payload = cbor2.dumps(claims)
        except Exception:
            return self.valid[:10], False
        return "HC1:" + base45.encode(zlib.compress(cose.sign_es256(self.signer.private_key, self.signer.kid,
                                                                    payload))), None


    def signed_headers(self) -> tuple[str, bool]:
        """Random alg/kid/other header values, protected or not, with a correct ES256 signature over them."""
        def header() -> dict:
            choices = [(1, lambda: self.rng.choice([-7, -35, -37, 7, -7.0, True, "ES256", None])),
                       (1, lambda: self.value(2)), (4, lambda: self.signer.kid), (4, lambda: self.value(2)),
                       (self.rng.choice(KEYS), lambda: self.value(2))]
            return {key: make() for key, make in self.rng.sample(choices, self.rng.randint(0, 3))}

        protected, unprotected = header(), header()
        try:
            prot = cbor2.dumps(protected)
            payload = zlib.decompress(base45.decode(self.valid[4:]))  # the valid certificate's COSE...
            claims = cose.decode_sign1(payload, 16).payload           # ...and its claims, re-signed
            der = self.signer.private_key.sign(cose.sig_structure(prot, claims), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            data = cbor2.dumps(cbor2.CBORTag(18, [prot, unprotected, claims, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))
        except Exception:  # a header value cbor2 cannot encode
            return self.valid[:10], False
        return self.hc1(data), None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slow-ms", type=float, default=250)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    signer = new_signer()
    with tempfile.TemporaryDirectory() as tmp:
        trust = TrustList(Path(tmp) / "trust.json")
        trust.import_json([{"certificate": base64.b64encode(signer.certificate_der).decode()}])
        verifier = DccVerifier(trust)
        fuzzer = Fuzzer(rng, verifier, signer)
        generators = [fuzzer.random_bytes, fuzzer.char_mutation, fuzzer.byte_mutation, fuzzer.truncation,
                      fuzzer.deep_cbor, fuzzer.zlib_bomb, fuzzer.signed_claims, fuzzer.signed_claims,
                      fuzzer.signed_headers]
        tried, reasons, crashes = Counter(), Counter(), []
        slowest = 0.0
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            gen = rng.choice(generators)
            text, may_pass = gen()
            tried[gen.__name__] += 1
            started = time.perf_counter()
            try:
                result = verifier.parse(text, NOW)
            except BaseException as exc:  # parse must never raise
                crashes.append({"generator": gen.__name__, "error": repr(exc)[:200]})
                continue
            took = (time.perf_counter() - started) * 1000
            slowest = max(slowest, took)
            reasons[result.error or "ok"] += 1
            problem = None
            if result.detail == "internal":
                try:
                    verifier._verified_person(text, NOW)
                except Exception:
                    problem = traceback.format_exc(limit=3)[-300:]
            elif result.ok and may_pass is False:
                problem = "mutated code accepted"
            elif took > args.slow_ms:
                problem = f"slow: {took:.0f} ms"
            if problem:
                crashes.append({"generator": gen.__name__, "error": problem})
    summary = {"seconds": args.seconds, "seed": args.seed, "inputs": sum(tried.values()), "crashes": len(crashes),
               "slowest_ms": round(slowest, 1), "per_generator": dict(tried), "results": dict(reasons),
               "first_crashes": crashes[:5]}
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:14} {value}")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())

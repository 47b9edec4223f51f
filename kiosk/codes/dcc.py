"""EU Digital COVID Certificate (`HC1:`) verification, offline (spec/codes.md section 4).

`HC1:` -> Base45 -> zlib -> COSE_Sign1 -> CWT -> health certificate. Every stage is bounded (input length,
decompressed size, CBOR depth) and every failure becomes a reason code, never an exception:
`malformed`, `unknown_key`, `bad_signature`, `expired`, `not_yet_valid`. The signature is checked before
any claim is trusted. A signer whose certificate limits it to some certificate types (extended key usage,
see kiosk.stores.trust) signing another type gives `unknown_key` with detail `key_usage`: nobody trusted signed it.
`detail` names the failed check (never a value). Whether the holder is green is kiosk.health's decision.
"""
from __future__ import annotations

import base64
import logging
import re
import zlib
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any, TypeGuard

from kiosk.codes import base45, cose
from kiosk.model import DCC, Dose, HealthRecord, ParsedCode, Person, TestResult
from kiosk.ports import SignerKeys

PREFIX = "HC1:"
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
TEST_DETECTED = "260373001"  # SNOMED CT "detected" in the t/tr field
log = logging.getLogger(__name__)
_BIRTH = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def malformed(detail: str) -> Rejected:
    return Rejected("malformed", detail)


class DccVerifier:
    def __init__(self, trust: SignerKeys, *, clock_skew_seconds: int = 300, max_input: int = 4096,
                 max_decompressed: int = 65536, max_cbor_depth: int = 16):
        self.trust = trust
        self.clock_skew_seconds = clock_skew_seconds
        self.max_input = max_input
        self.max_decompressed = max_decompressed
        self.max_cbor_depth = max_cbor_depth

    def parse(self, text: str, now: datetime) -> ParsedCode:
        """The certificate holder with verified health data, or `ParsedCode("dcc", error=reason)`."""
        try:
            return ParsedCode(DCC, person=self._verified_person(text, now))
        except Rejected as exc:
            return ParsedCode(DCC, error=exc.reason, detail=exc.detail)
        except Exception as exc:  # a bug here must cost one scan, not the kiosk: the code is simply unusable
            log.error("HC1 verifier failed unexpectedly (%s); code rejected as malformed", type(exc).__name__)
            return ParsedCode(DCC, error="malformed", detail="internal")

    # ------------------------------------------------------------------ stages, also used by the tests
    def unprefix(self, text: str) -> str:
        if not isinstance(text, str) or len(text) > self.max_input:
            raise malformed("too_long")
        if not text.startswith(PREFIX):
            raise malformed("prefix")
        return text[len(PREFIX):]

    def decompress(self, data: bytes) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, self.max_decompressed + 1)
        except zlib.error:
            raise malformed("zlib") from None
        if len(out) > self.max_decompressed:
            raise malformed("too_large")
        if not inflater.eof or inflater.unused_data:
            raise malformed("zlib")
        return out

    def sign1(self, text: str) -> cose.Sign1:
        try:
            data = base45.decode(self.unprefix(text))
        except base45.Base45Error:
            raise malformed("base45") from None
        try:
            return cose.decode_sign1(self.decompress(data), self.max_cbor_depth)
        except cose.CoseError as exc:
            raise malformed(exc.args[0]) from None

    def claims(self, sign1: cose.Sign1) -> Mapping[Any, Any]:
        try:
            claims = cose.loads_limited(sign1.payload, self.max_cbor_depth)
        except cose.CoseError:
            raise malformed("cwt") from None
        if not isinstance(claims, Mapping):
            raise malformed("cwt")
        return claims

    # ------------------------------------------------------------------ the whole chain
    def _verified_person(self, text: str, now: datetime) -> Person:
        sign1 = self.sign1(text)
        kid = sign1.kid
        if not kid:
            raise malformed("kid")
        key = self.trust.key_for(kid)
        if key is None:
            raise Rejected("unknown_key", "kid")
        if not cose.verify(sign1, key):
            raise Rejected("bad_signature", "signature")
        claims = self.claims(sign1)
        self._check_validity(claims, now)
        hcert = claims.get(CLAIM_HCERT)
        dgc = hcert.get(1) if isinstance(hcert, Mapping) else None
        if not isinstance(dgc, Mapping):
            raise malformed("hcert")
        allowed = self.trust.usages_for(kid)
        if allowed is not None and any(dgc.get(kind) for kind in ("v", "t", "r") if kind not in allowed):
            raise Rejected("unknown_key", "key_usage")  # the signer is not trusted for this certificate type
        issuer = claims.get(CLAIM_ISS)
        return Person(name=_name(dgc.get("nam")), birth=_birth(dgc.get("dob")),
                      extra={"issuer": issuer if isinstance(issuer, str) else None,
                             "kid": base64.b64encode(kid).decode("ascii")},
                      health=_health(dgc))

    def _check_validity(self, claims: Mapping[Any, Any], now: datetime) -> None:
        exp, iat = claims.get(CLAIM_EXP), claims.get(CLAIM_IAT)
        if not _is_time(exp):
            raise malformed("exp")
        if iat is not None and not _is_time(iat):
            raise malformed("iat")
        instant = now.timestamp()
        if instant > exp:
            raise Rejected("expired", "exp")
        if iat is not None and iat > instant + self.clock_skew_seconds:
            raise Rejected("not_yet_valid", "iat")


def _is_time(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2 ** 40


def _text(value: Any, field: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise malformed(field)
    return value.strip() or None


def _name(nam: Any) -> str | None:
    if not isinstance(nam, Mapping):
        raise malformed("nam")
    fnt, gnt = _text(nam.get("fnt"), "fnt"), _text(nam.get("gnt"), "gnt")
    if fnt:  # the ICAO-transliterated form: uppercase ASCII with '<' for spaces, like the national codes
        parts = [fnt, gnt]
    else:
        parts = [_text(nam.get("fn"), "fn"), _text(nam.get("gn"), "gn")]
    name = " ".join(p.replace("<", " ") for p in parts if p)
    return " ".join(name.split()) or None


def _birth(dob: Any) -> str | None:
    """YYYY, YYYY-MM or YYYY-MM-DD; the schema allows an empty dob (unknown) and older issuers a time part."""
    text = _text(dob, "dob")
    if text is None:
        return None
    match = _BIRTH.match(text)
    if not match:
        raise malformed("dob")
    return match.group(0)


def _moment(value: Any, field: str) -> date | datetime:
    """A date, or an aware datetime when the field has a time (a naive time is UTC, as the schema intends)."""
    if not isinstance(value, str) or len(value) < 10:
        raise malformed(field)
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise malformed(field) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)


def _day(value: Any, field: str) -> date:
    moment = _moment(value, field)
    return moment.date() if isinstance(moment, datetime) else moment  # the calendar day as the issuer wrote it


def _entries(dgc: Mapping[Any, Any], key: str) -> list[Mapping[Any, Any]]:
    entries = dgc.get(key, [])
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, Mapping) for e in entries):
        raise malformed(key)
    return list(entries)


def _health(dgc: Mapping[Any, Any]) -> HealthRecord:
    doses = tuple(Dose(_day(v.get("dt"), "v.dt"), _text(v.get("mp"), "v.mp")) for v in _entries(dgc, "v"))
    recoveries = [_day(r.get("fr"), "r.fr") for r in _entries(dgc, "r")]
    tests = tuple(TestResult(_moment(t.get("sc"), "t.sc"), _text(t.get("tr"), "t.tr") == TEST_DETECTED)
                  for t in _entries(dgc, "t"))
    return HealthRecord(doses=doses, recovered=max(recoveries) if recoveries else None, tests=tests)

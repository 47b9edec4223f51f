"""EU Digital COVID Certificate (`HC1:`) verification, offline (spec/codes.md section 4).

`HC1:` -> Base45 -> zlib -> COSE_Sign1 -> CWT -> health certificate. Every stage is bounded (input length,
decompressed size, CBOR depth) and every failure becomes a reason code, never an exception:
`malformed`, `unknown_key`, `bad_signature`, `revoked`, `expired`, `not_yet_valid`. The signature is checked
before any claim is trusted. A signer whose certificate limits it to some certificate types (extended key
usage, see kiosk.stores.trust) signing another type gives `unknown_key` with detail `key_usage`: nobody
trusted signed it. A certificate on the revocation list (EU 2022 style: hashes of its identifier, of the
issuing country and identifier, or of its signature, see kiosk.stores.revocation) is `revoked`, whatever the
clock says. What the certificate says is read by `kiosk.codes.hcert`: strictly where the decision depends
on it, leniently (noted in `warnings`) elsewhere.
`detail` names the failed check (never a value). Whether the holder is green is kiosk.health's decision.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from kiosk.codes import base45, cose, hcert
from kiosk.codes.fields import Malformed
from kiosk.model import DCC, ParsedCode, Person
from kiosk.ports import RevocationSource, SignerKeys

PREFIX = "HC1:"
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
# Revocation list hash types (EU DCC revocation, 2022) and the bytes of each SHA-256 the lists keep.
UCI, COUNTRY_UCI, SIGNATURE = "UCI", "COUNTRYCODEUCI", "SIGNATURE"
REVOCATION_HASH_BYTES = 16
log = logging.getLogger(__name__)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def malformed(detail: str) -> Rejected:
    return Rejected("malformed", detail)


def revocation_hashes(sign1: cose.Sign1, claims: Mapping[Any, Any], public_key: Any) -> list[tuple[str, bytes]]:
    """(hash type, truncated SHA-256) of this certificate, as EU revocation lists give them: of each entry's
    UCI, of the CWT issuer country followed by the UCI, and of the signature (its r half for ECDSA)."""
    def digest(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()[:REVOCATION_HASH_BYTES]

    out = [(SIGNATURE, digest(cose.revocation_signature_part(sign1.signature, public_key)))]
    hc = claims.get(CLAIM_HCERT)
    dgc = hc.get(1) if isinstance(hc, Mapping) else None
    country = claims.get(CLAIM_ISS) if isinstance(claims.get(CLAIM_ISS), str) else ""
    for uci in hcert.ucis(dgc) if isinstance(dgc, Mapping) else ():
        out.append((UCI, digest(uci.encode("utf-8"))))
        if country:
            out.append((COUNTRY_UCI, digest((country + uci).encode("utf-8"))))
    return out


class DccVerifier:
    def __init__(self, trust: SignerKeys, *, revocations: RevocationSource | None = None,
                 clock_skew_seconds: int = 300, max_input: int = 4096, max_decompressed: int = 65536,
                 max_cbor_depth: int = 16):
        self.trust = trust
        self.revocations = revocations
        self.clock_skew_seconds = clock_skew_seconds
        self.max_input = max_input
        self.max_decompressed = max_decompressed
        self.max_cbor_depth = max_cbor_depth

    def parse(self, text: str, now: datetime) -> ParsedCode:
        """The certificate holder with verified health data, or `ParsedCode("dcc", error=reason)`.

        `now` is the instant of the scan in the site's time zone (its date bounds the date of birth)."""
        try:
            person, warnings = self._verified_person(text, now)
            return ParsedCode(DCC, person=person, warnings=warnings)
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
    def _verified_person(self, text: str, now: datetime) -> tuple[Person, tuple[str, ...]]:
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
        if self.revocations is not None:
            listed = self.revocations.revoked(revocation_hashes(sign1, claims, key))
            if listed:
                raise Rejected("revoked", listed.lower())
        self._check_validity(claims, now)
        hc = claims.get(CLAIM_HCERT)
        dgc = hc.get(1) if isinstance(hc, Mapping) else None
        if not isinstance(dgc, Mapping):
            raise malformed("hcert")
        allowed = self.trust.usages_for(kid)
        if allowed is not None and any(dgc.get(kind) for kind in ("v", "t", "r") if kind not in allowed):
            raise Rejected("unknown_key", "key_usage")  # the signer is not trusted for this certificate type
        try:
            cert = hcert.read(dgc, now.date())
        except Malformed as exc:
            raise malformed(exc.field) from None
        issuer = claims.get(CLAIM_ISS)
        person = Person(name=cert.name, birth=cert.birth, health=cert.health,
                        extra={"issuer": issuer if isinstance(issuer, str) else None,
                               "kid": base64.b64encode(kid).decode("ascii")})
        return person, cert.warnings

    def _check_validity(self, claims: Mapping[Any, Any], now: datetime) -> None:
        exp, iat = _seconds(claims.get(CLAIM_EXP)), _seconds(claims.get(CLAIM_IAT))
        if exp is None:
            raise malformed("exp")
        if iat is None and claims.get(CLAIM_IAT) is not None:
            raise malformed("iat")
        instant = now.timestamp()
        if instant > exp:
            raise Rejected("expired", "exp")
        if iat is not None and iat > instant + self.clock_skew_seconds:
            raise Rejected("not_yet_valid", "iat")


def _seconds(value: Any) -> float | None:
    """A CWT NumericDate (a number, or a CBOR epoch/date-time tag as some issuers write it) in seconds."""
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2 ** 40:
        return float(value)
    return None

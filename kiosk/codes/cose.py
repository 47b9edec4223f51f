"""COSE_Sign1 (RFC 9052) as the EU DCC uses it: decode with CBOR limits, verify ES256/PS256 with `cryptography`.

Only the structure and the signature check live here; what the payload means is `kiosk.codes.dcc`'s concern.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ES256 = -7
PS256 = -37
HEADER_ALG = 1
HEADER_KID = 4
TAG_SIGN1 = 18
TAG_CWT = 61


class CoseError(ValueError):
    """The bytes are not a usable COSE_Sign1; `args[0]` names the part (never its value)."""


@dataclass(frozen=True)
class Sign1:
    protected: bytes  # serialised protected header, signed as is
    protected_header: Mapping
    unprotected: Mapping
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> Any:
        return self.protected_header.get(HEADER_ALG)

    @property
    def kid(self) -> bytes | None:
        kid = self.protected_header.get(HEADER_KID, self.unprotected.get(HEADER_KID))
        return kid if isinstance(kid, bytes) else None

    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected, self.payload)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def loads_limited(data: bytes, max_depth: int) -> Any:
    """One CBOR item filling all of `data`, nesting at most `max_depth` deep; CoseError otherwise.

    cbor2 enforces the depth without recursion trouble and never pre-allocates from a declared length,
    so a hostile header claiming 2**64 items fails on the short input instead of exhausting memory."""
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream, max_depth=max_depth, allow_duplicate_keys=False).decode()
    except Exception:  # cbor2 raises CBORDecodeError, but semantic tags may raise ValueError/TypeError/...
        raise CoseError("cbor") from None
    if stream.tell() != len(data):
        raise CoseError("cbor_trailing_data")
    return value


def decode_sign1(data: bytes, max_depth: int) -> Sign1:
    obj = loads_limited(data, max_depth)
    if isinstance(obj, cbor2.CBORTag) and obj.tag == TAG_CWT:
        obj = obj.value
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != TAG_SIGN1:
            raise CoseError("cose_tag")
        obj = obj.value
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:  # cbor2 gives a tuple inside a tag
        raise CoseError("cose_structure")
    protected, unprotected, payload, signature = obj
    if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping) and isinstance(payload, bytes)
            and isinstance(signature, bytes)):
        raise CoseError("cose_structure")
    header = loads_limited(protected, max_depth) if protected else {}
    if not isinstance(header, Mapping):
        raise CoseError("cose_protected")
    return Sign1(protected, header, unprotected, payload, signature)


def verify(sign1: Sign1, public_key) -> bool:
    """True when the signature is valid for `public_key` under the algorithm of the protected header."""
    tbs = sign1.to_be_signed()
    try:
        if sign1.alg == ES256 and isinstance(public_key, ec.EllipticCurvePublicKey):
            if public_key.curve.name != "secp256r1" or len(sign1.signature) != 64:
                return False
            r = int.from_bytes(sign1.signature[:32], "big")
            s = int.from_bytes(sign1.signature[32:], "big")
            public_key.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hashes.SHA256()))
            return True
        if sign1.alg == PS256 and isinstance(public_key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
            public_key.verify(sign1.signature, tbs, pss, hashes.SHA256())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def sign_es256(private_key: ec.EllipticCurvePrivateKey, kid: bytes, payload: bytes) -> bytes:
    """A tagged COSE_Sign1 with alg and kid in the protected header (for the issuing tool and tests)."""
    protected = cbor2.dumps({HEADER_ALG: ES256, HEADER_KID: kid})
    der = private_key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, [protected, {}, payload, signature]))

"""COSE_Sign1 (RFC 9052) as the EU DCC uses it: decode with CBOR limits, verify with `cryptography`.

The trusted key bounds the algorithm: an RSA key verifies PS256 only; an EC key ECDSA only, with the signature
width of its own curve. The `alg` header (protected, or unprotected where some issuers put it) picks the hash
among the pairs accepted here: ES256 on P-256, ES384 on P-384, and ES256 on P-384, which RFC 9053 allows and
Spain's signers use (EU dgc-testdata ES/401-403). Editing an unprotected `alg` can make a signature fail; it
can never move a key to another key type's algorithm.

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
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ES256 = -7
ES384 = -35
PS256 = -37
_EC_HASHES = {ES256: hashes.SHA256, ES384: hashes.SHA384}
# EC curve -> (bytes per signature half, the algorithms accepted with it)
_EC_CURVES = {"secp256r1": (32, {ES256}), "secp384r1": (48, {ES256, ES384})}
HEADER_ALG = 1
HEADER_KID = 4
TAG_SIGN1 = 18
TAG_CWT = 61


class CoseError(ValueError):
    """The bytes are not a usable COSE_Sign1; `args[0]` names the part (never its value)."""


@dataclass(frozen=True)
class Sign1:
    protected: bytes  # serialised protected header, signed as is
    protected_header: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> Any:
        """The header's algorithm: protected first, then unprotected (only ever checked against the key's)."""
        return self.protected_header.get(HEADER_ALG, self.unprotected.get(HEADER_ALG))

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


def accepts_key(public_key: PublicKeyTypes) -> bool:
    """True for the key types a trust list may hold: EC P-256, EC P-384, RSA."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.curve.name in _EC_CURVES
    return isinstance(public_key, rsa.RSAPublicKey)


def verify(sign1: Sign1, public_key: PublicKeyTypes) -> bool:
    """True when the signature is valid for `public_key` under the header's algorithm, if the key allows it."""
    alg, tbs = sign1.alg, sign1.to_be_signed()
    if type(alg) is not int:  # hostile headers carry lists, maps, floats, bools: none names an algorithm
        return False
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and alg == PS256:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
            public_key.verify(sign1.signature, tbs, pss, hashes.SHA256())
            return True
        if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in _EC_CURVES:
            half, algorithms = _EC_CURVES[public_key.curve.name]
            if alg not in algorithms or len(sign1.signature) != 2 * half:  # COSE carries r || s, fixed width
                return False
            r = int.from_bytes(sign1.signature[:half], "big")
            s = int.from_bytes(sign1.signature[half:], "big")
            public_key.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(_EC_HASHES[alg]()))
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def revocation_signature_part(signature: bytes, public_key: PublicKeyTypes) -> bytes:
    """What an EU revocation list hashes of a signature: its first half (r) for ECDSA, all of it for RSA."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return signature[:len(signature) // 2]
    return signature


def sign_es256(private_key: ec.EllipticCurvePrivateKey, kid: bytes, payload: bytes, *,
               kid_unprotected: bool = False) -> bytes:
    """A tagged COSE_Sign1 with alg and kid in the protected header, or the kid in the unprotected one (for the
    issuing tool and tests)."""
    protected = cbor2.dumps({HEADER_ALG: ES256} if kid_unprotected else {HEADER_ALG: ES256, HEADER_KID: kid})
    der = private_key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    unprotected = {HEADER_KID: kid} if kid_unprotected else {}
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, [protected, unprotected, payload, signature]))

"""Property tests: whatever arrives after `HC1:`, the verifier returns a reason and never raises.

Bounded example counts keep this CI-friendly; bench/fuzz_dcc.py runs the same ideas for minutes.
"""
from __future__ import annotations

import base64
import zlib
from datetime import date, datetime, timedelta, timezone

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.codes import base45, cose
from kiosk.codes.dcc import DccVerifier
from kiosk.issuing import health_certificate, new_signer, sign_hc1
from kiosk.stores.trust import TrustList

NOW = datetime(2021, 11, 15, 10, 0, tzinfo=timezone.utc)
REASONS = {"malformed", "unknown_key", "bad_signature", "expired", "not_yet_valid"}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SIGNER = new_signer()
VALID = sign_hc1(SIGNER, health_certificate("NGUYEN VAN THU", "1990-12-01", doses=[(date(2021, 10, 1), None)]),
                 iat=NOW - timedelta(days=1), exp=NOW + timedelta(days=365))


@pytest.fixture(scope="module")
def verifier(tmp_path_factory):
    trust = TrustList(tmp_path_factory.mktemp("trust") / "trust.json")
    trust.import_json([{"certificate": base64.b64encode(SIGNER.certificate_der).decode()}])
    return DccVerifier(trust)


def rejected(verifier: DccVerifier, text: str) -> str:
    result = verifier.parse(text, NOW)
    assert result.kind == "dcc" and result.error in REASONS and result.person is None
    assert result.detail != "internal", "an unexpected exception was swallowed"
    return result.error


def test_the_valid_certificate_is_accepted(verifier):
    assert verifier.parse(VALID, NOW).ok


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes(verifier, data):
    rejected(verifier, "HC1:" + base45.encode(data))
    rejected(verifier, "HC1:" + base45.encode(zlib.compress(data)))


@SETTINGS
@given(st.text(max_size=500))
def test_random_text(verifier, text):
    rejected(verifier, "HC1:" + text)


@SETTINGS
@given(st.lists(st.tuples(st.integers(4, len(VALID) - 1), st.sampled_from(base45.ALPHABET + "a\x00é")),
                min_size=1, max_size=8))
def test_mutated_valid_code(verifier, edits):
    chars = list(VALID)
    for pos, ch in edits:
        chars[pos] = ch
    text = "".join(chars)
    # An edit of the padding bits after the deflate stream's last code changes the text but not the certificate
    # (seen: one edit near the end decoded to the same COSE bytes and was rightly accepted): only a changed
    # certificate must be rejected.
    if signed_bytes(text) != signed_bytes(VALID):
        rejected(verifier, text)


def signed_bytes(text: str) -> bytes | None:
    """The COSE message a text carries, or None when it does not decode."""
    try:
        return zlib.decompress(base45.decode(text[4:]))
    except Exception:
        return None


@SETTINGS
@given(st.integers(0, len(VALID) - 1))
def test_truncations(verifier, length):
    rejected(verifier, VALID[:length])


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_cose_bytes(verifier, flips):
    data = bytearray(zlib.decompress(base45.decode(VALID[4:])))
    for pos, value in flips:
        data[pos % len(data)] = value
    if bytes(data) != zlib.decompress(base45.decode(VALID[4:])):
        rejected(verifier, "HC1:" + base45.encode(zlib.compress(bytes(data))))


@SETTINGS
@given(st.integers(17, 5000), st.sampled_from([b"\x81", b"\xa1\x01", b"\xd8\x20", b"\x9f"]))
def test_deep_cbor(verifier, depth, opener):
    rejected(verifier, "HC1:" + base45.encode(zlib.compress(opener * depth + b"\x00")))


def test_zlib_bomb(verifier):
    bomb = zlib.compress(bytes(10_000_000), 9)[:2000]
    assert verifier.parse("HC1:" + base45.encode(bomb), NOW).detail == "too_large"


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20) | st.dates().map(str) | st.datetimes().map(lambda d: d.isoformat()),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["v", "r", "t", "nam", "dob", "fn", "gn", "fnt", "gnt", "dt", "mp", "fr", "sc", "tr", 1, -260,
                         4, 6]), children, max_size=5),
    max_leaves=30)


@SETTINGS
@given(cbor_values, st.sampled_from([None, int((NOW + timedelta(days=1)).timestamp())]))
def test_signed_garbage_claims(verifier, hcert, exp):
    """A trusted signer over arbitrary claims: the certificate parsing is hostile-input safe too."""
    claims = {1: "VN", 6: int(NOW.timestamp()) - 60, -260: {1: hcert}}
    if exp is not None:
        claims[4] = exp
    text = "HC1:" + base45.encode(zlib.compress(cose.sign_es256(SIGNER.private_key, SIGNER.kid,
                                                                cbor2.dumps(claims))))
    result = verifier.parse(text, NOW)
    assert result.detail != "internal"
    assert result.ok or result.error == "malformed"

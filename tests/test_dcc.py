"""The HC1 verifier on the project's own test certificates: every reason code, the limits, the issuing tool."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import zlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import cbor2
import pytest
import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from PIL import Image

from conftest import trusting
from kiosk.codes import base45, classify, cose
from kiosk.codes.dcc import DccVerifier
from kiosk.issuing import (CERT_FILE, SigningKey, demo_certificates, health_certificate, new_signer, sign_hc1,
                           write_qr_png)
from kiosk.model import Dose, HealthRecord
from kiosk.stores.trust import TrustList

NOW = datetime(2021, 11, 15, 10, 0, tzinfo=timezone.utc)
IAT = NOW - timedelta(days=5)
EXP = NOW + timedelta(days=365)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def signer():
    return new_signer()


@pytest.fixture
def trust(tmp_path, signer):
    return trusting(tmp_path / "trust.json", signer)


@pytest.fixture
def verifier(trust):
    return DccVerifier(trust)


def thu(**entries):
    return health_certificate("NGUYEN VAN THU", "1990-12-01", **entries)


def hc1_of(cose_bytes: bytes) -> str:
    return "HC1:" + base45.encode(zlib.compress(cose_bytes))


def test_base45_round_trip_and_rfc_examples():
    assert base45.encode(b"AB") == "BB8"
    assert base45.encode(b"Hello!!") == "%69 VD92EX0"
    assert base45.decode("QED8WEX0") == b"ietf!"
    for data in (b"", b"\x00", b"\xff\xff", bytes(range(256))):
        assert base45.decode(base45.encode(data)) == data
    for bad in ("GGW", "A", "abc", "ZZZ:"):
        with pytest.raises(base45.Base45Error):
            base45.decode(bad)


def test_valid_certificate_gives_person_and_health(verifier, signer):
    cert = thu(doses=[(date(2021, 10, 1), "EU/1/20/1507"), (date(2021, 11, 1), None)])
    result = verifier.parse(sign_hc1(signer, cert, iat=IAT, exp=EXP), NOW)
    assert result.ok and result.kind == "dcc"
    person = result.person
    assert person.name == "NGUYEN VAN THU"
    assert person.birth == "1990-12-01"
    assert person.extra == {"issuer": "VN", "kid": base64.b64encode(signer.kid).decode()}
    assert person.health == HealthRecord(doses=(Dose(date(2021, 10, 1), "EU/1/20/1507"),
                                                Dose(date(2021, 11, 1), "EU/1/20/1528")))


def test_recovery_and_test_entries(verifier, signer):
    rec = verifier.parse(sign_hc1(signer, thu(recovered=date(2021, 5, 20)), iat=IAT, exp=EXP), NOW).person
    assert rec.health.recovered == date(2021, 5, 20) and not rec.health.doses
    tests = [(date(2021, 11, 14), False), (date(2021, 11, 13), True)]
    res = verifier.parse(sign_hc1(signer, thu(tests=tests), iat=IAT, exp=EXP), NOW).person
    assert [(t.taken.date(), t.positive) for t in res.health.tests] == tests
    assert res.health.tests[0].taken.tzinfo is not None


def test_name_falls_back_to_fn_gn_and_partial_birth(verifier, signer):
    cert = thu(doses=[(date(2021, 10, 1), None)])
    cert["nam"] = {"fn": "Nguyễn", "gn": "Văn Thử"}
    cert["dob"] = "1990"
    person = verifier.parse(sign_hc1(signer, cert, iat=IAT, exp=EXP), NOW).person
    assert (person.name, person.birth) == ("Nguyễn Văn Thử", "1990")


@pytest.mark.parametrize("when, reason", [
    (EXP + timedelta(seconds=1), "expired"),
    (IAT - timedelta(seconds=301), "not_yet_valid"),
])
def test_validity_window(verifier, signer, when, reason):
    text = sign_hc1(signer, thu(doses=[(date(2021, 10, 1), None)]), iat=IAT, exp=EXP)
    assert verifier.parse(text, when).error == reason
    assert verifier.parse(text, IAT - timedelta(seconds=299)).ok  # within the clock skew
    assert verifier.parse(text, EXP).ok


def test_clock_skew_is_configurable(trust, signer):
    text = sign_hc1(signer, thu(doses=[(date(2021, 10, 1), None)]), iat=IAT, exp=EXP)
    assert DccVerifier(trust, clock_skew_seconds=0).parse(text, IAT - timedelta(seconds=1)).error == "not_yet_valid"
    assert DccVerifier(trust, clock_skew_seconds=3600).parse(text, IAT - timedelta(minutes=59)).ok


def test_tampered_unknown_key_and_wrong_signature(verifier, signer):
    cert = thu(doses=[(date(2021, 10, 1), None)])
    assert verifier.parse(sign_hc1(signer, cert, iat=IAT, exp=EXP, tamper=True), NOW).error == "bad_signature"
    assert verifier.parse(sign_hc1(new_signer(), cert, iat=IAT, exp=EXP), NOW).error == "unknown_key"
    # the trusted kid on another key's signature
    other = new_signer()
    forged = type(other)(other.private_key, signer.certificate_der)
    assert verifier.parse(sign_hc1(forged, cert, iat=IAT, exp=EXP), NOW).error == "bad_signature"


def _claims(cert, overrides: dict | None = None) -> bytes:
    claims = {1: "VN", 6: int(IAT.timestamp()), 4: int(EXP.timestamp()), -260: {1: cert}}
    claims.update(overrides or {})
    return cbor2.dumps({k: v for k, v in claims.items() if v is not None})


def _sign1(key, protected: dict, unprotected: dict, payload: bytes, ps256: bool = False) -> bytes:
    prot = cbor2.dumps(protected)
    tbs = cose.sig_structure(prot, payload)
    if ps256:
        sig = key.sign(tbs, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(18, [prot, unprotected, payload, sig]))


def test_kid_in_unprotected_header(verifier, signer):
    payload = _claims(thu(doses=[(date(2021, 10, 1), None)]))
    text = hc1_of(_sign1(signer.private_key, {1: -7}, {4: signer.kid}, payload))
    assert verifier.parse(text, NOW).ok


@pytest.mark.parametrize("protected, unprotected", [
    ({}, {1: -7}),                   # alg only in the unprotected header, as EU dgc-testdata CO20
    ({1: -7}, {1: -37}),             # the protected header wins over the unprotected one
])
def test_alg_in_either_header_is_accepted_when_it_fits_the_key(verifier, signer, protected, unprotected):
    payload = _claims(thu(doses=[(date(2021, 10, 1), None)]))
    text = hc1_of(_sign1(signer.private_key, {**protected, 4: signer.kid}, unprotected, payload))
    assert verifier.parse(text, NOW).ok


@pytest.mark.parametrize("protected, unprotected", [
    ({}, {}),                        # no algorithm at all
    ({}, {1: -37}),                  # an EC key cannot be moved to PS256 by editing the unprotected header
    ({1: -35}, {}),                  # ES384 on a P-256 key
    ({1: "ES256"}, {}),              # not a COSE algorithm number
    ({1: [-7]}, {}),                 # unhashable values (found by the fuzz tests)
    ({}, {1: {-7: -7}}),
    ({1: -7.0}, {}),
])
def test_alg_that_does_not_fit_the_key_fails(verifier, signer, protected, unprotected):
    payload = _claims(thu(doses=[(date(2021, 10, 1), None)]))
    signed = _sign1(signer.private_key, {**protected, 4: signer.kid}, unprotected, payload)
    assert verifier.parse(hc1_of(signed), NOW).error == "bad_signature"


def test_p384_signers_with_es256_and_es384(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    trust = TrustList(tmp_path / "trust.json")
    trust.import_json([{"kid": base64.b64encode(b"p384-kid").decode(), "public_key": base64.b64encode(spki).decode()}])
    payload = _claims(thu(doses=[(date(2021, 10, 1), None)]))

    def signed(alg: int, digest) -> str:
        prot = cbor2.dumps({1: alg, 4: b"p384-kid"})
        r, s = decode_dss_signature(key.sign(cose.sig_structure(prot, payload), ec.ECDSA(digest())))
        return hc1_of(cbor2.dumps(cbor2.CBORTag(18, [prot, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")])))

    assert DccVerifier(trust).parse(signed(-35, hashes.SHA384), NOW).ok  # ES384
    assert DccVerifier(trust).parse(signed(-7, hashes.SHA256), NOW).ok   # ES256 on P-384, as Spain signs
    assert DccVerifier(trust).parse(signed(-7, hashes.SHA384), NOW).error == "bad_signature"  # header lies about the hash


def test_ps256(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    trust = TrustList(tmp_path / "trust.json")
    trust.import_json([{"kid": base64.b64encode(b"rsa-kid1").decode(), "public_key": base64.b64encode(spki).decode()}])
    payload = _claims(thu(doses=[(date(2021, 10, 1), None)]))
    good = _sign1(key, {1: -37, 4: b"rsa-kid1"}, {}, payload, ps256=True)
    assert DccVerifier(trust).parse(hc1_of(good), NOW).ok
    as_es256 = _sign1(key, {1: -7, 4: b"rsa-kid1"}, {}, payload, ps256=True)
    assert DccVerifier(trust).parse(hc1_of(as_es256), NOW).error == "bad_signature"


@pytest.mark.parametrize("overrides, detail", [
    ({4: None}, "exp"),
    ({4: "tomorrow"}, "exp"),
    ({6: True}, "iat"),
    ({-260: {1: "not a map"}}, "hcert"),
    ({-260: None}, "hcert"),
])
def test_missing_or_wrong_claims_are_malformed(verifier, signer, overrides, detail):
    payload = _claims(thu(doses=[(date(2021, 10, 1), None)]), overrides)
    result = verifier.parse(hc1_of(_sign1(signer.private_key, {1: -7, 4: signer.kid}, {}, payload)), NOW)
    assert (result.error, result.detail) == ("malformed", detail)


@pytest.mark.parametrize("mutate, detail", [
    (lambda c: c.update(dob="01/12/1990"), "dob"),
    (lambda c: c["v"][0].update(dt="2021-13-01"), "v.dt"),
    (lambda c: c.update(v={"dt": "2021-10-01"}), "v"),
    (lambda c: c.update(nam="NGUYEN"), "nam"),
])
def test_bad_certificate_fields_are_malformed(verifier, signer, mutate, detail):
    cert = thu(doses=[(date(2021, 10, 1), None)])
    mutate(cert)
    result = verifier.parse(sign_hc1(signer, cert, iat=IAT, exp=EXP), NOW)
    assert (result.error, result.detail) == ("malformed", detail)


@pytest.mark.parametrize("text, detail", [
    ("HC1", "prefix"),
    ("hc1:6BFOXN", "prefix"),
    ("HC1:abc", "base45"),
    ("HC1:" + base45.encode(b"not zlib"), "zlib"),
    ("HC1:" + base45.encode(zlib.compress(b"\xd2\x84")[:-3]), "zlib"),
    ("HC1:" + base45.encode(zlib.compress(b"\xd2\x84") + b"junk"), "zlib"),
    ("HC1:" + base45.encode(zlib.compress(cbor2.dumps([1, 2, 3]))), "cose_structure"),
    ("HC1:" + base45.encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(98, [])))), "cose_tag"),
    ("HC1:" + base45.encode(zlib.compress(cbor2.dumps([b"", {}, b"", b""]) + b"\x00")), "cbor_trailing_data"),
    ("HC1:" + base45.encode(zlib.compress(cbor2.dumps([b"", {}, b"", b""]))), "kid"),
])
def test_broken_encodings_are_malformed(verifier, text, detail):
    result = verifier.parse(text, NOW)
    assert (result.kind, result.error, result.detail) == ("dcc", "malformed", detail)


def test_input_length_limit(trust):
    assert DccVerifier(trust, max_input=100).parse("HC1:" + "0" * 200, NOW).detail == "too_long"


def test_zlib_bomb_is_rejected_quickly_in_bounded_memory(verifier):
    bomb = zlib.compress(b"\x00" * 50_000_000, 9)  # 50 MB of zeros in about 50 KB
    text = "HC1:" + base45.encode(bomb[:2600])  # what fits in a code: a truncated bomb
    started = time.perf_counter()
    result = DccVerifier(verifier.trust, max_input=10_000).parse(text, NOW)
    assert (result.error, result.detail) == ("malformed", "too_large")
    assert time.perf_counter() - started < 1.0


def test_deep_cbor_is_rejected_without_recursion_error(verifier):
    deep = b"\x81" * 3000 + b"\x00"
    started = time.perf_counter()
    result = verifier.parse("HC1:" + base45.encode(zlib.compress(deep)), NOW)
    assert (result.error, result.detail) == ("malformed", "cbor")
    assert time.perf_counter() - started < 1.0


def test_deep_cbor_inside_signed_payload(verifier, signer):
    nested = b"\xa1\x01" * 40 + b"\x00"  # 40 nested maps inside the signed claims
    payload = b"\xa1\x01" + nested
    result = verifier.parse(hc1_of(_sign1(signer.private_key, {1: -7, 4: signer.kid}, {}, payload)), NOW)
    assert (result.error, result.detail) == ("malformed", "cwt")


def test_classify_routes_hc1_to_the_verifier(verifier, signer):
    text = sign_hc1(signer, thu(doses=[(date(2021, 10, 1), None)]), iat=IAT, exp=EXP)
    assert classify(text + "\r", dcc=verifier, now=NOW).person.name == "NGUYEN VAN THU"


def test_qr_png_round_trip(tmp_path, signer, verifier):
    text = sign_hc1(signer, thu(doses=[(date(2021, 10, 1), None)]), iat=IAT, exp=EXP)
    write_qr_png(text, tmp_path / "q.png")
    decoded = [b.text for b in zxingcpp.read_barcodes(Image.open(tmp_path / "q.png"))]
    assert decoded == [text]


def test_demo_certificates_give_their_expected_reasons(tmp_path):
    today = date(2021, 11, 15)
    cases = demo_certificates(tmp_path / "signer", today)
    assert {label for label, *_ in cases} == {"dcc_vaccinated", "dcc_dose_too_recent", "dcc_expired",
                                              "dcc_tampered", "dcc_unknown_key"}
    trust = TrustList(tmp_path / "trust.json")
    trust.import_file(tmp_path / "signer" / CERT_FILE)
    verifier = DccVerifier(trust)
    noon = datetime(2021, 11, 15, 12, tzinfo=timezone(timedelta(hours=7)))
    for label, text, verdict, reason in cases:
        result = verifier.parse(text, noon)
        if verdict == "invalid":
            assert result.error == reason, label
        else:
            assert result.ok, label
    # a second call reuses the signer the trust list holds
    assert verifier.parse(demo_certificates(tmp_path / "signer", today)[0][1], noon).ok


def _kiosk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    settings = ["--set", "trust.seed_file=", "--set", f"trust.path={cwd / 'trust.json'}",
                "--set", f"roster.path={cwd / 'roster.json'}", "--set", f"journal.path={cwd / 'j.sqlite'}",
                "--set", "site.mode=health"]
    return subprocess.run([sys.executable, "-m", "kiosk", *args, *settings], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_issue_trust_and_decide_commands(tmp_path):
    key_dir = tmp_path / "signer"
    made = _kiosk("issue", "key", "--out", str(key_dir), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    again = _kiosk("issue", "key", "--out", str(key_dir), cwd=tmp_path)
    assert again.returncode == 65 and "exists" in again.stderr  # never overwrites a key
    imported = _kiosk("trust", "import", str(key_dir / CERT_FILE), cwd=tmp_path)
    assert json.loads(imported.stdout)["count"] == 1, imported.stderr
    shown = json.loads(_kiosk("trust", "show", cwd=tmp_path).stdout)
    assert shown["kids"] == [json.loads(made.stdout)["kid"]]

    def issue(*extra):
        out = _kiosk("issue", "cert", "--key", str(key_dir), "--name", "NGUYEN VAN THU", "--dob", "1990-12-01",
                     "--iat", "2021-11-10", *extra, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def decide(text, at):
        out = _kiosk("decide", text, "--at", at, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    good = issue("--dose", "2021-11-01", "--png", str(tmp_path / "q.png"))
    assert (tmp_path / "q.png").stat().st_size > 0
    green = decide(good, "2021-11-15")
    assert (green["verdict"], green["reason"]) == ("green", "vaccinated_14d")
    assert green["subject"] == {}  # a certificate holder's identity is the name and birth date: neither published
    assert (decide(good, "2021-11-14")["verdict"], decide(good, "2021-11-14")["reason"]) == ("black",
                                                                                             "dose_too_recent")
    for extra, reason in ((["--tamper"], "bad_signature"), (["--unknown-key"], "unknown_key"),
                          (["--exp", "2021-11-12"], "expired")):
        decision = decide(issue("--dose", "2021-11-01", *extra), "2021-11-15")
        assert (decision["verdict"], decision["reason"]) == ("invalid", reason)
        assert decision["subject"] == {}


def test_the_readme_example_verifies_under_the_demo_clock(tmp_path):
    """`kiosk issue cert` without --iat issues "now" by the configured clock: the demo's 2021 clock reads it."""
    key_dir = tmp_path / "signer"
    assert _kiosk("issue", "key", "--out", str(key_dir), cwd=tmp_path).returncode == 0
    assert _kiosk("trust", "import", str(key_dir / CERT_FILE), cwd=tmp_path).returncode == 0
    text = _kiosk("issue", "cert", "--key", str(key_dir), "--name", "NGUYEN VAN THU", "--dob", "1990-12-01",
                  "--dose", "2021-11-01", cwd=tmp_path).stdout.strip()
    decided = json.loads(_kiosk("decide", text, cwd=tmp_path).stdout)  # the demo config's fixed clock
    assert (decided["verdict"], decided["reason"]) == ("green", "vaccinated_14d")


@pytest.mark.parametrize("argv, status, says", [
    (["issue", "key", "--out", "/proc/no/such/folder"], 74, "cannot create the folder"),
    (["issue", "cert", "--key", "{tmp}/none", "--name", "A B", "--dob", "1990", "--dose", "2021-11-01"], 65,
     "holds no TEST signer"),
    (["issue", "cert", "--key", "{tmp}/junk", "--name", "A B", "--dob", "1990", "--dose", "2021-11-01"], 65,
     "does not hold a TEST signer"),
    (["issue", "cert", "--key", "{tmp}/signer", "--name", "A B", "--dob", "1990", "--dose", "2021-11-01",
      "--png", "/proc/no/q.png"], 74, "cannot write /proc/no/q.png"),
    (["issue", "revocation", "--key", "{tmp}/none", "HC1:X"], 65, "holds no TEST signer"),
])
def test_issue_commands_name_the_fix_instead_of_a_traceback(tmp_path, argv, status, says):
    assert _kiosk("issue", "key", "--out", str(tmp_path / "signer"), cwd=tmp_path).returncode == 0
    (tmp_path / "junk").mkdir()
    for name in ("signer-key.pem", "signer.pem"):
        (tmp_path / "junk" / name).write_text("not a key")
    done = _kiosk(*(a.format(tmp=tmp_path) for a in argv), cwd=tmp_path)
    assert done.returncode == status, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_signer_limited_by_key_usage(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vaccination-only signer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(IAT).not_valid_after(EXP)
            .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.2")]), False)
            .sign(key, hashes.SHA256()))
    signer = SigningKey(key, cert.public_bytes(serialization.Encoding.DER))
    trust = TrustList(tmp_path / "trust.json")
    trust.import_json([{"certificate": base64.b64encode(signer.certificate_der).decode()}])
    verifier = DccVerifier(trust)
    assert verifier.parse(sign_hc1(signer, thu(doses=[(date(2021, 10, 1), None)]), iat=IAT, exp=EXP), NOW).ok
    result = verifier.parse(sign_hc1(signer, thu(recovered=date(2021, 10, 1)), iat=IAT, exp=EXP), NOW)
    assert (result.error, result.detail) == ("unknown_key", "key_usage")

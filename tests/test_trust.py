"""The trust list: imports (PEM, DER, JSON, MQTT shape), all-or-nothing updates, staleness, reloads."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.clock import FixedClock
from kiosk.errors import DataError, StorageError
from kiosk.issuing import new_signer
from kiosk.stores.trust import TrustList, kid_of, parse_files

T0 = datetime(2021, 11, 15, 10, 0, tzinfo=timezone.utc)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def trust(tmp_path, clock):
    return TrustList(tmp_path / "trust.json", clock=clock)


def test_empty_list_is_stale_and_knows_no_key(trust):
    assert trust.count == 0 and trust.updated_at is None
    assert trust.is_stale(T0, 168)
    assert not trust.is_stale(T0, 0)
    assert trust.key_for(b"12345678") is None


def test_import_pem_der_and_json_files(tmp_path, trust):
    a, b, c = new_signer(), new_signer(), new_signer()
    (tmp_path / "two.pem").write_bytes(pem(a.certificate_der) + b"\n" + pem(b.certificate_der))
    (tmp_path / "one.der").write_bytes(c.certificate_der)
    assert trust.import_file(tmp_path / "two.pem") == 2
    assert trust.import_file(tmp_path / "one.der") == 1
    assert trust.count == 3
    for s in (a, b, c):
        assert trust.key_for(s.kid).public_numbers() == s.private_key.public_key().public_numbers()
    assert kid_of(a.certificate_der) == a.kid and len(a.kid) == 8
    d = new_signer()
    (tmp_path / "list.json").write_text(json.dumps([{"kid": b64(b"explicit"), "certificate": b64(d.certificate_der)}]))
    assert trust.import_file(tmp_path / "list.json", replace=True) == 1
    assert trust.kids() == [b64(b"explicit")] and trust.key_for(b"explicit") is not None
    assert trust.key_for(a.kid) is None


def test_import_dgc_testdata_case_shape(tmp_path, trust):
    s = new_signer()
    (tmp_path / "case.json").write_text(json.dumps({"TESTCTX": {"CERTIFICATE": b64(s.certificate_der)}}))
    assert trust.import_file(tmp_path / "case.json") == 1 and trust.key_for(s.kid) is not None


def test_stored_documents_and_update_time(tmp_path, trust, clock):
    s = new_signer()
    trust.import_json([{"certificate": b64(s.certificate_der)}])
    assert trust.updated_at == T0
    doc = next(iter(json.loads((tmp_path / "trust.json").read_text())["signers"].values()))
    assert doc["kid"] == b64(s.kid) and doc["subject_country"] == "VN" and doc["source"] == "mqtt"
    assert base64.b64decode(doc["certificate"]) == s.certificate_der
    clock.set(T0 + timedelta(hours=169))
    assert trust.is_stale(clock.now(), 168) and not trust.is_stale(T0 + timedelta(hours=167), 168)
    trust.import_json([{"certificate": b64(s.certificate_der)}])  # same signer again: refreshed, not doubled
    assert trust.count == 1 and not trust.is_stale(clock.now(), 168)


def test_bad_update_lists_every_problem_and_changes_nothing(tmp_path, trust):
    s = new_signer()
    trust.import_json([{"certificate": b64(s.certificate_der)}])
    before = (tmp_path / "trust.json").read_bytes()
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key().public_bytes(  # no DCC algorithm uses P-521
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    bad = [{"certificate": b64(new_signer().certificate_der)},  # fine, but the update is all or nothing
           {"certificate": "not base64!"},
           {"certificate": b64(b"\x30\x03\x02\x01\x01")},
           {"kid": b64(b"k"), "public_key": b64(p521)},
           {"public_key": b64(p521)},
           "text",
           {"kid": b64(b"x" * 40), "certificate": b64(s.certificate_der)},
           {"certificate": b64(s.certificate_der), "colour": "red"}]
    with pytest.raises(DataError) as err:
        trust.import_json(bad, replace=True)
    assert [p.split(":")[0] for p in err.value.problems] == [f"entry {i}" for i in range(2, 9)]
    for words in ("not valid base64", "not a valid DER", "P-256", "needs a kid", "not an object", "1 to 32 bytes",
                  "unknown field"):
        assert words in str(err.value)
    with pytest.raises(DataError, match="no signers"):
        trust.import_json([], replace=True)
    with pytest.raises(DataError):
        trust.import_json({"kid": "x"}, replace=True)
    assert (tmp_path / "trust.json").read_bytes() == before
    assert trust.count == 1 and trust.key_for(s.kid) is not None


def test_bad_files_are_rejected(tmp_path, trust):
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (tmp_path / "garbage.der").write_bytes(b"\x00\x01garbage")
    (tmp_path / "bad.json").write_text("[{")
    for name, words in (("bad.pem", "certificate 1"), ("garbage.der", "not a valid DER"), ("bad.json", "JSON"),
                        ("missing.pem", "cannot read")):
        with pytest.raises(DataError, match=words):
            trust.import_file(tmp_path / name)
    assert trust.count == 0 and not (tmp_path / "trust.json").exists()


def test_import_of_several_files_names_every_bad_one_and_imports_none(tmp_path):
    good = tmp_path / "good.der"
    good.write_bytes(new_signer().certificate_der)  # DER: one of the accepted file forms
    (tmp_path / "garbage.der").write_bytes(b"\x00\x01garbage")
    (tmp_path / "bad.json").write_text("[{")
    files = [good, tmp_path / "garbage.der", tmp_path / "bad.json", tmp_path / "missing.pem"]
    with pytest.raises(DataError) as err:
        parse_files(files)
    problems = err.value.problems
    assert len(problems) == 3 and all(str(f) in p for f, p in zip(files[1:], problems))
    assert not any(str(good) in p for p in problems)
    assert len(parse_files([good])) == 1


def test_duplicate_kid_for_different_keys_is_rejected(trust):
    a, b = new_signer(), new_signer()
    with pytest.raises(DataError, match="already given"):
        trust.import_json([{"kid": b64(b"samekid1"), "certificate": b64(a.certificate_der)},
                           {"kid": b64(b"samekid1"), "certificate": b64(b.certificate_der)}])


def test_another_process_update_is_seen(tmp_path, trust):
    s = new_signer()
    TrustList(tmp_path / "trust.json").import_json([{"certificate": b64(s.certificate_der)}])
    assert trust.key_for(s.kid) is not None and trust.count == 1


def test_corrupt_file_names_the_fix(tmp_path):
    (tmp_path / "trust.json").write_text(json.dumps({"signers": {"1": {"kid": "!!", "public_key": "x"}}}))
    with pytest.raises(StorageError, match="kiosk trust import"):
        TrustList(tmp_path / "trust.json")


def test_key_usage_from_extended_key_usage(trust):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-only signer")])
    eku = x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(T0).not_valid_after(T0 + timedelta(days=1))
            .add_extension(eku, critical=False).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    unrestricted = new_signer()
    trust.import_json([{"certificate": b64(der)}, {"certificate": b64(unrestricted.certificate_der)}])
    assert trust.usages_for(kid_of(der)) == frozenset({"t"})
    assert trust.usages_for(unrestricted.kid) is None

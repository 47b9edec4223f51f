"""Test certificates for the project's own cases and the demo: a TEST signing key and signed `HC1:` strings.

Never for production: the signer's certificate says so in its common name, and every health certificate it
issues names a TEST issuer. Deliberately broken variants (expired, tampered, unknown key) exercise the
verifier's rejections end to end; QUIRKS produce what real national issuers put in valid certificates (nulls,
empty strings, CBOR date tags, time parts, offsets, extra keys, other letter cases, the key id only in the
unprotected header), so every one is tested as the kiosk meets it. `revocation_batch` lists issued
certificates the way an EU revocation list does.
"""
from __future__ import annotations

import base64
import hashlib
import unicodedata
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import cbor2
import segno
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.codes import base45, cose
from kiosk.codes.dcc import (
    CLAIM_EXP,
    CLAIM_HCERT,
    CLAIM_IAT,
    CLAIM_ISS,
    PREFIX,
    DccVerifier,
    revocation_hashes,
)
from kiosk.codes.hcert import TEST_DETECTED
from kiosk.errors import DataError, StorageError
from kiosk.stores.documents import atomic_write_bytes
from kiosk.stores.trust import kid_of

KEY_FILE = "signer-key.pem"
CERT_FILE = "signer.pem"  # the certificate (PEM) to put in the trust list
SIGNER_CN = "Checkpoint Kiosk TEST signer, not for production"
COUNTRY = "VN"
ISSUER = "Checkpoint Kiosk TEST issuer"
COVID19 = "840539006"  # SNOMED CT disease agent
TEST_NOT_DETECTED = "260415000"
DEFAULT_PRODUCT = "EU/1/20/1528"


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    certificate_der: bytes

    @property
    def kid(self) -> bytes:
        return kid_of(self.certificate_der)


def new_signer(now: datetime | None = None, valid_days: int = 3650) -> SigningKey:
    """A fresh P-256 key with a self-signed certificate (also the "unknown key" of the broken variants)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, COUNTRY),
                      x509.NameAttribute(NameOID.COMMON_NAME, SIGNER_CN)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=valid_days))
            .sign(key, hashes.SHA256()))
    return SigningKey(key, cert.public_bytes(serialization.Encoding.DER))


def create_signer(out_dir: Path) -> SigningKey:
    """Write a new TEST signer to `out_dir` (private key and certificate, PEM). Refuses to overwrite one."""
    out_dir = Path(out_dir)
    if (out_dir / KEY_FILE).exists():
        raise DataError(f"{out_dir / KEY_FILE} exists; choose another folder or delete it first")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder {out_dir}: {exc.strerror} (choose a folder you can write)") \
            from None
    signer = new_signer()
    atomic_write_bytes(out_dir / KEY_FILE, signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (out_dir / KEY_FILE).chmod(0o600)
    cert = x509.load_der_x509_certificate(signer.certificate_der)
    atomic_write_bytes(out_dir / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
    return signer


def load_signer(key_dir: Path) -> SigningKey:
    """The TEST signer `kiosk issue key` wrote to `key_dir`; DataError naming the fix when there is none."""
    key_dir = Path(key_dir)
    made_by = f"make one with `kiosk issue key --out {key_dir}`"
    try:
        key_pem, cert_pem = (key_dir / KEY_FILE).read_bytes(), (key_dir / CERT_FILE).read_bytes()
    except OSError as exc:
        raise DataError(f"{key_dir} holds no TEST signer ({exc.filename}: {exc.strerror}); {made_by}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError):
        raise DataError(f"{key_dir} does not hold a TEST signer made by `kiosk issue key` "
                        f"({KEY_FILE} or {CERT_FILE} is not a PEM key and certificate); {made_by}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise DataError(f"{key_dir / KEY_FILE} is not an EC key; {made_by}")
    return SigningKey(key, cert.public_bytes(serialization.Encoding.DER))


def health_certificate(name: str, dob: str, *, doses: Sequence[tuple[date, str | None]] = (),
                       recovered: date | None = None, tests: Sequence[tuple[date, bool]] = ()) -> dict[str, Any]:
    """An EU DCC (schema 1.3.0) for `name` ("FAMILY GIVEN NAMES"), with vaccination, recovery or test entries."""
    family, _, given = name.strip().partition(" ")
    uvci = "URN:UVCI:01:VN:TEST" + hashlib.sha256(f"{name}|{dob}".encode()).hexdigest()[:16].upper()
    common = {"tg": COVID19, "co": COUNTRY, "is": ISSUER, "ci": uvci}
    cert: dict[str, Any] = {"ver": "1.3.0", "dob": dob,
                  "nam": {"fn": family, "fnt": _icao(family), "gn": given, "gnt": _icao(given)}}
    if doses:
        cert["v"] = [{**common, "vp": "1119349007", "mp": product or DEFAULT_PRODUCT, "ma": "ORG-100030215",
                      "dn": i, "sd": len(doses), "dt": day.isoformat()}
                     for i, (day, product) in enumerate(sorted(doses), 1)]
    if recovered:
        cert["r"] = [{**common, "fr": recovered.isoformat(), "df": (recovered + timedelta(days=11)).isoformat(),
                      "du": (recovered + timedelta(days=180)).isoformat()}]
    if tests:
        cert["t"] = [{**common, "tt": "LP6464-4", "sc": f"{day.isoformat()}T08:00:00Z",
                      "tr": TEST_DETECTED if positive else TEST_NOT_DETECTED, "tc": "TEST centre"}
                     for day, positive in tests]
    return cert


def sign_hc1(signer: SigningKey, cert: dict[str, Any], *, iat: datetime, exp: datetime, tamper: bool = False,
             kid_unprotected: bool = False) -> str:
    """The `HC1:` text of `cert` signed by `signer`; `tamper` changes the issuer claim after signing (still a
    well-formed certificate, no longer the signed one); `kid_unprotected` puts the key id in the unprotected
    header only, as some issuers do."""
    claims = {CLAIM_ISS: COUNTRY, CLAIM_IAT: int(iat.timestamp()), CLAIM_EXP: int(exp.timestamp()),
              CLAIM_HCERT: {1: cert}}
    signed = cose.sign_es256(signer.private_key, signer.kid, cbor2.dumps(claims), kid_unprotected=kid_unprotected)
    if tamper:
        sign1 = cose.decode_sign1(signed, max_depth=16)
        forged = cbor2.dumps({**claims, CLAIM_ISS: "XX"})
        signed = cbor2.dumps(cbor2.CBORTag(cose.TAG_SIGN1, [sign1.protected, dict(sign1.unprotected), forged,
                                                            sign1.signature]))
    return PREFIX + base45.encode(zlib.compress(signed, 9))


def revocation_batch(signer: SigningKey, texts: list[str], hash_type: str) -> dict[str, Any]:
    """An EU-style revocation batch (`kid`, `hashType`, `entries` of base64 hashes) listing `texts`, which
    `signer` issued. Raises ValueError for a text that is not a certificate of that signer."""
    verifier = DccVerifier(_OneSigner(signer))
    hashes = []
    for text in texts:
        sign1 = verifier.sign1(text)
        found = dict(revocation_hashes(sign1, verifier.claims(sign1), signer.private_key.public_key()))
        if hash_type not in found:
            raise ValueError(f"a certificate has no {hash_type} to hash")
        hashes.append({"hash": base64.b64encode(found[hash_type]).decode("ascii")})
    return {"kid": base64.b64encode(signer.kid).decode("ascii"), "hashType": hash_type, "entries": hashes}


class _OneSigner:
    def __init__(self, signer: SigningKey):
        self.signer = signer

    def key_for(self, kid: bytes) -> Any:
        return self.signer.private_key.public_key() if kid == self.signer.kid else None

    def usages_for(self, kid: bytes) -> frozenset[str] | None:
        return None


def write_qr_png(text: str, path: Path, scale: int = 4) -> None:
    try:
        segno.make_qr(text, error="q").save(str(path), scale=scale, border=4)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror} (choose a folder you can write)") from None


def _icao(text: str) -> str:
    """ICAO 9303 style: uppercase A-Z, '<' between words (Vietnamese Đ becomes D)."""
    plain = unicodedata.normalize("NFKD", text.replace("Đ", "D").replace("đ", "d"))
    letters = "".join(ch for ch in plain if not unicodedata.combining(ch)).upper()
    return "<".join("".join(ch for ch in word if "A" <= ch <= "Z") for word in letters.split())


def _midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def demo_certificates(key_dir: Path, today: date) -> list[tuple[str, str, str, str]]:
    """(label, HC1 text, expected verdict, expected reason) for the demo scenes, decided on `today`.

    Signed by the TEST signer in `key_dir` (created when missing; trust its `signer.pem`), except the
    unknown-key case, which uses a throwaway key."""
    key_dir = Path(key_dir)
    signer = load_signer(key_dir) if (key_dir / KEY_FILE).exists() else create_signer(key_dir)
    iat, exp = _midnight_utc(today - timedelta(days=1)), _midnight_utc(today + timedelta(days=365))

    def hc1(name: str, dose_age_days: int, *, who: SigningKey = signer, issued: datetime = iat,
            expires: datetime = exp, tamper: bool = False) -> str:
        cert = health_certificate(name, "1990-12-01", doses=[(today - timedelta(days=dose_age_days), None)])
        return sign_hc1(who, cert, iat=issued, exp=expires, tamper=tamper)

    return [
        ("dcc_vaccinated", hc1("NGUYEN VAN THU", 30), "green", "vaccinated_14d"),
        ("dcc_dose_too_recent", hc1("TRAN THI MAU", 3), "black", "dose_too_recent"),
        ("dcc_expired", hc1("LE VAN HO", 400, issued=iat - timedelta(days=400), expires=iat), "invalid", "expired"),
        ("dcc_tampered", hc1("PHAM MINH KHACH", 30, tamper=True), "invalid", "bad_signature"),
        ("dcc_unknown_key", hc1("NGUYEN VAN THU", 30, who=new_signer()), "invalid", "unknown_key"),
    ]

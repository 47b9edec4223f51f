"""The trust list: certificate signers (document signer certificates or bare public keys) by key id.

Stored as TinyDB documents (`signers` and `meta` tables) in one file written atomically. Every update
(file import, MQTT `trust` command) is validated in full first and written with one storage write, so a
rejected or failed update never empties or corrupts the list. The key id (`kid`) of a certificate is the
first 8 bytes of the SHA-256 of its DER encoding (EU DCC convention) unless the update gives one.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from kiosk.codes import cose
from kiosk.errors import DataError
from kiosk.stores.documents import DocumentStore, decode_b64, json_object, read_limited

PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_KID_BYTES = 32
MIN_RSA_BITS = 2048
# Extended key usages of a DCC signer (eHealth network, hcert spec 5.1.1): the certificate types it may sign.
# The second arc is a variant in circulation; both are honoured. No such OID: the signer may sign every type.
KEY_USAGE_OIDS = {f"{arc}.{n}": kind for arc in ("1.3.6.1.4.1.1847.2021.1", "1.3.6.1.4.1.0.1847.2021.1")
                  for n, kind in ((1, "t"), (2, "v"), (3, "r"))}


@dataclass(frozen=True)
class Signer:
    kid: bytes
    public_key_der: bytes  # SubjectPublicKeyInfo
    certificate_der: bytes | None = None
    subject_country: str | None = None
    issuer_country: str | None = None
    not_after: str | None = None
    source: str | None = None
    usages: tuple[str, ...] | None = None  # of "v", "t", "r"; None: unrestricted


def kid_of(certificate_der: bytes) -> bytes:
    return hashlib.sha256(certificate_der).digest()[:8]


class TrustList(DocumentStore[Signer]):
    TABLE, WHAT = "signers", "trust list"
    FIX = "import the signer certificates again (`kiosk trust import --replace FILE`)"

    # ------------------------------------------------------------------ reading
    @property
    def count(self) -> int:
        self._refresh()
        return len(self._signers)

    def is_stale(self, now: datetime, max_age_hours: float) -> bool:
        """Never updated, or updated longer than `max_age_hours` ago (0 or less: never stale)."""
        if max_age_hours <= 0:
            return False
        updated = self.updated_at
        return updated is None or now - updated > timedelta(hours=max_age_hours)

    def kids(self) -> list[str]:
        self._refresh()
        return [base64.b64encode(s.kid).decode("ascii") for s in self._signers]

    def key_for(self, kid: bytes) -> PublicKeyTypes | None:
        """The public key for `kid`, or None. Keys are loaded once per version of the file."""
        self._refresh()
        return self._keys.get(bytes(kid))

    def usages_for(self, kid: bytes) -> frozenset[str] | None:
        """Certificate types ("v", "t", "r") the signer may sign; None when its certificate does not restrict it."""
        self._refresh()
        signer = self._by_kid.get(bytes(kid))
        return frozenset(signer.usages) if signer is not None and signer.usages is not None else None

    # ------------------------------------------------------------------ changes
    def import_file(self, path: str | os.PathLike[str], *, replace: bool = False) -> int:
        """Add (or with `replace`, install only) the signers in one PEM, DER or JSON file."""
        signers = parse_file(Path(path))
        self.store(signers, replace=replace)
        return len(signers)

    def import_json(self, obj: Any, replace: bool = False) -> int:
        """Signers given as `[{"kid": base64, "certificate": base64 DER}]` (MQTT `trust` command)."""
        signers = parse_json(obj, "trust update")
        self.store(signers, replace=replace)
        return len(signers)

    def store(self, signers: list[Signer], *, replace: bool) -> None:
        """Write validated signers; a signer with a kid already listed replaces the old entry."""
        if not signers:
            raise DataError("trust update rejected: it holds no signers (the current list is kept)")
        self._refresh()
        new = {s.kid: s for s in signers}
        kept = [] if replace else [s for s in self._signers if s.kid not in new]
        self._write(kept + list(new.values()))

    # ------------------------------------------------------------------ storage
    @staticmethod
    def _to_doc(s: Signer) -> dict[str, Any]:
        return {"kid": _b64(s.kid), "public_key": _b64(s.public_key_der), "certificate": _b64(s.certificate_der),
                "subject_country": s.subject_country, "issuer_country": s.issuer_country,
                "not_after": s.not_after, "source": s.source,
                "usages": list(s.usages) if s.usages is not None else None}

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> Signer:
        cert = doc.get("certificate")
        return Signer(base64.b64decode(doc["kid"], validate=True), base64.b64decode(doc["public_key"], validate=True),
                      base64.b64decode(cert, validate=True) if cert else None, doc.get("subject_country"),
                      doc.get("issuer_country"), doc.get("not_after"), doc.get("source"),
                      tuple(doc["usages"]) if doc.get("usages") is not None else None)

    def _adopt(self, signers: list[Signer]) -> None:
        self._keys: dict[bytes, PublicKeyTypes] = {s.kid: serialization.load_der_public_key(s.public_key_der)
                                                    for s in signers}
        self._signers = signers
        self._by_kid = {s.kid: s for s in signers}


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


# ---------------------------------------------------------------------- parsing and validation
def parse_files(paths: list[Path]) -> list[Signer]:
    """The signers of every file, or one DataError naming every problem of every file (nothing imported)."""
    signers, problems = [], []
    for path in paths:
        try:
            signers.extend(parse_file(path))
        except DataError as exc:
            problems.extend([f"{path}: {p}" for p in exc.problems] or [str(exc)])
    if problems:
        raise DataError("trust import rejected, nothing imported", problems)
    return signers


def parse_file(path: Path) -> list[Signer]:
    """Signers in a PEM file (one or more certificates), a DER certificate or a JSON document."""
    raw = read_limited(path, MAX_FILE_BYTES)
    source = path.name
    stripped = raw.lstrip()
    if stripped[:1] in (b"[", b"{"):
        try:
            obj = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path} rejected, nothing imported", [f"not valid JSON: {exc}"]) from None
        return parse_json(_json_entries(obj), f"{path} rejected, nothing imported", source)
    if b"-----BEGIN" in raw:
        blocks = PEM_CERTIFICATE.findall(raw)
        if not blocks:
            raise DataError(f"{path} rejected, nothing imported", ["no PEM CERTIFICATE block found"])
        ders, problems = [], []
        for i, block in enumerate(blocks, 1):
            try:
                ders.append(x509.load_pem_x509_certificate(block).public_bytes(serialization.Encoding.DER))
            except ValueError:
                problems.append(f"certificate {i}: not a valid X.509 certificate")
        if problems:
            raise DataError(f"{path} rejected, nothing imported", problems)
        return _signers_from_ders(ders, f"{path} rejected, nothing imported", source)
    return _signers_from_ders([raw], f"{path} rejected, nothing imported", source)


def _json_entries(obj: Any) -> Any:
    """A list of entries; also a `{"entries": [...]}` document and a dgc-testdata case (TESTCTX.CERTIFICATE)."""
    if isinstance(obj, dict) and "entries" in obj:
        return obj["entries"]
    if isinstance(obj, dict) and isinstance(obj.get("TESTCTX"), dict) and "CERTIFICATE" in obj["TESTCTX"]:
        return [{"certificate": obj["TESTCTX"]["CERTIFICATE"]}]
    return obj


def _signers_from_ders(ders: list[bytes], message: str, source: str) -> list[Signer]:
    signers, problems = [], []
    for i, der in enumerate(ders, 1):
        try:
            signers.append(_signer(None, der, None, source))
        except ValueError as exc:
            problems.append(f"certificate {i}: {exc}")
    if problems:
        raise DataError(message, problems)
    return signers


def parse_json(obj: Any, message: str, source: str = "mqtt") -> list[Signer]:
    """Validate every entry of `[{"kid"?, "certificate"} | {"kid", "public_key"}]`; DataError lists each problem."""
    if not isinstance(obj, list):
        raise DataError(message, ['expected a list of {"kid": base64, "certificate": base64 DER}'])
    signers: list[Signer] = []
    problems: list[str] = []
    seen: dict[bytes, Signer] = {}
    for i, entry in enumerate(obj, 1):
        try:
            signer = _entry(entry, source)
        except ValueError as exc:
            problems.append(f"entry {i}: {exc}")
            continue
        if signer.kid in seen and seen[signer.kid].public_key_der != signer.public_key_der:
            problems.append(f"entry {i}: kid {_b64(signer.kid)} already given for another key")
        seen[signer.kid] = signer
        signers.append(signer)
    if problems:
        raise DataError(message, problems)
    return signers


def _entry(entry: Any, source: str) -> Signer:
    entry = json_object(entry, {"kid", "certificate", "public_key", "source"})
    kid = decode_b64(entry["kid"], "kid") if entry.get("kid") is not None else None
    if kid is not None and not 1 <= len(kid) <= MAX_KID_BYTES:
        raise ValueError(f"kid must be 1 to {MAX_KID_BYTES} bytes")
    if ("certificate" in entry) == ("public_key" in entry):
        raise ValueError("give exactly one of certificate or public_key")
    if "certificate" in entry:
        return _signer(kid, decode_b64(entry["certificate"], "certificate"), None, source)
    if kid is None:
        raise ValueError("a bare public_key needs a kid")
    return _signer(kid, None, decode_b64(entry["public_key"], "public_key"), source)


def _signer(kid: bytes | None, cert_der: bytes | None, key_der: bytes | None, source: str) -> Signer:
    subject = issuer = not_after = None
    usages: tuple[str, ...] | None = None
    key: PublicKeyTypes
    if cert_der is not None:
        try:
            cert = x509.load_der_x509_certificate(cert_der)
            key = cert.public_key()
        except ValueError:
            raise ValueError("not a valid DER X.509 certificate") from None
        subject, issuer = _country(cert.subject), _country(cert.issuer)
        not_after = cert.not_valid_after_utc.isoformat()
        kid = kid if kid is not None else kid_of(cert_der)
        usages = _usages(cert)
    elif key_der is not None:
        try:
            key = serialization.load_der_public_key(key_der)
        except (ValueError, TypeError):
            raise ValueError("public_key is not a DER SubjectPublicKeyInfo") from None
    else:
        raise ValueError("give exactly one of certificate or public_key")
    if kid is None:  # a certificate gives its own kid; a bare key cannot
        raise ValueError("a bare public_key needs a kid")
    _check_key(key)
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Signer(kid, spki, cert_der, subject, issuer, not_after, source, usages)


def _check_key(key: PublicKeyTypes) -> None:
    if not cose.accepts_key(key):
        raise ValueError("key type is not EC P-256 (ES256), EC P-384 (ES384) or RSA (PS256)")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} needed")


def _country(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    return str(values[0].value) if values else None


def _usages(cert: x509.Certificate) -> tuple[str, ...] | None:
    try:
        oids = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # some issuers' test certificates carry an undecodable extension: no usage is known
        return None
    kinds = sorted({KEY_USAGE_OIDS[o.dotted_string] for o in oids if o.dotted_string in KEY_USAGE_OIDS})
    return tuple(kinds) or None

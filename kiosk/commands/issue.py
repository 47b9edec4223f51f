"""`kiosk issue key|cert`: TEST signing key and signed `HC1:` certificates for tests and demos.

`kiosk issue key --out DIR` writes a TEST signer; trust it with `kiosk trust import DIR/signer.pem`.
`kiosk issue cert --key DIR --name "NGUYEN VAN THU" --dob 1990-12-01 --dose 2021-11-01 [--png FILE]` prints
the `HC1:` text. Broken variants: `--exp` in the past (expired), `--tamper`, `--unknown-key`. What real issuers
do in valid certificates: `--quirk NAME` (repeatable; see kiosk.quirks), and `--dob` given as `YYYY`,
`YYYY-MM` or `""`. `kiosk issue revocation --key DIR --type UCI HC1...` prints an EU-style revocation list of
those certificates, for `kiosk trust import` or the MQTT `trust` command.
"""
from __future__ import annotations

import base64
import sys
from datetime import date, timedelta
from pathlib import Path

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.quirks import QUIRKS
from kiosk.timeparse import parse_instant


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("issue", parents=[common], help="TEST signer and signed HC1 certificates (never production)")
    actions = p.add_subparsers(dest="issue_action", metavar="ACTION", required=True)
    key = actions.add_parser("key", parents=[common], help="create a TEST signing key and certificate")
    key.add_argument("--out", required=True, type=Path, metavar="DIR")
    key.set_defaults(func=run_key)
    cert = actions.add_parser("cert", parents=[common], help="print a signed HC1: certificate")
    cert.add_argument("--key", required=True, type=Path, metavar="DIR", help="folder made by `kiosk issue key`")
    cert.add_argument("--name", required=True, help='"FAMILY GIVEN NAMES", e.g. "NGUYEN VAN THU"')
    cert.add_argument("--dob", required=True, help='YYYY-MM-DD, YYYY-MM, YYYY or "" (unknown), as issuers write it')
    kind = cert.add_mutually_exclusive_group(required=True)
    kind.add_argument("--dose", action="append", metavar="DATE[:PRODUCT]", help="a vaccination (repeatable)")
    kind.add_argument("--recovered", metavar="DATE", help="first positive test date")
    kind.add_argument("--test", action="append", metavar="DATE:negative|positive", help="a test result")
    cert.add_argument("--iat", metavar="ISO-8601", help="issued at (default: now by the configured clock)")
    cert.add_argument("--exp", metavar="ISO-8601", help="expires (default: a year after --iat)")
    cert.add_argument("--tamper", action="store_true", help="change a payload byte after signing")
    cert.add_argument("--unknown-key", action="store_true", help="sign with a throwaway key nobody trusts")
    cert.add_argument("--quirk", action="append", default=[], choices=sorted(QUIRKS), metavar="NAME",
                      help="what real issuers do in valid certificates (repeatable): " +
                      "; ".join(f"{name}: {q.help}" for name, q in QUIRKS.items()))
    cert.add_argument("--png", type=Path, metavar="FILE", help="also write the QR code as PNG")
    cert.set_defaults(func=run_cert)
    revoke = actions.add_parser("revocation", parents=[common], help="print an EU-style revocation list (JSON) of "
                                "certificates issued with --key")
    revoke.add_argument("--key", required=True, type=Path, metavar="DIR", help="folder made by `kiosk issue key`")
    revoke.add_argument("--type", default="UCI", choices=("UCI", "COUNTRYCODEUCI", "SIGNATURE"),
                        help="what is hashed: the certificate identifier, country and identifier, or the signature")
    revoke.add_argument("certificates", nargs="+", metavar="HC1")
    revoke.set_defaults(func=run_revocation)


def run_key(args: Args) -> int:
    from kiosk.issuing import CERT_FILE, create_signer

    signer = create_signer(args.out)  # a DataError or StorageError names the fix; kiosk.cli prints it
    emit({"certificate": str(args.out / CERT_FILE), "kid": base64.b64encode(signer.kid).decode("ascii")})
    return 0


def run_cert(args: Args) -> int:
    from kiosk import issuing
    from kiosk.app import build_clock
    from kiosk.quirks import with_quirks

    cfg = load_config(args)
    tz = cfg.site.timezone
    try:
        doses = [_dose(d) for d in args.dose or ()]
        recovered = date.fromisoformat(args.recovered) if args.recovered else None
        tests = [_test(t) for t in args.test or ()]
        iat = parse_instant(args.iat, tz) if args.iat else None
        exp = parse_instant(args.exp, tz) if args.exp else None
    except ValueError as exc:
        print(f"kiosk issue cert: {exc}", file=sys.stderr)
        return 2
    signer = issuing.new_signer() if args.unknown_key else issuing.load_signer(args.key)
    # Issued "now" by the configured clock: under the demo's fixed 2021 clock a certificate issued today would be
    # not_yet_valid to the kiosk that has to read it.
    iat = iat or build_clock(cfg).now()
    cert, kid_unprotected = with_quirks(
        issuing.health_certificate(args.name, args.dob, doses=doses, recovered=recovered, tests=tests), args.quirk)
    text = issuing.sign_hc1(signer, cert, iat=iat, exp=exp or iat + timedelta(days=365), tamper=args.tamper,
                            kid_unprotected=kid_unprotected)
    if args.png:
        issuing.write_qr_png(text, args.png)
    print(text)
    return 0


def run_revocation(args: Args) -> int:
    from kiosk import issuing
    from kiosk.codes.dcc import Rejected

    try:
        emit(issuing.revocation_batch(issuing.load_signer(args.key), args.certificates, args.type))
    except (Rejected, ValueError) as exc:
        print(f"kiosk issue revocation: not a certificate of the signer in {args.key}: {exc}", file=sys.stderr)
        return 65
    return 0


def _dose(text: str) -> tuple[date, str | None]:
    day, _, product = text.partition(":")
    return date.fromisoformat(day), product or None


def _test(text: str) -> tuple[date, bool]:
    day, _, result = text.partition(":")
    if result not in ("negative", "positive"):
        raise ValueError(f"--test {text!r}: give DATE:negative or DATE:positive")
    return date.fromisoformat(day), result == "positive"

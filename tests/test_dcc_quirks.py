"""Certificates as real issuers make them (issue 14, section 3): every quirk verifies, what the decision uses is
checked strictly, everything else is noted in `warnings` and never fatal; dates of birth in the future or
impossible are malformed."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import cbor2
import pytest

from conftest import trusting
from kiosk.cli import main
from kiosk.codes.dcc import CLAIM_EXP, DccVerifier
from kiosk.issuing import CERT_FILE, create_signer, health_certificate, new_signer, sign_hc1
from kiosk.quirks import QUIRKS, with_quirks

NOW = datetime(2021, 11, 15, 10, 0, tzinfo=timezone.utc)
IAT, EXP = NOW - timedelta(days=5), NOW + timedelta(days=365)
KINDS = {  # each kind of entry with the health record the verifier must read from it, whatever the quirk
    "dose": ({"doses": [(date(2021, 10, 1), None)]}, lambda h: [d.day for d in h.doses] == [date(2021, 10, 1)]),
    "recovery": ({"recovered": date(2021, 10, 1)}, lambda h: h.recovered == date(2021, 10, 1)),
    "test": ({"tests": [(date(2021, 11, 14), False)]},
             lambda h: [(int(t.taken.timestamp()), t.positive) for t in h.tests]  # a fraction of a second aside
             == [(int(datetime(2021, 11, 14, 8, tzinfo=timezone.utc).timestamp()), False)]),
}


@pytest.fixture(scope="module")
def signer():
    return new_signer()


@pytest.fixture(scope="module")
def verifier(signer, tmp_path_factory):
    return DccVerifier(trusting(tmp_path_factory.mktemp("trust") / "trust.json", signer))


def issue(signer, quirks=(), dob="1990-12-01", kind="dose", edit=lambda cert: None, **claims):
    cert, kid_unprotected = with_quirks(health_certificate("NGUYEN VAN THU", dob, **KINDS[kind][0]), list(quirks))
    edit(cert)
    return sign_hc1(signer, cert, iat=IAT, exp=EXP, kid_unprotected=kid_unprotected)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_every_issuer_quirk_verifies_with_the_same_holder_and_entries(verifier, signer, quirk, kind):
    result = verifier.parse(issue(signer, [quirk], kind=kind), NOW)
    assert result.ok, (result.error, result.detail)
    assert (result.person.name, result.person.birth) == ("NGUYEN VAN THU", "1990-12-01")
    assert KINDS[kind][1](result.person.health)


def test_all_quirks_at_once_and_what_they_note(verifier, signer):
    result = verifier.parse(issue(signer, sorted(QUIRKS)), NOW)
    assert result.ok and result.person.health.doses[0].day == date(2021, 10, 1)
    assert set(result.warnings) >= {"v[0].ma:null", "v[0].is:null", "dob:cbor_date", "v[0].dt:cbor_date"}
    assert all("NGUYEN" not in w and "1990" not in w for w in result.warnings)  # field names, never values


@pytest.mark.parametrize("dob, birth", [("1990", "1990"), ("1990-12", "1990-12"), ("", None),
                                        ("2021-11", "2021-11"), ("2021-11-15", "2021-11-15")])
def test_partial_empty_and_todays_dates_of_birth(verifier, signer, dob, birth):
    result = verifier.parse(issue(signer, dob=dob), NOW)
    assert result.ok and result.person.birth == birth


@pytest.mark.parametrize("dob", ["1990-02-30", "1990-13", "2021-11-16", "2021-12", "2022", "2030-01-01",
                                 "1899-12-31", "1990-02-30T00:00:00", "1990-12-01Tnoon", "01/12/1990", "1990-1-1"])
def test_impossible_or_future_dates_of_birth_are_malformed(verifier, signer, dob):
    result = verifier.parse(issue(signer, dob=dob), NOW)
    assert (result.error, result.detail) == ("malformed", "dob")


def test_cbor_tagged_future_date_of_birth_is_malformed_too(verifier, signer):
    def future(cert):
        cert["dob"] = cbor2.CBORTag(1004, "2030-01-01")
    assert verifier.parse(issue(signer, edit=future), NOW).detail == "dob"


@pytest.mark.parametrize("kind, edit, detail", [
    ("dose", lambda c: c["v"][0].update(dt="2021-02-30"), "v.dt"),
    ("dose", lambda c: c["v"][0].update(dt=None), "v.dt"),
    ("dose", lambda c: c["v"][0].update(dt=20211001), "v.dt"),
    ("dose", lambda c: c["v"][0].update(dn="1"), "v.dn"),
    ("dose", lambda c: c["v"][0].update(dn=True), "v.dn"),
    ("dose", lambda c: c["v"][0].update(dn=1.0), "v.dn"),
    ("dose", lambda c: c["v"][0].update(sd=-1), "v.sd"),
    ("dose", lambda c: c["v"][0].pop("sd"), "v.sd"),
    ("recovery", lambda c: c["r"][0].update(fr="2021-13-01"), "r.fr"),
    ("test", lambda c: c["t"][0].update(sc="yesterday"), "t.sc"),
    ("test", lambda c: c["t"][0].update(sc="2021-11-14T25:00:00Z"), "t.sc"),
    ("dose", lambda c: c["nam"].update(fnt="NGUYEN\u202eUHT", gnt=None), "nam"),
    ("dose", lambda c: c["nam"].update(fnt="\x1b[2JNGUYEN"), "nam"),
    ("dose", lambda c: c["nam"].update(fnt="N" * 81), "nam"),
    ("dose", lambda c: c["nam"].update(fnt=None, gnt=None, fn=None, gn=""), "nam"),
    ("dose", lambda c: c["nam"].update(gnt=7), "nam"),
    ("dose", lambda c: c.update(v=None, r="x"), "r"),
])
def test_what_the_decision_uses_is_strict(verifier, signer, kind, edit, detail):
    result = verifier.parse(issue(signer, kind=kind, edit=edit), NOW)
    assert (result.error, result.detail) == ("malformed", detail)


@pytest.mark.parametrize("kind, edit, warning", [
    ("dose", lambda c: c["v"][0].update(ma=5), "v[0].ma:wrong_type"),
    ("dose", lambda c: c["v"][0].update(mp=["x"]), "v[0].mp:wrong_type"),
    ("dose", lambda c: c["v"][0].update(ci=" "), "v[0].ci:empty"),
    ("dose", lambda c: c["v"][0].update(tg=None), "v[0].tg:null"),
    ("recovery", lambda c: c["r"][0].update(df="soon", du=None), "r[0].df:unreadable"),
    ("test", lambda c: c["t"][0].update(tt={}), "t[0].tt:wrong_type"),
    ("dose", lambda c: c.update(t=None), "t:null"),
    ("dose", lambda c: c["nam"].update(fn=5, gn="\x1b"), None),  # fnt/gnt are shown: fn/gn are not read
])
def test_anything_else_malformed_is_ignored_and_noted(verifier, signer, kind, edit, warning):
    result = verifier.parse(issue(signer, kind=kind, edit=edit), NOW)
    assert result.ok, (result.error, result.detail)
    assert warning is None or warning in result.warnings
    assert KINDS[kind][1](result.person.health)


def test_an_unreadable_test_result_is_kept_but_never_negative(verifier, signer):
    result = verifier.parse(issue(signer, kind="test", edit=lambda c: c["t"][0].update(tr="NEGATIVO")), NOW)
    assert result.ok and [t.positive for t in result.person.health.tests] == [None]
    assert "t[0].tr:unknown_result" in result.warnings


def test_a_product_name_with_null_is_no_product(verifier, signer):
    result = verifier.parse(issue(signer, edit=lambda c: c["v"][0].update(mp=None)), NOW)
    assert result.ok and result.person.health.doses[0].product is None


def test_expiry_as_a_cbor_epoch_tag(verifier, signer):
    cert = health_certificate("NGUYEN VAN THU", "1990-12-01", doses=[(date(2021, 10, 1), None)])
    from kiosk.codes import base45, cose
    import zlib
    payload = cbor2.dumps({1: "VN", 6: int(IAT.timestamp()), CLAIM_EXP: cbor2.CBORTag(1, int(EXP.timestamp())),
                           -260: {1: cert}})
    text = "HC1:" + base45.encode(zlib.compress(cose.sign_es256(signer.private_key, signer.kid, payload)))
    assert verifier.parse(text, NOW).ok
    assert verifier.parse(text, EXP + timedelta(seconds=1)).error == "expired"


def test_issue_cert_quirk_options_and_warnings_in_the_decision_json(tmp_path, capsys):
    """`kiosk issue cert --quirk` produces each quirk; `kiosk decide` verifies it and shows the warnings."""
    key_dir = tmp_path / "signer"
    create_signer(key_dir)
    sets = ["--set", "trust.seed_file=", "--set", f"trust.path={tmp_path / 'trust.json'}", "--set",
            f"roster.path={tmp_path / 'roster.json'}", "--set", f"journal.path={tmp_path / 'j.sqlite'}",
            "--set", "site.mode=health", "--set", "trust.max_age_hours=0"]
    assert main(["trust", "import", str(key_dir / CERT_FILE), *sets]) == 0
    capsys.readouterr()
    for quirk in sorted(QUIRKS):
        assert main(["issue", "cert", "--key", str(key_dir), "--name", "NGUYEN VAN THU", "--dob", "1990-12-01",
                     "--dose", "2021-11-01", "--iat", "2021-11-10", "--quirk", quirk, *sets]) == 0
        text = capsys.readouterr().out.strip()
        assert main(["decide", text, "--at", "2021-11-15", *sets]) == 0
        decision = json.loads(capsys.readouterr().out)
        assert (decision["verdict"], decision["reason"]) == ("green", "vaccinated_14d"), quirk
        assert isinstance(decision["warnings"], list)
        if quirk == "empty-strings":
            assert decision["warnings"] == ["v[0].ma:empty", "v[0].is:empty"]
    assert main(["issue", "cert", "--key", str(key_dir), "--name", "NGUYEN VAN THU", "--dob", "2030-01-01",
                 "--dose", "2021-11-01", "--iat", "2021-11-10", *sets]) == 0
    future = capsys.readouterr().out.strip()
    assert main(["decide", future, "--at", "2021-11-15", *sets]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "malformed"
    with pytest.raises(SystemExit):
        main(["issue", "cert", "--key", str(key_dir), "--name", "X Y", "--dob", "1990", "--dose", "2021-11-01",
              "--quirk", "no-such-quirk", *sets])

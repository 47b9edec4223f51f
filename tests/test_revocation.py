"""Revocation of signed certificates, EU 2022 style (issue 14, section 4): hash lists of the UCI, of country plus
UCI, and of the signature, imported by `kiosk trust import` and the MQTT `trust` command, checked offline; a
revoked certificate is invalid/revoked; the list ages and goes stale like the trust list."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from conftest import trusting
from kiosk import config
from kiosk.cli import main
from kiosk.clock import FixedClock
from kiosk.codes.dcc import DccVerifier
from kiosk.decider import Decider
from kiosk.identity import FixedKey
from kiosk.errors import DataError
from kiosk.issuing import CERT_FILE, create_signer, health_certificate, new_signer, revocation_batch, sign_hc1
from kiosk.stores.revocation import RevocationList, parse_batches, path_for
from test_uplink import PREFIX, running_app  # noqa: F401  (the real App on a real broker)

SITE = timezone(timedelta(hours=7))
NOW = datetime(2021, 11, 15, 9, 0, tzinfo=SITE)
TYPES = ("UCI", "COUNTRYCODEUCI", "SIGNATURE")


def certificate(signer, name="NGUYEN VAN THU", **kw) -> str:
    cert = health_certificate(name, "1990-12-01", doses=[(date(2021, 10, 1), None)])
    return sign_hc1(signer, cert, iat=NOW - timedelta(days=1), exp=NOW + timedelta(days=365), **kw)


@pytest.fixture
def signer():
    return new_signer()


@pytest.fixture
def stores(tmp_path, signer):
    return trusting(tmp_path / "trust.json", signer), RevocationList(path_for(tmp_path / "trust.json"), clock=FixedClock(NOW))


@pytest.mark.parametrize("hash_type", TYPES)
def test_each_hash_type_revokes_that_certificate_only(stores, signer, hash_type):
    trust, revocations = stores
    revoked, other = certificate(signer), certificate(signer, "TRAN THI MAU")
    assert revocations.store(parse_batches(revocation_batch(signer, [revoked], hash_type), "t"), replace=False) == 1
    verifier = DccVerifier(trust, revocations=revocations)
    result = verifier.parse(revoked, NOW)
    assert (result.error, result.detail) == ("revoked", hash_type.lower())
    assert verifier.parse(other, NOW).ok
    assert DccVerifier(trust).parse(revoked, NOW).ok  # without the list the same code verifies


def test_hashes_are_the_eu_ones(signer):
    """UCI: SHA-256 of `ci` as issued; COUNTRYCODEUCI: of `iss` + `ci`; cut to 16 bytes (EU revocation lists)."""
    text = certificate(signer)
    uci = health_certificate("NGUYEN VAN THU", "1990-12-01", doses=[(date(2021, 10, 1), None)])["v"][0]["ci"]
    [entry] = revocation_batch(signer, [text], "UCI")["entries"]
    assert base64.b64decode(entry["hash"]) == hashlib.sha256(uci.encode()).digest()[:16]
    [entry] = revocation_batch(signer, [text], "COUNTRYCODEUCI")["entries"]
    assert base64.b64decode(entry["hash"]) == hashlib.sha256(("VN" + uci).encode()).digest()[:16]


def test_a_full_sha256_is_accepted_and_the_kid_is_kept(stores, signer):
    trust, revocations = stores
    text = certificate(signer)
    uci = health_certificate("NGUYEN VAN THU", "1990-12-01", doses=[(date(2021, 10, 1), None)])["v"][0]["ci"]
    full = base64.b64encode(hashlib.sha256(uci.encode()).digest()).decode()
    revocations.store(parse_batches({"kid": base64.b64encode(signer.kid).decode(), "hashType": "UCI",
                                     "entries": [{"hash": full}]}, "t"), replace=False)
    assert DccVerifier(trust, revocations=revocations).parse(text, NOW).error == "revoked"


def test_revoked_wins_over_expired_and_an_unsynchronised_clock(tmp_path, stores, signer):
    trust, revocations = stores
    text = certificate(signer)
    revocations.store(parse_batches(revocation_batch(signer, [text], "SIGNATURE"), "t"), replace=False)
    verifier = DccVerifier(trust, revocations=revocations)
    assert verifier.parse(text, NOW + timedelta(days=400)).error == "revoked"
    cfg = config.load(data={"camera": {"type": "none"}, "site": {"mode": "health"},
                            "journal": {"path": str(tmp_path / "j.sqlite")}})
    decision = Decider(cfg, None, FixedKey(b"k" * 32), dcc=verifier).decide(text, NOW, clock_synced=False)
    assert (decision.verdict, decision.reason, decision.subject) == ("invalid", "revoked", {})


def test_a_bad_list_is_rejected_whole_with_every_problem(stores, signer):
    _, revocations = stores
    good = revocation_batch(signer, [certificate(signer)], "UCI")
    bad = [good, {"hashType": "SERIAL", "entries": []}, {"hashType": "UCI", "entries": [{"hash": "!!"}]},
           {"hashType": "UCI", "entries": [{"hash": base64.b64encode(b"short").decode()}]},
           {"hashType": "UCI", "entries": "x"}, {"hashType": "UCI", "entries": [], "expires": "tomorrow"},
           {"hashType": "UCI", "entries": [], "colour": "red"}, "not a batch"]
    with pytest.raises(DataError) as raised:
        parse_batches(bad, "rejected")
    assert [p.split(":")[0] for p in raised.value.problems] == [f"batch {i}" for i in range(2, 9)]
    assert revocations.updated_at is None and revocations.count == 0


def test_expired_batches_are_dropped_and_replace_installs_exactly(stores, signer):
    _, revocations = stores
    first, second = certificate(signer), certificate(signer, "LE VAN HO")
    old = {**revocation_batch(signer, [first], "UCI"), "expires": (NOW - timedelta(days=1)).isoformat()}
    assert revocations.store(parse_batches(old, "t"), replace=False) == 0
    revocations.store(parse_batches(revocation_batch(signer, [first], "UCI"), "t"), replace=False)
    revocations.store(parse_batches(revocation_batch(signer, [second], "SIGNATURE"), "t"), replace=False)
    assert revocations.summary()["hashes"] == {"UCI": 1, "COUNTRYCODEUCI": 0, "SIGNATURE": 1}
    revocations.store([], replace=True)  # "nothing is revoked now" is an update too
    assert revocations.count == 0 and revocations.updated_at == NOW


def test_the_list_goes_stale_once_imported(tmp_path, stores, signer):
    _, revocations = stores
    assert not revocations.is_stale(NOW + timedelta(days=30), 168)  # never received one: not using revocation
    revocations.store([], replace=True)
    assert not revocations.is_stale(NOW + timedelta(hours=168), 168)
    assert revocations.is_stale(NOW + timedelta(hours=169), 168)
    assert not revocations.is_stale(NOW + timedelta(days=999), 0)


def test_a_stale_list_gives_the_fail_policy_for_signed_certificates(tmp_path, stores, signer):
    trust, revocations = stores
    for policy in ("black", "green"):
        cfg = config.load(data={"camera": {"type": "none"}, "site": {"mode": "health", "fail_policy": policy},
                                "journal": {"path": str(tmp_path / "j.sqlite")}})
        decider = Decider(cfg, None, FixedKey(b"k" * 32), dcc=DccVerifier(trust, revocations=revocations))
        decision = decider.decide(certificate(signer), NOW, True, revocation_stale=True)
        assert (decision.verdict, decision.reason) == (policy, "revocation_stale")
        assert decider.decide("079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<<", NOW, True,
                              revocation_stale=True).reason == "no_roster"  # only signed codes need the list


def test_app_alarm_when_the_revocation_list_is_stale(tmp_path):
    from kiosk.app import App
    from kiosk.stores.revocation import RevocationList

    cfg = config.load(data={
        "site": {"mode": "health"}, "clock": {"source": "fixed", "start": "2021-11-15T09:00:00+07:00"},
        "camera": {"type": "none"}, "display": {"type": "none"}, "gpio": {"pin_factory": "mock"},
        "roster": {"path": str(tmp_path / "roster.json")}, "trust": {"path": str(tmp_path / "trust.json"),
                                                                     "max_age_hours": 0},
        "journal": {"path": str(tmp_path / "journal.sqlite")}})
    app = App(cfg)
    try:
        assert "revocation_stale" not in app.alarms()
        RevocationList(path_for(cfg.trust.path), clock=FixedClock(NOW - timedelta(days=8))).store([], replace=True)
        assert "revocation_stale" in app.alarms()
    finally:
        app.close()


def test_cli_issue_revocation_trust_import_show_and_decide(tmp_path, capsys):
    key_dir = tmp_path / "signer"
    signer = create_signer(key_dir)
    sets = ["--set", "trust.seed_file=", "--set", f"trust.path={tmp_path / 'trust.json'}", "--set",
            f"roster.path={tmp_path / 'roster.json'}", "--set", f"journal.path={tmp_path / 'j.sqlite'}",
            "--set", "site.mode=health", "--set", "trust.max_age_hours=0"]
    revoked, kept = certificate(signer), certificate(signer, "TRAN THI MAU")
    assert main(["issue", "revocation", "--key", str(key_dir), "--type", "COUNTRYCODEUCI", revoked, *sets]) == 0
    (tmp_path / "revoked.json").write_text(capsys.readouterr().out)
    (tmp_path / "bad.json").write_text(json.dumps({"hashType": "UCI", "entries": [{"hash": "!!"}]}))
    assert main(["trust", "import", str(key_dir / CERT_FILE), str(tmp_path / "bad.json"), *sets]) == 65
    assert "bad.json: batch 1: entry 1" in capsys.readouterr().err
    assert main(["trust", "import", str(key_dir / CERT_FILE), str(tmp_path / "revoked.json"), *sets]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["count"] == 1 and imported["revoked_hashes_imported"] == 1
    assert main(["trust", "show", *sets]) == 0
    assert json.loads(capsys.readouterr().out)["revocations"]["hashes"]["COUNTRYCODEUCI"] == 1

    def decide(text):
        assert main(["decide", text, "--at", "2021-11-15", *sets]) == 0
        out = json.loads(capsys.readouterr().out)
        return out["verdict"], out["reason"]

    assert decide(revoked) == ("invalid", "revoked")
    assert decide(kept) == ("green", "vaccinated_14d")
    assert main(["issue", "revocation", "--key", str(key_dir), "HC1:garbage", *sets]) == 65


def test_revocation_end_to_end_over_mqtt(broker, watcher_factory, running_app):  # noqa: F811
    """A real mosquitto: a `trust` command brings a signer and a revocation list; the revoked HC1 then decides
    invalid/revoked in the running kiosk and its check-in event says so; a bad list changes nothing."""
    app, reader = running_app
    watcher = watcher_factory(broker.port, f"{PREFIX}/checkin", f"{PREFIX}/cmd/trust/result", f"{PREFIX}/status")
    watcher.next(f"{PREFIX}/status", where=lambda b: b["state"] == "online")
    signer = new_signer()
    revoked, kept = certificate(signer), certificate(signer, "TRAN THI MAU")

    def scan(text):
        reader.texts.put(text)
        event = watcher.next(f"{PREFIX}/checkin")
        return event["kind"], event["verdict"], event["reason"]

    def command(body):
        watcher.command(f"{PREFIX}/cmd/trust", body, at=app.clock.now().timestamp())
        return watcher.next(f"{PREFIX}/cmd/trust/result")

    assert scan(revoked) == ("dcc", "invalid", "unknown_key")
    answer = command({"id": "t-1", "entries": [{"certificate": base64.b64encode(signer.certificate_der).decode()}],
                      "revocations": [revocation_batch(signer, [revoked], "UCI")]})
    assert answer["ok"] and answer["id"] == "t-1", answer
    assert answer["result"]["count"] == 1 and answer["result"]["revocations"]["hashes"]["UCI"] == 1
    assert scan(revoked) == ("dcc", "invalid", "revoked")
    assert scan(kept) == ("dcc", "green", "vaccinated_14d")

    answer = command({"revocations": [{"hashType": "UCI", "entries": [{"hash": "not base64!"}]}], "replace": True})
    assert answer["ok"] is False and "batch 1" in answer["error"]
    assert scan(revoked) == ("dcc", "invalid", "revoked")  # the list is as it was

    assert command({"revocations": [], "replace": True})["ok"]  # the issuer lifted the revocation
    assert scan(revoked) == ("dcc", "green", "vaccinated_14d")

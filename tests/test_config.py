"""Configuration: typed, bounded, every error at once, did-you-mean, overrides, exit 78."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk import config
from kiosk.cli import main
from kiosk.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def minimal(**sections):
    data = {"camera": {"type": "none"}}
    data.update(sections)
    return data


def test_defaults_are_valid_and_contract_keys_exist():
    cfg = config.load(data=minimal())
    for section, key in [("site", "id"), ("site", "device"), ("site", "mode"), ("site", "direction"),
                         ("site", "timezone"), ("camera", "type"), ("camera", "path"), ("decoder", "type"),
                         ("roster", "path"), ("trust", "path"), ("journal", "path"), ("display", "type"),
                         ("mqtt", "enabled"), ("mqtt", "host"), ("mqtt", "port")]:
        assert hasattr(getattr(cfg, section), key)
    assert cfg.site.timezone == "Asia/Ho_Chi_Minh"
    assert cfg.journal.retention_days == 21


def test_every_error_reported_at_once_with_did_you_mean():
    with pytest.raises(ConfigError) as exc:
        config.load(data={"site": {"mdoe": "trace", "direction": "sideways", "debounce_seconds": -1},
                          "camra": {}, "camera": {"type": "replay"},
                          "mqtt": {"port": 70000, "enabled": "yes"}})
    problems = "\n".join(exc.value.problems)
    assert 'site.mdoe: unknown key (did you mean "mode"?)' in problems
    assert '[camra]: unknown section (did you mean "camera"?)' in problems
    assert "site.direction" in problems and "sideways" in problems
    assert "site.debounce_seconds: -1 is below the minimum 0" in problems
    assert "mqtt.port: 70000 is above the maximum 65535" in problems
    assert "mqtt.enabled: expected true or false" in problems
    assert "camera.path: required when camera.type is replay" in problems
    assert len(exc.value.problems) == 7
    assert exc.value.exit_status == 78


def test_choice_typo_suggests_value():
    with pytest.raises(ConfigError) as exc:
        config.load(data=minimal(site={"mode": "helth"}))
    assert '(did you mean "health"?)' in exc.value.problems[0]


def test_set_overrides_typed_values_and_unknown_keys():
    cfg = config.load(data=minimal(), overrides=["site.mode=staff", "mqtt.port=8883", "site.id=gate-7",
                                                 "display.rotate=2"])
    assert (cfg.site.mode, cfg.mqtt.port, cfg.site.id, cfg.display.rotate) == ("staff", 8883, "gate-7", 2)
    with pytest.raises(ConfigError) as exc:
        config.load(data=minimal(), overrides=["site.modee=staff", "nosuch", "gpio.buzzer=abc"])
    text = "\n".join(exc.value.problems)
    assert 'site.modee: unknown key (did you mean "mode"?)' in text
    assert "expected SECTION.KEY=VALUE" in text
    assert "gpio.buzzer: expected an integer" in text


def test_pin_conflicts_and_timezone_are_checked():
    with pytest.raises(ConfigError) as exc:
        config.load(data=minimal(gpio={"relay": 17}, site={"timezone": "Asia/Saigon_City"}))
    text = "\n".join(exc.value.problems)
    assert "gpio.relay: pin 17 is already used by gpio.led_green" in text
    assert "site.timezone" in text


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "scenes").mkdir()
    f = tmp_path / "k.toml"
    f.write_text('[camera]\ntype = "replay"\npath = "scenes"\n[journal]\npath = "data/j.sqlite"\n')
    cfg = config.load(f)
    assert cfg.camera.path == str(tmp_path / "scenes")
    assert cfg.journal.path == str(tmp_path / "data" / "j.sqlite")


def test_secrets_from_env_and_file_are_never_printed(tmp_path, monkeypatch):
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-from-file\n")
    monkeypatch.setenv("KIOSK_TEST_PW", "s3cret-from-env")
    cfg = config.load(data=minimal(mqtt={"password": f"file:{secret_file}"}, journal={"hash_key": "env:KIOSK_TEST_PW"}))
    assert cfg.mqtt.password == "s3cret-from-file"
    assert cfg.journal.hash_key == "s3cret-from-env"
    assert "s3cret" not in repr(cfg.mqtt) + str(cfg.as_dict())
    with pytest.raises(ConfigError) as exc:
        config.load(data=minimal(mqtt={"password": "env:KIOSK_NOT_SET_XYZ"}))
    assert "KIOSK_NOT_SET_XYZ is not set" in exc.value.problems[0]


def test_bad_toml_and_missing_file_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nid = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "missing.toml")


def test_cli_exits_78_on_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nmode = "helth"\n[camera]\ntype = "none"\n')
    assert main(["--config", str(bad), "check"]) == 78
    err = capsys.readouterr().err
    assert "site.mode" in err and "did you mean" in err


def test_example_file_is_generated_from_schema_and_loads():
    example = REPO / "config" / "kiosk.example.toml"
    assert example.read_text(encoding="utf-8") == config.example_toml(), \
        "regenerate with: kiosk config-example > config/kiosk.example.toml"
    for section, keys in config.SCHEMA.items():
        for key in keys:
            assert f"\n{key} = " in example.read_text(encoding="utf-8"), f"{section}.{key} undocumented"
    # Every default is valid once a camera that needs no path is chosen.
    config.load(example, overrides=["camera.type=none"])


def test_demo_config_is_valid():
    cfg = config.load(REPO / "config" / "demo.toml")
    assert cfg.camera.type == "replay" and cfg.gpio.pin_factory == "mock"


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "kiosk", "--version"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.startswith("kiosk ")


@pytest.mark.parametrize("override,problem", [
    ("site.debounce_seconds=soon", 'site.debounce_seconds: expected a number, got "soon"'),
    ("site.debounce_seconds=", 'site.debounce_seconds: expected a number, got ""'),
    ("mqtt.port=0", "mqtt.port: 0 is below the minimum 1"),
    ("mqtt.port=1.5", "mqtt.port: expected an integer, got float"),
    ("mqtt.enabled=yes", 'mqtt.enabled: expected true or false, got "yes"'),
    ("site.direction=both", '"both" is not one of in, out'),
    ("site.mode=staf", '(did you mean "staff"?)'),
    ("sit.mode=staff", '--set sit.mode: unknown section (did you mean "site"?)'),
    ("site=staff", 'expected SECTION.KEY=VALUE'),
    ("site.mode.x=staff", "site.mode.x: unknown key"),
])
def test_set_with_a_bad_value_names_the_key(override, problem):
    with pytest.raises(ConfigError) as exc:
        config.load(data=minimal(), overrides=[override])
    assert problem in "\n".join(exc.value.problems)


def test_set_on_a_string_key_keeps_the_text_as_given():
    cfg = config.load(data=minimal(), overrides=["site.device=007", "site.id=12", "mqtt.username=true"])
    assert (cfg.site.device, cfg.site.id, cfg.mqtt.username) == ("007", "12", "true")


def test_secret_file_is_relative_to_the_config_file_and_never_echoed(tmp_path, capsys):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text("hash-key-XYZ\n")
    f = tmp_path / "k.toml"
    f.write_text('[camera]\ntype = "none"\n[journal]\nhash_key = "file:secrets/key"\n'
                 '[mqtt]\npassword = "file:secrets/missing"\n')
    with pytest.raises(ConfigError) as exc:
        config.load(f)
    assert exc.value.problems == [f"mqtt.password: cannot read secret file {tmp_path}/secrets/missing: "
                                  "No such file or directory"]
    cfg = config.load(f, overrides=["mqtt.password=inline-PW"])
    assert cfg.journal.hash_key == "hash-key-XYZ"
    # `kiosk check` prints the configuration's source and device probes, never a secret
    assert main(["--config", str(f), "--set", "mqtt.password=inline-PW", "--set", "journal.path=" +
                 str(tmp_path / "j.sqlite"), "--set", "roster.path=" + str(tmp_path / "r.json"),
                 "--set", "trust.path=" + str(tmp_path / "t.json"), "--set", "display.type=none",
                 "--set", "gpio.pin_factory=mock", "check"]) in (0, 1)
    captured = capsys.readouterr()
    assert "hash-key-XYZ" not in captured.out + captured.err and "inline-PW" not in captured.out + captured.err


def test_missing_files_named_by_their_key(tmp_path):
    with pytest.raises(ConfigError) as exc:
        config.load(data=minimal(mqtt={"ca_file": str(tmp_path / "ca.pem"), "cert_file": str(tmp_path / "c.pem")},
                                 roster={"seed_csv": str(tmp_path / "seed.csv")},
                                 trust={"seed_file": str(tmp_path / "signer.pem")},
                                 camera={"type": "replay", "path": str(tmp_path / "scenes")}))
    text = "\n".join(exc.value.problems)
    for key in ("mqtt.ca_file", "mqtt.cert_file", "roster.seed_csv", "trust.seed_file", "camera.path"):
        assert key in text
    assert "a client certificate needs both" in text
    assert len(exc.value.problems) == 6


def test_real_cli_exits_78_listing_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nmdoe = "health"\ndirection = "sideways"\n[camra]\n[camera]\ntype = "none"\n'
                   '[mqtt]\npassword = "hunter2-secret"\nport = 0\n')
    for argv in (["check"], ["decide", "x"], ["run"], ["journal", "stats"], ["decide", "x", "--set", "site.mode=no"]):
        done = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(bad), *argv],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 78, (argv, done.stderr)
        assert 'site.mdoe: unknown key (did you mean "mode"?)' in done.stderr
        assert '[camra]: unknown section (did you mean "camera"?)' in done.stderr
        assert "site.direction" in done.stderr and "mqtt.port: 0 is below the minimum 1" in done.stderr
        assert "Traceback" not in done.stderr and "hunter2" not in done.stderr + done.stdout
        assert done.stdout == ""
    assert 'site.mode: "no" is not one of' in done.stderr


def test_the_loaded_configuration_is_immutable_and_typed_per_section():
    import dataclasses

    cfg = config.load(data=minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.site.mode = "trace"  # type: ignore[misc]
    assert isinstance(cfg.site, config.SiteConfig) and isinstance(cfg.mqtt.port, int)
    assert set(config.SCHEMA) == {f.name for f in dataclasses.fields(config.Config)} - {"source"}


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "+nan"])
def test_non_finite_numbers_are_refused_for_every_decimal_setting(raw):
    decimal_keys = [f"{s}.{k}" for s, keys in config.SCHEMA.items() for k, v in keys.items()
                    if isinstance(v, config.Float)]
    assert len(decimal_keys) > 5
    with pytest.raises(ConfigError) as exc:
        config.load(data=minimal(), overrides=[f"{key}={raw}" for key in decimal_keys])
    assert len(exc.value.problems) == len(decimal_keys)
    assert all("expected a finite number" in p for p in exc.value.problems)


@pytest.mark.parametrize("argv", [["demo", "--drain-seconds", "nan"], ["tail", "--until-idle", "inf"],
                                  ["collector", "--until-idle", "-1"], ["selftest", "--pause", "nan"]])
def test_durations_on_the_command_line_must_be_finite(argv, capsys):
    from kiosk.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "finite number of seconds" in capsys.readouterr().err


ID_CANDIDATES = ["s1", "gate-7", "007", "a_b", "x" * 32, "x" * 33, "", "all", "+", "#", "a/b", "a b", "Gate",
                 "d1\nd2", "-d", "_d", "é", "a+", "kiosk/#"]


@pytest.mark.parametrize("name", ["id", "device"])
def test_site_and_device_ids_are_topic_safe_and_all_is_reserved(name):
    accepted = []
    for candidate in ID_CANDIDATES:
        try:
            cfg = config.load(data=minimal(site={name: candidate}))
        except ConfigError as exc:
            assert exc.exit_status == 78
            assert [p for p in exc.problems if p.startswith(f"site.{name}:")], exc.problems
        else:
            accepted.append(getattr(cfg.site, name))
    assert accepted == ["s1", "gate-7", "007", "a_b", "x" * 32]


def test_make_acl_refuses_exactly_the_ids_the_configuration_refuses(tmp_path):
    script = Path(__file__).resolve().parents[1] / "config" / "mosquitto" / "make-acl.sh"
    for candidate in ID_CANDIDATES:
        good = config.ID_PATTERN.fullmatch(candidate) is not None and candidate not in config.RESERVED_IDS
        done = subprocess.run(["sh", str(script), "s1", candidate], capture_output=True, text=True)
        assert (done.returncode == 0) == good, (candidate, done.stderr)
        if good:
            assert f"user kiosk-s1-{candidate}\n" in done.stdout
        else:
            assert done.stdout == "" and ("not a valid id" in done.stderr or "reserved" in done.stderr)


@pytest.mark.parametrize("prefix, fine", [("kiosk/{site}/{device}", True), ("acme/{site}/{device}", True),
                                          ("kiosk/{site}", False), ("kiosk/+/{site}/{device}", False),
                                          ("kiosk/{site}/{device}/#", False), ("/kiosk/{site}/{device}", False),
                                          ("kiosk//{site}/{device}", False), ("kiosk/{site} {device}", False)])
def test_mqtt_prefix_gives_each_kiosk_topics_of_its_own(prefix, fine):
    try:
        config.load(data={**minimal(), "mqtt": {"prefix": prefix}})
    except ConfigError as exc:
        assert not fine and any(p.startswith("mqtt.prefix") for p in exc.problems)
    else:
        assert fine

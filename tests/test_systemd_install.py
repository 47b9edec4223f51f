"""The systemd unit (systemd-analyze verify/security) and the installer, run for real in a scratch root."""
from __future__ import annotations

import configparser
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kiosk import config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "kiosk.service"
INSTALL = REPO / "scripts" / "install.sh"
EXAMPLE = REPO / "config" / "kiosk.example.toml"


def tool(name: str, package: str) -> str:
    """Path of a checking tool. Missing: a skip on a developer's machine, a failure in CI (CI=true), where a
    silently skipped check would pass a broken unit or script."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt install {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def unit_sections() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_has_the_required_settings():
    service = unit_sections()["Service"]
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "on-failure", "RestartSec": "3",
        "RestartPreventExitStatus": "78", "User": "kiosk", "Group": "kiosk", "StateDirectory": "kiosk",
        "ConfigurationDirectory": "kiosk", "WorkingDirectory": "/var/lib/kiosk", "ProtectSystem": "strict",
        "ProtectHome": "true", "NoNewPrivileges": "true", "PrivateTmp": "true",
        "ExecStart": "/opt/kiosk/.venv/bin/kiosk run --config /etc/kiosk/kiosk.toml",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert set(service["SupplementaryGroups"].split()) == {"video", "gpio", "i2c", "spi", "dialout", "input"}
    # hardware must stay reachable: no private /dev and no device allow-list
    for key in ("PrivateDevices", "DeviceAllow", "DevicePolicy", "PrivateUsers", "ProtectClock"):
        assert key not in service


def test_a_missing_checking_tool_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt install systemd"):
        tool("systemd-analyze", "systemd")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        tool("systemd-analyze", "systemd")


def _verifiable_copy(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart pointed at an executable that exists here (verify checks it)."""
    exe = tmp_path / "kiosk"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / "kiosk.service"
    unit.write_text(text.replace("/opt/kiosk/.venv/bin/kiosk", str(exe)))
    return unit


def _verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("systemd-analyze", "systemd"), "verify", str(unit)], capture_output=True, text=True,
                          cwd=unit.parent, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


def test_systemd_analyze_verify_passes_without_warnings(tmp_path):
    result = _verify(_verifiable_copy(tmp_path, UNIT.read_text()))
    assert result.returncode == 0, result.stderr
    assert "kiosk.service" not in result.stdout + result.stderr  # any warning about the unit names it


def test_systemd_analyze_verify_checks_the_exec_start_binary(tmp_path):
    # the copy above points ExecStart at a real executable because verify insists on one: prove it does
    unit = tmp_path / "kiosk.service"
    unit.write_text(UNIT.read_text().replace("/opt/kiosk/.venv/bin/kiosk", str(tmp_path / "missing")))
    result = _verify(unit)
    assert result.returncode != 0 and "is not executable" in result.stderr


def test_systemd_analyze_verify_catches_a_mistake(tmp_path):
    # verify exits 0 on unknown keys; the check above relies on its warnings, so prove they appear
    result = _verify(_verifiable_copy(tmp_path, UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=")))
    assert "Unknown key 'WatchdogSecs'" in result.stderr


def test_systemd_analyze_security_exposure_is_ok(tmp_path):
    unit = _verifiable_copy(tmp_path, UNIT.read_text())
    command = [tool("systemd-analyze", "systemd"), "security", "--offline=true", "--threshold=30", "--no-pager"]
    result = subprocess.run([*command, str(unit)], capture_output=True, text=True, cwd=tmp_path)
    if "Unknown option" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    assert result.returncode == 0, result.stdout[-600:]


# ---------------------------------------------------------------- installer
def install(root: Path, *options: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(INSTALL), "--prefix", str(root), "--no-apt", "--no-venv", *options],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(root))] = (digest, st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture(scope="module")
def example() -> str:
    assert EXAMPLE.is_file(), "config/kiosk.example.toml is generated by `kiosk config-example`"
    return EXAMPLE.read_text()


def test_install_creates_the_expected_tree(tmp_path, example):
    root = tmp_path / "root"
    result = install(root)
    app, conf = root / "opt/kiosk", root / "etc/kiosk/kiosk.toml"
    assert (app / "kiosk/cli.py").read_bytes() == (REPO / "kiosk/cli.py").read_bytes()
    assert (app / "drivers/reader_serial.py").is_file() and (app / "pyproject.toml").is_file()
    assert not list(app.rglob("__pycache__"))
    assert (root / "etc/systemd/system/kiosk.service").read_bytes() == UNIT.read_bytes()
    assert (app / "scripts/install.sh").stat().st_mode & 0o777 == 0o755
    modes = {p: (root / p).stat().st_mode & 0o777 for p in
             ("etc/kiosk", "etc/kiosk/kiosk.toml", "var/lib/kiosk", "etc/systemd/system/kiosk.service",
              "opt/kiosk/kiosk/cli.py")}
    assert modes == {"etc/kiosk": 0o755, "etc/kiosk/kiosk.toml": 0o640, "var/lib/kiosk": 0o750,
                     "etc/systemd/system/kiosk.service": 0o644, "opt/kiosk/kiosk/cli.py": 0o644}
    # the example, with state paths moved out of the read-only /etc into the state directory
    text = conf.read_text()
    assert re.findall(r'^path = "(.+)"$', text, re.M) and all(
        p.startswith("/var/lib/kiosk/") for p in re.findall(r'^path = "(.+)"$', text, re.M))
    assert text.replace("/var/lib/kiosk/", "") == example
    cfg = config.load(conf)
    assert cfg.journal.path == "/var/lib/kiosk/journal.sqlite" and cfg.roster.path == "/var/lib/kiosk/roster.sqlite"
    # with --prefix the host is never changed: the commands are only printed
    out = result.stdout
    for command in ("useradd --system", "usermod --append --groups video,gpio,i2c,spi,dialout,input kiosk",
                    "systemctl enable kiosk.service", "systemctl daemon-reload"):
        assert f"would run: {command}" in out


def test_second_run_changes_nothing(tmp_path):
    root = tmp_path / "root"
    first = install(root)
    assert "changed (" in first.stdout
    before = snapshot(root)
    second = install(root)
    assert not re.search(r"\bchanged\b|would install|would remove", second.stdout), second.stdout
    for step in ("project", "config", "state", "unit"):
        assert re.search(rf"^{step}:\s+unchanged", second.stdout, re.M), second.stdout
    assert snapshot(root) == before  # bytes, mtimes and modes


def test_operator_config_is_never_overwritten(tmp_path):
    root = tmp_path / "root"
    install(root)
    conf = root / "etc/kiosk/kiosk.toml"
    conf.write_text('[site]\nid = "my-venue"\n')
    result = install(root)
    assert conf.read_text() == '[site]\nid = "my-venue"\n'
    assert "kept" in result.stdout


def test_upgrade_replaces_changed_files_and_removes_stale_ones(tmp_path):
    root = tmp_path / "root"
    install(root)
    app = root / "opt/kiosk"
    stale = app / "kiosk/commands/removed_command.py"
    stale.write_text("def register(sub, common): pass\n")
    (app / "kiosk/cli.py").write_text("# edited\n")
    venv_file = app / ".venv/marker"  # the virtual environment is not project source: left alone
    venv_file.parent.mkdir()
    venv_file.write_text("x")
    result = install(root)
    assert re.search(r"^project:\s+changed \(2 files", result.stdout, re.M), result.stdout
    assert not stale.exists() and venv_file.exists()
    assert (app / "kiosk/cli.py").read_bytes() == (REPO / "kiosk/cli.py").read_bytes()


def test_dry_run_creates_nothing(tmp_path):
    root = tmp_path / "root"
    result = install(root, "--dry-run")
    assert not root.exists()
    assert "would install" in result.stdout and "would change" in result.stdout
    install(root)
    before = snapshot(root)
    (root / "opt/kiosk/kiosk/cli.py").unlink()
    result = install(root, "--dry-run")
    assert "would install" in result.stdout and not (root / "opt/kiosk/kiosk/cli.py").exists()
    del before["opt/kiosk/kiosk/cli.py"]
    assert snapshot(root).keys() == before.keys()


def test_uninstall_keeps_config_and_journal_unless_purged(tmp_path):
    root = tmp_path / "root"
    install(root)
    journal = root / "var/lib/kiosk/journal.sqlite"
    journal.write_bytes(b"SQLite format 3\x00")
    result = install(root, "--uninstall")
    assert not (root / "opt/kiosk").exists() and not (root / "etc/systemd/system/kiosk.service").exists()
    assert journal.read_bytes() == b"SQLite format 3\x00" and (root / "etc/kiosk/kiosk.toml").is_file()
    assert "would run: systemctl disable --now kiosk.service" in result.stdout
    again = install(root, "--uninstall")  # idempotent too
    assert "removed" not in again.stdout
    purged = install(root, "--uninstall", "--purge")
    assert not journal.exists() and not (root / "etc/kiosk").exists()
    assert "would run: userdel kiosk" in purged.stdout


def test_bad_options_are_refused(tmp_path):
    for options in (["--bogus"], ["--purge"]):
        result = subprocess.run(["bash", str(INSTALL), "--prefix", str(tmp_path), *options],
                                capture_output=True, text=True)
        assert result.returncode == 64 and result.stderr


def test_script_syntax():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)


def test_shellcheck_every_script():
    scripts = sorted((REPO / "scripts").glob("*.sh"))
    assert INSTALL in scripts
    result = subprocess.run([tool("shellcheck", "shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout

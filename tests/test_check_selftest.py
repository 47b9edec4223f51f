"""`kiosk check` and `kiosk selftest` on the demo configuration with every path in tmp_path:
replay camera, PNG display, gpiozero MockFactory, real journal/roster/trust files."""
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import tmp_sets
from kiosk import config
from kiosk.app import build_clock
from kiosk.cli import main
from kiosk.commands.selftest import SOFT_FOCUS, _hints, frame_quality


def run(capsys, argv) -> tuple[int, dict[str, dict], str]:
    status = main(argv)
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    key = "check" if argv[0] == "check" else "step"
    by_name = {line[key]: line for line in lines}
    assert len(by_name) == len(lines), "one line per check"
    assert all(set(line) == {key, "ok", "detail"} for line in lines)
    return status, by_name, captured.err


CHECKS = ["config", "decoder", "camera", "reader", "display", "gpio", "clock", "journal", "roster", "trust",
          "revocation", "site_key", "mqtt"]


def test_check_passes_with_mqtt_disabled(tmp_path, capsys):
    status, checks, err = run(capsys, ["check", *tmp_sets(tmp_path, "mqtt.enabled=false")])
    assert list(checks) == CHECKS
    assert status == 0, checks
    assert all(c["ok"] for c in checks.values())
    assert checks["mqtt"]["detail"] == "disabled"
    assert "frame 640x480" in checks["camera"]["detail"]
    assert "5 people" in checks["roster"]["detail"]  # provisioned from the seed CSV into tmp_path
    assert checks["revocation"]["detail"].startswith("none received")
    assert "this kiosk's own" in checks["site_key"]["detail"]  # no site key installed yet
    assert (tmp_path / "roster.json").exists() and list((tmp_path / "screens").glob("*.png"))
    assert "Traceback" not in err


def test_check_fails_when_the_broker_is_unreachable(tmp_path, capsys):
    status, checks, _ = run(capsys, ["check", *tmp_sets(tmp_path, "mqtt.port=1")])  # nothing listens on port 1
    assert status == 1
    mqtt = checks["mqtt"]
    assert not mqtt["ok"] and "127.0.0.1:1" in mqtt["detail"] and "mqtt.port" in mqtt["detail"]
    assert all(c["ok"] for name, c in checks.items() if name != "mqtt")


def test_check_clock_on_the_system_clock(tmp_path, capsys):
    extra = ("mqtt.enabled=false", "clock.source=system")
    synced = build_clock(config.load(None, list(extra))).synced()
    status, checks, _ = run(capsys, ["check", *tmp_sets(tmp_path, *extra)])
    assert checks["clock"]["ok"] is synced and status == (0 if synced else 1)
    if not synced:  # this build machine is not NTP-synchronised
        assert "timedatectl" in checks["clock"]["detail"] and "NTP" in checks["clock"]["detail"]


def test_check_names_the_fake_hwclock_case(tmp_path, capsys, monkeypatch):
    from kiosk import app
    from kiosk.clock import STA_UNSYNC, KernelTime, SystemClock

    saved = tmp_path / "fake-hwclock.data"
    saved.write_text("2021-11-14 23:00:00\n")  # what fake-hwclock restored at boot, offline
    monkeypatch.setattr(app, "build_clock", lambda cfg: SystemClock(
        "Asia/Ho_Chi_Minh", adjtimex=lambda: KernelTime(STA_UNSYNC, 16_000_000),
        timesync_flag=tmp_path / "synchronized", fake_hwclock_data=saved))
    status, checks, _ = run(capsys, ["check", *tmp_sets(tmp_path, "mqtt.enabled=false")])
    assert status == 1 and not checks["clock"]["ok"]
    assert "fake-hwclock" in checks["clock"]["detail"] and "timedatectl" in checks["clock"]["detail"]


def test_check_reports_device_problems_and_keeps_going(tmp_path, capsys):
    status, checks, err = run(capsys, ["check", *tmp_sets(tmp_path, "mqtt.enabled=false", "display.type=ssd1306",
                                                      "reader.type=serial", f"reader.port={tmp_path}/ttyNONE")])
    assert status == 1
    assert not checks["display"]["ok"] and "I2C" in checks["display"]["detail"]
    assert not checks["reader"]["ok"] and "dialout" in checks["reader"]["detail"]
    assert checks["journal"]["ok"] and checks["mqtt"]["ok"]  # the checks after the failures still ran
    assert "Traceback" not in err


def test_check_invalid_configuration_lists_every_problem_and_exits_78(tmp_path, capsys):
    status = main(["check", *tmp_sets(tmp_path, "site.direction=sideways", "display.type=plasma")])
    captured = capsys.readouterr()
    assert status == 78 and captured.out == ""
    assert "site.direction" in captured.err and "display.type" in captured.err


def test_selftest_every_step_ok(tmp_path, capsys):
    out = tmp_path / "out"
    status, steps, err = run(capsys, ["selftest", "--pause", "0", "--out", str(out),
                                      *tmp_sets(tmp_path, "mqtt.enabled=false", "gpio.relay_seconds=0.1")])
    assert list(steps) == ["camera", "display", "pins", "mqtt"]
    assert status == 0 and all(s["ok"] for s in steps.values()), steps
    preview = out / "selftest-camera.png"
    assert str(preview) in steps["camera"]["detail"]
    with Image.open(preview) as img:
        assert img.size == (640, 480)
        expected = frame_quality(np.asarray(img))
    # Focus and exposure of the test frame, as measured on the saved preview.
    assert f"focus {expected['focus']} (Laplacian variance)" in steps["camera"]["detail"]
    assert f"exposure mean {expected['mean_level']}/255" in steps["camera"]["detail"]
    assert len(list((tmp_path / "screens").glob("*.png"))) == 4  # idle, green, black, invalid
    assert "relay" in steps["pins"]["detail"] and "buzzer" in steps["pins"]["detail"]
    assert steps["mqtt"]["detail"] == "MQTT disabled"
    assert "Traceback" not in err


def test_frame_quality_tells_sharp_from_blurred_and_flags_blown_out_frames():
    rng = np.random.default_rng(3)
    sharp = (rng.integers(0, 2, (60, 80)) * 200 + 20).astype(np.uint8).repeat(6, 0).repeat(6, 1)
    soft = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(4)))
    assert frame_quality(sharp)["focus"] > SOFT_FOCUS > frame_quality(soft)["focus"]
    assert _hints(frame_quality(soft)) == ["soft focus: check the lens distance or camera.autofocus"]
    blown = sharp.copy()
    blown[:120] = 255
    assert frame_quality(blown)["white_share"] == pytest.approx(120 / 360, abs=0.01)
    assert "bright areas blown out: lower camera.exposure_value" in _hints(frame_quality(blown))


def test_selftest_names_the_failing_step(tmp_path, capsys):
    empty = tmp_path / "no-images"
    empty.mkdir()
    status, steps, _ = run(capsys, ["selftest", "--pause", "0", "--out", str(tmp_path / "out"),
                                    *tmp_sets(tmp_path, "mqtt.enabled=false", "gpio.relay_seconds=0.1",
                                          f"camera.path={empty}")])
    assert status == 1
    assert not steps["camera"]["ok"] and "camera.path" in steps["camera"]["detail"]
    assert steps["display"]["ok"] and steps["pins"]["ok"]
    assert not (tmp_path / "out" / "selftest-camera.png").exists()


def test_check_and_selftest_with_a_real_broker(tmp_path, capsys, broker):
    mqtt = ("mqtt.enabled=true", "mqtt.host=127.0.0.1", f"mqtt.port={broker.port}")
    status, checks, _ = run(capsys, ["check", *tmp_sets(tmp_path, *mqtt)])
    assert status == 0 and checks["mqtt"]["ok"] and str(broker.port) in checks["mqtt"]["detail"]
    status, steps, _ = run(capsys, ["selftest", "--pause", "0", "--out", str(tmp_path / "out"),
                                    *tmp_sets(tmp_path, *mqtt, "gpio.relay_seconds=0.1")])
    assert status == 0 and steps["mqtt"]["ok"], steps["mqtt"]

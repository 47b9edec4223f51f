"""`kiosk selftest`: walk an installer through every configured part, one step at a time.

Camera preview frame saved to a file, display test screens, LED and buzzer sequence, relay click,
MQTT round trip. Each step prints one JSON line {"step", "ok", "detail"}; a failed step names the fix.
Unlike the pipeline, this command waits between steps so a person can watch and listen.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kiosk.commands import Args, Parser, Subparsers, emit, load_config, seconds
from kiosk.errors import KioskError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import Frame


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("selftest", parents=[common], help="installer walk-through of camera, display, LEDs, "
                       "buzzer, relay and MQTT")
    p.add_argument("--out", default=".", help="folder for the camera preview frame (default: here)")
    p.add_argument("--pause", type=seconds, default=1.0, help="seconds between steps, to watch and listen")
    p.set_defaults(func=run)


# Limits for the installer's hints. Laplacian variance on the shared corpus: sharp views of a code 106 and up,
# focus-blurred ones 10-79 (9 of 10 under 40). Sensor noise raises it (dim frames measure thousands), so a
# high figure alone does not prove focus: the camera's own report (lens position, focus state) says more.
SOFT_FOCUS = 40.0
CLIPPED_SHARE = 0.05  # more than 5 % of pixels at full white: a screen or a lamp is blown out


def frame_quality(frame: Frame) -> dict[str, float]:
    """Focus (variance of the Laplacian) and exposure (mean level, shares at black and white) of a grey frame."""
    import numpy as np

    grey = np.asarray(frame, dtype=np.float32)
    laplacian = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1])
    return {"focus": round(float(laplacian.var()), 1), "mean_level": round(float(grey.mean()), 1),
            "white_share": round(float((grey >= 250).mean()), 4), "black_share": round(float((grey <= 5).mean()), 4)}


def _hints(quality: dict[str, float]) -> list[str]:
    hints: list[str] = []
    if quality["focus"] < SOFT_FOCUS:
        hints.append("soft focus: check the lens distance or camera.autofocus")
    if quality["white_share"] > CLIPPED_SHARE:
        hints.append("bright areas blown out: lower camera.exposure_value")
    if quality["mean_level"] < 40:
        hints.append("dark view: add light or raise camera.exposure_value")
    return hints


def _camera(cfg: Config, out: Path) -> str:
    from PIL import Image

    from kiosk.app import build_decoder
    from kiosk.commands.check import grab_frame

    camera_report: dict[str, Any] = {}
    frame = grab_frame(cfg, camera_report)
    if frame is False:
        return "no camera configured"
    if frame is None:
        raise KioskError("the camera gave no frame (replay input empty?)")
    path = out / "selftest-camera.png"
    Image.fromarray(frame).save(path)
    codes = len(build_decoder(cfg).decode(frame))
    quality = frame_quality(frame)
    said = ", ".join(f"{k} {v}" for k, v in camera_report.items())
    return (f"preview {frame.shape[1]}x{frame.shape[0]} saved to {path}; {codes} code(s) in view; "
            f"focus {quality['focus']} (Laplacian variance), exposure mean {quality['mean_level']}/255, "
            f"{quality['white_share']:.1%} white, {quality['black_share']:.1%} black"
            + (f"; camera: {said}" if said else "") + "".join(f"; {h}" for h in _hints(quality)))


def _display(cfg: Config, pause: float) -> str:
    from kiosk.app import build_display
    from kiosk.model import BLACK, GREEN, INVALID, Decision
    from kiosk.screens import IdleView, render

    display = build_display(cfg)
    if display is None:
        return "no display configured"
    try:
        views: list[Decision | IdleView] = [IdleView()] + [
            Decision(kind="personal_qr", verdict=v, reason=r, screen_subject={"name": "N.V. THỬ", "birth": "1990"})
            for v, r in ((GREEN, "vaccinated_14d"), (BLACK, "no_health_data"), (INVALID, "malformed"))]
        for view in views:
            display.show(render(view, display.size, display.mode, cfg.site.language))
            time.sleep(pause)
    finally:
        display.close()
    return f"{cfg.display.type}: idle, green, black and invalid screens shown"


def _pins(cfg: Config, pause: float) -> str:
    from kiosk.app import build_gpio

    parts = build_gpio(cfg)
    done = []
    try:
        if parts.indicator is not None:
            for colour in ("green", "red", "amber"):
                parts.indicator.flash(colour, pause)
                time.sleep(pause)
            done.append("LED green/red/amber")
        if parts.buzzer is not None:
            for on, off, n in ((0.1, 0.1, 1), (0.5, 0.2, 2), (0.1, 0.1, 3)):
                parts.buzzer.beep(on, off, n)
                time.sleep(n * (on + off) + pause)
            done.append("buzzer 1 short, 2 long, 3 short")
        if parts.relay is not None:
            parts.relay.pulse(cfg.gpio.relay_seconds)
            time.sleep(cfg.gpio.relay_seconds)
            done.append(f"relay pulsed {cfg.gpio.relay_seconds} s")
    finally:
        for part in (parts.indicator, parts.buzzer, parts.relay, parts.button):
            if part is not None:
                part.close()
    return ", ".join(done) or "no pins configured"


def _mqtt(cfg: Config) -> str:
    if not cfg.mqtt.enabled:
        return "MQTT disabled"
    from kiosk.mqtt.probe import round_trip

    return round_trip(cfg, timeout=5.0)


def run(args: Args) -> int:
    cfg = load_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str, Callable[[], str]]] = [("camera", lambda: _camera(cfg, out)), ("display", lambda: _display(cfg, args.pause)),
             ("pins", lambda: _pins(cfg, args.pause)), ("mqtt", lambda: _mqtt(cfg))]
    failed = 0
    for name, step in steps:
        try:
            detail, ok = step(), True
        except KioskError as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # report and go on to the next part
            detail, ok = f"{type(exc).__name__}: {exc}", False
        failed += not ok
        emit({"step": name, "ok": ok, "detail": detail})
    return 1 if failed else 0

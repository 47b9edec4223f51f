"""`kiosk check`: validate the configuration (every error at once, exit 78) and probe each configured device.

One JSON line per check: {"check", "ok", "detail"}; a failed check's detail names the fix.
Exit status 0 when every check passed, 1 otherwise.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.errors import KioskError

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import Frame


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("check", parents=[common], help="validate the configuration and probe every device")
    p.set_defaults(func=run)


def grab_frame(cfg: Config, report: dict[str, Any] | None = None) -> Frame | None | Literal[False]:
    """One frame from the configured camera (opened and closed again); False when none is configured.
    `report` gets what the camera says of its focus and exposure, when it says anything (picamera2)."""
    from kiosk.app import build_camera

    camera = build_camera(cfg)
    if camera is None:
        return False
    camera.start()
    try:
        frame = camera.read()
        if report is not None and hasattr(camera, "describe"):
            report.update(camera.describe())
        return frame
    finally:
        camera.close()


def _probe_camera(cfg: Config) -> str:
    frame = grab_frame(cfg)
    if frame is False:
        return "none configured"
    if frame is None:
        return "opened, no frame (end of replay input)"
    return f"frame {frame.shape[1]}x{frame.shape[0]}"


def _probe_reader(cfg: Config) -> str:
    from kiosk.app import build_reader

    reader = build_reader(cfg)
    if reader is None:
        return "none configured"
    reader.start()
    reader.close()
    return f"{cfg.reader.type} opened"


def _probe_decoder(cfg: Config) -> str:
    import numpy as np

    from kiosk.app import build_decoder

    decoder = build_decoder(cfg)
    found = decoder.decode(np.full((120, 160), 255, dtype=np.uint8))
    return f"{decoder.name} ready" if found == [] else f"{decoder.name} read text from a blank frame"


def _probe_display(cfg: Config) -> str:
    from kiosk.app import build_display
    from kiosk.screens import IdleView, render

    display = build_display(cfg)
    if display is None:
        return "none configured"
    try:
        display.show(render(IdleView(), display.size, display.mode, cfg.site.language))
    finally:
        display.close()
    return f"{cfg.display.type} {display.size[0]}x{display.size[1]} showed the idle screen"


def _probe_gpio(cfg: Config) -> str:
    from kiosk.app import build_gpio

    parts = build_gpio(cfg)
    names = [n for n in ("indicator", "buzzer", "relay", "button") if getattr(parts, n) is not None]
    for n in names:
        getattr(parts, n).close()
    return f"pin factory {cfg.gpio.pin_factory}: " + (", ".join(names) or "nothing configured")


def _probe_clock(cfg: Config) -> str:
    from kiosk.app import build_clock

    clock = build_clock(cfg)
    if not clock.synced():
        why = ("the time was restored by fake-hwclock after a reboot without network"
               if getattr(clock, "state", lambda: "")() == "fake-hwclock" else "system clock is not NTP-synchronised")
        raise KioskError(f"{why}: date rules follow the fail policy until NTP sets the time (check `timedatectl` "
                         "and network access to an NTP server)")
    return f"synchronised, {clock.now().isoformat(timespec='seconds')}"


def _probe_journal(cfg: Config) -> str:
    """Opens, and proves a check-in could be written now (a read-only journal used to pass as ok)."""
    from kiosk.stores.journal import Journal

    journal = Journal(cfg.journal.path, site=cfg.site.id, device=cfg.site.device)
    try:
        journal.writable()
        return f"{journal.count()} rows in {cfg.journal.path}, writable"
    finally:
        journal.close()


def _probe_roster(cfg: Config) -> str:
    from kiosk.app import build_roster

    roster = build_roster(cfg)
    return f"{roster.count} people, version {roster.version}, updated {roster.updated_at}"


def _probe_trust(cfg: Config) -> str:
    from kiosk.app import build_clock, build_trust

    trust = build_trust(cfg)
    if cfg.trust.max_age_hours and trust.is_stale(build_clock(cfg).now(), cfg.trust.max_age_hours):
        raise KioskError(f"trust list is stale (older than {cfg.trust.max_age_hours} h or never updated): "
                         "run `kiosk trust import` or send the MQTT trust command")
    return f"{trust.count} signers, updated {trust.updated_at}"


def _probe_revocation(cfg: Config) -> str:
    from kiosk.app import build_clock, build_revocations

    revocations = build_revocations(cfg)
    if revocations.is_stale(build_clock(cfg).now(), cfg.trust.revocation_max_age_hours):
        raise KioskError(f"revocation list is stale (not updated for {cfg.trust.revocation_max_age_hours} h): "
                         "import the current list (`kiosk trust import`) or send it with the MQTT trust command")
    summary = revocations.summary()
    if summary["updated_at"] is None:
        return "none received (signed certificates are not checked for revocation)"
    return f"{sum(summary['hashes'].values())} hashes in {summary['batches']} batches, updated {summary['updated_at']}"


def _probe_site_key(cfg: Config) -> str:
    from kiosk.app import build_clock
    from kiosk.identity import LOCAL, load_keys_for

    ring = load_keys_for(cfg)
    now = build_clock(cfg).now()
    in_use = ring.current(now)
    detail = f"key {in_use.id} in use, {len(ring.keys)} kept"
    if in_use.origin == LOCAL:
        detail += ("; it is this kiosk's own, so its subject_refs match no other kiosk's: install the site's keys "
                   "(kiosk sitekey import, or the MQTT trust command)")
    if ring.describe(now)["rotation_due"]:
        detail += f"; rotation is due (older than {cfg.journal.key_rotate_days} days): kiosk sitekey rotate"
    return detail


def _probe_mqtt(cfg: Config) -> str:
    if not cfg.mqtt.enabled:
        return "disabled"
    from kiosk.mqtt.probe import probe

    return probe(cfg, timeout=5.0)


PROBES: list[tuple[str, Callable[[Config], str]]] = [
    ("decoder", _probe_decoder), ("camera", _probe_camera), ("reader", _probe_reader),
    ("display", _probe_display), ("gpio", _probe_gpio), ("clock", _probe_clock), ("journal", _probe_journal),
    ("roster", _probe_roster), ("trust", _probe_trust), ("revocation", _probe_revocation),
    ("site_key", _probe_site_key), ("mqtt", _probe_mqtt),
]


def run(args: Args) -> int:
    cfg = load_config(args)  # a ConfigError here exits 78 with every problem listed
    emit({"check": "config", "ok": True, "detail": str(cfg.source) if cfg.source else "built-in"})
    failed = 0
    for name, probe in PROBES:
        try:
            detail = probe(cfg)
            ok = True
        except KioskError as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # a probe must report, not crash the check
            detail, ok = f"{type(exc).__name__}: {exc}", False
        failed += not ok
        emit({"check": name, "ok": ok, "detail": detail})
    return 1 if failed else 0

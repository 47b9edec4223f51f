"""Every screen at the three panel sizes, compared pixel for pixel with the reference images in tests/golden/
(as luma keeps reference images for its devices).

A change to the screens shows here as a failure naming the differing pixels, with the new rendering and a
difference image written beside the test's temporary files. When the change is meant:
`pytest tests/test_golden_screens.py --update-golden`, look at the changed PNGs, commit them.
Rendering is pixel-exact from run to run (DejaVu Sans through Pillow's FreeType), so no tolerance is allowed.
"""
from __future__ import annotations

from pathlib import Path

import PIL
import pytest
from PIL import Image, ImageChops, features

from kiosk.masking import subject
from kiosk.model import BLACK, CCCD, DCC, GREEN, INVALID, PERSONAL_QR, UNKNOWN, Decision, Person
from kiosk.screens import IdleView, render

GOLDEN = Path(__file__).resolve().parent / "golden"
RENDERED_WITH = GOLDEN / "rendered-with.txt"  # what made the images, named when they no longer match
PANELS = {"128x64": ((128, 64), "1"), "128x128": ((128, 128), "RGB"), "800x480": ((800, 480), "RGB")}

THU = Person(id_number="079090000001", name="NGUYEN VAN THU", birth="1990-12-01")
MAU = Person(id_number="001195000002", name="Trần Thị Mẫu", birth="1995-08-15")
# The longest kind of Vietnamese name, shown in full on an authorised site (hospital, quarantine checkpoint).
LONG = Person(id_number="079190000123", name="Nguyễn Huỳnh Thị Ngọc Phương Thảo", birth="1991-03-08")


def result(verdict: str, reason: str, kind: str | None, person: Person | None = None, *,
           authorised: bool = False, direction: str = "in") -> Decision:
    return Decision(kind=kind, verdict=verdict, reason=reason, direction=direction,
                    screen_subject=subject(kind, person, authorised=authorised, for_screen=True))


# name -> (what is shown, language). One screen per verdict and reason family; idle with and without alarms.
SCREENS: dict[str, tuple[Decision | IdleView, str]] = {
    "idle": (IdleView(), "vi"),
    "idle_en": (IdleView(), "en"),
    "idle_alarms": (IdleView(alarms=("mqtt_offline", "clock_unsynced")), "vi"),
    "idle_more_alarms_than_fit": (IdleView(alarms=("camera_failed", "mqtt_offline", "outbox_full", "journal_failed",
                                                   "trust_stale", "clock_unsynced")), "vi"),
    "green_checked_in_trace": (result(GREEN, "checked_in", PERSONAL_QR, THU), "vi"),
    "green_checked_out": (result(GREEN, "checked_in", CCCD, MAU, direction="out"), "vi"),
    "green_vaccinated": (result(GREEN, "vaccinated_14d", PERSONAL_QR, THU), "vi"),
    "green_vaccinated_en": (result(GREEN, "vaccinated_14d", PERSONAL_QR, THU), "en"),
    "green_recovered_certificate": (result(GREEN, "recovered_180d", DCC, THU), "vi"),
    "green_on_staff_list": (result(GREEN, "on_staff_list", CCCD, MAU), "vi"),
    "green_guard_override": (result(GREEN, "override", None), "vi"),
    "black_dose_too_recent": (result(BLACK, "dose_too_recent", CCCD, MAU), "vi"),
    "black_no_health_data": (result(BLACK, "no_health_data", PERSONAL_QR, THU), "vi"),
    "black_test_positive": (result(BLACK, "test_positive", DCC, THU), "vi"),
    "black_test_not_accepted_wraps": (result(BLACK, "test_not_accepted", DCC, MAU), "vi"),
    "black_not_on_staff_list": (result(BLACK, "not_on_staff_list", CCCD, MAU), "vi"),
    "black_fail_policy_clock": (result(BLACK, "clock_unsynced", PERSONAL_QR, THU), "vi"),
    "black_fail_policy_roster_en": (result(BLACK, "roster_stale", PERSONAL_QR, THU), "en"),
    "black_long_name_authorised": (result(BLACK, "not_on_staff_list", CCCD, LONG, authorised=True), "vi"),
    "invalid_malformed": (result(INVALID, "malformed", PERSONAL_QR), "vi"),
    "invalid_unrecognised_en": (result(INVALID, "unrecognised", UNKNOWN), "en"),
    "invalid_bad_signature": (result(INVALID, "bad_signature", DCC), "vi"),
    "invalid_not_yet_valid_wraps": (result(INVALID, "not_yet_valid", DCC), "vi"),
    "invalid_internal_error": (result(INVALID, "internal_error", PERSONAL_QR), "vi"),
}


def renderer() -> str:
    return f"Pillow {PIL.__version__}, FreeType {features.version('freetype2')}"


def golden_path(panel: str, name: str) -> Path:
    return GOLDEN / panel / f"{name}.png"


def differing_pixels(a: Image.Image, b: Image.Image) -> int:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).convert("L")
    return diff.width * diff.height - diff.histogram()[0]


@pytest.mark.parametrize("panel", PANELS)
@pytest.mark.parametrize("name", SCREENS)
def test_screen_matches_its_golden_image(panel, name, update_golden, tmp_path):
    size, mode = PANELS[panel]
    view, lang = SCREENS[name]
    image = render(view, size, mode, lang)
    path = golden_path(panel, name)
    golden = None
    if path.exists():
        with Image.open(path) as stored:
            golden = stored.copy()
    same = golden is not None and golden.mode == image.mode and golden.size == image.size \
        and differing_pixels(golden, image) == 0
    if update_golden:
        if not same:
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
        return
    assert golden is not None, f"no golden image {path}: run pytest --update-golden, then look at it"
    if not same:
        image.save(tmp_path / "rendered.png")
        ImageChops.difference(golden.convert("RGB"), image.convert("RGB")).save(tmp_path / "difference.png")
    assert (golden.mode, golden.size) == (image.mode, image.size)
    assert differing_pixels(golden, image) == 0, (
        f"{panel}/{name}: {differing_pixels(golden, image)} pixels differ from {path}; the new rendering and "
        f"the difference are in {tmp_path}. If the change is meant, run pytest --update-golden (golden images made "
        f"with {RENDERED_WITH.read_text().strip() if RENDERED_WITH.exists() else '?'}; this run: {renderer()})")


def test_rendering_is_the_same_every_time():
    for panel, (size, mode) in PANELS.items():
        for name, (view, lang) in SCREENS.items():
            assert differing_pixels(render(view, size, mode, lang), render(view, size, mode, lang)) == 0, (panel, name)


def test_no_golden_image_without_its_screen(update_golden):
    wanted = {golden_path(panel, name) for panel in PANELS for name in SCREENS}
    stale = set(GOLDEN.glob("*/*.png")) - wanted
    if update_golden:
        for path in stale:
            path.unlink()
        RENDERED_WITH.write_text(renderer() + "\n")
        return
    assert stale == set(), "golden images of screens no longer rendered: run pytest --update-golden"

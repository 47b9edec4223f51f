"""Screen rendering: every verdict and reason, both languages, the three panel layouts."""
import pytest
from PIL import ImageChops, ImageDraw

from kiosk.i18n import STRINGS, text
from kiosk.model import BLACK, GREEN, INVALID, VERDICTS, Decision
from kiosk.screens import READABLE_PX, SMALL, IdleView, fit, fit_two_lines, layout_for, render

SIZES = [((128, 64), "1"), ((128, 128), "RGB"), ((800, 480), "RGB")]
REASONS = ["checked_in", "vaccinated_14d", "recovered_180d", "no_health_data", "dose_too_recent", "dose_too_old",
           "recovery_too_old", "tested_negative", "test_positive", "test_not_accepted", "not_on_staff_list",
           "no_roster", "bad_signature", "expired", "not_yet_valid", "unknown_key", "malformed", "unrecognised",
           "too_long", "unsupported", "roster_stale", "trust_stale", "clock_unsynced", "internal_error", "override",
           "on_staff_list", "test_too_old", "test_result_unknown", "revoked", "revocation_stale"]
STATUS = ["idle", "camera_failed", "mqtt_offline", "outbox_full", "journal_failed", "trust_stale", "revocation_stale",
          "clock_unsynced"]


def decision(verdict, reason="malformed", name="N.V. THỬ", birth="1990"):
    return Decision(kind="personal_qr", verdict=verdict, reason=reason, screen_subject={"name": name, "birth": birth})


def test_every_code_has_a_text_in_both_languages():
    for lang in ("vi", "en"):
        for key in (*VERDICTS, *REASONS, *STATUS):
            assert key in STRINGS[lang], (lang, key)
    assert text("idle", "vi") == "Quét mã QR"
    assert text("idle", "en") == "Scan your QR code"


def test_unknown_key_or_language_falls_back_without_raising():
    assert text("brand_new_reason", "en") == "brand_new_reason"
    assert text("green", "fr") == text("green", "vi")


@pytest.mark.parametrize("size,mode", SIZES)
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_verdict_and_reason_renders_at_every_size(size, mode, lang):
    for verdict in VERDICTS:
        for reason in REASONS:
            image = render(decision(verdict, reason), size, mode, lang)
            assert image.size == size and image.mode == mode
            assert image.info["view"] == verdict
    idle = render(IdleView(alarms=tuple(STATUS[1:])), size, mode, lang)
    assert idle.size == size and idle.mode == mode and idle.info["view"] == "idle"


@pytest.mark.parametrize("size", [(128, 128), (800, 480)])
def test_colour_screens_differ_by_their_dominant_colour(size):
    def dominant(verdict):
        image = render(decision(verdict), size, "RGB", "vi")
        return max(image.getcolors(size[0] * size[1]))[1]

    assert dominant(GREEN)[1] > 100 and dominant(GREEN)[0] < 50  # green background
    assert dominant(BLACK) == (0, 0, 0)
    assert dominant(INVALID)[0] > 200 and dominant(INVALID)[2] < 50  # amber background


def test_monochrome_screens_have_their_own_patterns():
    def lit(verdict):
        image = render(decision(verdict), (128, 64), "1", "vi")
        return image.histogram()[255] / (128 * 64)

    assert lit(GREEN) > 0.6  # inverted: white fill with a dark tick
    assert lit(BLACK) < 0.4
    assert lit(BLACK) + 0.1 < lit(INVALID) < lit(GREEN) - 0.1  # lit title band on a dark body


@pytest.mark.parametrize("size,mode", SIZES)
def test_vietnamese_diacritics_draw(size, mode):
    marked = render(IdleView(title="Ữ"), size, mode, "vi")
    base = render(IdleView(title="U"), size, mode, "vi")
    assert ImageChops.difference(marked.convert("L"), base.convert("L")).getbbox() is not None


def test_long_text_is_shrunk_then_ellipsised_within_its_box():
    font, shown = fit("NGUYỄN THỊ " * 20, 124, 14)
    assert shown.endswith("…") and font.getlength(shown) <= 124
    font, shown = fit("AN", 124, 14)
    assert shown == "AN"


@pytest.mark.parametrize("size,mode", SIZES)
def test_long_name_does_not_overflow_the_screen(size, mode):
    image = render(decision(BLACK, "not_on_staff_list", name="W" * 200, birth="1990"), size, mode, "vi")
    width, height = size
    text_top = round(layout_for(size).rows[0].y * height)
    right_margin = image.crop((width - 2, text_top, width, height)).convert("L")
    assert right_margin.getextrema() == (0, 0)  # background only: nothing ran past the box


def test_small_layout_is_used_for_the_128x64_panel():
    assert layout_for((128, 64)) is SMALL
    assert layout_for((128, 128)) is not SMALL


def test_idle_screen_shows_alarms():
    quiet = render(IdleView(), (128, 64), "1", "en")
    alarmed = render(IdleView(alarms=("camera_failed",)), (128, 64), "1", "en")
    assert ImageChops.difference(quiet, alarmed).getbbox() is not None
    many = render(IdleView(alarms=tuple(STATUS[1:])), (128, 64), "1", "en")  # more than fit: "+N" line
    assert many.size == (128, 64)


def drawn_texts(monkeypatch, view, size, mode, lang) -> list[tuple[str, int]]:
    """(text, font px) of every string `render` draws."""
    drawn = []
    real = ImageDraw.ImageDraw.text

    def spy(self, xy, value, *args, **kwargs):
        drawn.append((value, kwargs["font"].size))
        return real(self, xy, value, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    render(view, size, mode, lang)
    monkeypatch.undo()
    return drawn


@pytest.mark.parametrize("size,mode", SIZES)
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_reason_is_shown_whole_and_readable(monkeypatch, size, mode, lang):
    for verdict in VERDICTS:
        for reason in REASONS:
            drawn = drawn_texts(monkeypatch, decision(verdict, reason), size, mode, lang)
            texts = [t for t, _ in drawn]
            assert not any("…" in t for t in texts), (reason, texts)  # never cut mid-word
            wanted = text(reason, lang)
            reason_lines = [(t, px) for t, px in drawn if t in wanted]
            assert " ".join(t for t, _ in reason_lines) == wanted, (reason, texts)  # one line or wrapped at a space
            assert min(px for _, px in reason_lines) >= READABLE_PX, (reason, reason_lines)


def test_a_long_reason_wraps_on_the_small_panels_and_keeps_a_subject_line_on_128x128(monkeypatch):
    view = decision(BLACK, "test_not_accepted", name="THU", birth="1990")
    small = [t for t, _ in drawn_texts(monkeypatch, view, (128, 64), "1", "vi")]
    assert small[1:] == ["Không chấp", "nhận xét nghiệm"]  # two rows: the subject gives way
    square = [t for t, _ in drawn_texts(monkeypatch, view, (128, 128), "RGB", "vi")]
    assert square[1:] == ["Không chấp", "nhận xét nghiệm", "THU · 1990"]
    large = [t for t, _ in drawn_texts(monkeypatch, view, (800, 480), "RGB", "vi")]
    assert large[1:] == ["Không chấp nhận xét nghiệm", "THU", "1990 · Vào"]


def test_two_line_fit_splits_at_the_balancing_space_or_gives_nothing():
    font, lines = fit_two_lines("Chứng nhận chưa có hiệu lực", 124, 30, bold=True)
    assert lines == ["Chứng nhận", "chưa có hiệu lực"] and font.size >= READABLE_PX
    assert all(font.getlength(line) <= 124 for line in lines)
    assert fit_two_lines("Đ" * 50, 124, 30)[1] == []  # no space to wrap at
    assert fit_two_lines("W" * 40 + " " + "W" * 40, 124, 30)[1] == []  # too wide even at the smallest size

"""Screen images for the gate display, drawn with Pillow.

`render(view, size, mode, lang)` turns a `Decision` (a result) or an `IdleView` (idle/status) into an
image for a panel. The layout follows the panel: 128x64 monochrome OLED (SSD1306/SH1106), 128x128
colour OLED (SSD1351), or a large HDMI screen; boxes are fractions of the size, so nearby sizes work too.
Text uses DejaVu Sans (Vietnamese diacritics) and is shrunk to fit its box. A reason that would shrink
below READABLE_PX on one line is wrapped at a space onto two lines (taking the next row); only text with
no room even then (a long name) is ellipsised.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from kiosk import inert
from kiosk.errors import DeviceError
from kiosk.i18n import text
from kiosk.model import BLACK, GREEN, INVALID, Decision

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
ELLIPSIS = "…"
MIN_FONT_PX = 8
READABLE_PX = 10  # below this a small OLED's text is hard to read at arm's length: wrap instead


@dataclass(frozen=True)
class IdleView:
    """The idle/status screen. `title` None: the "scan your QR code" text. `alarms` are i18n keys."""

    title: str | None = None
    lines: tuple[str, ...] = ()
    alarms: tuple[str, ...] = ()


# ---------------------------------------------------------------- fonts
@functools.cache
def _font_path(bold: bool) -> str:
    names = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf") if bold else ("DejaVuSans.ttf",)
    for name in names:
        path = FONT_DIR / name
        if path.is_file():
            return str(path)
    raise DeviceError("font DejaVuSans.ttf not found: apt install fonts-dejavu-core")


def require_fonts() -> None:
    """Raise DeviceError naming the Debian package when the TrueType font is missing (checked at start-up)."""
    _font_path(False)
    _font_path(True)


@functools.cache
def _font(px: int, bold: bool) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(_font_path(bold), px)


def fit(value: str, width: int, height: int, bold: bool = False,
        max_px: int | None = None) -> tuple[ImageFont.FreeTypeFont, str]:
    """The largest font (down to MIN_FONT_PX) whose line fits width x height; ellipsised if still too wide."""
    px = max(MIN_FONT_PX, min(height, max_px or height))
    while True:
        font = _font(px, bold)
        ascent, descent = font.getmetrics()
        fits_height = ascent + descent <= height
        if fits_height and font.getlength(value) <= width:
            return font, value
        if px <= MIN_FONT_PX:
            break
        px -= 1 if px < 24 else max(1, px // 12)
    while value and font.getlength(value + ELLIPSIS) > width:
        value = value[:-1]
    return font, (value + ELLIPSIS if value else "")


def fit_two_lines(value: str, width: int, height: int, bold: bool = False) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font (down to MIN_FONT_PX) at which `value`, split at one space, fits on two lines.

    The split that balances the two lines best is used. No lines when the text has no space or cannot fit.
    """
    words = value.split(" ")
    if len(words) < 2:
        return _font(MIN_FONT_PX, bold), []
    px = max(MIN_FONT_PX, height // 2)
    while px >= MIN_FONT_PX:
        font = _font(px, bold)
        ascent, descent = font.getmetrics()
        if 2 * (ascent + descent) <= height:
            splits = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
            best = min(splits, key=lambda pair: max(font.getlength(line) for line in pair))
            if max(font.getlength(line) for line in best) <= width:
                return font, list(best)
        px -= 1 if px < 24 else max(1, px // 12)
    return _font(MIN_FONT_PX, bold), []


# ---------------------------------------------------------------- layout
@dataclass(frozen=True)
class Box:
    """A rectangle in fractions of the screen size."""

    x: float
    y: float
    w: float
    h: float

    def pixels(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        sw, sh = size
        return round(self.x * sw), round(self.y * sh), max(1, round(self.w * sw)), max(1, round(self.h * sh))


@dataclass(frozen=True)
class Layout:
    icon: Box
    title: Box
    rows: tuple[Box, ...]  # reason, subject, details (as many as the layout has room for)


# 128x64: icon and verdict word on top, then reason, then the masked name with birth year.
SMALL = Layout(icon=Box(2 / 128, 2 / 64, 28 / 128, 28 / 64), title=Box(34 / 128, 2 / 64, 92 / 128, 28 / 64),
               rows=(Box(2 / 128, 33 / 64, 124 / 128, 14 / 64), Box(2 / 128, 49 / 64, 124 / 128, 14 / 64)))
# 128x128 colour: the same, with separate name and details lines.
SQUARE = Layout(icon=Box(4 / 128, 4 / 128, 40 / 128, 40 / 128), title=Box(48 / 128, 8 / 128, 76 / 128, 32 / 128),
                rows=(Box(4 / 128, 52 / 128, 120 / 128, 22 / 128), Box(4 / 128, 80 / 128, 120 / 128, 20 / 128),
                      Box(4 / 128, 104 / 128, 120 / 128, 18 / 128)))
# 800x480 HDMI: large icon and word, three generous lines.
LARGE = Layout(icon=Box(0.04, 0.06, 0.2, 0.333), title=Box(0.28, 0.08, 0.68, 0.29),
               rows=(Box(0.04, 0.46, 0.92, 0.16), Box(0.04, 0.65, 0.92, 0.14), Box(0.04, 0.82, 0.92, 0.12)))


def layout_for(size: tuple[int, int]) -> Layout:
    w, h = size
    if w >= 256 and h >= 160:
        return LARGE
    return SQUARE if h >= 100 else SMALL


# ---------------------------------------------------------------- colours
# A colour: a level (0 dark, 255 lit) on a monochrome panel, an RGB triple on a colour one.
Ink = int | tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    bg: Ink
    fg: Ink
    icon: Ink
    band: Ink | None = None  # title band behind icon and verdict word (mono invalid)
    band_fg: Ink = 0  # ink on the band
    frame: bool = False  # dotted frame (mono invalid)


def _palette(kind: str, mono: bool) -> Palette:
    if mono:  # 255 lit, 0 dark
        return {GREEN: Palette(255, 0, 0),
                BLACK: Palette(0, 255, 255),
                INVALID: Palette(0, 255, 0, band=255, band_fg=0, frame=True)}.get(kind, Palette(0, 255, 255))
    return {GREEN: Palette((0, 140, 60), (255, 255, 255), (255, 255, 255)),
            BLACK: Palette((0, 0, 0), (255, 255, 255), (230, 40, 40)),
            INVALID: Palette((255, 170, 0), (0, 0, 0), (0, 0, 0))}.get(
                kind, Palette((16, 28, 56), (255, 255, 255), (255, 255, 255)))


ALARM_RGB = (255, 170, 0)


# ---------------------------------------------------------------- drawing
def _draw_text(draw: ImageDraw.ImageDraw, value: str, box: tuple[int, int, int, int], fill: Ink, *,
               bold: bool = False, centre: bool = False, max_px: int | None = None) -> None:
    x, y, w, h = box
    font, shown = fit(value, w, h, bold, max_px)
    if not shown:
        return
    ascent, descent = font.getmetrics()
    dx = (w - font.getlength(shown)) / 2 if centre else 0
    draw.text((x + dx, y + (h - ascent - descent) / 2), shown, font=font, fill=fill)


def _draw_icon(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], fill: Ink) -> None:
    x, y, w, h = box
    s = min(w, h)
    line = max(2, s // 7)

    def p(fx: float, fy: float) -> tuple[float, float]:
        return x + fx * s, y + fy * s

    if kind == GREEN:  # tick
        draw.line([p(0.12, 0.55), p(0.4, 0.82), p(0.9, 0.2)], fill=fill, width=line, joint="curve")
    elif kind == BLACK:  # cross
        draw.line([p(0.18, 0.18), p(0.82, 0.82)], fill=fill, width=line)
        draw.line([p(0.82, 0.18), p(0.18, 0.82)], fill=fill, width=line)
    else:  # warning triangle with "!"
        draw.polygon([p(0.5, 0.06), p(0.96, 0.92), p(0.04, 0.92)], outline=fill, width=max(1, line // 2))
        draw.line([p(0.5, 0.36), p(0.5, 0.64)], fill=fill, width=max(1, line // 2 + 1))
        r = max(1, line // 3)
        cx, cy = p(0.5, 0.78)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)


def _dotted_frame(draw: ImageDraw.ImageDraw, size: tuple[int, int], fill: Ink) -> None:
    w, h = size
    for x in range(0, w, 4):
        draw.point([(x, 0), (x, h - 1)], fill=fill)
    for y in range(0, h, 4):
        draw.point([(0, y), (w - 1, y)], fill=fill)


def _subject_lines(decision: Decision, lang: str, rows: int) -> list[str]:
    """The subject for `rows` screen rows: the given name (with the birth date at an authorised site) on one line,
    or the name, then birth date and direction."""
    subject = decision.screen_subject or {}
    name = inert.text(subject.get("name"))  # a certificate's name is free text: no controls or bidi overrides
    birth = inert.text(subject.get("birth"))
    if rows <= 1:
        return [" · ".join(v for v in (name, birth) if v)]
    direction = text(f"direction_{decision.direction}", lang) if name or birth else ""
    return [name, " · ".join(v for v in (birth, direction) if v)]


def _draw_reason(draw: ImageDraw.ImageDraw, reason: str, rows: list[tuple[int, int, int, int]], fill: Ink) -> int:
    """Draw the reason in the first row, or wrapped over the first two; the number of rows it took."""
    x, y, w, h = rows[0]
    font, shown = fit(reason, w, h, bold=True)
    if (shown != reason or font.size < READABLE_PX) and len(rows) > 1:
        both = rows[1][1] + rows[1][3] - y
        font, lines = fit_two_lines(reason, w, both, bold=True)
        if lines:
            ascent, descent = font.getmetrics()
            top = y + (both - 2 * (ascent + descent)) / 2
            for i, line in enumerate(lines):
                draw.text((x, top + i * (ascent + descent)), line, font=font, fill=fill)
            return 2
    _draw_text(draw, reason, rows[0], fill, bold=True)
    return 1


def _render_result(decision: Decision, size: tuple[int, int], mono: bool, lang: str) -> Image.Image:
    layout = layout_for(size)
    pal = _palette(decision.verdict, mono)
    image = Image.new("1" if mono else "RGB", size, pal.bg)
    draw = ImageDraw.Draw(image)
    icon_box, title_box = layout.icon.pixels(size), layout.title.pixels(size)
    title_fg, icon_fg = pal.fg, pal.icon
    if pal.band is not None:
        band_bottom = max(icon_box[1] + icon_box[3], title_box[1] + title_box[3])
        draw.rectangle([0, 0, size[0] - 1, band_bottom], fill=pal.band)
        title_fg = icon_fg = pal.band_fg
    if pal.frame:
        _dotted_frame(draw, size, pal.fg)
    _draw_icon(draw, decision.verdict, icon_box, icon_fg)
    _draw_text(draw, text(decision.verdict, lang), title_box, title_fg, bold=True)
    rows = [box.pixels(size) for box in layout.rows]
    rest = rows[_draw_reason(draw, text(decision.reason, lang), rows, pal.fg):]
    if rest:
        for value, box in zip(_subject_lines(decision, lang, len(rest)), rest):
            _draw_text(draw, value, box, pal.fg)
    return image


def _render_idle(view: IdleView, size: tuple[int, int], mono: bool, lang: str) -> Image.Image:
    layout = layout_for(size)
    pal = _palette("idle", mono)
    image = Image.new("1" if mono else "RGB", size, pal.bg)
    draw = ImageDraw.Draw(image)
    w, h = size
    title_box = layout.title.pixels(size)
    title_h = title_box[1] + title_box[3]
    _draw_text(draw, view.title or text("idle", lang), (2, title_box[1], w - 4, title_box[3]),
               pal.fg, bold=True, centre=True)
    row_h = layout.rows[-1].pixels(size)[3]
    entries = [(line, False) for line in view.lines] + [("! " + text(a, lang), True) for a in view.alarms]
    if not entries and layout is not SMALL:
        entries = [(text("idle_hint", lang), False)]
    room = max(0, (h - title_h - 2) // (row_h + 2))
    if len(entries) > room and room > 0:
        hidden = len(entries) - room + 1
        entries = entries[:room - 1] + [(f"+{hidden} …", entries[-1][1])]
    entries = entries[:room]
    px = int(min((fit(value, w - 4, row_h)[0].size for value, _ in entries), default=row_h))  # one size for all rows
    y = title_h + 2
    for value, alarm in entries:
        box = (2, y, w - 4, row_h)
        fill = pal.fg
        if alarm and mono:  # inverted band so an alarm stands out on a monochrome panel
            draw.rectangle([0, y, w - 1, y + row_h - 1], fill=pal.fg)
            fill = pal.bg
        elif alarm:
            fill = ALARM_RGB
        _draw_text(draw, value, box, fill, max_px=px)
        y += row_h + 2
    return image


def render(view: Decision | IdleView, size: tuple[int, int], mode: str, lang: str) -> Image.Image:
    """The screen for `view` at `size` in Pillow `mode` ("1" monochrome or "RGB").

    `image.info["view"]` names what it shows: the verdict, or "idle".
    """
    mono = mode == "1"
    if isinstance(view, IdleView):
        image = _render_idle(view, size, mono, lang)
    else:
        image = _render_result(view, size, mono, lang)
    if image.mode != mode:
        image = image.convert(mode)
    image.info["view"] = "idle" if isinstance(view, IdleView) else view.verdict  # file name for PNG capture
    return image

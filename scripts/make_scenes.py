#!/usr/bin/env python3
"""Render the demo's camera scenes and roster, deterministically (seeded).

    python scripts/make_scenes.py [--out kiosk/data/scenes] [--roster kiosk/data/demo_roster.csv]
                                  [--today YYYY-MM-DD] [--seed 1405]

Writes one 640x480 grey camera frame per entry of `kiosk.demo_people.SCENES` (a QR code on a phone
screen or on printed paper, with slight perspective, blur and sensor noise), `manifest.json` with the
expected text, kind, verdict and reason of every frame (health mode), and the roster CSV with dates
relative to --today. The bundled roster is written for the demo's fixed date: `--today 2021-11-15`.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import segno
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kiosk.demo_people import DEMO_DATE, SCENES, demo_roster_csv, person  # noqa: E402

FRAME_SIZE = (640, 480)
JPEG_QUALITY = 88


DEMO_SIGNER = REPO / "kiosk" / "data" / "demo_signer"


def qr_image(text: str, module_px: int) -> Image.Image:
    """The code as black modules on white, with the standard 4-module quiet zone."""
    buf = io.BytesIO()
    segno.make_qr(text, error="m").save(buf, kind="png", scale=module_px, border=4)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def phone(text: str | None, rng: np.random.Generator) -> Image.Image:
    """A phone held up to the camera: dark bezel, bright screen, the code in the middle."""
    w, h = 250, 440
    body = Image.new("LA", (w, h), (0, 0))  # alpha: the rounded outline of the phone
    draw = ImageDraw.Draw(body)
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=28, fill=(int(rng.integers(18, 40)), 255))
    screen = int(rng.integers(225, 250))
    draw.rounded_rectangle((12, 40, w - 13, h - 40), radius=8, fill=(screen, 255))
    draw.rectangle((30, 62, w - 31, 80), fill=(screen - 60, 255))  # app title bar
    if text is not None:
        code = qr_image(text, 4)
        if code.width > w - 30:
            code = code.resize((w - 30, w - 30), Image.NEAREST)
        body.paste(code.point(lambda v: screen if v > 128 else 10).convert("LA"),
                   ((w - code.width) // 2, (h - code.height) // 2))
    return body


def paper(text: str | None, rng: np.random.Generator) -> Image.Image:
    """A printed sheet: off-white paper, grey ink, a caption line."""
    w, h = 300, 340
    ink, white = int(rng.integers(25, 50)), int(rng.integers(200, 230))
    sheet = Image.new("L", (w, h), white)
    draw = ImageDraw.Draw(sheet)
    for y in (h - 40, h - 28):
        draw.rectangle((40, y, w - 40 - int(rng.integers(0, 60)), y + 5), fill=ink + 60)
    if text is not None:
        code = qr_image(text, 5)
        if code.width > w - 20:
            code = code.resize((w - 20, w - 20), Image.NEAREST)
        sheet.paste(code.point(lambda v: white if v > 128 else ink), ((w - code.width) // 2, 20))
    return sheet


def perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points `dst` back to input points `src`."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return list(np.linalg.solve(np.array(rows, float), np.array(rhs, float)))


def background(rng: np.random.Generator) -> Image.Image:
    """A dim counter/wall: a brightness gradient with some texture."""
    w, h = FRAME_SIZE
    base = rng.uniform(70, 120)
    yy, xx = np.mgrid[0:h, 0:w]
    grad = base + rng.uniform(-30, 30) * xx / w + rng.uniform(-30, 30) * yy / h
    texture = Image.fromarray(rng.normal(0, 12, (h // 8, w // 8)).astype(np.float32)).resize((w, h), Image.BICUBIC)
    return Image.fromarray(np.clip(grad + np.asarray(texture), 0, 255).astype(np.uint8))


def scene(carrier: str, text: str | None, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    frame = background(rng)
    if carrier != "empty":
        obj = phone(text, rng) if carrier == "phone" else paper(text, rng)
        w, h = obj.size
        cx, cy = FRAME_SIZE[0] / 2 + rng.uniform(-60, 60), FRAME_SIZE[1] / 2 + rng.uniform(-10, 10)
        scale = (FRAME_SIZE[1] - 30) / max(h, w) * rng.uniform(0.92, 1.0)
        hw, hh = w * scale / 2, h * scale / 2
        j = lambda: rng.uniform(-0.06, 0.06) * hw  # noqa: E731  (corner jitter: a slight tilt)
        quad = [(cx - hw + j(), cy - hh + j()), (cx + hw + j(), cy - hh + j()),
                (cx + hw + j(), cy + hh + j()), (cx - hw + j(), cy + hh + j())]
        coeffs = perspective_coeffs([(0, 0), (w, 0), (w, h), (0, h)], quad)
        outline = obj.getchannel("A") if obj.mode == "LA" else Image.new("L", obj.size, 255)
        warped = obj.convert("L").transform(FRAME_SIZE, Image.PERSPECTIVE, coeffs, Image.BICUBIC)
        mask = outline.transform(FRAME_SIZE, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
        frame.paste(warped, (0, 0), mask)
    frame = frame.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    noisy = np.asarray(frame, np.float32) + rng.normal(0, rng.uniform(2.0, 4.0), (FRAME_SIZE[1], FRAME_SIZE[0]))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "kiosk" / "data" / "scenes")
    ap.add_argument("--roster", type=Path, default=REPO / "kiosk" / "data" / "demo_roster.csv")
    ap.add_argument("--today", type=date.fromisoformat, default=DEMO_DATE,
                    help="date the roster's dose/recovery dates are relative to (the bundled one: "
                    f"{DEMO_DATE}, the demo's fixed clock)")
    ap.add_argument("--seed", type=int, default=1405)
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.jpg"):
        old.unlink()
    entries = []
    for n, (name, key, carrier) in enumerate(SCENES, start=1):
        p = person(key) if key else None
        file = f"{n:02d}_{name}.jpg"
        scene(carrier, p.code if p else None, args.seed * 1000 + n).save(args.out / file, quality=JPEG_QUALITY)
        entry = {"file": file, "carrier": carrier, "texts": [p.code] if p else []}
        if p:
            entry.update(person=p.key, kind=p.kind, verdict=p.verdict, reason=p.reason)
        entries.append(entry)
    # Signed certificates (HC1), signed with the bundled demo TEST key for the same "today".
    from kiosk.issuing import demo_certificates

    for n, (label, hc1, verdict, reason) in enumerate(demo_certificates(DEMO_SIGNER, args.today),
                                                      start=len(entries) + 1):
        file = f"{n:02d}_{label}_phone.jpg"
        scene("phone", hc1, args.seed * 1000 + n).save(args.out / file, quality=JPEG_QUALITY)
        entries.append({"file": file, "carrier": "phone", "texts": [hc1], "person": label, "kind": "dcc",
                        "verdict": verdict, "reason": reason})
    manifest = {"generator": "scripts/make_scenes.py", "seed": args.seed, "mode": "health",
                "roster_date": str(args.today), "entries": entries}
    (args.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n",
                                           encoding="utf-8")
    args.roster.write_text(demo_roster_csv(args.today), encoding="utf-8")
    print(f"{len(entries)} scenes in {args.out}, roster for {args.today} in {args.roster}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

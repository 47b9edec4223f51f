"""A generated set of presentations at the kiosk camera, with ground truth: made from a scenario and a seed,
so only this script is kept in the repository, never the videos.

Each presentation is 640x480 grey frames at 30 fps: a phone screen or a printed card carrying a QR code moves
into view from an edge and stops (its motion blur falling with its speed), then is held with a little tremor.
Scenarios add what a kiosk camera sees: autofocus hunting after the stop, automatic exposure swinging back from
a blown-out bright screen, a thumb over a corner of the code until the grip changes, a second person's phone
further back in view, a dim corner where the sensor's gain is turned up (low contrast, heavy noise).
Ground truth: the texts (the presented code first), and `full_view`, the first frame in
which the whole code (with a module of margin) is inside the picture. The first legible frame (what any
single-frame decoding can read) is measured by `bench/video.py`, not assumed here.

    .venv/bin/python bench/video_set.py --out DIR [--seeds 8]   # writes DIR/*.avi (lossless FFV1) and manifest.json
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import segno
from PIL import Image

FPS = 30
SIZE = (640, 480)
SCENARIOS = ("enter_stop", "autofocus", "exposure", "thumb", "second_phone", "dim")
FAMILY = ("NGUYEN", "TRAN", "LE", "PHAM", "HOANG", "VO", "DANG", "BUI")
GIVEN = ("VAN THU", "THI MAI", "MINH KHOA", "THANH HA", "QUOC BAO", "NGOC LAN")


@dataclass
class Presentation:
    name: str
    scenario: str
    seed: int
    texts: list[str]  # the presented code first; a second phone's code after it
    full_view: int
    frames: list[np.ndarray] = field(repr=False, default_factory=list)

    def truth(self) -> dict:
        return {"name": self.name, "scenario": self.scenario, "seed": self.seed, "texts": self.texts,
                "full_view": self.full_view, "frames": len(self.frames)}


def payload(rng: np.random.Generator) -> str:
    """A personal QR in the national format (ID|NAME|birth date|declared by|QID|proxy<gender<insurance<phone)."""
    return (f"0{rng.integers(10**10, 10**11)}|{FAMILY[rng.integers(len(FAMILY))]} {GIVEN[rng.integers(len(GIVEN))]}"
            f"|19{rng.integers(40, 99)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}|0"
            f"|163{rng.integers(10**14, 10**15)}|<{rng.integers(1, 3)}<<")


def code_image(text: str, module: int) -> np.ndarray:
    buf = io.BytesIO()
    segno.make_qr(text, error="m").save(buf, kind="png", scale=module, border=0)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")).astype(np.float32)


def carrier(text: str, phone: bool, module: int) -> tuple[np.ndarray, np.ndarray]:
    """The phone (black bezel, white screen) or card with the code, and the code's corners on it."""
    code = code_image(text, module)
    side = code.shape[0]
    quiet = 4 * module
    if phone:
        w, h = side + 2 * quiet + 2 * 3 * module, int((side + 2 * quiet) * 1.9)
        body = np.full((h, w), 20.0, np.float32)  # bezel
        body[3 * module:h - 3 * module, 3 * module:w - 3 * module] = 235.0  # screen
        x, y = (w - side) // 2, int(h * 0.28)
    else:
        w, h = side + 2 * quiet + 6 * module, side + 2 * quiet + 14 * module
        body = np.full((h, w), 225.0, np.float32)  # paper card
        x, y = (w - side) // 2, quiet + 2 * module
    body[y:y + side, x:x + side] = code * (215.0 / 255.0) + 20.0
    corners = np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side]], np.float32)
    return body, corners


def background(rng: np.random.Generator) -> np.ndarray:
    w, h = SIZE
    coarse = rng.uniform(60, 170, (6, 8)).astype(np.float32)
    bg = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):  # counter edges, shelves, a poster
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 40))
        cv2.rectangle(bg, (x0, y0), (x0 + int(rng.integers(40, 200)), y0 + int(rng.integers(20, 120))),
                      float(rng.uniform(40, 200)), -1)
    return cv2.GaussianBlur(bg, (0, 0), 1.5)


def placed(body: np.ndarray, corners: np.ndarray, centre: tuple[float, float], scale: float, angle: float,
           tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """The homography that puts the carrier at `centre` (frame px), and where the code's corners land."""
    h, w = body.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32) - np.array([w / 2, h / 2], np.float32)
    shrink = np.array([[1 - tilt, 1], [1 + tilt, 1], [1 + tilt, 1], [1 - tilt, 1]], np.float32)  # a slight turn about y
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rot = np.array([[c, -s], [s, c]], np.float32)
    dst = (src * shrink * scale) @ rot.T + np.array(centre, np.float32)
    homography = cv2.getPerspectiveTransform(src + np.array([w / 2, h / 2], np.float32), dst)
    return homography, cv2.perspectiveTransform(corners[None], homography)[0]


def motion_kernel(dx: float, dy: float) -> np.ndarray | None:
    """A line kernel for a displacement of (dx, dy) px during the exposure."""
    length = float(np.hypot(dx, dy))
    if length < 1.0:
        return None
    n = int(np.ceil(length)) | 1
    kernel = np.zeros((n, n), np.float32)
    c = n // 2
    cv2.line(kernel, (int(round(c - dx / 2)), int(round(c - dy / 2))), (int(round(c + dx / 2)), int(round(c + dy / 2))),
             1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


def render(scenario: str, seed: int, seconds: float = 3.5) -> Presentation:
    rng = np.random.default_rng(seed * 7919 + SCENARIOS.index(scenario))
    w, h = SIZE
    text = payload(rng)
    phone = bool(rng.integers(0, 2)) or scenario == "exposure"  # exposure swings come from bright screens
    module = int(rng.integers(2, 5))  # px per module on the carrier: the code is 50-180 px across at rest
    body, corners = carrier(text, phone, module)
    scale = float(rng.uniform(0.55, 0.8)) * (h * 0.9) / body.shape[0]  # at rest: code about 110-200 px
    rest = (w / 2 + float(rng.uniform(-80, 80)), h / 2 + float(rng.uniform(-30, 30)))
    edge = int(rng.integers(0, 3))  # from below, the left or the right
    start = [(rest[0], h + body.shape[0] * scale * 0.6), (-w * 0.45, rest[1]), (w * 1.45, rest[1])][edge]
    move = int(rng.integers(12, 24))  # frames to come to rest (0.4-0.8 s), easing out
    angle0, angle1 = float(rng.uniform(-25, 25)), float(rng.uniform(-12, 12))
    tilt = float(rng.uniform(0, 0.15))
    exposure_share = 0.6  # of the frame time the shutter is open: blur length = speed x 0.6 frames
    # Shop light: contrast and sensor noise vary between kiosks (noise sigma 3 to 14 grey levels).
    contrast = float(rng.uniform(0.45, 1.0))
    noise = float(rng.uniform(3.0, 14.0))
    if scenario == "dim":  # a dark corner at night: the sensor's gain turned up
        contrast, noise = float(rng.uniform(0.2, 0.3)), float(rng.uniform(28.0, 38.0))
    bg = background(rng)
    texts = [text]
    behind = None
    if scenario == "second_phone":  # smaller, further back, a little out of focus
        other = payload(rng)
        texts.append(other)
        b_body, b_corners = carrier(other, True, 3)
        b_h, _ = placed(b_body, b_corners, (w * (0.15 if rest[0] > w / 2 else 0.85), h * 0.3), 0.45,
                        float(rng.uniform(-10, 10)), 0.05)
        layer = cv2.warpPerspective(b_body, b_h, SIZE, flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones_like(b_body), b_h, SIZE, flags=cv2.INTER_LINEAR)
        behind = (cv2.GaussianBlur(layer, (0, 0), 0.8), mask)
    frames: list[np.ndarray] = []
    full_view = -1
    prev = None
    thumb_until = int(rng.integers(move + 15, move + 60))
    for i in range(int(seconds * FPS)):
        t = min(1.0, i / move)
        ease = 1 - (1 - t) ** 3
        centre = (start[0] + (rest[0] - start[0]) * ease, start[1] + (rest[1] - start[1]) * ease)
        if i >= move:  # a hand holding still is never quite still
            centre = (centre[0] + float(rng.normal(0, 0.4)), centre[1] + float(rng.normal(0, 0.4)))
        homography, quad = placed(body, corners, centre, scale, angle0 + (angle1 - angle0) * ease, tilt)
        layer = cv2.warpPerspective(body, homography, SIZE, flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones_like(body), homography, SIZE, flags=cv2.INTER_LINEAR)
        if prev is not None:
            kernel = motion_kernel((centre[0] - prev[0]) * exposure_share, (centre[1] - prev[1]) * exposure_share)
            if kernel is not None:
                layer, mask = cv2.filter2D(layer, -1, kernel), cv2.filter2D(mask, -1, kernel)
        prev = centre
        gain = 1.0
        if scenario == "exposure":  # the meter sees a dark room, then the bright screen: 2.2x, settling
            gain = 1.0 + 1.2 * np.exp(-max(0, i - move // 2) / 9.0)
        image = bg.copy()
        if behind is not None:
            image = image * (1 - behind[1]) + behind[0] * behind[1]
        image = image * (1 - mask) + (layer * contrast + 128 * (1 - contrast)) * gain * mask
        if scenario == "thumb" and i < thumb_until:  # over the bottom-right corner, no finder pattern there
            tip = quad[2] + (quad[2] - quad.mean(axis=0)) * 0.05
            axes = (int(0.3 * scale * body.shape[1]), int(0.16 * scale * body.shape[1]))
            along = float(np.degrees(np.arctan2(*(quad[2] - quad[0])[::-1])))  # the code's diagonal
            cv2.ellipse(image, (int(tip[0]), int(tip[1])), axes, along, 0, 360, 165.0, -1, cv2.LINE_AA)
        if scenario == "autofocus" and i >= move:  # the lens hunts after the stop, then settles
            k = i - move
            sigma = 3.5 * abs(np.cos(k / 5.0)) * np.exp(-k / 25.0)
            if sigma > 0.3:
                image = cv2.GaussianBlur(image, (0, 0), sigma)
        image += rng.normal(0, noise, image.shape).astype(np.float32)  # sensor noise
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
        margin = module * scale
        inside = (quad.min(axis=0) >= margin).all() and (quad.max(axis=0) <= np.array(SIZE, np.float32) - margin).all()
        if full_view < 0 and inside:
            full_view = i
    return Presentation(f"{scenario}_{seed:02d}", scenario, seed, texts, full_view, frames)


def presentations(seeds: int = 8, seconds: float = 3.5, scenarios: tuple[str, ...] = SCENARIOS) -> list[Presentation]:
    return [render(s, seed, seconds) for seed in range(seeds) for s in scenarios]


def write(out: Path, seeds: int, scenarios: tuple[str, ...] = SCENARIOS) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for p in presentations(seeds, scenarios=scenarios):
        writer = cv2.VideoWriter(str(out / f"{p.name}.avi"), cv2.VideoWriter.fourcc(*"FFV1"), FPS, SIZE, isColor=False)
        for f in p.frames:
            writer.write(f)
        writer.release()
        manifest.append({"file": f"{p.name}.avi", **p.truth()})
    (out / "manifest.json").write_text(json.dumps({"fps": FPS, "entries": manifest}, indent=1), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write the generated presentation videos and their ground truth")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args(argv)
    entries = write(args.out, args.seeds)
    print(f"{len(entries)} presentations written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

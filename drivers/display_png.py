"""Display port that writes each screen to a folder as `NNNNN-<verdict or idle>.png` (demo, replays, CI).

A write error (disk full, folder removed) raises from `show`; Feedback counts and logs it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.errors import DeviceError

if TYPE_CHECKING:
    from PIL import Image

    from kiosk.config import Config
    from kiosk.ports import Display


class PngDisplay:
    mode = "RGB"

    def __init__(self, folder: str | Path, size: tuple[int, int]):
        self.folder = Path(folder)
        self.size = size
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(f"cannot create the screen folder {self.folder} ({exc.strerror}): "
                              "set display.path to a writable folder") from None
        # Continue numbering after screens already there, so nothing is overwritten.
        numbers = [int(m.group(1)) for p in self.folder.glob("*.png") if (m := re.match(r"(\d+)-", p.name))]
        self.count = max(numbers, default=0)

    def show(self, image: Image.Image) -> None:
        label = re.sub(r"[^a-z0-9_]", "", str(image.info.get("view", "screen")).lower()) or "screen"
        path = self.folder / f"{self.count + 1:05d}-{label}.png"
        image.convert("RGB").save(path)
        self.count += 1

    def close(self) -> None:
        pass


def create(cfg: Config) -> Display:
    return PngDisplay(cfg.display.path, (cfg.display.width, cfg.display.height))

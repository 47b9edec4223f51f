"""The site's runtime state: what the `config` command and the button change while the kiosk runs.

The loaded configuration is immutable; it gives only the starting values. The app thread is the only writer
(downlink commands and button presses both run there); a change replaces the whole snapshot at once, so a
reader on another thread (telemetry) sees either the old or the new settings, never half of each.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kiosk.errors import DataError
from kiosk.model import DIRECTIONS, MODES

if TYPE_CHECKING:
    from kiosk.config import Config

CHOICES = {"mode": MODES, "direction": DIRECTIONS}


@dataclass(frozen=True)
class SiteSettings:
    mode: str
    direction: str


class SiteState:
    def __init__(self, mode: str, direction: str):
        self._now = SiteSettings(mode, direction)
        self._check(self._now)

    @classmethod
    def from_config(cls, cfg: Config) -> SiteState:
        return cls(cfg.site.mode, cfg.site.direction)

    @property
    def now(self) -> SiteSettings:
        return self._now

    @property
    def mode(self) -> str:
        return self._now.mode

    @property
    def direction(self) -> str:
        return self._now.direction

    def update(self, **changes: str) -> SiteSettings:
        """Change some settings (`mode`, `direction`); DataError listing every problem, nothing changed."""
        problems = [f"unknown setting {k!r} (allowed: {', '.join(CHOICES)})" for k in changes if k not in CHOICES]
        if problems:
            raise DataError("site settings rejected", problems)
        new = replace(self._now, **changes)
        self._check(new)
        self._now = new
        return new

    def toggle_direction(self) -> str:
        """The other direction (the button): in -> out -> in."""
        following = DIRECTIONS[(DIRECTIONS.index(self.direction) + 1) % len(DIRECTIONS)]
        return self.update(direction=following).direction

    @staticmethod
    def _check(settings: SiteSettings) -> None:
        problems = [f"{name} must be one of {', '.join(choices)}" for name, choices in CHOICES.items()
                    if getattr(settings, name) not in choices]
        if problems:
            raise DataError("site settings rejected", problems)

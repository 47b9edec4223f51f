"""Values that flow through the pipeline. Plain data, no I/O.

`Person` holds raw personal data parsed from a code; it never leaves the process unmasked
(see `kiosk.masking`). `Decision` is what the rest of the product sees: masked, with a stable reason code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

# Kinds of code (DESIGN section 5).
PERSONAL_QR = "personal_qr"
CCCD = "cccd"
DCC = "dcc"
BADGE = "badge"
UNKNOWN = "unknown"
KINDS = (PERSONAL_QR, CCCD, DCC, BADGE, UNKNOWN)

# Site modes and check-in directions (DESIGN section 2): the configuration, the `config` command and the
# button all take their choices from here.
MODES = ("trace", "health", "staff")
DIRECTIONS = ("in", "out")

# Verdicts.
GREEN = "green"
BLACK = "black"
INVALID = "invalid"
VERDICTS = (GREEN, BLACK, INVALID)


@dataclass(frozen=True)
class Dose:
    day: date
    product: str | None = None


@dataclass(frozen=True)
class TestResult:
    taken: date
    positive: bool | None  # None: the certificate's result is unreadable, neither negative nor positive


@dataclass(frozen=True)
class HealthRecord:
    """What is known about a person's health status, from a roster entry or a signed certificate."""

    doses: tuple[Dose, ...] = ()
    recovered: date | None = None
    tests: tuple[TestResult, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.doses and self.recovered is None and not self.tests


@dataclass(frozen=True)
class Person:
    """Identity parsed from a code. Raw data: mask before showing, storing or publishing.

    `birth` is ISO-8601 at the precision the code gives: `YYYY-MM-DD`, `YYYY-MM` or `YYYY`
    (a personal QR with masked day/month gives `YYYY`).
    `gender` is `male`, `female` or `unknown`.
    `extra` holds kind-specific fields (phone, insurance, proxy_qid, old_id, address, issued, ...).
    `health` is set when the code itself carries verified health data (a signed certificate).
    """

    id_number: str | None = None
    qid: str | None = None
    name: str | None = None
    birth: str | None = None
    gender: str | None = None
    declared_by_proxy: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    health: HealthRecord | None = None

    @property
    def id_masked(self) -> bool:
        return bool(self.id_number and "*" in self.id_number)

    def identity_key(self) -> str | None:
        """A stable key for one person: the full ID number, else the QID. None if neither is usable.

        A signed certificate names no ID number: its holder is the transliterated name with the birth date,
        the EU DCC's own holder identity, the same across all of that holder's certificates."""
        if self.id_number and not self.id_masked:
            return "id:" + self.id_number
        if self.qid:
            return "qid:" + self.qid
        if self.health is not None and self.name and self.birth:
            return f"holder:{self.name}|{self.birth}"
        return None


@dataclass(frozen=True)
class ParsedCode:
    """Result of classifying and parsing one payload. `error` is a reason code when the code is unusable."""

    kind: str
    person: Person | None = None
    error: str | None = None
    # Which check failed (a field name, never its value): for logs and tests, not for the screen.
    detail: str | None = None
    # Fields that were odd but not needed by the decision, read leniently (`v[0].ma:empty`; never a value).
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


class Staleness(NamedTuple):
    """Which sources are too old to decide on now (each goes to site.fail_policy with its reason)."""

    roster: bool = False
    trust: bool = False
    revocation: bool = False

    def alarms(self) -> list[str]:
        return [name for name, stale in (("roster_stale", self.roster), ("trust_stale", self.trust),
                                          ("revocation_stale", self.revocation)) if stale]


@dataclass
class Decision:
    """The outcome for one scan, already masked. JSON form is the CLI and journal contract."""

    kind: str | None
    verdict: str
    reason: str
    subject: dict[str, Any] = field(default_factory=dict)
    subject_ref: str | None = None
    latency_ms: float = 0.0
    at: datetime | None = None
    clock_synced: bool = True
    direction: str = "in"
    mode: str = "trace"
    override: bool = False
    # Masked subject for the screen (may differ from the published one, see spec 6).
    screen_subject: dict[str, Any] = field(default_factory=dict)
    # What the code had that was odd but ignored (see ParsedCode.warnings); never personal data.
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "verdict": self.verdict,
            "reason": self.reason,
            "subject": self.subject,
            "subject_ref": self.subject_ref,
            "latency_ms": round(self.latency_ms, 3),
            "at": self.at.isoformat() if self.at else None,
            "clock_synced": self.clock_synced,
            "direction": self.direction,
            "mode": self.mode,
            "warnings": list(self.warnings),
        }

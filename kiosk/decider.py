"""The decision core: classify and parse a payload, then apply the site's mode (DESIGN section 2).

- trace: every well-formed personal QR, CCCD or badge is green `checked_in`; a DCC must verify.
- health: green/black by the health rule. The health data comes from the roster (personal QR, CCCD,
  badge) or from the certificate itself (DCC): a personal QR alone is never green.
- staff: black `not_on_staff_list` unless the roster marks the person as staff; then green
  `on_staff_list`, or the health rule as well with `site.staff_requires_health`.
A stale roster, trust list or revocation list, or an unsynchronised clock where a date rule is needed, gives
`site.fail_policy` with the reason; a revoked certificate is `invalid`/`revoked` whatever is stale. Mode and
direction come from the site's runtime state on every call (the `config` command and the button change them).
`decide` never raises.
"""
from __future__ import annotations

import logging
import traceback
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from kiosk import codes, health, masking
from kiosk.identity import subject_ref
from kiosk.model import BLACK, DCC, GREEN, INVALID, UNKNOWN, Decision, HealthRecord, ParsedCode
from kiosk.site import SiteState

if TYPE_CHECKING:
    from kiosk.config import Config
    from kiosk.ports import DccParser, Roster, SubjectKeys

log = logging.getLogger(__name__)

# Verification failures a wrong clock can cause: under an unsynchronised clock the fail policy applies.
CLOCK_ERRORS = ("expired", "not_yet_valid")


class Decider:
    def __init__(self, cfg: Config, roster: Roster | None, keys: SubjectKeys, dcc: DccParser | None = None,
                 site: SiteState | None = None):
        self.cfg = cfg
        self.roster = roster
        self.keys = keys
        self.dcc = dcc
        self.site = site if site is not None else SiteState.from_config(cfg)

    def decide(self, text: str, now: datetime, clock_synced: bool, *, roster_stale: bool = False,
               trust_stale: bool = False, revocation_stale: bool = False) -> Decision:
        try:
            return self._decide(text, self._site_time(now), clock_synced, roster_stale, trust_stale,
                                revocation_stale)
        except Exception as exc:  # never take the kiosk down; never log the payload
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("decision failed with %s at %s:%s", type(exc).__name__, frame.filename, frame.lineno)
            settings = self.site.now
            return Decision(kind=UNKNOWN, verdict=INVALID, reason="internal_error", at=now,
                            clock_synced=clock_synced, direction=settings.direction, mode=settings.mode)

    # ------------------------------------------------------------------ internals
    def _decide(self, text: str, now: datetime, clock_synced: bool, roster_stale: bool,
                trust_stale: bool, revocation_stale: bool) -> Decision:
        parsed = codes.classify(text, max_length=self.cfg.codes.max_length, badge_prefix=self.cfg.codes.badge_prefix,
                                dcc=self.dcc, now=now)
        if parsed.error is not None:
            if parsed.kind == DCC and parsed.error in CLOCK_ERRORS and not clock_synced:
                return self._decision(parsed, *self._fail("clock_unsynced"), now, clock_synced)
            return self._decision(parsed, INVALID, parsed.error, now, clock_synced)
        if parsed.kind == DCC and (trust_stale or revocation_stale):
            reason = "trust_stale" if trust_stale else "revocation_stale"
            return self._decision(parsed, *self._fail(reason), now, clock_synced)
        verdict, reason = self._rule(parsed, now, clock_synced, roster_stale)
        return self._decision(parsed, verdict, reason, now, clock_synced)

    def _rule(self, parsed: ParsedCode, now: datetime, clock_synced: bool, roster_stale: bool) -> tuple[str, str]:
        mode = self.site.mode
        if mode == "trace":
            return GREEN, "checked_in"
        signed = parsed.person.health if parsed.kind == DCC and parsed.person else None
        if parsed.kind == DCC and mode == "health":
            return self._health(signed, now, clock_synced)
        if self.roster is None:
            return BLACK, "no_roster"
        if roster_stale:
            return self._fail("roster_stale")
        entry = self.roster.lookup(parsed.person) if parsed.person else None
        if mode == "health":
            return self._health(entry.health if entry else None, now, clock_synced)
        if entry is None or entry.staff is not True:
            return BLACK, "not_on_staff_list"
        if not self.cfg.site.staff_requires_health:
            return GREEN, "on_staff_list"
        record = signed if parsed.kind == DCC else entry.health
        return self._health(record, now, clock_synced)

    def _health(self, record: HealthRecord | None, now: datetime, clock_synced: bool) -> tuple[str, str]:
        if record is not None and not record.empty and not clock_synced:
            return self._fail("clock_unsynced")  # a date rule on an untrusted date
        return health.evaluate(record, now, self.cfg.health)

    def _fail(self, reason: str) -> tuple[str, str]:
        return self.cfg.site.fail_policy, reason

    def _decision(self, parsed: ParsedCode, verdict: str, reason: str, now: datetime, clock_synced: bool) -> Decision:
        settings = self.site.now
        person = parsed.person if parsed.ok else None
        authorised = self.cfg.site.authorised_site
        return Decision(
            kind=parsed.kind, verdict=verdict, reason=reason,
            subject=masking.subject(parsed.kind, person, authorised=authorised, for_screen=False),
            screen_subject=masking.subject(parsed.kind, person, authorised=authorised, for_screen=True),
            subject_ref=subject_ref(self.keys.key_at(now), person), at=now, clock_synced=clock_synced,
            direction=settings.direction, mode=settings.mode, warnings=list(parsed.warnings))

    def _site_time(self, now: datetime) -> datetime:
        """`now` in the site's time zone: rule dates are the site's local dates. Naive means site-local."""
        zone = ZoneInfo(self.cfg.site.timezone)  # ZoneInfo caches its instances
        return now.astimezone(zone) if now.tzinfo else now.replace(tzinfo=zone)

"""Downlink commands: one plain function per command, of (payload, dependencies), in one table.

The uplink's envelope (`kiosk.mqtt.downlink.execute`) has already checked the size, the JSON, the
correlation id, and that the command's `version` is newer than the last accepted one of its kind and its
`issued` time recent (replays are refused there, for every command). A handler validates the whole payload before it changes anything, raises DataError to refuse
it (nothing changed; the reason goes back in the answer) and returns the result to answer with. Handlers run
on the app thread, the only thread that touches the trust and revocation stores, the site's key ring and the
site state. The roster is the exception, made for it: its changes run on `deps.background` (the app's roster
worker: a 100,000-row replacement must not stop scanning), each one SQLite transaction that the pipeline's
lookups see once committed; the handler returns the worker's Future and the answer goes out when it is done.

Adding a command: write `def name(payload, deps) -> dict` here and add it to COMMAND_HANDLERS; it is then
heard on `{prefix}/cmd/{name}` and `kiosk/{site}/all/cmd/{name}` and answered on `.../cmd/{name}/result`.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from kiosk import __version__
from kiosk.errors import DataError
from kiosk.identity import parse_keys
from kiosk.mqtt.downlink import ENVELOPE_KEYS, Command
from kiosk.ports import Clock, RevocationStore, Roster, SiteKeyRing, TrustStore
from kiosk.site import SiteState
from kiosk.stores.revocation import parse_batches
from kiosk.stores.trust import parse_json
from kiosk.timeparse import iso_utc

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Result = dict[str, Any]


@dataclass(frozen=True)
class Dependencies:
    """What the commands may read and change."""

    roster: Roster
    trust: TrustStore
    revocations: RevocationStore
    keys: SiteKeyRing                                 # the site's subject_ref keys
    site: SiteState
    clock: Clock
    link_state: Callable[[], Mapping[str, Any]]       # the uplink's connection state (`ping`)
    wall: Callable[[], float] = field(default=time.time)
    # Where slow work runs: the app gives its roster worker (kiosk.worker.Worker.submit); by default, right here.
    background: Callable[[Callable[[], Result]], Result | Future[Result]] = field(default=lambda job: job())


def roster(payload: Payload, deps: Dependencies) -> Result | Future[Result]:
    """`op`: `replace` (default) with `entries`, optional `version` and `force`; `add`/`upsert` with `entries`;
    `remove` with `keys`. The roster's own rules (well-formed IDs, versions only forward, `force` to remove most
    of it) are the store's: `Roster.apply`, run on the roster worker (a large command in a child process)."""
    return deps.background(lambda: deps.roster.apply_isolated(payload))


def trust(payload: Payload, deps: Dependencies) -> Result:
    """Signers (`entries`), revocation batches (`revocations`), the site's subject_ref keys (`site_keys`), or
    several; `replace` applies to each list given (keys are always added). Everything is validated before
    anything changes; a key is never logged nor answered (ids only)."""
    if not {"entries", "revocations", "site_keys"} & set(payload):
        raise DataError("trust: give 'entries' (signers: a list of {kid, certificate}), 'revocations' "
                        "(revocation batches) and/or 'site_keys' (a list of {id, key, since})")
    replace = payload.get("replace", False)
    if not isinstance(replace, bool):
        raise DataError("trust: 'replace' must be true or false")
    signers = parse_json(payload["entries"], "trust update rejected") if "entries" in payload else None
    batches = parse_batches(payload["revocations"], "trust revocations rejected") \
        if "revocations" in payload else None
    keys = parse_keys(payload["site_keys"]) if "site_keys" in payload else None
    result: Result = {}
    if signers is not None:
        deps.trust.store(signers, replace=replace)
        result.update(imported=len(signers), count=deps.trust.count)
    if batches is not None:
        deps.revocations.store(batches, replace=replace)
        result["revocations"] = deps.revocations.summary()
    if keys is not None:
        deps.keys.install(keys, deps.clock.now())
        result["site_keys"] = deps.keys.describe(deps.clock.now())
        log.info("site keys installed by downlink command: %s", ", ".join(k.id for k in keys))
    return result


def config(payload: Payload, deps: Dependencies) -> Result:
    """The site's runtime settings (`mode`, `direction`); every bad key and value named, nothing changed."""
    changes = {k: v for k, v in payload.items() if k not in ENVELOPE_KEYS}
    settings = deps.site.update(**changes)
    for key, value in changes.items():
        log.info("site.%s set to %s by downlink command", key, value)
    return {"direction": settings.direction, "mode": settings.mode}


def ping(payload: Payload, deps: Dependencies) -> Result:
    """Liveness, version and the uplink's connection state."""
    return {"pong": True, "version": __version__, "ts": iso_utc(deps.wall()), **deps.link_state()}


COMMAND_HANDLERS: dict[str, Command[Dependencies]] = {
    "roster": roster,
    "trust": trust,
    "config": config,
    "ping": ping,
}

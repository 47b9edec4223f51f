"""The venue console's web pages (Starlette, Jinja2 server-rendered, htmx for partial updates and the live feed).

Pages (DESIGN section 8): Today, Live, Per day, Kiosks, Staff list, Trace, Users, Audit log, Offline import.
Every page takes one site the user was granted; every query is bounded (see `kiosk.fleet.events`). Text from
check-ins is rendered inert: Jinja2 escapes markup and `kiosk.inert` every control and bidi character; CSV
cells never start a formula. Forms carry a CSRF token. Pages work without JavaScript except the live
stream and the charts, which add to them.
"""
from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from kiosk import __version__, inert
from kiosk.config import Config
from kiosk.errors import DataError, KioskError
from kiosk.fleet.accounts import ROLES, Accounts, User
from kiosk.fleet.events import Counts, Cursor, EventStore, Filters, mask_subject, now_ms, safe_id, stored_secret
from kiosk.fleet.live import Hub
from kiosk.fleet.security import CSRF_FIELD, BodyLimit, LoginLimiter, SecurityHeaders, checked_form, csrf_token
from kiosk.fleet.staff import StaffLists
from kiosk.fleet.words import LANGUAGES, word
from kiosk.identity import KeyRing
from kiosk.model import DIRECTIONS, VERDICTS, Person

HERE = Path(__file__).parent
PAGE_ROWS = 50
MAX_OTHERS = 200              # people listed per visit on the Trace page and in its CSV
LIVE_CATCH_UP = 100           # rows sent after a reconnect before a full snapshot is cheaper
SSE_PING_SECONDS = 15.0
TRACE_NUMBER = re.compile(r"[A-Za-z0-9]{6,64}")
REF_FIELD = re.compile(r"[0-9a-f]{32}")
CSV_COLUMNS = ("ts", "utc", "site", "device", "seq", "direction", "kind", "verdict", "reason", "name", "id", "birth",
               "gender", "subject_ref", "clock_synced", "source")


@dataclass
class Console:
    """What the pages need: configuration, the stores, the live hub and the staff lists."""

    cfg: Config
    store: EventStore
    accounts: Accounts
    hub: Hub
    staff: StaffLists
    keys: KeyRing                             # the sites' subject_ref keys (every key kept: rotations)
    bundles: Any = None                       # kiosk.fleet.bundle.BundleImporter
    online: Callable[[], bool] = lambda: False
    zone: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.zone = ZoneInfo(self.cfg.console.timezone)


# ---------------------------------------------------------------------- templates
def _finalize(value: Any) -> Any:
    """Every `{{ value }}` passes here: markup the templates built stays, everything else is made inert text."""
    return value if isinstance(value, Markup) else inert.text(value)


def make_templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      finalize=_finalize, trim_blocks=True, lstrip_blocks=True)
    return env


@dataclass
class View:
    request: Request
    user: User | None
    lang: str
    site: str | None = None
    site_info: dict[str, Any] | None = None

    def t(self, key: str, **kw: Any) -> str:
        text = word(key, self.lang)
        return text.format(**kw) if kw else text


class Pages:
    def __init__(self, console: Console):
        self.c = console
        self.env = make_templates()
        cfg = console.cfg.console
        self.limiter = LoginLimiter(cfg.login_attempts, cfg.login_window_seconds)

    # -------------------------------------------------------------- helpers
    def render(self, view: View, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        sites = view.user.sites() if view.user else []
        html = self.env.get_template(template).render(
            v=view, t=view.t, user=view.user, site=view.site, site_info=view.site_info, sites=sites,
            csrf=csrf_token(view.request), csrf_field=CSRF_FIELD, version=__version__,
            clock=self.clock, when=self.when, **context)
        return HTMLResponse(html, status_code=status)

    def clock(self, ms: int | None) -> str:
        return datetime.fromtimestamp(ms / 1000, self.c.zone).strftime("%H:%M:%S") if ms else ""

    def when(self, ms: int | None) -> str:
        return datetime.fromtimestamp(ms / 1000, self.c.zone).strftime("%Y-%m-%d %H:%M:%S") if ms else ""

    def language(self, request: Request, user: User | None) -> str:
        lang = request.session.get("lang") or (user.language if user else None) or self.c.cfg.console.language
        return lang if lang in LANGUAGES else "vi"

    def who(self, request: Request) -> User | None:
        uid = request.session.get("uid")
        started = request.session.get("at")
        if not isinstance(uid, int) or not isinstance(started, (int, float)):
            return None
        if time.time() - started > self.c.cfg.console.session_hours * 3600:
            request.session.clear()
            return None
        return self.c.accounts.user(uid)

    def view(self, request: Request, action: str = "view", *, site_required: bool = True) -> View:
        """The signed-in user and the site asked for, if they may `action` there; raises a redirect or 403."""
        user = self.who(request)
        if user is None:
            raise _Redirect("/login")
        lang = self.language(request, user)
        view = View(request, user, lang)
        if not site_required:
            return view
        site = request.query_params.get("site") or request.path_params.get("site")
        allowed = user.sites(action)
        if site is None:
            if not allowed:
                raise _Refused(view, "no_sites" if not user.sites() else "not_allowed")
            site = allowed[0]
        if not user.can(action, site):
            raise _Refused(view, "not_allowed")
        view.site, view.site_info = site, self.c.store.site(site) or {"id": site, "authorised": False,
                                                                       "capacity": None, "name": ""}
        return view

    def full_fields(self, view: View) -> bool:
        return bool(view.user and view.site and view.site_info and view.site_info.get("authorised")
                    and view.user.can("full_fields", view.site))

    def shown(self, view: View, row: dict[str, Any], *, masked: bool = False) -> dict[str, Any]:
        """A row as this user may see it: masked fields unless full fields are allowed here."""
        subject = row["subject"] if (self.full_fields(view) and not masked) else mask_subject(row["subject"],
                                                                                             row.get("kind"))
        return {**row, "subject": subject, "cursor": str(Cursor(row["at_ms"], row["id"]))}

    def today_start(self) -> datetime:
        return datetime.now(self.c.zone).replace(hour=0, minute=0, second=0, microsecond=0)

    # -------------------------------------------------------------- login
    async def login_page(self, request: Request) -> Response:
        view = View(request, None, self.language(request, None))
        return self.render(view, "login.html")

    async def login(self, request: Request) -> Response:
        form = await checked_form(request)
        name, password = str(form.get("name") or "")[:100], str(form.get("password") or "")
        client = request.client.host if request.client else "?"
        keys = (f"user:{name.lower()}", f"addr:{client}")
        view = View(request, None, self.language(request, None))
        if not self.limiter.allowed(*keys):
            return self.render(view, "login.html", status=429, error="login_limited", name=name)
        user = self.c.accounts.verify(name, password)
        if user is None:
            self.limiter.failed(*keys)
            return self.render(view, "login.html", status=401, error="login_failed", name=name)
        self.limiter.succeeded(*keys)
        lang = request.session.get("lang")
        request.session.clear()                       # a new session: nothing from before the login survives
        request.session.update({"uid": user.id, "at": time.time()})
        if lang:
            request.session["lang"] = lang
        csrf_token(request)
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        await checked_form(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def switch_language(self, request: Request) -> Response:
        form = await checked_form(request)
        lang = form.get("lang")
        if lang in LANGUAGES:
            request.session["lang"] = lang
            user = self.who(request)
            if user:
                self.c.accounts.set_language(user.id, str(lang))
                self.c.accounts.audit(user.name, "language", None, {"lang": lang})
        back = str(form.get("back") or "/")
        return RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/", status_code=303)

    async def home(self, request: Request) -> Response:
        view = self.view(request)
        return RedirectResponse(f"/today?site={view.site}", status_code=303)

    # -------------------------------------------------------------- today and days
    def _today(self, view: View) -> dict[str, Any]:
        assert view.site is not None
        counts: Counts = self.c.store.counts(view.site, self.today_start(), 1, self.c.zone)
        total = next(iter(counts.days.values()), {"in": 0, "out": 0, "green": 0, "black": 0, "invalid": 0})
        capacity = (view.site_info or {}).get("capacity") or self.c.cfg.console.capacity
        level = None
        if capacity:
            share = counts.occupancy * 100 / capacity
            level = "over_capacity" if share >= 100 else (
                "near_capacity" if share >= self.c.cfg.console.capacity_warning_percent else None)
        kiosks = self.kiosk_rows(view)
        alarms = [(k["device"], a) for k in kiosks for a in k["alarms"]]
        start = self.today_start()
        hours = [start + timedelta(hours=h) for h in range(24)]
        chart = {"labels": [f"{h.hour:02d}" for h in hours],
                 "series": [{"label": view.t("in"), "data": [counts.hours.get(h, {}).get("in", 0) for h in hours]},
                            {"label": view.t("out"), "data": [counts.hours.get(h, {}).get("out", 0) for h in hours]}]}
        return {"total": total, "occupancy": counts.occupancy, "capacity": capacity, "level": level,
                "denied": total["black"] + total["invalid"], "kiosks": kiosks, "alarms": alarms, "chart": chart}

    async def today(self, request: Request) -> Response:
        view = self.view(request)
        data = self._today(view)
        if request.query_params.get("part") == "numbers":
            return self.render(view, "_today_numbers.html", **data)
        return self.render(view, "today.html", **data)

    async def days(self, request: Request) -> Response:
        view = self.view(request)
        assert view.site is not None
        n = _int(request.query_params.get("days"), 14, 1, 92)
        start = self.today_start() - timedelta(days=n - 1)
        counts = self.c.store.counts(view.site, start, n, self.c.zone)
        dates = [(start + timedelta(days=i)).date().isoformat() for i in range(n)]
        empty = {"in": 0, "out": 0, "green": 0, "black": 0, "invalid": 0}
        rows = [(d, counts.days.get(d, empty)) for d in dates]
        chart = {"labels": [d[5:] for d in dates],
                 "series": [{"label": view.t(k), "data": [r[k] for _, r in rows]} for k in ("in", "out")]}
        return self.render(view, "days.html", rows=list(reversed(rows)), days=n, chart=chart)

    # -------------------------------------------------------------- live feed
    def filters(self, request: Request) -> Filters:
        q = request.query_params
        device = q.get("device")
        return Filters(device=device if safe_id(device) else None,
                       verdict=q.get("verdict") if q.get("verdict") in VERDICTS else None,
                       direction=q.get("direction") if q.get("direction") in DIRECTIONS else None,
                       since_ms=_day_ms(q.get("since"), self.c.zone), until_ms=_day_ms(q.get("until"), self.c.zone,
                                                                                     next_day=True))

    async def live(self, request: Request) -> Response:
        view = self.view(request)
        assert view.site is not None
        filters = self.filters(request)
        before = Cursor.parse(request.query_params.get("before"))
        rows = [self.shown(view, r) for r in self.c.store.recent(view.site, limit=PAGE_ROWS, before=before,
                                                                 filters=filters)]
        streaming = before is None and filters == Filters() and request.query_params.get("paused") != "1"
        query = _query(request, drop=("before", "paused"))
        return self.render(view, "live.html", rows=rows, streaming=streaming, query=query, filters=filters,
                           older=rows[-1]["cursor"] if len(rows) == PAGE_ROWS else None,
                           newest=rows[0]["cursor"] if rows else "0:", devices=self.c.store.devices([view.site]))

    def rows_html(self, view: View, rows: list[dict[str, Any]]) -> str:
        shown = [self.shown(view, r) for r in rows]
        return self.env.get_template("_rows.html").render(rows=shown, t=view.t, clock=self.clock)

    async def live_stream(self, request: Request) -> Response:
        view = self.view(request)
        assert view.site is not None
        site = view.site
        header = request.headers.get("last-event-id")
        after = Cursor.parse(header) or Cursor.parse(request.query_params.get("after"))
        stream = self.c.hub.open(site)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                if after is not None:
                    missed = await asyncio.to_thread(self.c.store.newer, site, after, LIVE_CATCH_UP + 1)
                    if header and 0 < len(missed) <= LIVE_CATCH_UP:
                        # the browser reconnected by itself: add what it missed, oldest first
                        yield _sse("checkin", self.rows_html(view, list(reversed(missed))), missed[-1])
                    elif missed:
                        yield await self._snapshot(view)   # a new page or a long sleep: the newest rows again
                while True:
                    try:
                        rows = await asyncio.wait_for(stream.queue.get(), SSE_PING_SECONDS)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": ping\n\n"
                        continue
                    if stream.lagging:
                        stream.lagging = False
                        while not stream.queue.empty():
                            stream.queue.get_nowait()
                        yield await self._snapshot(view)
                        continue
                    newest_first = sorted(rows, key=lambda r: (r["at_ms"], r["id"]), reverse=True)
                    yield _sse("checkin", self.rows_html(view, newest_first), newest_first[0])
            finally:
                self.c.hub.close(stream)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _snapshot(self, view: View) -> str:
        assert view.site is not None
        rows = await asyncio.to_thread(self.c.store.recent, view.site, limit=PAGE_ROWS)
        return _sse("snapshot", self.rows_html(view, rows), rows[0] if rows else None)

    async def export(self, request: Request) -> Response:
        view = self.view(request)
        assert view.site is not None and view.user is not None
        filters = self.filters(request)
        self.c.accounts.audit(view.user.name, "export_csv", view.site, {k: v for k, v in vars(filters).items() if v})
        rows = (self.shown(view, r) for r in self.c.store.export(view.site, filters))
        name = f"checkins-{view.site}-{datetime.now(self.c.zone):%Y%m%d-%H%M}.csv"
        return _csv_response(name, CSV_COLUMNS, (self._csv_row(r) for r in rows))

    def _csv_row(self, r: dict[str, Any]) -> list[Any]:
        s = r["subject"]
        utc = datetime.fromtimestamp(r["at_ms"] / 1000).astimezone(ZoneInfo("UTC")).isoformat()
        return [r["ts"], utc, r["site"], r["device"], r["seq"], r["direction"], r["kind"], r["verdict"], r["reason"],
                s.get("name"), s.get("id"), s.get("birth"), s.get("gender"), r["subject_ref"], r["clock_synced"],
                r.get("source")]

    # -------------------------------------------------------------- kiosks
    def kiosk_rows(self, view: View) -> list[dict[str, Any]]:
        assert view.site is not None
        now, silent_after = now_ms(), self.c.cfg.console.offline_after_seconds * 1000
        out = []
        for d in self.c.store.devices([view.site]):
            tel: dict[str, Any] = d["telemetry"] if isinstance(d["telemetry"], dict) else {}
            box: dict[str, Any] = tel["outbox"] if isinstance(tel.get("outbox"), dict) else {}
            uplink: dict[str, Any] = tel["uplink"] if isinstance(tel.get("uplink"), dict) else {}
            alarms = [a for a in (tel.get("alarms") or []) if isinstance(a, str)][:20]
            alarms += [a for a in (uplink.get("alarms") or []) if isinstance(a, str) and a not in alarms][:20]
            state = d["status"] or "offline"
            if state == "online" and (not d["last_seen_ms"] or now - d["last_seen_ms"] > silent_after):
                state = "silent"
            depth = sum(int(v) for v in (box.get("pending"), box.get("published_unconfirmed")) if isinstance(v, int))
            out.append({"device": d["device"], "state": state, "last_seen_ms": d["last_seen_ms"],
                        "version": d["version"] or tel.get("version"), "outbox": depth,
                        "oldest_pending_s": box.get("oldest_pending_age_s"), "alarms": alarms,
                        "reason": d["status_reason"]})
        return out

    async def kiosks(self, request: Request) -> Response:
        view = self.view(request)
        return self.render(view, "kiosks.html", kiosks=self.kiosk_rows(view))

    # -------------------------------------------------------------- staff list
    async def staff_page(self, request: Request) -> Response:
        view = self.view(request, "staff")
        assert view.site is not None
        return self.render(view, "staff.html", current=len(self.c.staff.current(view.site)),
                           kiosks=self.c.store.devices([view.site]))

    async def staff_upload(self, request: Request) -> Response:
        view = self.view(request, "staff")
        assert view.site is not None and view.user is not None
        form = await checked_form(request)
        data = await _file_bytes(form.get("file"))
        if not data:
            return self.render(view, "staff.html", status=400, problems=[], error_text=view.t("bad_request"),
                               current=len(self.c.staff.current(view.site)), kiosks=[])
        try:
            pending = self.c.staff.check(view.site, view.user.name, data)
        except DataError as exc:
            return self.render(view, "staff.html", status=422, error_text=str(exc.args[0]).split("\n")[0],
                               problems=exc.problems, current=len(self.c.staff.current(view.site)), kiosks=[])
        return self.render(view, "staff.html", pending=pending, current=len(self.c.staff.current(view.site)),
                           kiosks=self.c.store.devices([view.site]))

    async def staff_push(self, request: Request) -> Response:
        view = self.view(request, "staff")
        assert view.site is not None and view.user is not None
        form = await checked_form(request)
        pending = self.c.staff.pending(str(form.get("token") or ""), view.site, view.user.name)
        if pending is None:
            raise HTTPException(409, "this upload is no longer waiting: upload the file again")
        devices = [d["device"] for d in self.c.store.devices([view.site])]
        try:
            push_id = self.c.staff.push(pending, devices)
        except DataError as exc:
            return self.render(view, "staff.html", status=503, error_text=str(exc), problems=[],
                               current=len(self.c.staff.current(view.site)), kiosks=[])
        self.c.accounts.audit(view.user.name, "staff_push", view.site,
                              {"push": push_id, "rows": len(pending.rows), "added": pending.added,
                               "removed": pending.removed, "changed": pending.changed, "kiosks": devices})
        return RedirectResponse(f"/staff/push/{push_id}?site={view.site}", status_code=303)

    async def staff_push_status(self, request: Request) -> Response:
        view = self.view(request, "staff")
        found = self.c.staff.push_status(request.path_params["push_id"])
        if found is None or found[0]["site"] != view.site:
            raise HTTPException(404, "no such push")
        push, lines = found
        template = "_push_lines.html" if request.query_params.get("part") else "staff_push.html"
        waiting = any(line["state"] == "waiting" for line in lines)
        return self.render(view, template, push=push, lines=lines, waiting=waiting)

    # -------------------------------------------------------------- trace
    def refs_for(self, number: str) -> list[str]:
        """The subject_refs a typed number can have, as an ID number and as a QID, under every site key kept
        (the raw number is not kept)."""
        return list(dict.fromkeys(self.c.keys.refs(Person(id_number=number)) + self.c.keys.refs(Person(qid=number))))

    async def trace_page(self, request: Request) -> Response:
        view = self.view(request, "trace")
        return self.render(view, "trace.html", days=self.c.cfg.console.trace_days)

    def _trace(self, view: View, refs: list[str], days: int) -> list[dict[str, Any]]:
        assert view.user is not None
        until = now_ms()
        since = until - days * 86_400_000
        window = self.c.cfg.console.trace_copresence_minutes * 60_000
        visits = self.c.store.trace(refs, view.user.sites("trace"), since, until, window, max_others=MAX_OTHERS)
        out = []
        for v in visits:
            site_view = View(view.request, view.user, view.lang, v["site"], self.c.store.site(v["site"]))
            shown = self.shown(site_view, v)
            shown["others"] = [self.shown(site_view, o, masked=True) for o in v["others"]]
            out.append(shown)
        return out

    async def trace(self, request: Request) -> Response:
        view = self.view(request, "trace")
        assert view.user is not None
        form = await checked_form(request)
        number = str(form.get("number") or "").strip()
        days = _int(form.get("days"), self.c.cfg.console.trace_days, 1, 366)
        if not TRACE_NUMBER.fullmatch(number):
            return self.render(view, "trace.html", status=422, days=days, error_text=view.t("bad_request"))
        refs = self.refs_for(number)
        visits = self._trace(view, refs, days)
        self.c.accounts.audit(view.user.name, "trace", view.site, {"refs": refs, "days": days, "visits": len(visits)})
        return self.render(view, "trace.html", days=days, refs=refs, visits=visits, searched=True,
                           window=self.c.cfg.console.trace_copresence_minutes, max_others=MAX_OTHERS)

    async def trace_export(self, request: Request) -> Response:
        view = self.view(request, "trace")
        assert view.user is not None
        form = await checked_form(request)
        refs = [r for r in form.getlist("ref") if isinstance(r, str) and REF_FIELD.fullmatch(r)][:16]
        days = _int(form.get("days"), self.c.cfg.console.trace_days, 1, 366)
        if not refs:
            raise HTTPException(400, "no reference to export")
        visits = self._trace(view, refs, days)
        self.c.accounts.audit(view.user.name, "trace_export", view.site, {"refs": refs, "days": days})

        def lines() -> Iterator[list[Any]]:
            for v in visits:
                yield ["visit", *self._csv_row(v)]
                for o in v["others"]:
                    yield ["present", *self._csv_row(o)]

        return _csv_response(f"trace-{datetime.now(self.c.zone):%Y%m%d-%H%M}.csv", ("row", *CSV_COLUMNS), lines())

    # -------------------------------------------------------------- users and audit
    async def users_page(self, request: Request) -> Response:
        view = self.view(request, "users")
        assert view.site is not None
        return self.render(view, "users.html", members=self.c.accounts.members(view.site), roles=ROLES)

    async def users_change(self, request: Request) -> Response:
        view = self.view(request, "users")
        assert view.site is not None and view.user is not None
        form = await checked_form(request)
        name, role = str(form.get("name") or "").strip(), str(form.get("role") or "")
        password = str(form.get("password") or "")
        try:
            if password:
                self.c.accounts.add_user(name, password, by=view.user.name)
            self.c.accounts.grant(name, view.site, role if role in ROLES else None, by=view.user.name)
        except (DataError, KioskError) as exc:
            return self.render(view, "users.html", status=422, error_text=str(exc),
                               members=self.c.accounts.members(view.site), roles=ROLES)
        return RedirectResponse(f"/users?site={view.site}", status_code=303)

    async def site_change(self, request: Request) -> Response:
        view = self.view(request, "users")
        assert view.site is not None and view.user is not None
        form = await checked_form(request)
        capacity = _int(form.get("capacity"), 0, 0, 1_000_000)
        self.c.store.set_site(view.site, capacity=capacity, name=str(form.get("name") or "")[:200])
        self.c.accounts.audit(view.user.name, "site_settings", view.site, {"capacity": capacity})
        return RedirectResponse(f"/users?site={view.site}", status_code=303)

    async def audit_page(self, request: Request) -> Response:
        view = self.view(request, "users")
        assert view.site is not None
        return self.render(view, "audit.html", entries=self.c.accounts.audit_log([view.site]))

    # -------------------------------------------------------------- offline bundles
    async def import_page(self, request: Request) -> Response:
        view = self.view(request, "import")
        return self.render(view, "import.html")

    async def import_upload(self, request: Request) -> Response:
        view = self.view(request, "import")
        assert view.site is not None and view.user is not None
        form = await checked_form(request)
        data = await _file_bytes(form.get("file"))
        if self.c.bundles is None:
            raise HTTPException(503, "offline import is not configured")
        try:
            outcome = self.c.bundles.import_bytes(data, allowed_sites={view.site}, user=view.user.name)
        except DataError as exc:
            return self.render(view, "import.html", status=422, error_text=str(exc))
        return self.render(view, "import.html", outcome=outcome)

    async def receipt(self, request: Request) -> Response:
        view = self.view(request, "import")
        if self.c.bundles is None:
            raise HTTPException(503, "offline import is not configured")
        digest = request.path_params["digest"]
        receipt = self.c.bundles.receipt_for(digest, allowed_sites={view.site})
        if receipt is None:
            raise HTTPException(404, "no such bundle")
        return Response(receipt, media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="receipt-{digest[:12]}.json"'})

    async def health(self, request: Request) -> Response:
        body = {"ok": True, "mqtt": "online" if self.c.online() else "offline", "version": __version__}
        return Response(json.dumps(body), media_type="application/json")


class _Redirect(Exception):
    def __init__(self, to: str):
        self.to = to


class _Refused(Exception):
    def __init__(self, view: View, why: str):
        self.view, self.why = view, why


async def _file_bytes(upload: Any) -> bytes:
    """The bytes of an uploaded file field (empty when the field is missing or is plain text)."""
    return bytes(await upload.read()) if isinstance(upload, UploadFile) else b""


def _sse(event: str, html: str, newest: dict[str, Any] | None) -> str:
    lines = [f"event: {event}"]
    if newest is not None:
        lines.append(f"id: {Cursor(newest['at_ms'], newest['id'])}")
    lines += [f"data: {line}" for line in html.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


def _csv_response(name: str, header: Iterable[str], rows: Iterable[list[Any]]) -> StreamingResponse:
    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")                            # spreadsheet programs then read UTF-8
        writer.writerow(list(header))
        for i, row in enumerate(rows, 1):
            writer.writerow(inert.row(row))
            if i % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _int(value: Any, default: int, lo: int, hi: int) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return default
    return min(max(number, lo), hi)


def _day_ms(value: str | None, zone: ZoneInfo, next_day: bool = False) -> int | None:
    if not value or len(value) != 10:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=zone)
    except ValueError:
        return None
    return int(((day + timedelta(days=1)) if next_day else day).timestamp() * 1000)


def _query(request: Request, drop: tuple[str, ...] = ()) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in drop])


def create_app(console: Console) -> ASGIApp:
    pages = Pages(console)
    cfg = console.cfg.console

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _Redirect as r:
                return RedirectResponse(r.to, status_code=303)
            except _Refused as refused:
                return pages.render(refused.view, "refused.html", status=403, why=refused.why)
        return run

    routes = [
        Route("/login", guarded(pages.login_page), methods=["GET"]),
        Route("/login", guarded(pages.login), methods=["POST"]),
        Route("/logout", guarded(pages.logout), methods=["POST"]),
        Route("/language", guarded(pages.switch_language), methods=["POST"]),
        Route("/", guarded(pages.home)),
        Route("/today", guarded(pages.today)),
        Route("/days", guarded(pages.days)),
        Route("/live", guarded(pages.live)),
        Route("/live/stream", guarded(pages.live_stream)),
        Route("/export.csv", guarded(pages.export)),
        Route("/kiosks", guarded(pages.kiosks)),
        Route("/staff", guarded(pages.staff_page), methods=["GET"]),
        Route("/staff/upload", guarded(pages.staff_upload), methods=["POST"]),
        Route("/staff/push", guarded(pages.staff_push), methods=["POST"]),
        Route("/staff/push/{push_id:str}", guarded(pages.staff_push_status)),
        Route("/trace", guarded(pages.trace_page), methods=["GET"]),
        Route("/trace", guarded(pages.trace), methods=["POST"]),
        Route("/trace/export", guarded(pages.trace_export), methods=["POST"]),
        Route("/users", guarded(pages.users_page), methods=["GET"]),
        Route("/users", guarded(pages.users_change), methods=["POST"]),
        Route("/site", guarded(pages.site_change), methods=["POST"]),
        Route("/audit", guarded(pages.audit_page)),
        Route("/import", guarded(pages.import_page), methods=["GET"]),
        Route("/import", guarded(pages.import_upload), methods=["POST"]),
        Route("/import/receipt/{digest:str}", guarded(pages.receipt)),
        Route("/healthz", pages.health),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def refused(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "error")
        user = pages.who(request) if "session" in request.scope else None
        view = View(request, user, pages.language(request, user) if "session" in request.scope else "vi")
        return pages.render(view, "refused.html", status=status, why=None, detail=detail)

    middleware = [Middleware(SessionMiddleware, secret_key=session_secret(console), session_cookie="kiosk_console",
                             max_age=int(cfg.session_hours * 3600), same_site="lax", https_only=cfg.secure_cookies)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: refused})
    return SecurityHeaders(BodyLimit(app, cfg.max_upload_bytes + 64 * 1024))


def session_secret(console: Console) -> str:
    """The configured secret, else one random secret kept in the database (shared by every console process)."""
    return console.cfg.console.session_secret or stored_secret(console.store.engine, "session_secret")

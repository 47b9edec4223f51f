"""What every console page shares: the console's parts, the signed-in view of one site, rendering and the
small request helpers. Text from check-ins is rendered inert: Jinja2 escapes markup and `kiosk.inert` every
control and bidi character; CSV cells never start a formula.
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse

from kiosk import __version__, inert
from kiosk.config import Config
from kiosk.fleet.accounts import Accounts, User
from kiosk.fleet.events import Cursor, EventStore, mask_subject
from kiosk.fleet.live import Hub
from kiosk.fleet.security import CSRF_FIELD, LoginLimiter, csrf_token
from kiosk.fleet.staff import StaffLists
from kiosk.fleet.words import LANGUAGES, word
from kiosk.identity import KeyRing

FLEET = Path(__file__).resolve().parent.parent   # kiosk/fleet: templates/ and static/
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
    env = Environment(loader=FileSystemLoader(FLEET / "templates"), autoescape=select_autoescape(default=True),
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


class PagesBase:
    """The helpers of every page group; the groups (kiosk.fleet.web.*) are its subclasses."""

    def __init__(self, console: Console):
        self.c = console
        self.env = make_templates()
        cfg = console.cfg.console
        self.limiter = LoginLimiter(cfg.login_attempts, cfg.login_window_seconds)

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
            raise Redirect("/login")
        lang = self.language(request, user)
        view = View(request, user, lang)
        if not site_required:
            return view
        site = request.query_params.get("site") or request.path_params.get("site")
        allowed = user.sites(action)
        if site is None:
            if not allowed:
                raise Refused(view, "no_sites" if not user.sites() else "not_allowed")
            site = allowed[0]
        if not user.can(action, site):
            raise Refused(view, "not_allowed")
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

    def csv_row(self, r: dict[str, Any]) -> list[Any]:
        s = r["subject"]
        utc = datetime.fromtimestamp(r["at_ms"] / 1000).astimezone(ZoneInfo("UTC")).isoformat()
        return [r["ts"], utc, r["site"], r["device"], r["seq"], r["direction"], r["kind"], r["verdict"], r["reason"],
                s.get("name"), s.get("id"), s.get("birth"), s.get("gender"), r["subject_ref"], r["clock_synced"],
                r.get("source")]


class Redirect(Exception):
    """Raised by a page to send the browser elsewhere (the sign-in page); `app` turns it into a 303."""

    def __init__(self, to: str):
        self.to = to


class Refused(Exception):
    """Raised by a page the user may not see (another site, a role they lack); `app` answers 403."""

    def __init__(self, view: View, why: str):
        self.view, self.why = view, why


async def file_bytes(upload: Any) -> bytes:
    """The bytes of an uploaded file field (empty when the field is missing or is plain text)."""
    return bytes(await upload.read()) if isinstance(upload, UploadFile) else b""


def sse_event(event: str, html: str, newest: dict[str, Any] | None) -> str:
    lines = [f"event: {event}"]
    if newest is not None:
        lines.append(f"id: {Cursor(newest['at_ms'], newest['id'])}")
    lines += [f"data: {line}" for line in html.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


def csv_response(name: str, header: Iterable[str], rows: Iterable[list[Any]]) -> StreamingResponse:
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


def clamp_int(value: Any, default: int, lo: int, hi: int) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return default
    return min(max(number, lo), hi)


def day_ms(value: str | None, zone: ZoneInfo, next_day: bool = False) -> int | None:
    if not value or len(value) != 10:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=zone)
    except ValueError:
        return None
    return int(((day + timedelta(days=1)) if next_day else day).timestamp() * 1000)


def query_string(request: Request, drop: tuple[str, ...] = ()) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in drop])

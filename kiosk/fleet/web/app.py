"""The console's ASGI application: one route table over the page groups, sessions, and the security wrappers."""
from __future__ import annotations

from typing import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from kiosk.fleet.events import stored_secret
from kiosk.fleet.security import BodyLimit, SecurityHeaders
from kiosk.fleet.web.admin import AdminPages
from kiosk.fleet.web.base import FLEET, Console, Redirect, Refused, View
from kiosk.fleet.web.feed import FeedPages
from kiosk.fleet.web.overview import OverviewPages
from kiosk.fleet.web.signin import SigninPages
from kiosk.fleet.web.staff_list import StaffListPages
from kiosk.fleet.web.tracing import TracingPages


class Pages(SigninPages, OverviewPages, FeedPages, StaffListPages, TracingPages, AdminPages):
    """Every page of the console."""


def create_app(console: Console) -> ASGIApp:
    pages = Pages(console)
    cfg = console.cfg.console

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Redirect as r:
                return RedirectResponse(r.to, status_code=303)
            except Refused as refused:
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
        Mount("/static", StaticFiles(directory=FLEET / "static"), name="static"),
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

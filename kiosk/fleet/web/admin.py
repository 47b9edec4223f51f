"""Owners' pages: users and roles, site settings, the audit log, offline bundle import; and /healthz."""
from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kiosk import __version__
from kiosk.errors import DataError, KioskError
from kiosk.fleet.accounts import ROLES
from kiosk.fleet.security import checked_form
from kiosk.fleet.web.base import PagesBase, clamp_int, file_bytes


class AdminPages(PagesBase):
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
        capacity = clamp_int(form.get("capacity"), 0, 0, 1_000_000)
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
        data = await file_bytes(form.get("file"))
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

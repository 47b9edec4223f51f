"""Signing in and out, the language switch, and the home redirect."""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kiosk.fleet.security import checked_form, csrf_token
from kiosk.fleet.web.base import PagesBase, View
from kiosk.fleet.words import LANGUAGES


class SigninPages(PagesBase):
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

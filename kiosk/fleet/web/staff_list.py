"""The factory's staff list: upload a CSV, see what changes, push it to the site's kiosks, follow their answers."""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kiosk.errors import DataError
from kiosk.fleet.security import checked_form
from kiosk.fleet.web.base import PagesBase, file_bytes


class StaffListPages(PagesBase):
    async def staff_page(self, request: Request) -> Response:
        view = self.view(request, "staff")
        assert view.site is not None
        return self.render(view, "staff.html", current=len(self.c.staff.current(view.site)),
                           kiosks=self.c.store.devices([view.site]))

    async def staff_upload(self, request: Request) -> Response:
        view = self.view(request, "staff")
        assert view.site is not None and view.user is not None
        form = await checked_form(request)
        data = await file_bytes(form.get("file"))
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

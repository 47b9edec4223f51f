"""Tracing for authorised users: a typed ID or QID becomes the kiosks' keyed subject_refs (the raw number is
never kept); visits over a window and who else was present, masked; CSV export."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from kiosk.fleet.events import now_ms
from kiosk.fleet.security import checked_form
from kiosk.fleet.web.base import CSV_COLUMNS, PagesBase, View, clamp_int, csv_response
from kiosk.model import Person

MAX_OTHERS = 200              # people listed per visit on the Trace page and in its CSV
TRACE_NUMBER = re.compile(r"[A-Za-z0-9]{6,64}")
REF_FIELD = re.compile(r"[0-9a-f]{32}")


class TracingPages(PagesBase):
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
        days = clamp_int(form.get("days"), self.c.cfg.console.trace_days, 1, 366)
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
        days = clamp_int(form.get("days"), self.c.cfg.console.trace_days, 1, 366)
        if not refs:
            raise HTTPException(400, "no reference to export")
        visits = self._trace(view, refs, days)
        self.c.accounts.audit(view.user.name, "trace_export", view.site, {"refs": refs, "days": days})

        def lines() -> Iterator[list[Any]]:
            for v in visits:
                yield ["visit", *self.csv_row(v)]
                for o in v["others"]:
                    yield ["present", *self.csv_row(o)]

        return csv_response(f"trace-{datetime.now(self.c.zone):%Y%m%d-%H%M}.csv", ("row", *CSV_COLUMNS), lines())

"""The live feed (server-rendered rows, then htmx and SSE: newest first, catch-up after a reconnect by
Last-Event-ID) and the CSV export of any filtered list, streamed."""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kiosk.fleet.events import Cursor, Filters, safe_id
from kiosk.fleet.web.base import (
    CSV_COLUMNS,
    PagesBase,
    View,
    csv_response,
    day_ms,
    query_string,
    sse_event,
)
from kiosk.model import DIRECTIONS, VERDICTS

PAGE_ROWS = 50
LIVE_CATCH_UP = 100           # rows sent after a reconnect before a full snapshot is cheaper
SSE_PING_SECONDS = 15.0


class FeedPages(PagesBase):
    def filters(self, request: Request) -> Filters:
        q = request.query_params
        device = q.get("device")
        return Filters(device=device if safe_id(device) else None,
                       verdict=q.get("verdict") if q.get("verdict") in VERDICTS else None,
                       direction=q.get("direction") if q.get("direction") in DIRECTIONS else None,
                       since_ms=day_ms(q.get("since"), self.c.zone), until_ms=day_ms(q.get("until"), self.c.zone,
                                                                                     next_day=True))

    async def live(self, request: Request) -> Response:
        view = self.view(request)
        assert view.site is not None
        filters = self.filters(request)
        before = Cursor.parse(request.query_params.get("before"))
        rows = [self.shown(view, r) for r in self.c.store.recent(view.site, limit=PAGE_ROWS, before=before,
                                                                 filters=filters)]
        streaming = before is None and filters == Filters() and request.query_params.get("paused") != "1"
        query = query_string(request, drop=("before", "paused"))
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
                        yield sse_event("checkin", self.rows_html(view, list(reversed(missed))), missed[-1])
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
                    yield sse_event("checkin", self.rows_html(view, newest_first), newest_first[0])
            finally:
                self.c.hub.close(stream)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _snapshot(self, view: View) -> str:
        assert view.site is not None
        rows = await asyncio.to_thread(self.c.store.recent, view.site, limit=PAGE_ROWS)
        return sse_event("snapshot", self.rows_html(view, rows), rows[0] if rows else None)

    async def export(self, request: Request) -> Response:
        view = self.view(request)
        assert view.site is not None and view.user is not None
        filters = self.filters(request)
        self.c.accounts.audit(view.user.name, "export_csv", view.site, {k: v for k, v in vars(filters).items() if v})
        rows = (self.shown(view, r) for r in self.c.store.export(view.site, filters))
        name = f"checkins-{view.site}-{datetime.now(self.c.zone):%Y%m%d-%H%M}.csv"
        return csv_response(name, CSV_COLUMNS, (self.csv_row(r) for r in rows))

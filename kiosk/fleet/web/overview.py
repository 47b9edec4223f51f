"""Today (in, out, inside now against capacity, entries per hour, kiosks, alarms), Per day, and Kiosks."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from kiosk.fleet.events import Counts, now_ms
from kiosk.fleet.web.base import PagesBase, View, clamp_int


class OverviewPages(PagesBase):
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
        n = clamp_int(request.query_params.get("days"), 14, 1, 92)
        start = self.today_start() - timedelta(days=n - 1)
        counts = self.c.store.counts(view.site, start, n, self.c.zone)
        dates = [(start + timedelta(days=i)).date().isoformat() for i in range(n)]
        empty = {"in": 0, "out": 0, "green": 0, "black": 0, "invalid": 0}
        rows = [(d, counts.days.get(d, empty)) for d in dates]
        chart = {"labels": [d[5:] for d in dates],
                 "series": [{"label": view.t(k), "data": [r[k] for _, r in rows]} for k in ("in", "out")]}
        return self.render(view, "days.html", rows=list(reversed(rows)), days=n, chart=chart)

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

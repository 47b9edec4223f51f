"""The venue console's web pages (Starlette, Jinja2 server-rendered, htmx for partial updates and the live feed).

Pages (DESIGN section 8): Today, Live, Per day, Kiosks, Staff list, Trace, Users, Audit log, Offline import, one
module per group (`signin`, `overview`, `feed`, `staff_list`, `tracing`, `admin`) on `base`; `app` holds the
route table. Every page takes one site the user was granted; every query is bounded (see
`kiosk.fleet.events`). Forms carry a CSRF token. Pages work without JavaScript except the live stream and the
charts, which add to them.
"""
from kiosk.fleet.web.app import create_app, session_secret
from kiosk.fleet.web.base import Console

__all__ = ["Console", "create_app", "session_secret"]

"""The fleet side: another process, usually on another machine, that consumes what the kiosks publish.

Storage: `db` (one engine for SQLite or PostgreSQL), `schema` (the tables), `migrations` (versioned
upgrades), `events` (the event store: idempotent writes and every page's bounded read query).
MQTT: `collector` (shared subscription, store then ack; kiosk status, telemetry, command answers), `tail`
(the operator's terminal view). The venue console: `console` (collector and web server in one process),
`web` (the pages), `security` (CSRF, login limits, body bound, headers), `accounts` (users, roles, audit),
`live` (the live feed's fan-out), `staff` (staff lists pushed to kiosks), `bundle` (offline bundles),
`words` (Vietnamese and English); `templates/` and `static/` (vendored htmx, its SSE extension, Chart.js).
"""

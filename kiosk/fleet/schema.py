"""The console's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Instants are integers: milliseconds since the epoch, UTC (`*_ms`). They compare and index the same on both
engines and need no time zone handling in SQL; a check-in's own `ts` (ISO-8601 with the kiosk's offset) is
kept as text beside its instant. Every page query is bounded by one of the indexes below and a limit:
- `checkins_site_at` (site, at_ms, id): the live feed and exports by keyset, newest first;
- `checkins_ref_at` (subject_ref, at_ms): a trace, then `checkins_site_at` for who else was there;
- `counts` (site, bucket_ms, direction, verdict): quarter-hour totals kept in the same transaction as the
  check-ins, so day and hour counts and occupancy read a few hundred rows whatever the table's size
  (every time zone offset in use is a multiple of 15 minutes, so local days and hours add up exactly).
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

BUCKET_MS = 15 * 60 * 1000
ID_LEN = 64

sites = Table(
    "sites", metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    # hospitals and quarantine checkpoints: kiosks send full fields, shown to users with the authorised role
    Column("authorised", Boolean, nullable=False, default=False),
    Column("capacity", Integer, nullable=True),   # None: the configured default
    Column("created_ms", BigInteger, nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("site", String(ID_LEN), primary_key=True),
    Column("device", String(ID_LEN), primary_key=True),
    Column("status", String(16), nullable=True),          # online / offline (retained status and Last Will)
    Column("status_reason", String(200), nullable=True),
    Column("status_ms", BigInteger, nullable=True),
    Column("version", String(64), nullable=True),
    Column("telemetry", Text, nullable=True),             # the last telemetry message (JSON)
    Column("telemetry_ms", BigInteger, nullable=True),
    Column("last_seen_ms", BigInteger, nullable=True),    # any message from the device
    Column("last_checkin_ms", BigInteger, nullable=True),
)

checkins = Table(
    "checkins", metadata,
    Column("id", String(ID_LEN), primary_key=True),       # the kiosk's event id: a re-send is stored once
    Column("site", String(ID_LEN), nullable=False),
    Column("device", String(ID_LEN), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", String(40), nullable=False),             # as the kiosk wrote it, with its offset
    Column("at_ms", BigInteger, nullable=False),          # the same instant, UTC milliseconds
    Column("received_ms", BigInteger, nullable=False),
    Column("clock_synced", Boolean, nullable=False),
    Column("direction", String(8), nullable=False),
    Column("mode", String(16), nullable=True),
    Column("kind", String(32), nullable=True),
    Column("verdict", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("subject", Text, nullable=False),              # JSON; masked unless the site is authorised
    Column("subject_ref", String(64), nullable=True),
    Column("override", Boolean, nullable=False, default=False),
    Column("source", String(16), nullable=False, default="mqtt"),   # mqtt or bundle
    Index("checkins_site_at", "site", "at_ms", "id"),
    Index("checkins_ref_at", "subject_ref", "at_ms"),
    Index("checkins_device_seq", "site", "device", "seq"),
)

counts = Table(
    "counts", metadata,
    Column("site", String(ID_LEN), primary_key=True),
    Column("bucket_ms", BigInteger, primary_key=True),    # start of a UTC quarter-hour
    Column("direction", String(8), primary_key=True),
    Column("verdict", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),   # a login or a phone number
    Column("password_hash", String(200), nullable=False),
    Column("language", String(2), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_ms", BigInteger, nullable=False),
)

roles = Table(
    "roles", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("site", String(ID_LEN), primary_key=True),
    Column("role", String(16), nullable=False),           # owner, controller, authorised
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("user_name", String(100), nullable=True),      # None: the command line
    Column("action", String(64), nullable=False),
    Column("site", String(ID_LEN), nullable=True),
    Column("detail", Text, nullable=False, default="{}"),
    Index("audit_at", "at_ms"),
)

settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Staff lists: the console keeps, per site, one keyed digest per person (never the raw ID) to count what a
# new upload adds, removes and changes; each push and each kiosk's answer.
staff = Table(
    "staff", metadata,
    Column("site", String(ID_LEN), primary_key=True),
    Column("person", String(64), primary_key=True),       # HMAC of the row's ID or QID
    Column("digest", String(64), nullable=False),         # HMAC of the whole row
)

roster_pushes = Table(
    "roster_pushes", metadata,
    Column("id", String(40), primary_key=True),           # the command's correlation id
    Column("site", String(ID_LEN), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("user_name", String(100), nullable=True),
    Column("rows", Integer, nullable=False),
    Column("devices", Text, nullable=False),              # JSON list of the kiosks asked
    Index("roster_pushes_site_at", "site", "at_ms"),
)

roster_results = Table(
    "roster_results", metadata,
    Column("push_id", String(40), primary_key=True),
    Column("device", String(ID_LEN), primary_key=True),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("at_ms", BigInteger, nullable=False),
)

# Offline bundles imported by hand (schema version 3).
bundles = Table(
    "bundles", metadata,
    Column("digest", String(64), primary_key=True),       # SHA-256 of the bundle file
    Column("site", String(ID_LEN), nullable=False),
    Column("device", String(ID_LEN), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("user_name", String(100), nullable=True),
    Column("events", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("receipt", Text, nullable=False),              # the signed receipt handed back to the kiosk
)

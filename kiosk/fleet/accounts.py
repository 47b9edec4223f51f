"""Console accounts: users (argon2 password hashes), one role per site, and the audit log of every change.

Roles (DESIGN section 8): `owner` manages the site's users and staff list and may trace; `controller`
watches the live feed and counts, masked; `authorised` (a health officer at a site flagged authorised)
sees the full fields the kiosks sent, and traces. A user sees only the sites granted.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, select, update

from kiosk.config import ID_RULE
from kiosk.errors import DataError
from kiosk.fleet import schema
from kiosk.fleet.events import now_ms, safe_id, upsert

OWNER, CONTROLLER, AUTHORISED = "owner", "controller", "authorised"
ROLES = (OWNER, CONTROLLER, AUTHORISED)
# what each role may do at its site
CAN: dict[str, frozenset[str]] = {
    OWNER: frozenset({"view", "staff", "users", "trace", "import"}),
    CONTROLLER: frozenset({"view"}),
    AUTHORISED: frozenset({"view", "trace", "full_fields"}),
}
USER_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,100}")   # a login or a phone number (+84...)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024

_hasher = PasswordHasher()
# verified against when the user does not exist, so an unknown name costs what a wrong password costs
_DUMMY_HASH = _hasher.hash("no such user: the same work as a real check")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    language: str | None
    roles: dict[str, str] = field(default_factory=dict)   # site -> role

    def can(self, action: str, site: str) -> bool:
        role = self.roles.get(site)
        return role is not None and action in CAN[role]

    def sites(self, action: str = "view") -> list[str]:
        return sorted(s for s, role in self.roles.items() if action in CAN[role])


class Accounts:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, password: str, *, by: str | None = None) -> int:
        _check_name(name)
        _check_password(password)
        with self.engine.begin() as conn:
            if conn.execute(select(schema.users.c.id).where(schema.users.c.name == name)).first():
                raise DataError(f"user {name!r} exists already (kiosk console user passwd to change the password)")
            inserted = conn.execute(schema.users.insert().values(
                name=name, password_hash=_hasher.hash(password), disabled=False, created_ms=now_ms()))
            user_id = inserted.inserted_primary_key[0]  # type: ignore[index]
            self._audit(conn, by, "user_add", None, {"user": name})
        return int(user_id)

    def set_password(self, name: str, password: str, *, by: str | None = None) -> None:
        _check_password(password)
        with self.engine.begin() as conn:
            done = conn.execute(update(schema.users).where(schema.users.c.name == name)
                                .values(password_hash=_hasher.hash(password))).rowcount
            if not done:
                raise DataError(f"no user {name!r} (kiosk console user add NAME)")
            self._audit(conn, by, "user_passwd", None, {"user": name})

    def set_language(self, user_id: int, language: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schema.users).where(schema.users.c.id == user_id).values(language=language))

    def grant(self, name: str, site: str, role: str | None, *, by: str | None = None) -> None:
        """Give `name` the role at `site` (None: take the site away)."""
        if role is not None and role not in ROLES:
            raise DataError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if not safe_id(site):
            raise DataError(f"{site!r} is not a site id ({ID_RULE})")
        with self.engine.begin() as conn:
            row = conn.execute(select(schema.users.c.id).where(schema.users.c.name == name)).first()
            if row is None:
                raise DataError(f"no user {name!r} (kiosk console user add NAME)")
            upsert(conn, schema.sites, {"id": site, "name": "", "authorised": False, "created_ms": now_ms()}, ("id",))
            conn.execute(delete(schema.roles).where(schema.roles.c.user_id == row[0], schema.roles.c.site == site))
            if role is not None:
                conn.execute(schema.roles.insert().values(user_id=row[0], site=site, role=role))
            self._audit(conn, by, "grant" if role else "revoke", site, {"user": name, "role": role})

    # ------------------------------------------------------------------ reading
    def verify(self, name: str, password: str) -> User | None:
        """The user when the password is right; None otherwise, after the same work either way."""
        u = schema.users.c
        with self.engine.connect() as conn:
            row = conn.execute(select(u.id, u.password_hash, u.disabled).where(u.name == name[:100])).first()
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled:
            return None
        return self.user(int(row.id))

    def user(self, user_id: int) -> User | None:
        u, r = schema.users.c, schema.roles.c
        with self.engine.connect() as conn:
            row = conn.execute(select(u.id, u.name, u.language, u.disabled).where(u.id == user_id)).first()
            if row is None or row.disabled:
                return None
            roles = {s: role for s, role in conn.execute(select(r.site, r.role).where(r.user_id == user_id))}
        return User(id=int(row.id), name=row.name, language=row.language, roles=roles)

    def members(self, site: str) -> list[tuple[str, str]]:
        u, r = schema.users.c, schema.roles.c
        with self.engine.connect() as conn:
            return [(n, role) for n, role in conn.execute(
                select(u.name, r.role).join(schema.roles, r.user_id == u.id).where(r.site == site).order_by(u.name))]

    # ------------------------------------------------------------------ audit log
    def audit(self, by: str | None, action: str, site: str | None, detail: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            self._audit(conn, by, action, site, detail)

    @staticmethod
    def _audit(conn: Any, by: str | None, action: str, site: str | None, detail: dict[str, Any]) -> None:
        conn.execute(schema.audit.insert().values(at_ms=now_ms(), user_name=by, action=action, site=site,
                                                  detail=json.dumps(detail, ensure_ascii=False)))

    def audit_log(self, sites: list[str], limit: int = 200) -> list[dict[str, Any]]:
        a = schema.audit.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.audit).where(a.site.in_(sites)).order_by(a.id.desc()).limit(limit))
            return [dict(r._mapping) | {"detail": json.loads(r.detail)} for r in rows]


def _check_name(name: str) -> None:
    if not USER_NAME.fullmatch(name):
        raise DataError(f"{name!r} is not a user name (a login or phone number: letters, digits, . _ @ + -)")


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise DataError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")

"""One engine for the console's store: SQLite (a file, WAL) by default, PostgreSQL through psycopg 3.

The rest of the fleet code is engine-neutral SQLAlchemy Core; the few places that differ (the upsert
construct, the migration lock) ask `dialect_name`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from kiosk.errors import ConfigError

IMMEDIATE = "kiosk_immediate"   # execution option: start this SQLite transaction with BEGIN IMMEDIATE


def database_url(value: str, base: Path | None = None) -> str:
    """A SQLAlchemy URL from the configured value: a PostgreSQL URL, a sqlite:/// URL, or a file path."""
    if value.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    if value.startswith(("postgresql+psycopg://", "sqlite://")):
        return value
    if "://" in value:
        raise ConfigError([f"console.database_url: unsupported database {value.split('://', 1)[0]!r} "
                           "(a SQLite file path, sqlite:///PATH or postgresql://...)"])
    path = Path(value)
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"sqlite:///{path}"


def open_engine(value: str, base: Path | None = None, *, pool_size: int = 5) -> Engine:
    url = make_url(database_url(value, base))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=10)
        _sqlite_setup(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def _sqlite_setup(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys, and transactions SQLAlchemy controls (so DDL is transactional).

    synchronous=FULL: a check-in is acknowledged to its kiosk after the commit, so the commit must survive
    a power cut (the kiosk forgets a confirmed event)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None       # pysqlite's own BEGIN handling off: see on_begin
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "busy_timeout = 30000", "foreign_keys = ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(IMMEDIATE) else "BEGIN")

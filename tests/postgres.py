"""A throwaway PostgreSQL for the tests: Debian's server, initdb in a temp dir as an unprivileged user,
listening on 127.0.0.1 on a free port, stopped at the end of the session.

Without the binaries the PostgreSQL half of a test skips with the reason; in CI (`CI=true`) it fails, since
`scripts/dev.sh` installs `postgresql`.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import free_port

PG_USER = "kioskpg"        # the server refuses to run as root: this account owns the data directory


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: ourselves when not root, else PG_USER (created when missing)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


class PostgresServer:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.account = _server_account()
        # not under pytest's tmp folder: that is private to root, and the server runs as PG_USER
        self.folder = Path(tempfile.mkdtemp(prefix="kiosk-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._names = itertools.count(1)
        if self.account:
            os.chown(self.folder, *self.account)

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        kw = {"user": self.account[0], "group": self.account[1], "extra_groups": []} if self.account else {}
        return subprocess.run([str(self.bindir / argv[0]), *argv[1:]], capture_output=True, text=True, check=True,
                              cwd=self.folder, **kw)

    def start(self) -> "PostgresServer":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w",
                  "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing in CI (scripts/dev.sh installs postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt install postgresql)")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The same test on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "console.sqlite")
    return request.getfixturevalue("postgres_server").new_database()

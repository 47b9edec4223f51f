"""Shared fixtures and helpers: a real Mosquitto on 127.0.0.1 (free port, persistence in tmp_path), journal and
collector helpers, TLS material, the --update-golden option. Plain fakes live in fakes.py."""
from __future__ import annotations

import ipaddress
import json
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

BROKER_START_TIMEOUT = 10.0


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden screen images in tests/golden/ from the current rendering "
                          "(then look at the changed PNGs before committing them)")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    """Poll a state owned by another process or thread (a database, a socket) until true, bounded by timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def trusting(path: Path, *signers):
    """A trust list at `path` holding exactly these signers (kiosk.issuing.SigningKey)."""
    import base64

    from kiosk.stores.trust import TrustList

    trust = TrustList(path)
    trust.import_json([{"certificate": base64.b64encode(s.certificate_der).decode()} for s in signers], replace=True)
    return trust


def tmp_sets(tmp_path, *extra: str) -> list[str]:
    """`--set` arguments that put every file a command writes (journal, roster, trust list, screens) in tmp_path."""
    argv = []
    for s in (f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
              f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens", *extra):
        argv += ["--set", s]
    return argv


class Broker:
    """One mosquitto process; restart() keeps its port and persistence folder."""

    def __init__(self, folder: Path, *, persistence: bool = True, autosave_interval: int = 1,
                 extra: tuple[str, ...] = ("allow_anonymous true",)):
        self.folder = folder
        self.port = free_port()
        self.persistence = persistence
        self.autosave_interval = autosave_interval
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            *extra,
            # as root, mosquitto would switch to the `mosquitto` user, which cannot read pytest's tmp folders
            *(["user root"] if os.geteuid() == 0 else []),
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {folder}/",
            f"autosave_interval {autosave_interval}",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "set_tcp_nodelay true",
            "sys_interval 1",
            f"log_dest file {folder}/mosquitto.log",
            "log_type error", "log_type warning", "log_type notice", "",
        ]))

    def start(self) -> "Broker":
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + BROKER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                log = (self.folder / "mosquitto.log")
                raise RuntimeError(f"mosquitto exited: {log.read_text() if log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not accept connections")
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no autosave, no clean shutdown."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> "Broker":
        self.stop()
        return self.start()


@pytest.fixture
def broker_factory(tmp_path):
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    made: list[Broker] = []

    def make(name: str = "broker", **kw) -> Broker:
        b = Broker(tmp_path / name, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.kill()


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory().start()


@pytest.fixture
def uplinks():
    """Uplinks a test made (append them): stopped at its end."""
    made = []
    yield made
    for up in made:
        up.stop()


# ---------------------------------------------------------------- a real small file system
@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a folder with a real tmpfs of that size mounted on it (unmounted after the test);
    remount(folder, "ro"|"rw"). Skips where this user may not mount (tests run as root on CI)."""
    mounted: list[Path] = []

    def mount(size: str = "4m") -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount refused'}): "
                        "a real small file system needs root (CI runs as root)")
        mounted.append(where)
        return where

    def remount(where: Path, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True, capture_output=True)

    mount.remount = remount  # type: ignore[attr-defined]
    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
# ---------------------------------------------------------------- downlink commands as senders make them
_last_version = [0]


def stamped(body: dict, at: float | None = None) -> dict:
    """`body` with the envelope every sender adds (kiosk.mqtt.downlink.stamp): `issued` at `at` (default now) and a
    `version` greater than every earlier one of this test session."""
    from kiosk.mqtt.downlink import stamp

    out = stamp(body, time.time() if at is None else at, _last_version[0])
    _last_version[0] = out["version"]
    return out


def admission(ledger_file: Path, clock=None, max_age_hours: float = 336.0):
    """What the App admits commands with: a ledger file and (default) a synchronised running clock."""
    from kiosk.clock import FixedClock
    from kiosk.mqtt.downlink import Admission
    from kiosk.stores.commands import CommandLedger

    return Admission(CommandLedger(ledger_file),
                     clock or FixedClock(datetime.now(timezone.utc), running=True), max_age_hours * 3600)


# ---------------------------------------------------------------- configuration and journal helpers
def kiosk_config(tmp_path: Path, port: int, *, device: str = "d1", site: str = "s1", **mqtt):
    from kiosk import config

    values = {"enabled": True, "host": "127.0.0.1", "port": port, "reconnect_min_seconds": 0.1,
              "reconnect_max_seconds": 1.0, "keepalive": 5, **mqtt}
    return config.load(None, data={"site": {"id": site, "device": device}, "mqtt": values,
                                   "journal": {"path": str(tmp_path / f"journal-{device}.sqlite")}})


def fill_journal(path: str | Path, n: int, *, site: str = "s1", device: str = "d1",
                 start: datetime | None = None) -> list[str]:
    """n check-ins in the journal's own schema, in one transaction (fast backlogs); their ids in seq order."""
    from kiosk.stores.checkins import INSERT
    from kiosk.stores.journal import Journal

    Journal(path, site=site, device=device).close()  # creates the schema
    start = start or datetime.now(timezone.utc) - timedelta(days=7)
    step = timedelta(days=7) / max(n, 1)
    rows = []
    for i in range(n):
        at = start + step * i
        rows.append((at.isoformat(), at.timestamp(), 1, site, device, "in", "trace", "personal_qr",
                     "green", "valid", '{"name": "N*** V** A"}', f"ref{i}", 0, 1.0))
    db = sqlite3.connect(str(path), timeout=30)
    with db:
        db.executemany(INSERT, rows)
    db.close()
    return journal_ids(path)[-n:] if n else []


def journal_events(path: str | Path) -> list[sqlite3.Row]:
    """Every row of a journal as events (`id` stored or derived), in seq order."""
    from kiosk.stores.checkins import SELECT_EVENTS

    db = sqlite3.connect(str(path), timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(f"{SELECT_EVENTS} ORDER BY seq").fetchall()
    finally:
        db.close()


def journal_states(path: str | Path) -> dict[str, int]:
    db = sqlite3.connect(str(path), timeout=30)
    try:
        return dict(db.execute("SELECT up_state, COUNT(*) FROM checkins GROUP BY up_state").fetchall())
    finally:
        db.close()


def journal_ids(path: str | Path) -> list[str]:
    db = sqlite3.connect(str(path), timeout=30)
    try:
        return [r[0] for r in db.execute("SELECT event_id FROM checkin_events ORDER BY seq")]
    finally:
        db.close()


@contextmanager
def running_collector(cfg, db_path: Path, **kw):
    """A Collector consuming on a background thread until the block ends."""
    from kiosk.fleet.collector import Collector

    collector = Collector(cfg, db_path, **kw)
    collector.connect()
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, kwargs={"should_stop": stop.is_set}, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        stop.set()
        thread.join(10)
        collector.close()


def collected_ids(db_path: Path) -> list[str]:
    db = sqlite3.connect(str(db_path), timeout=30)
    try:
        return [r[0] for r in db.execute("SELECT id FROM checkins")]
    finally:
        db.close()


def assert_exactly_once(db_path: Path, journal_path: Path) -> None:
    """The collector holds every journaled event id exactly once, and nothing else."""
    got = collected_ids(db_path)
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(journal_ids(journal_path))


class Watcher:
    """A plain MQTT subscriber for assertions: every message lands on one queue as (topic, json|bytes, retain)."""

    def __init__(self, port: int, *topics: str, login: tuple[str, str] | None = None):
        import paho.mqtt.client as mqtt

        self.messages: queue.Queue = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:6]}")
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, _decode(m.payload), m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "watcher could not subscribe"

    def publish(self, topic: str, payload) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(topic, data, qos=1).wait_for_publish(10)

    def command(self, topic: str, body: dict, at: float | None = None) -> None:
        """Publish a downlink command with its envelope (`stamped`)."""
        self.publish(topic, stamped(body, at))

    def next(self, topic: str, timeout: float = 10.0, where: Callable[[object], bool] = lambda body: True):
        """The next message on `topic` whose body satisfies `where` (others on that topic are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching message on {topic} within {timeout:.0f} s")
            try:
                got_topic, body, retain = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if got_topic == topic and where(body):
                return body

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _decode(payload: bytes):
    try:
        return json.loads(payload)
    except ValueError:
        return bytes(payload)


@pytest.fixture
def watcher_factory():
    made: list[Watcher] = []

    def make(port: int, *topics: str, login: tuple[str, str] | None = None) -> Watcher:
        w = Watcher(port, *topics, login=login)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


# ---------------------------------------------------------------- the shipped broker configuration
CONFIG_MOSQUITTO = Path(__file__).resolve().parents[1] / "config" / "mosquitto"


class ShippedBroker:
    """config/mosquitto/mosquitto.conf as shipped, with only its paths and ports moved into `folder`: TLS on
    `tls_port`, the plain local listener on `port`, passwords (user `U` has password `pw-U`) and the example ACL
    with the stanzas `make-acl.sh ARGS...` prints for each of `acl` (("s1", "d2"), ("--role", "operator", "bob"))."""

    def __init__(self, folder: Path, tls: dict[str, Path], users: tuple[str, ...],
                 acl: tuple[tuple[str, ...], ...] = ()):
        self.folder, self.tls_port, self.port = folder, free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        for name, key in (("broker.crt", "broker_crt"), ("broker.key", "broker_key"), ("ca.crt", "ca_crt")):
            (folder / name).write_bytes(tls[key].read_bytes())
        self.ca_file = tls["ca_crt"]
        conf = (CONFIG_MOSQUITTO / "mosquitto.conf").read_text()
        for old, new in (("/etc/mosquitto/certs/", f"{folder}/"), ("/etc/mosquitto/", f"{folder}/"),
                         ("/var/lib/mosquitto/", f"{folder}/"), ("listener 8883", f"listener {self.tls_port} 127.0.0.1"),
                         ("listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1"),
                         ("log_dest syslog", f"log_dest file {folder}/mosquitto.log")):
            assert old in conf, old
            conf = conf.replace(old, new)
        if os.geteuid() == 0:
            conf += "\nuser root\n"
        (folder / "kiosk.conf").write_text(conf)
        stanzas = (CONFIG_MOSQUITTO / "kiosk.acl.example").read_text()
        for args in acl:
            stanzas += subprocess.run([str(CONFIG_MOSQUITTO / "make-acl.sh"), *args], capture_output=True,
                                      text=True, check=True).stdout
        (folder / "kiosk.acl").write_text(stanzas)
        for i, user in enumerate(users):
            subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(folder / "kiosk.passwd"),
                            user, "pw-" + user], check=True)

    def start(self) -> "ShippedBroker":
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.folder / "kiosk.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or _accepts(self.tls_port), BROKER_START_TIMEOUT,
                 what="the shipped broker to listen")
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text() if path.exists() else ""

    def kiosk(self, tmp_path: Path, user: str, **mqtt):
        """A kiosk configuration for `user` on the TLS listener (site and device from kiosk-SITE-DEVICE)."""
        _, site, device = user.split("-", 2)
        return kiosk_config(tmp_path, self.tls_port, site=site, device=device, username=user, password="pw-" + user,
                            tls=True, ca_file=str(self.ca_file), **mqtt)

    def local(self, tmp_path: Path, user: str, **mqtt):
        """A configuration for `user` (collector, console, operator) on the plain local listener."""
        return kiosk_config(tmp_path, self.port, username=user, password="pw-" + user, **mqtt)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def shipped_broker(tmp_path, tls_material):
    """Start the shipped broker configuration: `shipped_broker(users, acl=...)`; killed at the test's end."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    made: list[ShippedBroker] = []

    def make(users: tuple[str, ...], acl: tuple[tuple[str, ...], ...] = ()) -> ShippedBroker:
        folder = tmp_path / f"shipped-broker-{len(made)}"
        folder.mkdir()
        made.append(ShippedBroker(folder, tls_material, users, acl).start())
        return made[-1]

    yield make
    for b in made:
        b.stop()


# ---------------------------------------------------------------- TLS material for a TLS listener
@pytest.fixture(scope="session")
def tls_material(tmp_path_factory) -> dict[str, Path]:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate it signed, plus an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, extensions=()):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        for ext in extensions:
            builder = builder.add_extension(ext, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def save(stem: str, certificate, key) -> None:
        (folder / f"{stem}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (folder / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key, other_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    save("ca", cert("kiosk test CA", ca_key, "kiosk test CA", ca_key, ca=True), ca_key)
    save("other-ca", cert("unrelated CA", other_key, "unrelated CA", other_key, ca=True), other_key)
    save("broker", cert("127.0.0.1", server_key, "kiosk test CA", ca_key, extensions=(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]))), server_key)
    save("client", cert("kiosk-s1-d1", client_key, "kiosk test CA", ca_key, extensions=(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),)), client_key)
    return {p.stem.replace("-", "_") + "_" + p.suffix[1:]: p for p in folder.iterdir()}


def tls_listener(material: dict[str, Path], *, require_certificate: bool) -> tuple[str, ...]:
    """Broker settings for a TLS listener with the test CA (lines following its `listener` line)."""
    return ("allow_anonymous true", f"cafile {material['ca_crt']}", f"certfile {material['broker_crt']}",
            f"keyfile {material['broker_key']}", f"require_certificate {'true' if require_certificate else 'false'}")

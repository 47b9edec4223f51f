"""The console's pages over HTTP (Starlette's test client on the real app and a real SQLite store):
accounts and roles, CSRF, masking, inert rendering, uploads, trace, export, offline bundles."""
from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
import warnings
from datetime import datetime, timedelta, timezone

import pytest

from conftest import fill_journal, journal_states

with warnings.catch_warnings():
    warnings.simplefilter("ignore")          # starlette's notice about httpx versions
    from starlette.testclient import TestClient

from kiosk import config
from kiosk.fleet.console import ConsoleProcess
from kiosk.identity import subject_ref
from kiosk.model import Person

PASSWORD = "correct horse battery"
SITE_KEY = "site-key-" + "x" * 32
NOW = datetime.now(timezone.utc).astimezone()


def console_config(tmp_path, **console):
    return config.load(None, data={
        "site": {"id": "s1", "device": "d1"},
        "journal": {"path": str(tmp_path / "journal.sqlite"), "hash_key": SITE_KEY},
        "console": {"database_url": str(tmp_path / "console.sqlite"), "hash_key": SITE_KEY, **console}})


def checkin(n, *, site="s1", device="d1", at=None, name="NGUYEN VAN THU", id_number="079090000001", ref=None,
            verdict="green", direction="in", **extra):
    at = at or NOW - timedelta(minutes=n)
    return {"v": 1, "id": f"{site}{device}{n:06d}", "seq": n, "ts": at.isoformat(), "site": site, "device": device,
            "direction": direction, "verdict": verdict, "reason": "vaccinated_14d", "kind": "cccd",
            "clock_synced": True, "subject": {"name": name, "id": id_number, "birth": "1990-12-01"},
            "subject_ref": ref, **extra}


@pytest.fixture
def console(tmp_path):
    process = ConsoleProcess(console_config(tmp_path))
    for name, site, role in (("owner1", "s1", "owner"), ("guard1", "s1", "controller"), ("guard2", "s2", "controller"),
                             ("officer", "h1", "authorised"), ("hguard", "h1", "controller")):
        process.accounts.add_user(name, PASSWORD)
        process.accounts.grant(name, site, role)
    process.store.set_site("h1", authorised=True)
    yield process
    process.store.close()


def client(console, name=None) -> TestClient:
    c = TestClient(console.app, base_url="http://127.0.0.1")
    if name:
        r = login(c, name, PASSWORD)
        assert r.status_code == 303, r.text
    return c


def token(c: TestClient, page="/login") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', c.get(page).text).group(1)


def login(c: TestClient, name: str, password: str):
    return c.post("/login", data={"csrf": token(c), "name": name, "password": password}, follow_redirects=False)


def error_of(html: str) -> str:
    return re.search(r'<p class="error" role="alert">([^<]*)</p>', html).group(1)


# ---------------------------------------------------------------------- accounts
def test_unknown_user_and_wrong_password_get_the_same_answer(console):
    c = client(console)
    unknown, wrong = login(c, "nobody", PASSWORD), login(c, "owner1", "wrong password!")
    assert unknown.status_code == wrong.status_code == 401
    assert error_of(unknown.text) == error_of(wrong.text) == "Tên đăng nhập hoặc mật khẩu không đúng."
    assert "kiosk_console" not in wrong.headers.get("set-cookie", "") or "uid" not in wrong.text


def test_logins_are_rate_limited_per_name(console):
    c = client(console)
    for _ in range(console.cfg.console.login_attempts):
        assert login(c, "owner1", "wrong password!").status_code == 401
    limited = login(c, "owner1", PASSWORD)                        # even the right password, for the window
    assert limited.status_code == 429 and error_of(limited.text) == "Quá nhiều lần thử. Vui lòng thử lại sau."
    assert login(client(console), "guard1", PASSWORD).status_code == 429   # the same client address


def test_session_cookie_is_signed_httponly_and_samesite(console):
    c = client(console)
    r = login(c, "owner1", PASSWORD)
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    c.cookies.set("kiosk_console", "eyJ1aWQiOiAxLCAiYXQiOiA5OTk5OTk5OTk5fQ==.forged.sig")
    assert c.get("/today?site=s1", follow_redirects=False).headers["location"] == "/login"


def test_every_page_sends_a_strict_content_security_policy(console):
    r = client(console).get("/login")
    assert "script-src 'self'" in r.headers["content-security-policy"] and "unsafe-inline" not in r.text


def test_forms_without_a_csrf_token_are_refused(console):
    c = client(console, "owner1")
    assert c.post("/users?site=s1", data={"name": "guard1", "role": "owner"}).status_code == 403
    assert c.post("/users?site=s1", data={"name": "guard1", "role": "owner", "csrf": "forged"}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert console.accounts.members("s1") == [("guard1", "controller"), ("owner1", "owner")]


# ---------------------------------------------------------------------- roles
def test_a_controller_sees_only_the_granted_site(console):
    console.store.add([checkin(1), checkin(1, site="s2")])
    c = client(console, "guard1")
    assert c.get("/live?site=s1").status_code == 200
    for page in ("/live?site=s2", "/today?site=s2", "/kiosks?site=s2", "/export.csv?site=s2", "/days?site=s2",
                 "/live/stream?site=s2"):
        r = c.get(page)
        assert r.status_code == 403 and "s2d1" not in r.text, page
    assert '<option value="s2"' not in c.get("/live?site=s1").text


def test_a_controller_cannot_reach_owner_pages_by_url(console):
    c = client(console, "guard1")
    for page in ("/users?site=s1", "/audit?site=s1", "/staff?site=s1", "/trace?site=s1", "/import?site=s1"):
        assert c.get(page).status_code == 403, page
    csrf = token(c, "/live?site=s1")
    assert c.post("/users?site=s1", data={"csrf": csrf, "name": "guard1", "role": "owner"}).status_code == 403
    assert c.post("/trace?site=s1", data={"csrf": csrf, "number": "079090000001"}).status_code == 403
    assert console.accounts.members("s1") == [("guard1", "controller"), ("owner1", "owner")]


def test_full_fields_only_for_the_authorised_role_at_an_authorised_site(console):
    console.store.add([checkin(1, site="h1"), checkin(2)])
    full = client(console, "officer").get("/live?site=h1").text
    masked = client(console, "hguard").get("/live?site=h1").text
    assert "NGUYEN VAN THU" in full and "079090000001" in full
    assert "NGUYEN VAN THU" not in masked and "079090000001" not in masked and "N.V. THU" in masked
    assert "079090000001" not in client(console, "hguard").get("/export.csv?site=h1").text
    # at an ordinary site the console never stored the full fields at all
    assert "079090000001" not in client(console, "owner1").get("/export.csv?site=s1").text


def test_kiosks_page_shows_state_outbox_and_alarms(console):
    console.store.record_status("s1", "d1", {"state": "online", "version": "0.1.0"})
    console.store.record_telemetry("s1", "d1", {"alarms": ["clock_unsynced", "roster_stale"],
                                                "outbox": {"pending": 4, "published_unconfirmed": 1,
                                                           "oldest_pending_age_s": 600.0},
                                                "uplink": {"alarms": ["outbox_full"]}})
    console.store.record_status("s1", "d2", {"state": "offline", "reason": "connection lost"})
    page = client(console, "guard1").get("/kiosks?site=s1").text
    cards = re.findall(r'<li class="card s-(\w+)">\s*<strong>(d\d)</strong>', page)
    assert cards == [("online", "d1"), ("offline", "d2")]
    assert "Đồng hồ chưa đồng bộ" in page and "Danh sách đã cũ" in page and "Hàng đợi gửi đã đầy" in page
    assert "<dd>5 (" in page and "0.1.0" in page


# ---------------------------------------------------------------------- inert rendering
def test_markup_and_escape_codes_in_a_checkin_are_rendered_inert(console):
    hostile = '<img src=x onerror=alert(1)><script>alert(2)</script> \x1b]0;x\x07\u202eEVIL'
    console.store.add([checkin(1, name=hostile, id_number="=HYPERLINK(\"x\")")])
    c = client(console, "owner1")
    page = c.get("/live?site=s1").text
    assert "<img src=x" not in page and "<script>alert" not in page
    assert "\x1b" not in page and "\u202e" not in page and "\\u202eEVIL" in page
    rows = list(csv.reader(io.StringIO(c.get("/export.csv?site=s1").text.lstrip("\ufeff"))))
    assert rows[1][CSV_ID].startswith("*")             # masked; a full formula would have been quoted
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert not any("\x1b" in cell for row in rows for cell in row)


CSV_ID = 10


def test_export_streams_every_filtered_row(console):
    console.store.add([checkin(i, verdict="black" if i % 3 == 0 else "green") for i in range(1, 301)])
    r = client(console, "owner1").get("/export.csv?site=s1&verdict=black")
    rows = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert rows[0][:4] == ["ts", "utc", "site", "device"] and len(rows) == 1 + 100
    assert {row[7] for row in rows[1:]} == {"black"}
    assert console.accounts.audit_log(["s1"])[0]["action"] == "export_csv"


# ---------------------------------------------------------------------- staff list
GOOD_CSV = ("id,qid,name,doses,recovered,staff\n079090000001,,NGUYEN VAN THU,2021-11-01,,yes\n"
            "079090000002,,TRAN THI MAU,2021-11-02:AstraZeneca,,yes\n,163000000000000003,LE VAN C,,,no\n")


def upload(c, data: bytes, site="s1"):
    return c.post(f"/staff/upload?site={site}", data={"csrf": token(c, f"/staff?site={site}")},
                  files={"file": ("staff.csv", data, "text/csv")})


def test_a_bad_staff_csv_is_refused_with_every_bad_line(console):
    c = client(console, "owner1")
    r = upload(c, b"id,name,doses\n079090000001,A,2021-11-01\n*bad*,B,\n079090000002,C,2021-13-01\n"
                  b"079090000001,D,\n")
    assert r.status_code == 422
    problems = re.findall(r"<li>(line [^<]*)</li>", r.text)
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5"]
    assert "duplicate id" in problems[2]
    assert "staff.csv" not in r.text and "/tmp" not in r.text


@pytest.mark.parametrize("data, said", [
    ("id,name\n079090000001,NGUYỄN\n".encode("utf-16-le"), "UTF-16LE without a byte-order mark"),  # with one: read
    ("id,name\n079090000001,MÜLLER\n".encode("cp1258"), "not UTF-8"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "UTF-8"),
    (b"hello world\n", "header row is required"),
])
def test_uploads_in_a_wrong_encoding_or_not_a_csv_are_refused(console, data, said):
    r = upload(client(console, "owner1"), data)
    assert r.status_code == 422 and said in r.text


def test_a_huge_upload_is_refused_before_it_is_read(console):
    c = client(console, "owner1")
    r = upload(c, b"x" * (console.cfg.console.max_upload_bytes + 128 * 1024))
    assert r.status_code == 413


def test_staff_list_counts_then_pushes_and_shows_each_kiosks_answer(console):
    sent = []
    console.staff.publish = lambda topic, body: sent.append((topic, body)) or True
    for device in ("d1", "d2"):
        console.store.record_status("s1", device, {"state": "online"})
    c = client(console, "owner1")
    r = upload(c, GOOD_CSV.encode())
    assert r.status_code == 200
    counts = dict(re.findall(r'class="(added|removed|changed)">(\d+)<', r.text))
    assert counts == {"added": "3", "removed": "0", "changed": "0"}
    push_token = re.search(r'name="token" value="([^"]+)"', r.text).group(1)
    r = c.post("/staff/push?site=s1", data={"csrf": token(c, "/staff?site=s1"), "token": push_token},
               follow_redirects=False)
    assert r.status_code == 303
    push_id = r.headers["location"].split("/")[-1].split("?")[0]
    [(topic, body)] = sent
    assert topic == "kiosk/s1/all/cmd/roster" and body["id"] == push_id and len(body["entries"]) == 3
    assert isinstance(body["version"], int) and datetime.fromisoformat(body["issued"]).tzinfo is not None
    assert body["entries"][1]["doses"] == "2021-11-02:AstraZeneca"
    console.staff.on_result("s1", "d1", "roster", {"v": 1, "ok": True, "id": push_id, "result": {"count": 3}})
    console.staff.on_result("s2", "d2", "roster", {"v": 1, "ok": True, "id": push_id})     # another site: ignored
    page = c.get(r.headers["location"]).text
    assert re.findall(r'<tr class="a-(\w+)"><td>(d\d)</td>', page) == [("ok", "d1"), ("waiting", "d2")]
    console.staff.on_result("s1", "d2", "roster", {"v": 1, "ok": False, "id": push_id, "error": "roster: bad"})
    assert re.findall(r'<tr class="a-(\w+)"', c.get(r.headers["location"]).text) == ["ok", "error"]
    # a second upload is compared with what was pushed
    changed = GOOD_CSV.replace("TRAN THI MAU", "TRAN THI MAI").replace(",163000000000000003,LE VAN C,,,no\n", "")
    counts = dict(re.findall(r'class="(added|removed|changed)">(\d+)<', upload(c, changed.encode()).text))
    assert counts == {"added": "0", "removed": "1", "changed": "1"}
    assert console.accounts.audit_log(["s1"])[0]["action"] == "staff_push"
    db = sqlite3.connect(console.cfg.console.database_url)
    assert not any("079090000001" in str(row) for t in ("staff", "roster_pushes", "audit")
                   for row in db.execute(f"SELECT * FROM {t}"))


# ---------------------------------------------------------------------- trace
def test_trace_turns_the_typed_id_into_the_kiosks_ref_and_never_stores_it(console):
    key = SITE_KEY.encode()
    person_ref = subject_ref(key, Person(id_number="079090000001"))
    other_ref = subject_ref(key, Person(id_number="079090000002"))
    at = NOW - timedelta(days=2)
    console.store.add([checkin(1, at=at, ref=person_ref), checkin(2, at=at + timedelta(minutes=10), ref=other_ref,
                                                                 name="TRAN THI MAU", id_number="079090000002"),
                       checkin(3, at=at - timedelta(days=30), ref=person_ref)])      # outside 14 days
    c = client(console, "owner1")
    r = c.post("/trace?site=s1", data={"csrf": token(c, "/trace?site=s1"), "number": "079090000001", "days": "14"})
    assert r.status_code == 200
    assert re.search(r'class="count">(\d+)<', r.text).group(1) == "1"
    assert other_ref in r.text and "T.T. MAU" in r.text and "079090000002" not in r.text
    export = c.post("/trace/export?site=s1", data={"csrf": token(c, "/trace?site=s1"), "ref": person_ref, "days": 14})
    rows = list(csv.reader(io.StringIO(export.text.lstrip("\ufeff"))))
    assert [row[0] for row in rows[1:]] == ["visit", "present"]
    db = sqlite3.connect(console.cfg.console.database_url)
    dump = "\n".join(db.iterdump())
    assert "079090000001" not in dump and person_ref in dump      # the audit names the ref, never the number


# ---------------------------------------------------------------------- offline bundles
def run_cli(*args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, input=stdin,
                          timeout=120)


def settings(tmp_path):
    sets = [f"journal.path={tmp_path}/journal.sqlite", f"journal.hash_key={SITE_KEY}", "site.id=s1", "site.device=d1",
            f"console.database_url={tmp_path}/console.sqlite", f"console.hash_key={SITE_KEY}"]
    return [a for s in sets for a in ("--set", s)]


def test_offline_bundle_round_trip_from_journal_to_console_and_back(tmp_path):
    ids = fill_journal(tmp_path / "journal.sqlite", 40, site="s1", device="d1")
    out = run_cli("journal", "export", "--bundle", str(tmp_path / "b.json"), *settings(tmp_path))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["events"] == 40
    first = run_cli("console", "import", str(tmp_path / "b.json"), *settings(tmp_path))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) | {"receipt": None} == {
        "bundle": str(tmp_path / "b.json"), "site": "s1", "device": "d1", "events": 40, "added": 40, "refused": 0,
        "already_imported": False, "receipt": None}
    again = json.loads(run_cli("console", "import", str(tmp_path / "b.json"), *settings(tmp_path)).stdout)
    assert again["added"] == 0 and again["already_imported"]
    confirm = run_cli("outbox", "confirm", "--bundle-receipt", str(tmp_path / "b.json.receipt.json"),
                      *settings(tmp_path))
    assert confirm.returncode == 0, confirm.stderr
    assert json.loads(confirm.stdout)["confirmed"] == 40
    assert journal_states(tmp_path / "journal.sqlite") == {"confirmed": 40}
    store = ConsoleProcess(console_config(tmp_path)).store
    assert sorted(store.ids()) == sorted(ids)
    store.close()
    # nothing unconfirmed is left: the next bundle is empty
    out = run_cli("journal", "export", "--bundle", str(tmp_path / "b2.json"), *settings(tmp_path))
    assert json.loads(out.stdout)["events"] == 0


def test_a_changed_bundle_or_another_sites_key_is_refused(tmp_path, console):
    fill_journal(tmp_path / "journal.sqlite", 3, site="s1", device="d1")
    assert run_cli("journal", "export", "--bundle", str(tmp_path / "b.json"), *settings(tmp_path)).returncode == 0
    data = (tmp_path / "b.json").read_bytes()
    tampered = data.replace(b'"verdict": "green"', b'"verdict": "black"', 1)
    c = client(console, "owner1")
    for body, said in ((tampered, "MAC does not match"), (b"\xff\x00", "not a bundle"), (data, None)):
        r = c.post("/import?site=s1", data={"csrf": token(c, "/import?site=s1")},
                   files={"file": ("b.json", body, "application/json")})
        if said:
            assert r.status_code == 422 and said in r.text
        else:
            assert r.status_code == 200 and re.search(r'class="added">3<', r.text)
    other = run_cli("journal", "export", "--bundle", str(tmp_path / "o.json"), *settings(tmp_path),
                    "--set", "journal.hash_key=another-site-key-yyyyyyyyyyyyyyyyyyyyyy")
    assert other.returncode == 0
    assert "MAC does not match" in run_cli("console", "import", str(tmp_path / "o.json"), *settings(tmp_path)).stderr
    no_key = run_cli("journal", "export", "--bundle", str(tmp_path / "n.json"), "--set",
                     f"journal.path={tmp_path}/journal.sqlite")
    assert no_key.returncode == 78 and "journal.hash_key" in no_key.stderr


def test_console_user_commands(tmp_path):
    assert run_cli("console", "user", "add", "0912345678", "--password-stdin", *settings(tmp_path),
                   stdin=PASSWORD + "\n").returncode == 0
    assert "exists already" in run_cli("console", "user", "add", "0912345678", "--password-stdin",
                                       *settings(tmp_path), stdin=PASSWORD + "\n").stderr
    assert "10 to 1024" in run_cli("console", "user", "add", "u2", "--password-stdin", *settings(tmp_path),
                                   stdin="short\n").stderr
    out = run_cli("console", "user", "grant", "0912345678", "s1", "owner", *settings(tmp_path))
    assert out.returncode == 0, out.stderr
    assert run_cli("console", "user", "passwd", "0912345678", "--password-stdin", *settings(tmp_path),
                   stdin="another good password\n").returncode == 0
    process = ConsoleProcess(console_config(tmp_path))
    user = process.accounts.verify("0912345678", "another good password")
    assert user is not None and user.roles == {"s1": "owner"}
    assert [e["action"] for e in process.accounts.audit_log(["s1"])] == ["grant"]
    process.store.close()


def test_demo_with_console_shows_the_demos_checkins(tmp_path):
    """`kiosk demo --console`: the README's second line. The console serves the demo journal's check-ins."""
    import signal

    import httpx

    from conftest import free_port, wait_for

    port = free_port()
    sets = [f"journal.path={tmp_path}/journal.sqlite", f"roster.path={tmp_path}/roster.json",
            f"trust.path={tmp_path}/trust.json", f"display.path={tmp_path}/screens", "mqtt.port=1",
            f"console.port={port}", f"console.database_url={tmp_path}/console.sqlite"]
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "demo", "--console", "--drain-seconds", "0",
                             *[a for s in sets for a in ("--set", s)]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 120, interval=0.2, what="the demo's console")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            assert http.post("/login", data={"csrf": csrf, "name": "demo", "password": "demo-password"}
                             ).status_code == 303
            page = http.get("/live?site=demo-site").text
        assert page.count('<li class="row') >= 5 and "N.V. THU" in page and "NGUYEN VAN THU" not in page
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err          # Ctrl-C, after a clean shutdown
    assert f"http://127.0.0.1:{port}/live?site=demo-site" in err and "Traceback" not in err


def test_trace_looks_under_every_key_of_the_site_ring(console):
    """After a rotation the same person has two refs: the trace finds the visits made under each."""
    from kiosk.identity import EPOCH, KeyRing, SiteKey

    old_key, new_key = b"o" * 32, b"n" * 32
    console.console.keys = KeyRing(None, [SiteKey("old", old_key, EPOCH),
                                          SiteKey("new", new_key, NOW - timedelta(days=3))])
    thu = Person(id_number="079090000001")
    console.store.add([checkin(1, at=NOW - timedelta(days=5), ref=subject_ref(old_key, thu)),
                       checkin(2, at=NOW - timedelta(days=1), ref=subject_ref(new_key, thu))])
    c = client(console, "owner1")
    r = c.post("/trace?site=s1", data={"csrf": token(c, "/trace?site=s1"), "number": "079090000001", "days": "14"})
    assert re.search(r'class="count">(\d+)<', r.text).group(1) == "2"


def test_each_staff_push_carries_a_newer_version_even_when_the_clock_steps_back(console, monkeypatch):
    """The kiosks refuse a roster command whose version is not newer than the last one they took."""
    import kiosk.fleet.staff as staff

    sent = []
    console.staff.publish = lambda topic, body: sent.append(body) or True
    c = client(console, "owner1")

    def push():
        r = upload(c, GOOD_CSV.encode())
        push_token = re.search(r'name="token" value="([^"]+)"', r.text).group(1)
        r = c.post("/staff/push?site=s1", data={"csrf": token(c, "/staff?site=s1"), "token": push_token},
                   follow_redirects=False)
        assert r.status_code == 303

    push()
    monkeypatch.setattr(staff, "now_ms", lambda: sent[0]["version"] - 60_000)    # the clock went back a minute
    push()
    assert sent[1]["version"] == sent[0]["version"] + 1
    assert datetime.fromisoformat(sent[1]["issued"]) < datetime.fromisoformat(sent[0]["issued"])

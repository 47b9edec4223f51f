"""The console in a real browser: Playwright driving Debian's Chromium (never a downloaded browser), against
`kiosk console`'s own parts (uvicorn, the collector on a real Mosquitto, SQLite) and a real kiosk App whose
check-ins come from its reader port and travel kiosk journal -> uplink -> broker -> collector -> browser.

Screenshots are written to the test's folder (`console-shots/`: live-laptop, live-phone, staff-preview, trace,
today-laptop, today-phone); with KIOSK_UPDATE_SCREENSHOTS=1 the README's two in docs/ are replaced too.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, wait_for
from fakes import QueueReader

CHROMIUM = os.environ.get("KIOSK_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-dev-shm-usage"]
PASSWORD = "correct horse battery"
SITE_KEY = "site-key-" + "z" * 32
KHACH = "C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|"
THU = "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|"
DOCS = Path(__file__).resolve().parent.parent / "docs"
README_SHOTS = {"live-phone", "today-laptop"}


def config_for(tmp_path: Path, broker_port: int, web_port: int):
    from kiosk import config

    return config.load(None, data={
        "site": {"id": "s1", "device": "d1", "mode": "health", "debounce_seconds": 0},
        "clock": {"source": "assume_synced"},
        "camera": {"type": "none"}, "display": {"type": "none"}, "gpio": {"pin_factory": "mock"},
        "roster": {"path": str(tmp_path / "roster.json"), "seed_csv": ""},
        "trust": {"path": str(tmp_path / "trust.json"), "seed_file": "", "max_age_hours": 0},
        "journal": {"path": str(tmp_path / "journal.sqlite"), "hash_key": SITE_KEY},
        "mqtt": {"enabled": True, "port": broker_port, "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 1.0,
                 "keepalive": 5, "telemetry_seconds": 1},
        "console": {"port": web_port, "database_url": str(tmp_path / "console.sqlite"), "hash_key": SITE_KEY,
                    "capacity": 3}})


@pytest.fixture
def live_console(tmp_path, broker):
    """`kiosk console` (collector + uvicorn) on threads of this process, and a kiosk App beside it."""
    from kiosk.app import App
    from kiosk.fleet.console import ConsoleProcess

    cfg = config_for(tmp_path, broker.port, free_port())
    process = ConsoleProcess(cfg)
    process.accounts.add_user("owner1", PASSWORD)
    process.accounts.grant("owner1", "s1", "owner")
    process.start_collector()
    server = process.make_server()
    web = threading.Thread(target=server.run, daemon=True)
    web.start()
    wait_for(lambda: server.started, 20, what="the console's web server")
    wait_for(lambda: process.collector.client is not None, 20, what="the console's collector")
    reader, made = QueueReader(), {}

    def kiosk() -> None:
        made["app"] = App(cfg, devices={"camera": None, "reader": reader})
        made["result"] = made["app"].run()

    kiosk_thread = threading.Thread(target=kiosk, daemon=True)
    kiosk_thread.start()
    wait_for(lambda: "app" in made, 20, what="the kiosk")
    yield process, reader, f"http://127.0.0.1:{cfg.console.port}"
    made["app"].stop()
    kiosk_thread.join(10)
    server.should_exit = True
    web.join(10)
    process.stop()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI (scripts/dev.sh installs chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


def shoot(page, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "console-shots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("KIOSK_UPDATE_SCREENSHOTS") == "1" and name in README_SHOTS:
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / f"console-{name}.png")
    return path


def log_in(page, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=name]", "owner1")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button")
    page.wait_for_url(f"{base}/today?site=s1")


def hostile_checkin() -> dict:
    """What a kiosk's stolen credentials (or a signed certificate's free-text name) could carry."""
    from datetime import datetime, timezone

    return {"v": 1, "id": "e" * 32, "seq": 1, "ts": datetime.now(timezone.utc).isoformat(), "site": "s1",
            "device": "d2", "direction": "in", "verdict": "green", "reason": "<script>alert(3)</script>",
            "kind": "personal_qr", "clock_synced": True, "subject_ref": None,
            "subject": {"name": "<img src=x onerror=alert(1)> \u202eLIVE", "id": "\x1b[2J***"}}


def test_the_console_in_a_browser_from_scan_to_trace(live_console, browser, tmp_path, broker, watcher_factory):
    process, reader, base = live_console
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and "/staff/upload" not in r.url else None)     # the bad CSV's 422 is expected
    log_in(page, base)

    # live: a check-in scanned at the kiosk arrives without a reload, masked
    page.goto(f"{base}/live?site=s1")
    page.wait_for_function("document.querySelector('[sse-connect]') && window.htmx")
    wait_for(lambda: process.hub.streams == 1, 10, what="the browser's live stream")
    started = time.monotonic()
    reader.texts.put(KHACH)
    row = page.wait_for_selector("#feed li.v-black", timeout=15_000)
    arrived = time.monotonic() - started
    assert "P.M. KHACH" in row.inner_text() and "PHAM MINH" not in page.content()
    assert "Không có dữ liệu y tế" in row.inner_text()                # the reason, in Vietnamese
    watcher_factory(broker.port, "kiosk/s1/d2/ack").publish("kiosk/s1/d2/checkin", hostile_checkin())
    page.wait_for_selector("#feed li:first-child >> text=LIVE", timeout=15_000)
    assert page.query_selector("#feed img") is None and page.query_selector("#feed script") is None
    hostile = page.inner_text("#feed li:first-child")
    assert "<.s.o. \\u202eLIVE" in hostile and "<script>alert(3)</script>" in hostile   # shown as text
    shoot(page, tmp_path, "live-laptop")

    # staff list: a bad file is refused line by line, a good one is counted, pushed and answered by the kiosk
    page.goto(f"{base}/staff?site=s1")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,doses\nC0000004,PHAM MINH KHACH,2021-02-30\n*,X,\n", encoding="utf-8")
    page.set_input_files("input[type=file]", str(bad))
    page.click("form[enctype] button")
    problems = page.locator("ul.problems li").all_inner_texts()
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3"]
    good = tmp_path / "good.csv"
    good.write_text("id,qid,name,doses,recovered,staff\nC0000004,,PHAM MINH KHACH,2021-10-01,,yes\n"
                    "079090000001,,NGUYEN VAN THU,2021-11-01:AstraZeneca,,yes\n", encoding="utf-8")
    page.set_input_files("input[type=file]", str(good))
    page.click("form[enctype] button")
    assert page.inner_text(".added") == "2"
    shoot(page, tmp_path, "staff-preview")
    page.click(".preview button")
    page.wait_for_selector("tr.a-ok", timeout=20_000)                  # the kiosk applied it and said so
    assert page.locator("tr.a-ok td").first.inner_text() == "d1"
    wait_for(lambda: process.store.devices(["s1"]) != [], 10, what="the kiosk's status")

    # the same person is green now, and a second person is there at the same time
    page.goto(f"{base}/live?site=s1")
    wait_for(lambda: process.hub.streams >= 1, 10, what="the live stream again")
    reader.texts.put(KHACH)
    page.wait_for_selector("#feed li.v-green", timeout=15_000)
    reader.texts.put(THU)
    page.wait_for_selector("#feed li.v-green >> text=N.V. THU", timeout=15_000)

    # trace: the typed ID becomes the kiosks' subject_ref; visits and who else was there, then CSV
    page.goto(f"{base}/trace?site=s1")
    page.fill("input[name=number]", "C0000004")
    page.click("form.card button")
    assert page.inner_text(".trace .count") == "2"
    assert "N.V. THU" in page.inner_text(".trace") and "NGUYEN VAN THU" not in page.content()
    shoot(page, tmp_path, "trace")
    with page.expect_download() as download:
        page.click(".trace form button")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert rows[0][0] == "row" and [r[0] for r in rows[1:]].count("visit") == 2

    # export of the live list
    page.goto(f"{base}/live?site=s1")
    with page.expect_download() as download:
        page.click("a[href^='/export.csv']")
    exported = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert len(exported) == 1 + 4 and not any(c.startswith(("=", "+", "-", "@")) for r in exported for c in r)

    # today: counts, occupancy against capacity, the kiosk strip and the chart
    page.goto(f"{base}/today?site=s1")
    page.wait_for_function("document.querySelector('canvas.chart').dataset.drawn === '1'")
    numbers = page.locator(".big strong").all_inner_texts()
    assert numbers[0] == "3" and numbers[2].startswith("3")        # 3 admitted, all inside, capacity 3
    assert page.inner_text(".warn-over_capacity em") == "Vượt sức chứa"
    assert page.locator(".strip .s-online").count() == 1
    shoot(page, tmp_path, "today-laptop")
    assert not errors, errors
    page.close()
    print(f"check-in reached the browser {arrived * 1000:.0f} ms after it was scanned")


def test_live_feed_on_a_phone_and_after_it_sleeps(live_console, browser, tmp_path):
    process, reader, base = live_console
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2)
    page = context.new_page()
    log_in(page, base)
    page.goto(f"{base}/live?site=s1")
    wait_for(lambda: process.hub.streams == 1, 10, what="the phone's live stream")
    reader.texts.put(THU)
    page.wait_for_selector("#feed li", timeout=15_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360     # nothing wider than the phone
    # the phone sleeps: its stream is cut; check-ins arrive meanwhile; it wakes and catches up
    page.evaluate("document.querySelector('[sse-connect]')['htmx-internal-data'].sseEventSource.close()")
    wait_for(lambda: process.hub.streams == 0, 20, what="the stream to close")
    reader.texts.put(KHACH)
    wait_for(lambda: len(process.store.recent("s1")) == 2, 15, what="the second check-in stored")
    page.reload()                      # waking: a fresh page, or htmx's reconnect; both show the newest rows
    page.wait_for_selector("#feed li:nth-child(2)", timeout=15_000)
    assert "P.M. KHACH" in page.inner_text("#feed li:first-child")
    shoot(page, tmp_path, "live-phone")
    # pause: the page stops listening (no stream at all); resume shows what came meanwhile
    page.click("text=Tạm dừng")
    page.wait_for_selector(".paused")
    wait_for(lambda: process.hub.streams == 0, 20, what="the paused page's stream to close")
    reader.texts.put(THU)
    wait_for(lambda: len(process.store.recent("s1")) == 3, 15, what="the third check-in stored")
    assert page.locator("#feed li").count() == 2 and page.query_selector("[sse-connect]") is None
    page.click("text=Tiếp tục")
    page.wait_for_selector("#feed li:nth-child(3)")
    assert page.query_selector("[sse-connect]") is not None
    # every page fits the phone's width
    for path in ("/today", "/days", "/kiosks", "/staff", "/trace", "/users", "/audit", "/import"):
        page.goto(f"{base}{path}?site=s1")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
        if path == "/today":
            shoot(page, tmp_path, "today-phone")
    context.close()


def test_sse_reconnect_with_last_event_id_sends_only_what_was_missed(live_console):
    """The browser's own EventSource reconnect carries Last-Event-ID: the missed rows come, nothing twice."""
    import httpx

    from kiosk.fleet.events import Cursor

    process, reader, base = live_console
    for text in (THU, KHACH):
        reader.texts.put(text)
    wait_for(lambda: len(process.store.recent("s1")) == 2, 15, what="two check-ins stored")
    older, newer = reversed(process.store.recent("s1"))
    with httpx.Client(base_url=base) as http:
        login_page = http.get("/login")
        csrf = login_page.text.split('name="csrf" value="')[1].split('"')[0]
        assert http.post("/login", data={"csrf": csrf, "name": "owner1", "password": PASSWORD}).status_code == 303
        cursor = str(Cursor(older["at_ms"], older["id"]))
        with http.stream("GET", "/live/stream?site=s1", headers={"Last-Event-ID": cursor}, timeout=10) as r:
            lines = []
            for line in r.iter_lines():
                lines.append(line)
                if line.startswith("id: "):
                    break
    assert "event: checkin" in lines and f"id: {Cursor(newer['at_ms'], newer['id'])}" in lines
    body = "\n".join(lines)
    assert newer["id"] in body and older["id"] not in body

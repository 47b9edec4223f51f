"""The synthetic people of the demo and their codes: one list used by `scripts/make_scenes.py` (which
renders the camera scenes) and by the demo (which writes the matching roster for its own "today").

Every person, ID and QID here is made up (spec section 7 shapes; QIDs 1630000000000000NN). With
DEMO_DATE as today, the first three roster rows are the spec's section 8 example and, with "moi" and
"khach", they cover every row of the spec's health-rule table (section 7). Health
dates are stored as days before "today", so the roster can be written for any date and the verdicts
stay the same. To add a person or a code (e.g. a signed certificate), append to PEOPLE and SCENES.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta

# The demo's fixed clock (config/demo.toml) and the date the bundled roster is written for.
DEMO_DATE = date(2021, 11, 15)


@dataclass(frozen=True)
class DemoPerson:
    key: str                      # short name used by SCENES and the scene files
    code: str                     # the exact text in the QR code
    kind: str                     # expected kind: personal_qr, cccd, dcc, unknown
    verdict: str                  # expected verdict in health mode (HCMC profile)
    reason: str                   # expected reason code
    id_number: str | None = None  # roster id (None: looked up by QID)
    qid: str | None = None
    name: str | None = None
    doses_days_ago: tuple[int, ...] = ()
    product: str | None = None
    recovered_days_ago: int | None = None
    on_roster: bool = False
    staff: bool | None = None


PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("thu", "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<DN4790000000001<0900000001",
               "personal_qr", "green", "vaccinated_14d", "079090000001", "163000000000000001", "NGUYEN VAN THU",
               doses_days_ago=(14,), product="AstraZeneca", on_roster=True, staff=True),
    DemoPerson("mau", "******000002|TRAN THI MAU|1985-**-**|0|163000000000000002|<2<DN479*******<0900******",
               "personal_qr", "black", "dose_too_recent", None, "163000000000000002", "TRAN THI MAU",
               doses_days_ago=(13,), product="AstraZeneca", on_roster=True, staff=False),
    DemoPerson("ho", "001195000003|LE VAN HO|1995-08-15|1|163000000000000003|163000000000000099<0<<",
               "personal_qr", "green", "recovered_180d", "001195000003", None, "LE VAN HO",
               recovered_days_ago=179, on_roster=True, staff=True),
    DemoPerson("moi", "079090000005|DO THI MOI|1999-02-03|0|163000000000000005|<2<<0900000005",
               "personal_qr", "black", "recovery_too_old", "079090000005", "163000000000000005", "DO THI MOI",
               recovered_days_ago=180, on_roster=True),
    DemoPerson("khach", "C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|",
               "personal_qr", "black", "no_health_data", "C0000004", "163000000000000004", "PHAM MINH KHACH"),
    DemoPerson("cccd", "001195000008||Trần Thị Mẫu Thử|15081995|Nữ|Thôn Thử, Hà Nội|20052021",
               "cccd", "green", "vaccinated_14d", "001195000008", None, "TRAN THI MAU THU",
               doses_days_ago=(45,), product="Sinopharm", on_roster=True),
    DemoPerson("malformed", "079090000009|NGUYEN VAN THU|01/12/1990|0|163000000000000009|<1<<",
               "personal_qr", "invalid", "malformed"),
    DemoPerson("website", "https://example.invalid/checkin?site=demo", "unknown", "invalid", "unrecognised"),
)

# (scene name, person key or None for a frame with no code, carrier: phone / paper / empty)
SCENES: tuple[tuple[str, str | None, str], ...] = (
    ("idle", None, "empty"),
    ("thu_phone", "thu", "phone"),
    ("thu_phone_again", "thu", "phone"),   # same person in the next frame: one check-in (debounce)
    ("mau_masked_dose_too_recent_phone", "mau", "phone"),
    ("ho_recovered_paper", "ho", "paper"),
    ("moi_recovered_180_days_ago_phone", "moi", "phone"),
    ("khach_not_on_roster_paper", "khach", "paper"),
    ("cccd_utf8_paper", "cccd", "paper"),
    ("malformed_phone", "malformed", "phone"),
    ("blank_phone", None, "phone"),
    ("website_paper", "website", "paper"),
)


def person(key: str) -> DemoPerson:
    return next(p for p in PEOPLE if p.key == key)


def demo_roster_csv(today: date) -> str:
    """The demo roster (spec section 8 CSV) with dose and recovery dates relative to `today`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "qid", "name", "doses", "recovered", "staff"])
    for p in PEOPLE:
        if not p.on_roster:
            continue
        doses = ";".join(f"{today - timedelta(days=d)}" + (f":{p.product}" if p.product else "")
                         for d in p.doses_days_ago)
        recovered = str(today - timedelta(days=p.recovered_days_ago)) if p.recovered_days_ago is not None else ""
        staff = {True: "yes", False: "no", None: ""}[p.staff]
        writer.writerow([p.id_number or "", p.qid or "", p.name or "", doses, recovered, staff])
    return out.getvalue()

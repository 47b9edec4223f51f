"""Classification and parsing of scanned payloads (spec sections 1-3, 6, 7) and masking."""
import unicodedata
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import StubDcc
from kiosk.codes import classify
from kiosk.masking import mask_id, mask_name, subject
from kiosk.model import BADGE, CCCD, DCC, PERSONAL_QR, UNKNOWN, ParsedCode, Person

# ------------------------------------------------------------------ spec section 7, personal QR
PERSONAL_QR_VECTORS = [
    ("079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<DN4790000000001<0900000001",
     dict(id_number="079090000001", qid="163000000000000001", name="NGUYEN VAN THU", birth="1990-12-01",
          gender="male", declared_by_proxy=False,
          extra={"insurance": "DN4790000000001", "phone": "0900000001"})),
    ("******000002|TRAN THI MAU|1985-**-**|0|163000000000000002|<2<DN479*******<0900******",
     dict(id_number="******000002", qid="163000000000000002", name="TRAN THI MAU", birth="1985",
          gender="female", declared_by_proxy=False, extra={"insurance": "DN479*******", "phone": "0900******"})),
    ("001195000003|LE VAN HO|1995-08-15|1|163000000000000003|163000000000000099<0<<",
     dict(id_number="001195000003", qid="163000000000000003", name="LE VAN HO", birth="1995-08-15",
          gender="unknown", declared_by_proxy=True, extra={"proxy_qid": "163000000000000099"})),
    ("C0000004|PHAM MINH KHACH|1970-01-31|0|163000000000000004|",
     dict(id_number="C0000004", qid="163000000000000004", name="PHAM MINH KHACH", birth="1970-01-31",
          gender="unknown", declared_by_proxy=False, extra={})),
    # The published example of Decision 1405 (spec section 2).
    ("001093029317|NGUYEN LE KHA HAN|1987-01-18|0|162979388586171100|<1<HS4010120878821<0944713700",
     dict(id_number="001093029317", qid="162979388586171100", name="NGUYEN LE KHA HAN", birth="1987-01-18",
          gender="male", declared_by_proxy=False, extra={"insurance": "HS4010120878821", "phone": "0944713700"})),
]

CCCD_VECTORS = [
    ("079090000001|021000001|Nguyễn Văn Thử|01121990|Nam|Số 1 Đường Thử, Quận 1, TP Hồ Chí Minh|15042021\r",
     dict(id_number="079090000001", name="Nguyễn Văn Thử", birth="1990-12-01", gender="male",
          extra={"old_id": "021000001", "address": "Số 1 Đường Thử, Quận 1, TP Hồ Chí Minh", "issued": "2021-04-15"})),
    ("001195000002||Trần Thị Mẫu|15081995|Nữ|Thôn Thử, Hà Nội|20052022",
     dict(id_number="001195000002", name="Trần Thị Mẫu", birth="1995-08-15", gender="female",
          extra={"address": "Thôn Thử, Hà Nội", "issued": "2022-05-20"})),
    ("038060000003||Lê Văn Cũ|1960|Nam|Thanh Hóa|10012022",
     dict(id_number="038060000003", name="Lê Văn Cũ", birth="1960", gender="male",
          extra={"address": "Thanh Hóa", "issued": "2022-01-10"})),
]

INVALID_VECTORS = [
    ("079090000006|NGUYEN VAN THU|1990-12-01|0|163000000000000006", UNKNOWN, "unrecognised"),  # 5 fields
    ("079090000007|NGUYEN VAN THU|1990-12-01|2|163000000000000007|<1<<", UNKNOWN, "unrecognised"),  # Loai 2
    ("079090000009|NGUYEN VAN THU|01/12/1990|0|163000000000000009|<1<<", PERSONAL_QR, "malformed"),
    ("001099000004||Nguyễn Văn A|31022000|Nam|Hà Nội|01012021", CCCD, "malformed"),  # 31 Feb
]


@pytest.mark.parametrize("text,expected", PERSONAL_QR_VECTORS, ids=lambda v: v[:12] if isinstance(v, str) else "")
def test_personal_qr_vectors(text, expected):
    parsed = classify(text)
    assert (parsed.kind, parsed.error) == (PERSONAL_QR, None)
    assert parsed.person == Person(**expected)


@pytest.mark.parametrize("text,expected", CCCD_VECTORS, ids=lambda v: v[:12] if isinstance(v, str) else "")
def test_cccd_vectors(text, expected):
    parsed = classify(text)
    assert (parsed.kind, parsed.error) == (CCCD, None)
    assert parsed.person == Person(**expected)


@pytest.mark.parametrize("text,kind,error", INVALID_VECTORS, ids=lambda v: v[:12] if isinstance(v, str) else "")
def test_invalid_vectors(text, kind, error):
    parsed = classify(text)
    assert (parsed.kind, parsed.error, parsed.person) == (kind, error, None)


def test_masked_personal_qr_identity_is_the_qid():
    person = classify(PERSONAL_QR_VECTORS[1][0]).person
    assert person.id_masked and person.identity_key() == "qid:163000000000000002"


# ------------------------------------------------------------------ section 1: terminators, size, controls
GOOD_PQR = PERSONAL_QR_VECTORS[0][0]


@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n"])
def test_one_reader_terminator_is_stripped(ending):
    assert classify(GOOD_PQR + ending).ok


@pytest.mark.parametrize("ending", ["\r\r", "\n\n", "\n\r", " ", "\t"])
def test_anything_beyond_one_terminator_is_refused(ending):
    parsed = classify(GOOD_PQR + ending)
    assert parsed.error == "malformed"


def test_size_limit_counts_utf8_bytes_and_comes_first():
    name = "Nguyễn Văn Thử"
    text = f"079090000001||{name}|01121990|Nam|{'Đ' * 100}|15042021"
    size = len(text.encode("utf-8"))
    assert classify(text, max_length=size).ok
    assert classify(text, max_length=size - 1) == ParsedCode(UNKNOWN, error="too_long")
    assert classify(text + "\r\n", max_length=size).ok  # the terminator does not count
    assert classify("\x00" * 10_000_000).error == "too_long"


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\ud800"])
def test_control_characters_make_a_code_malformed(bad):
    text = GOOD_PQR.replace("NGUYEN VAN", "NGUYEN" + bad + "VAN")
    assert (classify(text).kind, classify(text).error) == (PERSONAL_QR, "malformed")
    cccd = CCCD_VECTORS[1][0].replace("Thôn", "Th" + bad + "ôn")
    assert classify(cccd).error == "malformed"


@pytest.mark.parametrize("text", ["", "hello", "https://example.com/?a=b", "|" * 4000, "1|2|3|4|5|6|7",
                                  "12345678901|a|b|c|d|e|f"])
def test_unknown_payloads_are_unrecognised(text):
    assert classify(text) == ParsedCode(UNKNOWN, error="unrecognised")


# ------------------------------------------------------------------ personal QR field checks
def pqr(id_number="079090000001", name="NGUYEN VAN THU", birth="1990-12-01", declared="0",
        qid="163000000000000001", ext="<1<<"):
    return "|".join([id_number, name, birth, declared, qid, ext])


@pytest.mark.parametrize("field,value,detail", [
    ("id_number", "", "id_number"), ("id_number", "079-090-000", "id_number"),
    ("id_number", "079 090 000", "id_number"), ("id_number", "*****0000001", "id_number"),
    ("id_number", "c0000004", "id_number"), ("id_number", "A" * 21, "id_number"),
    ("name", "Nguyen Van Thu", "name"), ("name", "NGUYỄN VĂN THỬ", "name"), ("name", "NGUYEN  VAN", "name"),
    ("name", " NGUYEN", "name"), ("name", "NGUYEN ", "name"), ("name", "", "name"), ("name", "A" * 101, "name"),
    ("birth", "1990-13-01", "birth"), ("birth", "1990-02-30", "birth"), ("birth", "1990-12-**", "birth"),
    ("birth", "1990", "birth"), ("birth", "1800-01-01", "birth"), ("birth", "１９９０-12-01", "birth"),
    ("qid", "", "qid"), ("qid", "1" * 65, "qid"), ("qid", "16300 0001", "qid"),
    ("ext", "<3<<", "gender"), ("ext", "<1<DN47900000000<", "insurance"), ("ext", "<1<<090000000", "phone"),
    ("ext", "<1<<09000000011", "phone"), ("ext", "bad qid<1<<", "proxy_qid"), ("ext", "<" * 17, "ext"),
])
def test_personal_qr_fields_are_validated(field, value, detail):
    parsed = classify(pqr(**{field: value}))
    assert (parsed.kind, parsed.error, parsed.detail) == (PERSONAL_QR, "malformed", detail)


@pytest.mark.parametrize("ext,gender,extra", [
    ("", "unknown", {}), ("<", "unknown", {}), ("<2", "female", {}), ("<*<<", "unknown", {}),
    ("<1<<<SIGNATURE-SLOT<future", "male", {}),
])
def test_personal_qr_extension_variants(ext, gender, extra):
    parsed = classify(pqr(ext=ext))
    assert parsed.ok and parsed.person.gender == gender and parsed.person.extra == extra


def test_personal_qr_nine_digit_id_and_proxy_flag():
    person = classify(pqr(id_number="021000001", declared="1")).person
    assert person.id_number == "021000001" and person.declared_by_proxy


# ------------------------------------------------------------------ CCCD field checks
def cccd(id_number="001195000002", old="", name="Trần Thị Mẫu", birth="15081995", gender="Nữ",
         address="Hà Nội", issued="20052022", *more):
    return "|".join([id_number, old, name, birth, gender, address, issued, *more])


def test_cccd_female_is_compared_after_nfc():
    decomposed = unicodedata.normalize("NFD", "Nữ")
    assert decomposed != "Nữ"
    parsed = classify(cccd(gender=decomposed, name=unicodedata.normalize("NFD", "Trần Thị Mẫu")))
    assert parsed.person.gender == "female"
    assert parsed.person.name == unicodedata.normalize("NFC", "Trần Thị Mẫu")


def test_cccd_month_year_birth_and_extra_fields_ignored():
    parsed = classify(cccd(birth="081995") + "|extra|fields")
    assert parsed.person.birth == "1995-08"
    assert classify(cccd("001195000", birth="1995")).person.id_number == "001195000"


@pytest.mark.parametrize("kwargs,detail", [
    (dict(old="12345"), "old_id"), (dict(name=""), "name"), (dict(name="Trần  Thị"), "name"),
    (dict(name="Trần Thị 3"), "name"), (dict(name="x" * 101), "name"), (dict(birth="15/08/1995"), "birth"),
    (dict(birth="31042000"), "birth"), (dict(birth="131995"), "birth"), (dict(birth="1899"), "birth"),
    (dict(birth=""), "birth"), (dict(gender="Nu"), "gender"), (dict(gender="nam"), "gender"),
    (dict(gender=""), "gender"), (dict(address="A" * 257), "address"), (dict(issued="32012022"), "issued"),
    (dict(issued="2022"), "issued"),
])
def test_cccd_fields_are_validated(kwargs, detail):
    parsed = classify(cccd(**kwargs))
    assert (parsed.kind, parsed.error, parsed.detail) == (CCCD, "malformed", detail)


@pytest.mark.parametrize("name", ["H'Hen Niê", "Y-Moan Ênuôl", "Nguyễn Thị Ngọc’Anh"])
def test_cccd_names_with_apostrophes_and_hyphens(name):
    assert classify(cccd(name=name)).person.name == name


@pytest.mark.parametrize("name", ["'Hen", "Niê-", "A - B", "Trần.Thị"])
def test_cccd_name_punctuation_only_inside_words(name):
    assert classify(cccd(name=name)).detail == "name"


def test_leap_day_is_a_date():
    assert classify(cccd(birth="29022000")).person.birth == "2000-02-29"


# ------------------------------------------------------------------ DCC and badges
def test_dcc_goes_to_the_verifier_with_the_instant():
    dcc, now = StubDcc(ParsedCode(DCC, error="bad_signature")), datetime(2022, 3, 1, tzinfo=timezone.utc)
    assert classify("HC1:NCFOXN%TS3DH\r", dcc=dcc, now=now) == ParsedCode(DCC, error="bad_signature")
    assert dcc.calls == [("HC1:NCFOXN%TS3DH", now)]
    assert classify("HC1:NCFOXN%TS3DH") == ParsedCode(DCC, error="unsupported")


def test_badges_only_with_a_prefix():
    assert classify("KB:STAFF-0042", badge_prefix="KB:") == ParsedCode(BADGE, person=Person(id_number="STAFF-0042"))
    assert classify("KB:STAFF-0042").error == "unrecognised"
    for bad in ("KB:", "KB:with space", "KB:" + "x" * 65, "KB:Đ"):
        assert (classify(bad, badge_prefix="KB:").kind, classify(bad, badge_prefix="KB:").error) == (BADGE, "malformed")


# ------------------------------------------------------------------ never raises
@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("|0123456789*<-ABCĐữ \r\n\x00"), max_size=300),
    st.lists(st.text(max_size=20), min_size=5, max_size=9).map("|".join),
    st.integers(0, 20000).map(lambda n: "|" * n),
    st.text(max_size=50).map(lambda t: "HC1:" + t),
))
def test_classify_never_raises(text):
    parsed = classify(text, badge_prefix="KB:")
    assert parsed.kind in (PERSONAL_QR, CCCD, DCC, BADGE, UNKNOWN)
    assert parsed.ok == (parsed.person is not None)


# ------------------------------------------------------------------ masking (section 6, made stricter)
@pytest.mark.parametrize("value,masked", [
    ("079090000001", "**********01"), ("******000002", "**********02"), ("***********2", "***********2"),
    ("021000001", "********1"), ("C0000004", "*******4"), ("12345", "*****"), ("AB12CD", "******"), (None, None),
])
def test_mask_id(value, masked):
    assert mask_id(value) == masked


@pytest.mark.parametrize("value,masked", [
    ("NGUYEN VAN THU", "N.V. THU"), ("Nguyễn Văn Thử", "N.V. Thử"), ("Đặng Thị Ánh Tuyết", "Đ.T.Á. Tuyết"),
    ("THU", "THU"), ("", None), (None, None),
])
def test_mask_name(value, masked):
    assert mask_name(value) == masked


def test_subject_forms_never_show_phone_or_insurance():
    person = classify(GOOD_PQR).person
    published = subject(PERSONAL_QR, person, authorised=False, for_screen=False)
    assert published == {"id": "**********01", "name": "N.V. THU", "gender": "male"}
    assert subject(PERSONAL_QR, person, authorised=False, for_screen=True) == {"name": "THU"}
    full = subject(PERSONAL_QR, person, authorised=True, for_screen=False)
    assert full == {"id": "079090000001", "name": "NGUYEN VAN THU", "birth": "1990-12-01", "gender": "male"}
    for form in (published, full):
        assert not {"0900000001", "DN4790000000001"} & set(map(str, form.values()))
    assert subject(BADGE, Person(id_number="STAFF-0042"), authorised=False, for_screen=False) == {}
    assert subject(UNKNOWN, None, authorised=False, for_screen=False) == {}

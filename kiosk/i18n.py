"""Screen texts in Vietnamese (the default) and English.

Keys are verdicts, reason codes (spec/codes.md) and status/alarm codes. `text()` never raises: an
unknown key or language shows the key itself, so a new reason code still reaches the screen.
"""
from __future__ import annotations

DEFAULT_LANG = "vi"

STRINGS: dict[str, dict[str, str]] = {
    "vi": {
        # verdict titles
        "green": "XANH",
        "black": "ĐEN",
        "invalid": "KHÔNG HỢP LỆ",
        # reasons
        "checked_in": "Đã ghi nhận",
        "vaccinated_14d": "Đã tiêm ≥ 14 ngày",
        "recovered_180d": "Đã khỏi bệnh < 180 ngày",
        "no_health_data": "Không có dữ liệu y tế",
        "dose_too_recent": "Mũi tiêm chưa đủ 14 ngày",
        "dose_too_old": "Mũi tiêm đã quá hạn",
        "recovery_too_old": "Khỏi bệnh đã quá hạn",
        "tested_negative": "Xét nghiệm âm tính",
        "test_positive": "Xét nghiệm dương tính",
        "test_not_accepted": "Không chấp nhận xét nghiệm",
        "test_too_old": "Xét nghiệm đã quá hạn",
        "test_result_unknown": "Không đọc được kết quả xét nghiệm",
        "revoked": "Chứng nhận đã bị thu hồi",
        "revocation_stale": "Danh sách thu hồi đã cũ",
        "not_on_staff_list": "Không có trong danh sách",
        "on_staff_list": "Có trong danh sách",
        "no_roster": "Chưa có danh sách",
        "bad_signature": "Chữ ký không hợp lệ",
        "expired": "Chứng nhận đã hết hạn",
        "not_yet_valid": "Chứng nhận chưa có hiệu lực",
        "unknown_key": "Không rõ nơi cấp",
        "malformed": "Mã bị lỗi",
        "unrecognised": "Mã không được hỗ trợ",
        "too_long": "Mã quá dài",
        "unsupported": "Loại mã chưa hỗ trợ",
        "roster_stale": "Danh sách đã cũ",
        "trust_stale": "Danh sách khóa đã cũ",
        "clock_unsynced": "Đồng hồ chưa đồng bộ",
        "internal_error": "Lỗi hệ thống",
        "override": "Bảo vệ cho phép vào",
        # status and alarms
        "idle": "Quét mã QR",
        "idle_hint": "Đưa mã QR vào trước camera",
        "camera_failed": "Lỗi camera",
        "reader_failed": "Lỗi đầu đọc mã",
        "display_failed": "Lỗi màn hình",
        "mqtt_offline": "Mất kết nối máy chủ",
        "outbox_full": "Hàng đợi gửi đã đầy",
        "uplink_stopped": "Lỗi bộ gửi dữ liệu",
        "journal_failed": "Lỗi ghi nhật ký",
        "direction_in": "Vào",
        "direction_out": "Ra",
    },
    "en": {
        "green": "GREEN",
        "black": "BLACK",
        "invalid": "INVALID",
        "checked_in": "Checked in",
        "vaccinated_14d": "Vaccinated ≥ 14 days",
        "recovered_180d": "Recovered < 180 days",
        "no_health_data": "No health data",
        "dose_too_recent": "Dose under 14 days",
        "dose_too_old": "Dose too old",
        "recovery_too_old": "Recovery too old",
        "tested_negative": "Tested negative",
        "test_positive": "Test positive",
        "test_not_accepted": "Tests not accepted",
        "test_too_old": "Test too old",
        "test_result_unknown": "Test result unreadable",
        "revoked": "Certificate revoked",
        "revocation_stale": "Revocation list out of date",
        "not_on_staff_list": "Not on staff list",
        "on_staff_list": "On staff list",
        "no_roster": "No roster loaded",
        "bad_signature": "Bad signature",
        "expired": "Certificate expired",
        "not_yet_valid": "Not yet valid",
        "unknown_key": "Unknown issuer",
        "malformed": "Damaged code",
        "unrecognised": "Unrecognised code",
        "too_long": "Code too long",
        "unsupported": "Unsupported code",
        "roster_stale": "Roster out of date",
        "trust_stale": "Trust list out of date",
        "clock_unsynced": "Clock not synchronised",
        "internal_error": "Internal error",
        "override": "Admitted by guard",
        "idle": "Scan your QR code",
        "idle_hint": "Hold the QR code up to the camera",
        "camera_failed": "Camera failure",
        "reader_failed": "Reader failure",
        "display_failed": "Display failure",
        "mqtt_offline": "Server offline",
        "outbox_full": "Upload queue full",
        "uplink_stopped": "Uplink stopped",
        "journal_failed": "Journal write failure",
        "direction_in": "In",
        "direction_out": "Out",
    },
}


def text(key: str, lang: str = DEFAULT_LANG) -> str:
    """The text for `key` in `lang`; Vietnamese when the language is unknown; the key itself as last resort."""
    table = STRINGS.get(lang, STRINGS[DEFAULT_LANG])
    return table.get(key, key)

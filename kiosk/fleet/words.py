"""The console's words in Vietnamese (the default) and English. Verdicts, reasons and alarms come from the
kiosk's own texts (`kiosk.i18n`), so a reason reads the same on the kiosk's screen and on the console."""
from __future__ import annotations

from kiosk import i18n

LANGUAGES = ("vi", "en")

WORDS: dict[str, dict[str, str]] = {
    "vi": {
        "console": "Bảng điều khiển", "today": "Hôm nay", "live": "Trực tiếp", "kiosks": "Thiết bị",
        "staff": "Danh sách nhân viên", "trace": "Truy vết", "days": "Theo ngày", "users": "Tài khoản",
        "audit": "Nhật ký thao tác", "import": "Nhập tệp ngoại tuyến", "login": "Đăng nhập", "logout": "Đăng xuất",
        "user_name": "Tên đăng nhập hoặc số điện thoại", "password": "Mật khẩu",
        "login_failed": "Tên đăng nhập hoặc mật khẩu không đúng.",
        "login_limited": "Quá nhiều lần thử. Vui lòng thử lại sau.",
        "in_today": "Vào hôm nay", "out_today": "Ra hôm nay", "inside_now": "Đang ở trong",
        "capacity": "Sức chứa", "near_capacity": "Sắp đầy", "over_capacity": "Vượt sức chứa",
        "denied_today": "Bị từ chối hôm nay", "entries_per_hour": "Lượt vào theo giờ",
        "alarms": "Cảnh báo", "no_alarms": "Không có cảnh báo", "time": "Thời gian", "kiosk": "Thiết bị",
        "direction": "Hướng", "verdict": "Kết quả", "reason": "Lý do", "person": "Người", "in": "Vào",
        "out": "Ra", "pause": "Tạm dừng", "resume": "Tiếp tục", "paused": "Đã tạm dừng",
        "older": "Cũ hơn", "newest": "Mới nhất", "export_csv": "Xuất CSV", "all": "Tất cả",
        "filter": "Lọc", "online": "Trực tuyến", "offline": "Ngoại tuyến", "silent": "Không phản hồi",
        "last_seen": "Lần cuối", "outbox": "Chờ gửi", "oldest_pending": "Chờ lâu nhất", "version": "Phiên bản",
        "never": "chưa bao giờ", "upload": "Tải lên", "csv_file": "Tệp CSV", "check_file": "Kiểm tra tệp",
        "file_rejected": "Tệp bị từ chối, chưa thay đổi gì", "added": "Thêm", "removed": "Bớt", "changed": "Đổi",
        "rows": "Dòng", "push_to_kiosks": "Gửi tới các thiết bị", "push_sent": "Đã gửi danh sách",
        "answer_ok": "Đã nhận", "answer_error": "Lỗi", "answer_waiting": "Chưa trả lời",
        "id_or_qid": "Số CCCD/CMND hoặc mã QID", "window_days": "Số ngày", "search": "Tìm",
        "visits": "Lượt ghi nhận", "others_present": "Người có mặt cùng lúc", "no_visits": "Không có lượt nào.",
        "within_minutes": "trong vòng {n} phút", "site": "Địa điểm", "role": "Vai trò", "grant": "Cấp quyền",
        "new_user": "Tài khoản mới", "save": "Lưu", "done": "Xong", "action": "Thao tác", "who": "Ai",
        "detail": "Chi tiết", "not_allowed": "Bạn không có quyền xem trang này.", "no_sites": "Chưa được cấp "
        "địa điểm nào. Hãy nhờ chủ địa điểm cấp quyền.", "bundle_file": "Tệp ngoại tuyến (kiosk journal export "
        "--bundle)", "imported": "Đã nhập", "already_imported": "Tệp này đã được nhập trước đó",
        "download_receipt": "Tải biên nhận", "language": "English", "per_day": "Số lượt theo ngày",
        "clock_unsynced_row": "đồng hồ chưa đồng bộ", "total": "Tổng", "green": "Xanh", "black": "Đen",
        "invalid": "Không hợp lệ", "bad_request": "Yêu cầu không hợp lệ.", "too_large": "Tệp quá lớn.",
        "trace_note": "Số giấy tờ chỉ dùng để tính mã tham chiếu, không được lưu lại.",
        "role_owner": "Chủ địa điểm", "role_controller": "Kiểm soát viên", "role_authorised": "Được ủy quyền",
        "authorised_site": "Địa điểm được ủy quyền (hiện đầy đủ thông tin)",
        "first_shown": "chỉ hiện {n} người đầu tiên; thu hẹp cửa sổ để xem thêm",
    },
    "en": {
        "console": "Console", "today": "Today", "live": "Live", "kiosks": "Kiosks", "staff": "Staff list",
        "trace": "Trace", "days": "Per day", "users": "Users", "audit": "Audit log", "import": "Offline import",
        "login": "Log in", "logout": "Log out", "user_name": "User name or phone number", "password": "Password",
        "login_failed": "Wrong user name or password.", "login_limited": "Too many attempts. Try again later.",
        "in_today": "In today", "out_today": "Out today", "inside_now": "Inside now", "capacity": "Capacity",
        "near_capacity": "Nearly full", "over_capacity": "Over capacity", "denied_today": "Turned away today",
        "entries_per_hour": "Entries per hour", "alarms": "Alarms", "no_alarms": "No alarms", "time": "Time",
        "kiosk": "Kiosk", "direction": "Direction", "verdict": "Verdict", "reason": "Reason", "person": "Person",
        "in": "In", "out": "Out", "pause": "Pause", "resume": "Resume", "paused": "Paused", "older": "Older",
        "newest": "Newest", "export_csv": "Export CSV", "all": "All", "filter": "Filter", "online": "Online",
        "offline": "Offline", "silent": "Silent", "last_seen": "Last seen", "outbox": "Outbox",
        "oldest_pending": "Oldest pending", "version": "Version", "never": "never", "upload": "Upload",
        "csv_file": "CSV file", "check_file": "Check the file", "file_rejected": "File rejected, nothing changed",
        "added": "Added", "removed": "Removed", "changed": "Changed", "rows": "Rows",
        "push_to_kiosks": "Send to the kiosks", "push_sent": "List sent", "answer_ok": "Applied",
        "answer_error": "Error", "answer_waiting": "Not yet answered", "id_or_qid": "ID number or QID",
        "window_days": "Days", "search": "Search", "visits": "Visits", "others_present": "Others present",
        "no_visits": "No visits.", "within_minutes": "within {n} minutes", "site": "Site", "role": "Role",
        "grant": "Grant", "new_user": "New user", "save": "Save", "done": "Done", "action": "Action",
        "who": "Who", "detail": "Detail", "not_allowed": "You may not see this page.",
        "no_sites": "No site granted yet. Ask the site's owner.",
        "bundle_file": "Offline bundle (kiosk journal export --bundle)", "imported": "Imported",
        "already_imported": "This file was imported before", "download_receipt": "Download the receipt",
        "language": "Tiếng Việt", "per_day": "Check-ins per day", "clock_unsynced_row": "clock not synced",
        "total": "Total", "green": "Green", "black": "Black", "invalid": "Invalid",
        "bad_request": "Bad request.", "too_large": "File too large.",
        "trace_note": "The number is only used to compute the reference; it is not stored.",
        "role_owner": "Owner", "role_controller": "Controller", "role_authorised": "Authorised",
        "authorised_site": "Authorised site (full fields shown)",
        "first_shown": "the first {n} shown; narrow the window for more",
    },
}


def word(key: str, lang: str) -> str:
    """A console word, else the kiosk's text for a verdict, reason or alarm, else the key itself."""
    table = WORDS.get(lang, WORDS["vi"])
    if key in table:
        return table[key]
    return i18n.text(key, lang)

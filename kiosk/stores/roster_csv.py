"""Reading a roster CSV (spec section 8) row by row, in bounded memory, whatever spreadsheet wrote it.

- Encoding: UTF-8 with or without a byte-order mark; UTF-16/UTF-32 with a byte-order mark. Anything else is
  refused with the encoding's name and how to save the file as UTF-8 (kiosk.stores.encodings).
- Delimiter: `,`, `;` (what spreadsheets write where the decimal separator is a comma, as in Vietnam) or a
  tab (the "Unicode text" export), whichever names the most known columns in the header; a first line
  `sep=;` (Excel's hint) sets it. A `;` inside a field (several doses) then needs quotes, as spreadsheets write.
- Header: column names in any order and any letter case; unknown ones are named with "did you mean".
- Rows are read one at a time: a file of a million rows never sits in memory. A row is named by its first line
  (a quoted field may span lines); blank lines are skipped.
"""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
import re
from pathlib import Path
from typing import IO, Iterator

from kiosk.config import did_you_mean
from kiosk.errors import DataError
from kiosk.stores.encodings import SAVE_AS_UTF8, bom_codec, bomless_utf16, guess_legacy
from kiosk.stores.roster_rows import COLUMNS, RosterEntry, RowRules, collect

# A roster is at most a couple of million people (about 100 bytes a row): anything larger is a wrong file.
MAX_CSV_BYTES = 256 * 1024 * 1024
MAX_ROWS = 2_000_000
MAX_LINE_CHARS = 1024 * 1024  # csv's own field limit (128 KB) names a long field; this bounds a line without any
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab"}
SEP_HINT = re.compile(r'"?sep=(.)"?\s*')
Row = tuple[int, "RosterEntry | str"]  # the row's first line, and its entry or the text of its problems


class RosterCsv:
    """An open roster CSV whose header has been checked; `rows()` reads the rest once. Use it with `with`."""

    def __init__(self, path: str | os.PathLike[str], rules: RowRules = RowRules()):
        self.path = Path(path)
        self.rules = rules
        self.rejected = f"{self.path} rejected, nothing imported"
        self._raw = _open_bounded(self.path)
        try:
            self.codec = self._codec()
            self._text = io.TextIOWrapper(self._raw, encoding=self.codec, errors="strict", newline="")
            self._lines = self._read_lines()
            self._skipped, first = self._first_line()
            hint = SEP_HINT.fullmatch(first)
            if hint:
                self.delimiter = hint.group(1)
                more, first = self._first_line()
                self._skipped += 1 + more
            else:
                self.delimiter = _sniff_delimiter(first)
            self._header_line = first
            self.header = [h.strip().lower() for h in next(csv.reader([first], delimiter=self.delimiter))]
        except BaseException:
            self.close()
            raise
        self._check_header()

    def __enter__(self) -> RosterCsv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def rows(self) -> Iterator[Row]:
        """Every data row, checked; DataError for what makes the whole file unusable (wrong encoding, a row
        count or a line length no roster has, no rows at all)."""
        reader = csv.reader(itertools.chain([self._header_line], self._lines), delimiter=self.delimiter)
        next(reader)
        offset = self._skipped
        first_line = reader.line_num + 1 + offset
        count = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a field over csv's size limit: report it and read on
                yield first_line, str(exc)
                first_line = reader.line_num + 1 + offset
                continue
            line, first_line = first_line, reader.line_num + 1 + offset
            if not any(f.strip() for f in fields):
                continue  # blank line
            count += 1
            if count > MAX_ROWS:
                raise DataError(f"{self.path} has more than {MAX_ROWS:,} rows: not a roster, nothing imported")
            if len(fields) != len(self.header):
                yield line, self._field_count_problem(len(fields))
            else:
                yield line, self.rules.checked(dict(zip(self.header, fields)))
        if not count:
            raise DataError(f"{self.path} has a header but no rows: nothing imported")

    # ------------------------------------------------------------------ internals
    def _codec(self) -> str:
        head = self._raw.peek(4096)[:4096]
        codec = bom_codec(head)
        if codec:
            return codec
        utf16 = bomless_utf16(head)
        if utf16:
            raise DataError(self.rejected, [f"line 1: the file is {utf16} without a byte-order mark; {SAVE_AS_UTF8}"])
        return "utf-8"

    def _read_lines(self) -> Iterator[str]:
        number = 0
        while True:
            try:
                line = self._text.readline(MAX_LINE_CHARS)
            except UnicodeDecodeError:
                raise self._not_decodable() from None
            if not line:
                return
            number += 1
            if len(line) == MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                raise DataError(self.rejected, [f"line {number}: longer than {MAX_LINE_CHARS // 1024} KB "
                                                "without a line break: not a roster CSV"])
            yield line

    def _first_line(self) -> tuple[int, str]:
        """(blank lines skipped, the first non-blank line)."""
        for skipped, line in enumerate(self._lines):
            if line.strip():
                return skipped, line
        raise DataError(f"{self.path} is empty: expected a header row ({','.join(COLUMNS)}) and one row per person")

    def _check_header(self) -> None:
        header = self.header
        problems = []
        unknown = [h for h in header if h not in COLUMNS]
        if unknown and not set(header) & set(COLUMNS):
            problems.append(f"line {self._skipped + 1}: a header row is required (columns: {', '.join(COLUMNS)}, "
                            "separated by ',', ';' or tabs)")
        else:
            problems += [f"line {self._skipped + 1}: unknown column {h!r}{did_you_mean(h, COLUMNS)} "
                         f"(known: {', '.join(COLUMNS)})" for h in unknown]
            problems += [f"line {self._skipped + 1}: column {h!r} appears twice"
                         for h in sorted({h for h in header if header.count(h) > 1})]
            if "id" not in header and "qid" not in header:
                problems.append(f"line {self._skipped + 1}: needs an 'id' or a 'qid' column")
        if problems:
            self.close()
            raise DataError(self.rejected, problems)

    def _field_count_problem(self, found: int) -> str:
        text = f"expected {len(self.header)} fields, found {found}"
        if found > len(self.header) and self.delimiter == ";":
            text += " (in a ';'-separated file a field with several doses needs quotes: \"2021-06-01;2021-09-01\")"
        return text

    def _not_decodable(self) -> DataError:
        """What to say about a file that is not in the encoding it started in (read again from its start)."""
        if self.codec not in ("utf-8", "utf-8-sig"):
            return DataError(self.rejected, [f"the file starts with a {self.codec.upper()} byte-order mark but is "
                                             "not valid in that encoding; save it again as UTF-8"])
        with open(self.path, "rb") as f:
            offset, line = _first_bad_utf8(f)
            f.seek(offset)
            window = f.read(1024 * 1024)
        sample = b"\n".join(row for row in window.split(b"\n") if not row.isascii())
        encoding = guess_legacy(sample)
        return DataError(self.rejected, [f"line {line}: not UTF-8: the file looks like {encoding.name}; "
                                         f"{encoding.advice}"])


def parse_csv(path: str | os.PathLike[str], rules: RowRules = RowRules()) -> list[RosterEntry]:
    """Every entry of a roster CSV, in memory (an upload in the console: a few thousand rows); DataError lists
    every bad line. The kiosk imports through `Roster.import_csv`, which streams."""
    with RosterCsv(path, rules) as source:
        return collect(source.rows(), "line", source.rejected)


def _open_bounded(path: Path) -> io.BufferedReader:
    """The file, opened; one over MAX_CSV_BYTES is refused before it is read (it may be a wrong file or sparse)."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if os.fstat(f.fileno()).st_size > MAX_CSV_BYTES:
        f.close()
        raise DataError(f"{path} is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB: not a roster CSV, "
                        "nothing imported")
    return f


def _sniff_delimiter(header: str) -> str:
    """The delimiter under which the header names the most known columns (a comma on a tie)."""
    def known(delimiter: str) -> int:
        fields = next(csv.reader([header], delimiter=delimiter), [])
        return sum(1 for f in fields if f.strip().lower() in COLUMNS)

    return max(DELIMITERS, key=known)


def _first_bad_utf8(f: IO[bytes]) -> tuple[int, int]:
    """(byte offset of the start of the first line holding invalid UTF-8, its line number), reading in chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line, line_start = 0, 1, 0
    while True:
        chunk = f.read(1024 * 1024)
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            pending = max(0, len(exc.object) - len(chunk))  # bytes the decoder held back from the last chunk
            bad = max(0, exc.start - pending)
            newline = chunk.rfind(b"\n", 0, bad)
            if newline >= 0:
                line_start = offset + newline + 1
            return line_start, line + chunk.count(b"\n", 0, bad)
        if not chunk:
            return offset, line
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            line_start = offset + newline + 1
        line += chunk.count(b"\n")
        offset += len(chunk)

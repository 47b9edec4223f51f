"""Text from a check-in made harmless for a person's screen: terminal, web page, spreadsheet.

Anything a code carries (a name inside a signed certificate is free text) can hold terminal escape
sequences (C0/C1 controls: CSI `ESC [`, OSC `ESC ]`, the 8-bit CSI U+009B), bidirectional overrides that
make a line read differently from what it contains (U+202A-U+202E, U+2066-U+2069, LRM/RLM/ALM), or, in a
spreadsheet, a formula (`=`, `+`, `-`, `@` at the start of a cell, also tab and CR). HTML markup is the web
layer's job (Jinja2 autoescape); these functions take care of the rest, and are used by every human-facing
output: `kiosk tail`, the console's pages and its CSV exports.

Each neutralised character is shown as a visible escape (`\\x1b`, `\\u202e`) so an operator can see that a
field carried one, and the text stays readable.
"""
from __future__ import annotations

import re
from typing import Any

# C0 controls except none (a tab or newline inside one field is as misleading as any other), DEL, C1,
# bidi embeddings/overrides/isolates and marks, line/paragraph separators, and the BOM/zero-width no-break.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text(value: Any) -> str:
    """`value` as text with every control, bidi and separator character replaced by a visible escape."""
    if value is None:
        return ""
    return _UNSAFE.sub(_escape, value if isinstance(value, str) else str(value))


def cell(value: Any) -> str:
    """A CSV cell: `text(value)`, and a leading `'` where a spreadsheet would read a formula (OWASP's advice)."""
    out = text(value)
    # `text` already escaped tab and CR; a cell that still starts like a formula is quoted
    return "'" + out if out.startswith(FORMULA_START) else out


def row(values: list[Any] | tuple[Any, ...]) -> list[str]:
    return [cell(v) for v in values]

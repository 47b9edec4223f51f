"""Which text encoding an imported file is in, and what to tell the operator when it is not one we read.

Read: UTF-8 (with or without a byte-order mark), and UTF-16 or UTF-32 with a byte-order mark (what a
spreadsheet's "Unicode text" export writes; the mark makes it unambiguous). Everything else is refused with
the encoding's name and how to save the file as UTF-8, because guessing a legacy encoding wrongly would store
garbled names. The legacy encodings Vietnamese files come in are told apart by decoding a sample with each and
counting the words that are well-formed Vietnamese syllables: Windows-1258 (what Excel writes for "CSV" on a
Vietnamese Windows), TCVN3 (ABC, the .VnTime fonts) and VNI (the VNI-Times fonts), then Windows-1252/Latin-1.
"""
from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))

SAVE_AS_UTF8 = ('save it as UTF-8: in Excel "Save As" > "CSV UTF-8 (Comma delimited) (*.csv)"; in LibreOffice '
                '"Save As" > "Text CSV", "Edit filter settings", character set "Unicode (UTF-8)"')
CONVERT_FIRST = ("convert its text to Unicode first (UniKey: Ctrl+Shift+F6, source {name}, destination Unicode), "
                 "then " + SAVE_AS_UTF8)


@dataclass(frozen=True)
class Encoding:
    name: str
    advice: str


WINDOWS_1258 = Encoding("Windows-1258 (the Vietnamese Windows code page)", SAVE_AS_UTF8)
TCVN3 = Encoding("TCVN3 (ABC, the .VnTime fonts)", CONVERT_FIRST.format(name="TCVN3 (ABC)"))
VNI = Encoding("VNI (the VNI-Times fonts)", CONVERT_FIRST.format(name="VNI Windows"))
LATIN_1 = Encoding("Windows-1252 / Latin-1 (Western European)", SAVE_AS_UTF8)
UNKNOWN_8BIT = Encoding("an 8-bit encoding other than UTF-8", SAVE_AS_UTF8)


def bom_codec(head: bytes) -> str | None:
    """The codec named by a byte-order mark at the start of `head`, else None."""
    for bom, codec in BOMS:
        if head.startswith(bom):
            return codec
    return None


def bomless_utf16(head: bytes) -> str | None:
    """'UTF-16LE' or 'UTF-16BE' when `head` is plainly UTF-16 text without a byte-order mark (ASCII-range text
    has a NUL in every other byte), else None."""
    sample = head[:4096]
    if len(sample) < 16:
        return None
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if odd > 0.4 * len(sample) / 2 and even < odd / 8:
        return "UTF-16LE"
    if even > 0.4 * len(sample) / 2 and odd < even / 8:
        return "UTF-16BE"
    return None


# ---------------------------------------------------------------------- telling legacy encodings apart
def guess_legacy(sample: bytes) -> Encoding:
    """The legacy encoding that reads the most words of `sample` (lines with non-ASCII bytes) as Vietnamese."""
    scores = {encoding: _vietnamese_share(decode(sample)) for encoding, decode in _DECODERS.items()}
    best = max(scores, key=lambda e: scores[e])  # ties: the order of _DECODERS (Windows-1258 first)
    if scores[best] >= 0.6:
        return best
    western = _words(sample.decode("cp1252", errors="replace"))
    if western and all(w.isalpha() for w in western):
        return LATIN_1
    return UNKNOWN_8BIT


_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}  # grave, acute, tilde, hook above, dot below
# The vowel groups of Vietnamese syllables (tones left out); after `qu` and `gi` the u or i is the onset's.
_NUCLEI = ("a ă â e ê i o ô ơ u ư y ai ao au ay âu ây eo êu ia iê iu oa oă oe oi oo ôi ơi ua uâ uê ui uô uơ uy ưa "
           "ưi ươ ưu yê iêu oai oay oao oeo uây uôi uya uyê uyu ươi ươu yêu")
_SYLLABLE = re.compile("(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdđghklmnprstvx])?"
                       f"(?:{'|'.join(sorted(_NUCLEI.split(), key=len, reverse=True))})(?:ng|nh|ch|[cmnpt])?")
_SEPARATORS = re.compile(r"[\s,;\"'.()/:0-9_-]+")


def _words(text: str) -> list[str]:
    return [w for w in _SEPARATORS.split(text) if w and not w.isascii()]


def _vietnamese_share(text: str) -> float:
    """The share of the words with non-ASCII letters that are one Vietnamese syllable with at most one tone."""
    words = _words(text)
    if not words:
        return 0.0
    good = 0
    for word in words:
        decomposed = unicodedata.normalize("NFD", word.lower())
        tones = sum(1 for c in decomposed if c in _TONES)
        base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES))
        good += tones <= 1 and _SYLLABLE.fullmatch(base) is not None
    return good / len(words)


# TCVN3 (TCVN 5712:1993, VN3): one byte per letter; upper-case toned letters use the lower-case codes in an
# upper-case font. Bytes it leaves alone read as Windows-1252.
_TCVN3 = dict(zip(
    b"\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xb5\xb6\xb7\xb8\xb9\xbb\xbc\xbd\xbe\xc6\xc7\xc8"
    b"\xc9\xca\xcb\xcc\xce\xcf\xd0\xd1\xd2\xd3\xd4\xd5\xd6\xd7\xd8\xdc\xdd\xde\xdf\xe1\xe2\xe3\xe4\xe5\xe6\xe7"
    b"\xe8\xe9\xea\xeb\xec\xed\xee\xef\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa\xfb\xfc\xfd\xfe",
    "ĂÂÊÔƠƯĐăâêôơưđàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ"))

# VNI Windows: a letter is an ASCII vowel followed by a byte that adds its marks (lower case: the first set,
# upper case: the same byte minus 0x20), or one byte of its own for đ, ơ, ư and the toned i and y.
_VNI_MARKS = dict(zip(b"\xf9\xf8\xfb\xf5\xef\xe2\xe1\xe0\xe5\xe3\xe4\xea\xe9\xe8\xfa\xfc\xeb", (
    "\u0301", "\u0300", "\u0309", "\u0303", "\u0323", "\u0302", "\u0302\u0301", "\u0302\u0300", "\u0302\u0309",
    "\u0302\u0303", "\u0302\u0323", "\u0306", "\u0306\u0301", "\u0306\u0300", "\u0306\u0309", "\u0306\u0303",
    "\u0306\u0323")))
_VNI_MARKS.update({byte - 0x20: marks for byte, marks in list(_VNI_MARKS.items())})
_VNI_LETTERS = dict(zip(b"\xe6\xec\xed\xee\xf1\xf2\xf3\xf4\xf6\xc6\xcc\xcd\xce\xd1\xd2\xd3\xd4\xd6",
                        "ỉìíỵđịĩơưỈÌÍỴĐỊĨƠƯ"))
_VNI_BASES = "aeiouyAEIOUYơưƠƯ"


def _decode_tcvn3(data: bytes) -> str:
    return "".join(_TCVN3.get(b) or bytes((b,)).decode("cp1252", errors="replace") for b in data)


def _decode_vni(data: bytes) -> str:
    out: list[str] = []
    for b in data:
        if b in _VNI_MARKS and out and out[-1] in _VNI_BASES:
            out.append(_VNI_MARKS[b])
        else:
            out.append(_VNI_LETTERS.get(b) or bytes((b,)).decode("cp1252", errors="replace"))
    return unicodedata.normalize("NFC", "".join(out))


def _decode_1258(data: bytes) -> str:
    return unicodedata.normalize("NFC", data.decode("cp1258", errors="replace"))


_DECODERS: dict[Encoding, Callable[[bytes], str]] = {WINDOWS_1258: _decode_1258, TCVN3: _decode_tcvn3,
                                                      VNI: _decode_vni}

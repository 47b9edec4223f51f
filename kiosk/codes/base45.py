"""Base45 (RFC 9285), the text encoding of `HC1:` payloads. An encoding, not cryptography: small and strict."""
from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


class Base45Error(ValueError):
    pass


def decode(text: str) -> bytes:
    """Bytes of a Base45 string; Base45Error on a character outside the alphabet, a dangling
    character or a group whose value does not fit (RFC 9285 section 4)."""
    try:
        values = [_VALUE[ch] for ch in text]
    except KeyError:
        raise Base45Error("character outside the Base45 alphabet") from None
    if len(values) % 3 == 1:
        raise Base45Error("dangling character")
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i:i + 3]
        n = sum(v * 45 ** k for k, v in enumerate(group))
        if len(group) == 3:
            if n > 0xFFFF:
                raise Base45Error("group value out of range")
            out += n.to_bytes(2, "big")
        else:
            if n > 0xFF:
                raise Base45Error("group value out of range")
            out.append(n)
    return bytes(out)


def encode(data: bytes) -> str:
    chars = []
    for i in range(0, len(data), 2):
        pair = data[i:i + 2]
        n = int.from_bytes(pair, "big")
        digits = 3 if len(pair) == 2 else 2
        for _ in range(digits):
            n, rest = divmod(n, 45)
            chars.append(ALPHABET[rest])
    return "".join(chars)

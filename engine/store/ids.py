"""Time-sortable ids (ULID layout): 48 bits of milliseconds then 80 random bits, Crockford base32.

Sorting run ids sorts runs by creation time, which is what ``ionflux runs`` and the UI list by, and an index on
the id alone serves both lookups and recency.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def id_time_ms(value: str) -> int:
    """The creation time encoded in an id (for listings and tests)."""
    number = 0
    for ch in value.upper():
        number = number * 32 + _ALPHABET.index(ch)
    return number >> 80

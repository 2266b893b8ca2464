"""Make text received from devices safe to log: printable and bounded."""

from __future__ import annotations

import re

MAX_LOGGED = 120

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def sanitize(text: str | bytes, limit: int = MAX_LOGGED) -> str:
    """Return text with control characters escaped, cut to about `limit` characters."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("latin-1")
    cut = len(text) > limit
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:limit])
    return text + "…" if cut else text

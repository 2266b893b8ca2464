"""Make text received from the network safe to log: printable and bounded."""

from __future__ import annotations

import re

MAX_LOGGED = 80

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def sanitize(text: str | bytes | None, limit: int = MAX_LOGGED) -> str:
    """Text with control characters escaped, cut to about `limit` characters."""
    if text is None:
        return "None"
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "backslashreplace")
    cut = len(text) > limit
    text = _CONTROL.sub(_escape, text[:limit])
    return text + "…" if cut else text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

"""Make strings that come from peers safe to log and to show."""

from __future__ import annotations

import unicodedata

MAX_SHOWN = 200
"""Characters kept of a string from a peer."""


def sanitize(value: object, limit: int = MAX_SHOWN) -> str:
    """The text without control or format characters, cut to `limit` characters."""
    text = value if isinstance(value, str) else repr(value)
    cleaned = "".join(
        " " if ch in "\t\r\n" else ch for ch in text if ch in "\t\r\n" or not _is_control(ch)
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C")

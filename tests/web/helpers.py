"""Shared checks for the web UI tests."""

from __future__ import annotations

import re

_CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')
_URL_RE = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+", re.IGNORECASE)
_REF_RE = re.compile(r'<(?:link|script|img|iframe|source)\b[^>]*?(?:href|src)="([^"]*)"', re.I)

PASSWORD = "correct horse battery"
ROLES = {"op": "operator", "rel": "releaser", "chef": "head", "adm": "admin"}
"""One user per role (login -> role), created by the `node` fixture of conftest.py."""


def csrf_of(html: str) -> str:
    """The first CSRF token in a page."""
    match = _CSRF_RE.search(html)
    assert match is not None, html[:500]
    return match.group(1)


def external_references(text: str) -> list[str]:
    """Every reference in a page or asset that leaves the node (absolute URLs, links, scripts)."""
    found = [m.group(0) for m in _URL_RE.finditer(text)]
    found += [
        ref for ref in _REF_RE.findall(text) if not ref.startswith("/") or ref.startswith("//")
    ]
    return found

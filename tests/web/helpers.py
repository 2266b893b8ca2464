"""Shared checks for the web UI tests."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from node._auth import Principal

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    from node import Node

_CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')
_URL_RE = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+", re.IGNORECASE)
_REF_RE = re.compile(r'<(?:link|script|img|iframe|source)\b[^>]*?(?:href|src)="([^"]*)"', re.I)

PASSWORD = "correct horse battery"
ROLES = {"op": "operator", "rel": "releaser", "chef": "head", "adm": "admin"}
"""One user per role (login -> role), created by the `node` fixture of conftest.py."""
SET = "JDIGGRBA#111"
OP = Principal("op", "operator")
DEVICE = Principal("device:STE-1", "operator")
"""What cycle capture records as (a machine's serial port)."""


async def login_in(client: TestClient, user: str, lang: str = "fr") -> None:
    """Log `user` in with a fresh cookie jar, the page language set to `lang`."""
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"sm_lang": lang})
    page = await client.get("/login")
    resp = await client.post(
        "/login", data={"csrf": csrf_of(await page.text()), "login": user, "password": PASSWORD}
    )
    assert resp.status == 200


async def load_with_cycle(node: Node, result: str, cycle_no: str = "7") -> str:
    """A sterilizer load of SET whose cycle ended with `result`, waiting for its decision."""
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    event, _ = await node.async_submit(
        {"type": "steri.loaded", "machine": "STE-1", "program": "P", "sets": [SET]}, OP
    )
    await node.async_record(
        {"type": "steri.cycle", "machine": "STE-1", "cycle_no": cycle_no, "result": result}, DEVICE
    )
    return str(event["load"])


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

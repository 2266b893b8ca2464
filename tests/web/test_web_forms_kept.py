"""Forms that keep what a person typed when they are refused, and pages that count right."""

from __future__ import annotations

import html
import re

from aiohttp.test_utils import TestClient

from node import Node
from tests.web.helpers import OP, PASSWORD, csrf_of, login_in


async def test_a_failed_login_keeps_where_the_person_was_going_not_the_login(
    client: TestClient,
) -> None:
    page = await (await client.get("/login?next=/loads")).text()
    token = csrf_of(page)
    resp = await client.post(
        "/login", data={"csrf": token, "login": "op", "password": "wrong!", "next": "/loads"}
    )
    text = html.unescape(await resp.text())
    assert resp.status == 401
    assert 'name="next" value="/loads"' in text
    assert 'name="login" value' not in text  # neither who exists, nor a password typed there
    resp = await client.post(  # a password typed in the login field is never shown back
        "/login",
        data={"csrf": token, "login": "my-secret-pw", "password": "x", "next": "/loads"},
    )
    text = await resp.text()
    assert "my-secret-pw" not in text
    resp = await client.post(
        "/login", data={"csrf": token, "login": "op", "password": PASSWORD, "next": "/loads"}
    )
    assert resp.url.path == "/loads"


async def test_a_refused_badge_form_stays_on_the_person_it_was_for(client: TestClient) -> None:
    """Back on the first user of the list, a second scan would give the badge to the wrong
    person."""
    await login_in(client, "adm")
    page = await (await client.get("/admin")).text()
    first = re.search(r'<select id="badge-user" name="login"><option value="([^"]+)"', page)
    assert first is not None
    chosen = "rel" if first[1] != "rel" else "op"
    resp = await client.post(
        "/admin/badge",
        data={"csrf": csrf_of(page), "login": chosen, "pin": "1234", "pin2": "4321"},
    )
    text = await resp.text()
    assert resp.status == 422
    assert f'<option value="{chosen}" selected>' in text
    resp = await client.post(
        "/admin/users",
        data={"csrf": csrf_of(page), "login": "nadia", "role": "releaser", "password": "a" * 12},
    )
    text = await resp.text()
    assert resp.status == 422  # the passwords differ
    assert 'id="new-login" name="login" value="nadia"' in text
    assert '<option value="releaser" selected>' in text


async def test_the_dashboard_counts_every_open_anomaly(client: TestClient, node: Node) -> None:
    for n in range(55):  # dispatched without ever being sterilized: one anomaly each
        await node.async_submit({"type": "set.dispatched", "set": f"S{n:03d}", "to": "Bloc"}, OP)
    total = len(node.trace.fold.anomalies(open_only=True))
    assert total > 50
    await login_in(client, "chef")
    body = html.unescape(await (await client.get("/dashboard/body")).text())
    assert f"Anomalies ouvertes ({total})" in body
    assert "les 50 plus récentes affichées" in body

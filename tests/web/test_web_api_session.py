"""The REST API with a web session's cookie: reading as the person, changing with CSRF."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from node import Node
from tests.web.helpers import csrf_of, login_in

_META_RE = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


async def _csrf_meta(client: TestClient) -> str:
    """The session's CSRF token as a page gives it to its scripts."""
    html = await (await client.get("/dashboard")).text()
    match = _META_RE.search(html)
    assert match is not None
    assert match.group(1) == csrf_of(html)  # the same token the page's forms carry
    return match.group(1)


async def test_a_logged_in_person_reads_the_api_with_their_cookie(client: TestClient) -> None:
    assert (await client.get("/api/anomalies")).status == 401  # nobody logged in
    await login_in(client, "chef")
    resp = await client.get("/api/anomalies")
    assert resp.status == 200
    assert (await resp.json())["anomalies"] == []
    resp = await client.get("/api/backup")  # a head is not an admin: the role still decides
    assert resp.status == 403
    assert (await resp.json())["ok"] is False


async def test_a_change_with_a_cookie_needs_the_sessions_csrf_token(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op")
    note = {"type": "note", "text": "lavage manuel"}
    before = node.index.count
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": ""}):
        resp = await client.post("/api/events", json=note, headers=headers)
        assert resp.status == 403, headers
        body = await resp.json()
        assert "X-CSRF-Token" in body["error"]
    assert node.index.count == before  # nothing recorded
    token = await _csrf_meta(client)
    resp = await client.post("/api/events", json=note, headers={"X-CSRF-Token": token})
    assert resp.status == 201
    stored = node.get_event((await resp.json())["id"])
    assert stored is not None
    assert stored["user"] == "op"
    assert node.index.count == before + 1


async def test_a_cookie_after_logout_or_a_bad_bearer_token_gets_nothing(
    client: TestClient,
) -> None:
    await login_in(client, "chef")
    token = await _csrf_meta(client)
    page = await client.get("/dashboard")
    await client.post("/logout", data={"csrf": csrf_of(await page.text())})
    resp = await client.get("/api/anomalies")
    assert resp.status == 401
    await login_in(client, "chef")
    # a bearer header is judged alone: a wrong token is refused even beside a good cookie
    resp = await client.get("/api/anomalies", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    resp = await client.post(  # the old session's token does not fit the new session
        "/api/events", json={"type": "note", "text": "x"}, headers={"X-CSRF-Token": token}
    )
    assert resp.status == 403


async def test_a_release_is_never_signed_by_a_cookie_alone(client: TestClient, node: Node) -> None:
    """The pages ask a releaser for their PIN; the API with the same cookie (a station left
    open, a console) must not release, nor undo a release, without it."""
    from node._auth import Principal
    from tests.web.helpers import load_with_cycle

    load = await load_with_cycle(node, "pass")
    await login_in(client, "rel")
    token = await _csrf_meta(client)
    before = node.index.count
    release = {"type": "load.released", "load": load, "decision": "released"}
    resp = await client.post("/api/events", json=release, headers={"X-CSRF-Token": token})
    assert resp.status == 403
    assert "PIN" in (await resp.json())["error"]
    assert node.index.count == before
    event, _ = await node.async_submit(release, Principal("rel", "releaser"))  # at the page
    void = {"type": "event.voided", "target": event["id"], "reason": "erreur"}
    resp = await client.post("/api/events", json=void, headers={"X-CSRF-Token": token})
    assert resp.status == 403
    note = {"type": "note", "text": "libération faite au poste"}
    resp = await client.post("/api/events", json=note, headers={"X-CSRF-Token": token})
    assert resp.status == 201  # anything else the role may do, it does

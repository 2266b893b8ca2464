"""A station nobody uses locks itself: the next person logs in as themselves."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from node import Node
from node._server import NodeServer
from node._users import active_user
from node._web import IDLE_GRACE_S, WEB_KEY, WebConfigError, idle_seconds
from node._web_support import session_mark
from tests.node.nodes import new_data_dir
from tests.web.helpers import csrf_of, login_in

IDLE_S = 15 * 60


def clock_of(client: TestClient, start: float = 1_800_000_000.0) -> list[float]:
    """The web pages' clock, set by the test (now[0])."""
    now = [start]
    state = client.app[WEB_KEY]
    state.clock = lambda: now[0]
    state.idle_s = IDLE_S
    return now


async def logged_in(client: TestClient, path: str = "/station") -> bool:
    resp = await client.get(path, allow_redirects=False)
    return resp.status == 200


async def test_a_session_unused_for_the_idle_time_is_over(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "op", lang="en")
    now[0] += IDLE_S + IDLE_GRACE_S - 5
    assert await logged_in(client)  # the page locked itself by now; the node still waits
    now[0] += IDLE_S + IDLE_GRACE_S + 1
    resp = await client.get("/station?zone=sale", allow_redirects=False)
    assert resp.status == 303
    where = urlsplit(resp.headers["Location"])
    assert where.path == "/login"
    assert parse_qs(where.query) == {"next": ["/station?zone=sale"], "idle": ["1"]}
    page = await client.get(resp.headers["Location"])
    text = await page.text()
    assert "locked itself after 15 min without use" in text
    assert 'name="next" value="/station?zone=sale"' in text
    api = await client.get("/api/status", headers={"X-CSRF-Token": "x"})
    assert api.status == 401  # the API through the session cookie is over too


async def test_using_the_pages_keeps_the_session(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    for _ in range(4):  # an hour of use, a page every 12 minutes
        now[0] += IDLE_S - 3 * 60
        assert await logged_in(client, "/loads")
    now[0] += IDLE_S - 60
    assert await logged_in(client)


async def test_what_pages_fetch_by_themselves_keeps_no_session(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "chef")
    for _ in range(3):  # a dashboard left on screen refreshes itself
        now[0] += IDLE_S / 2
        body = await client.get("/dashboard/body", allow_redirects=False)
        assert body.status in (200, 303)
    assert not await logged_in(client, "/dashboard")


async def test_typing_without_sending_keeps_the_session(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    for _ in range(3):  # a long list scanned into the load form: the page says /still-here
        now[0] += IDLE_S - 60
        resp = await client.get("/still-here")
        assert resp.status == 204
    assert await logged_in(client)
    now[0] += IDLE_S + IDLE_GRACE_S + 1
    resp = await client.get("/still-here")
    assert resp.status == 401  # over: the page locks itself


async def test_pages_lock_themselves_only_when_the_node_says_so(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    page = await (await client.get("/station")).text()
    assert f'<meta name="idle-after" content="{IDLE_S * 1000}">' in page
    assert '<script src="/static/idle.js"></script>' in page
    client.app[WEB_KEY].idle_s = 0  # a wall board: [web] idle_minutes = 0
    page = await (await client.get("/station")).text()
    assert "idle-after" not in page
    assert "idle.js" not in page
    now[0] += 11 * 3600
    assert await logged_in(client)
    script = await client.get("/static/idle.js")
    assert script.status == 200
    assert "/still-here" in await script.text()


def has_session(client: TestClient) -> bool:
    return "sm_session" in client.session.cookie_jar.filter_cookies(client.make_url("/"))


async def test_a_page_that_locks_itself_ends_this_browsers_session(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    token = csrf_of(await (await client.get("/station")).text())
    now[0] += IDLE_S - 5  # the page locks itself on time
    refused = await client.post(
        "/lock", data={"csrf": "not-the-token", "next": "/loads"}, allow_redirects=False
    )
    assert refused.status == 303
    assert has_session(client)  # a form from elsewhere ends nothing, and renews nothing
    resp = await client.post(
        "/lock", data={"csrf": token, "next": "/loads?day=2026-11-29"}, allow_redirects=False
    )
    where = urlsplit(resp.headers["Location"])
    assert (where.path, parse_qs(where.query)) == (
        "/login",
        {"next": ["/loads?day=2026-11-29"], "idle": ["1"]},
    )
    assert not await logged_in(client)
    odd = await client.post("/lock", data={"next": "//elsewhere.example"}, allow_redirects=False)
    assert parse_qs(urlsplit(odd.headers["Location"]).query)["next"] == ["/"]


async def test_a_tab_left_open_does_not_lock_out_the_tab_in_use(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    token = csrf_of(await (await client.get("/station")).text())
    now[0] += 60  # another tab of this browser was used a minute ago
    await client.get("/loads")
    now[0] += IDLE_S - 120  # this tab, untouched since, locks itself
    resp = await client.post(
        "/lock", data={"csrf": token, "next": "/station"}, allow_redirects=False
    )
    assert resp.headers["Location"] == "/station"  # shown again: the session is in use
    assert await logged_in(client, "/loads")


async def test_the_stream_and_the_scans_keep_no_session(client: TestClient) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    for path in ("/station/scans?station=sale-1&wait=0&after=0", "/dashboard/stream"):
        now[0] += IDLE_S / 2
        resp = await client.get(path, allow_redirects=False)
        resp.close()
    now[0] += IDLE_S / 2 + IDLE_GRACE_S
    assert not await logged_in(client)


async def test_logging_out_of_a_page_locked_meanwhile_ends_the_other_sessions(
    client: TestClient, node: Node
) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    token = csrf_of(await (await client.get("/station")).text())
    before = active_user(node, "op")
    assert before is not None
    now[0] += IDLE_S + IDLE_GRACE_S + 1
    resp = await client.post("/logout", data={"csrf": token}, allow_redirects=False)
    assert resp.status == 303
    after = active_user(node, "op")
    assert after is not None
    assert session_mark(after) != session_mark(before)  # its copies elsewhere are over too


async def test_a_cookie_from_before_idle_locks_is_over_without_a_word(
    client: TestClient,
) -> None:
    now = clock_of(client)
    await login_in(client, "op")
    state = client.app[WEB_KEY]
    old = state.signer.loads(
        client.session.cookie_jar.filter_cookies(client.make_url("/"))["sm_session"].value
    )
    assert old is not None
    del old["a"]
    client.session.cookie_jar.update_cookies(
        {"sm_session": state.signer.dumps(old)}, response_url=client.make_url("/")
    )
    now[0] += 5
    resp = await client.get("/station", allow_redirects=False)
    assert resp.status == 303
    assert "idle" not in resp.headers["Location"]


def test_the_idle_time_is_read_from_node_toml() -> None:
    assert idle_seconds({}) == 15 * 60
    assert idle_seconds({"web": {"idle_minutes": 5}}) == 300
    assert idle_seconds({"web": {"idle_minutes": 0.5}}) == 30
    assert idle_seconds({"web": {"idle_minutes": 0.05}}) == 3
    assert idle_seconds({"web": {"idle_minutes": 0}}) == 0
    for bad, said in (
        ({"web": {"idle_minutes": -1}}, r"0 \(never\) or a number of minutes from 0.05 to 720"),
        ({"web": {"idle_minutes": "15"}}, "from 0.05 to 720"),
        ({"web": {"idle_minutes": True}}, "from 0.05 to 720"),
        ({"web": {"idle_minutes": 721}}, "from 0.05 to 720"),
        ({"web": {"idle_minutes": 1e-9}}, "from 0.05 to 720"),  # would lock before a tap
        ({"web": {"idle_minute": 5}}, "unknown setting 'idle_minute'"),
        ({"web": 15}, "must be a section"),
    ):
        with pytest.raises(WebConfigError, match=said):
            idle_seconds(bad)


async def test_a_node_with_a_wrong_idle_time_does_not_start(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    (data.root / "node.toml").write_text("[web]\nidle_minutes = -5\n", encoding="utf-8")
    server = NodeServer(data, listen=("127.0.0.1", 0), sync_listen=None, mdns=False)
    with pytest.raises(WebConfigError, match="idle_minutes"):
        await server.async_start()  # it stops what it opened

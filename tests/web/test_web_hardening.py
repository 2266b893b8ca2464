"""What a hostile request gets from the web pages: no memory, no redirect, no traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from node import Node
from node import _web_support as support
from node._web import MAX_STREAMS_PER_USER
from tests.web.helpers import csrf_of, login_in


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield b"a="
    for _ in range(total // size):
        yield b"A" * size


async def test_a_huge_chunked_form_is_refused_without_being_read(client: TestClient) -> None:
    """Chunked bodies carry no length: the limit holds while reading (no login needed)."""
    resp = await client.post(
        "/login",
        data=_chunks(8 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 413


async def test_pages_forbid_forms_posting_elsewhere(client: TestClient) -> None:
    resp = await client.get("/login")
    assert "form-action 'self'" in resp.headers["Content-Security-Policy"]


async def test_pages_are_never_kept_by_the_browser_but_static_files_are(
    client: TestClient,
) -> None:
    """Back after a logout on a shared station must not show a recall's patients again."""
    await login_in(client, "chef")
    for path in ("/dashboard", "/recall?lot=A-261128-999", "/login"):
        resp = await client.get(path)
        assert resp.headers.get("Cache-Control") == "no-store", path
    resp = await client.get("/static/station.js")
    assert resp.status == 200
    assert resp.headers.get("Cache-Control") != "no-store"


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "/\t/evil.example/x", "/\\evil.example", "/\r\nSet-Cookie:x"]
)
async def test_no_redirect_leaves_the_node(client: TestClient, target: str) -> None:
    resp = await client.get("/lang/en", params={"next": target}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] in {"/", "/dashboard", "/station", "/login"}


async def test_non_ascii_cookie_and_csrf_are_refused_quietly(client: TestClient) -> None:
    client.session.cookie_jar.update_cookies({"sm_session": "abc.é"}, client.make_url("/"))
    resp = await client.get("/dashboard", allow_redirects=False)
    assert resp.status == 303  # to the login page, not a 500
    client.session.cookie_jar.clear()
    page = await client.get("/login")
    assert csrf_of(await page.text())
    resp = await client.post("/login", data={"csrf": "é", "login": "op", "password": "x"})
    assert resp.status == 401


def test_junk_logins_cannot_wipe_the_failures_of_a_real_one() -> None:
    now = [1000.0]
    limiter = support.LoginLimiter(clock=lambda: now[0])
    for _ in range(support.LOGIN_FAILURES):
        limiter.failed("admin1", "1.2.3.4")
    for n in range(support._MAX_TRACKED + 2):
        limiter.failed(f"junk{n}", f"10.0.{n // 250}.{n % 250}")
    assert limiter.blocked("admin1", "1.2.3.4")


def test_one_address_trying_many_logins_is_stopped_too() -> None:
    limiter = support.LoginLimiter(clock=lambda: 1000.0)
    for n in range(support.ADDRESS_FAILURES):
        assert not limiter.blocked(f"user{n}", "1.2.3.4")
        limiter.failed(f"user{n}", "1.2.3.4")
    assert limiter.blocked("someone-else", "1.2.3.4", known=False)
    assert not limiter.blocked("someone-else", "5.6.7.8", known=False)
    assert not limiter.blocked("admin1", "1.2.3.4")  # a real login from a shared address


def test_a_pin_tried_from_many_addresses_is_stopped_for_all_of_them() -> None:
    """One badge, guesses from many addresses (each under its own limit): the person's PIN
    count stops them all; an IPv6 /64 counts as one address."""
    limiter = support.LoginLimiter(clock=lambda: 1000.0)
    key = support.PIN_KEY + "rel"
    for n in range(support.PIN_FAILURES):
        assert limiter.attempt(key, f"10.1.{n}.1", total=support.PIN_FAILURES)
    assert not limiter.attempt(key, "10.9.9.9", total=support.PIN_FAILURES)
    assert limiter.attempt("rel", "10.9.9.9")  # the password still works
    for n in range(support.LOGIN_FAILURES):
        assert limiter.attempt("op", f"2001:db8:0:1::{n + 1}")
    assert not limiter.attempt("op", "2001:db8:0:1::ffff")
    assert limiter.attempt("op", "2001:db8:0:2::1")


def test_one_address_spraying_known_logins_is_stopped_and_successes_are_not_counted() -> None:
    limiter = support.LoginLimiter(clock=lambda: 1000.0)
    for n in range(support.KNOWN_ADDRESS_FAILURES):
        assert limiter.attempt(f"user{n}", "1.2.3.4")
    assert not limiter.attempt("admin1", "1.2.3.4")
    shared = support.LoginLimiter(clock=lambda: 1000.0)  # a terminal server: all log in
    for n in range(support.KNOWN_ADDRESS_FAILURES * 2):
        assert shared.attempt(f"user{n}", "1.2.3.4")
        shared.succeeded(f"user{n}", "1.2.3.4")


def _cookie(client: TestClient) -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == "sm_session")


async def _with_cookie(client: TestClient, value: str, path: str = "/dashboard") -> int:
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"sm_session": value}, client.make_url("/"))
    return (await client.get(path, allow_redirects=False)).status


async def test_logout_ends_the_session_even_for_a_copied_cookie(client: TestClient) -> None:
    await login_in(client, "chef")
    stolen = _cookie(client)
    assert await _with_cookie(client, stolen) == 200
    page = await client.get("/dashboard")
    resp = await client.post("/logout", data={"csrf": csrf_of(await page.text())})
    assert resp.status == 200  # the login page
    assert await _with_cookie(client, stolen) == 303  # back to the login page


async def test_a_disabled_user_or_a_replaced_password_ends_open_sessions(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "chef")
    session = _cookie(client)
    await node.async_disable_user("chef", "adm")
    assert await _with_cookie(client, session) == 303
    await node.async_disable_user("chef", "adm", disabled=False)
    assert await _with_cookie(client, session) == 303  # a stolen cookie stays dead
    await login_in(client, "chef")  # may log in again
    session = _cookie(client)
    assert await _with_cookie(client, session) == 200
    await node.async_add_user("chef", "head", "another password 1", "adm")
    assert await _with_cookie(client, session) == 303


async def test_live_dashboards_per_session_are_capped(client: TestClient) -> None:
    await login_in(client, "chef")
    opened = [await client.get("/dashboard/stream") for _ in range(MAX_STREAMS_PER_USER)]
    try:
        assert [r.status for r in opened] == [200] * MAX_STREAMS_PER_USER
        one_more = await client.get("/dashboard/stream")
        assert one_more.status == 429
        assert (await client.get("/dashboard")).status == 200  # the page itself still works
        await login_in(client, "chef")  # another wall screen, same login: its own session
        another = await client.get("/dashboard/stream")
        assert another.status == 200
        another.close()
    finally:
        for resp in opened:
            resp.close()


@pytest.mark.parametrize("target", ["/recall?set=A:1,2", "/reference/sets/CH:01", "/loads?x=(1)"])
async def test_a_local_path_with_sub_delimiters_is_kept(client: TestClient, target: str) -> None:
    resp = await client.get("/lang/en", params={"next": target}, allow_redirects=False)
    assert resp.headers["Location"] == target


async def test_logout_works_on_a_node_that_lost_its_disk(client: TestClient, node: Node) -> None:
    await login_in(client, "chef")
    page = await client.get("/dashboard")
    node.failed = "storage failed, restart the node: test"
    resp = await client.post(
        "/logout", data={"csrf": csrf_of(await page.text())}, allow_redirects=False
    )
    assert resp.status == 303
    assert "sm_session" in resp.cookies  # deleted (an expired cookie)
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303

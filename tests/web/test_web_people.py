"""People on the web UI: badge then PIN login, PIN-signed release, language kept per user."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

import crdt_model as cm
from node import Node, make_app
from node import _web_support as support
from node._user_records import user_record
from node._users import async_set_language, async_update_user
from tests.web.helpers import PASSWORD, SET, csrf_of, load_with_cycle

BADGE = "04A1B2C3D4"
PIN = "4821"


def user(node: Node, login: str) -> dict[str, Any]:
    entry = user_record(node.docs[cm.CLUSTER_DOC], login)
    assert entry is not None
    return entry


async def password_login(client: TestClient, login: str, password: str = PASSWORD) -> Any:
    page = await client.get("/login")
    return await client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "login": login, "password": password},
        allow_redirects=False,
    )


async def badge_login(client: TestClient, badge: str, pin: str) -> Any:
    page = await client.get("/login")
    return await client.post(
        "/login/badge",
        data={"csrf": csrf_of(await page.text()), "badge": badge, "pin": pin},
        allow_redirects=False,
    )


def login_error(page: str) -> str:
    match = re.search(r'<p class="flash error" role="alert" id="login-error">([^<]*)</p>', page)
    assert match is not None, page[:800]
    return html.unescape(match.group(1))


async def post_form(client: TestClient, form_page: str, target: str, **fields: str) -> Any:
    token = csrf_of(await (await client.get(form_page)).text())
    return await client.post(target, data={"csrf": token, **fields})


# -- badge and PIN at login ---------------------------------------------------------------


async def test_the_login_page_offers_the_badge_only_when_someone_has_one(
    client: TestClient, node: Node
) -> None:
    page = await (await client.get("/login")).text()
    assert 'id="badge"' not in page
    assert 'id="password-login"' in page
    assert "badge.js" not in page
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    page = await (await client.get("/login")).text()
    assert 'action="/login/badge"' in page
    assert re.search(r'<input id="badge"[^>]*autofocus', page)
    assert 'id="password-login"' in page  # a password still works
    assert "Scannez votre badge" in page
    assert (await client.get("/static/badge.js")).status == 200


async def test_badge_then_pin_opens_a_session(client: TestClient, node: Node) -> None:
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    # a reader may type the code in lower case or with a trailing space: it is the same badge
    resp = await badge_login(client, BADGE.lower() + " ", PIN)
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/station"
    page = await (await client.get("/station")).text()
    assert "rel · " in html.unescape(page)


async def test_a_wrong_badge_or_pin_gets_one_plain_error(client: TestClient, node: Node) -> None:
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    answers = []
    for badge, pin in ((BADGE, "0000"), ("FFFF0000", PIN), ("", PIN), (BADGE, "")):
        resp = await badge_login(client, badge, pin)
        assert resp.status == 401
        answers.append(login_error(await resp.text()))
    assert set(answers) == {"Badge inconnu ou code PIN erroné."}
    assert "sm_session" not in {c.key for c in client.session.cookie_jar}


async def test_pin_failures_stop_the_badge_not_the_password(client: TestClient, node: Node) -> None:
    """A PIN has as few as 10,000 values: its failures are counted on their own, and once
    they are used up the badge stops while the person's password still works."""
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    for _ in range(support.LOGIN_FAILURES):
        assert (await badge_login(client, BADGE, "9999")).status == 401
    resp = await badge_login(client, BADGE, PIN)
    assert resp.status == 429
    assert "Trop d'essais" in html.unescape(await resp.text())
    assert (await password_login(client, "rel")).status == 303
    for _ in range(support.LOGIN_FAILURES):
        assert (await password_login(client, "op", "wrong password")).status == 401
    assert (await password_login(client, "op")).status == 429
    assert (await password_login(client, "adm")).status == 303  # others still log in


async def test_guesses_sent_at_once_are_counted_before_they_are_checked(
    client: TestClient, node: Node
) -> None:
    """Fifty PINs posted together: no more than the limit are ever checked (a try counts
    as failed from the moment it is taken, not once its hash is computed)."""
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    page = await client.get("/login")
    csrf = csrf_of(await page.text())
    guesses = [*[f"{n:04d}" for n in range(50) if f"{n:04d}" != PIN][:49], PIN]
    answers = await asyncio.gather(
        *(
            client.post(
                "/login/badge",
                data={"csrf": csrf, "badge": BADGE, "pin": pin},
                allow_redirects=False,
            )
            for pin in guesses
        )
    )
    statuses = [resp.status for resp in answers]
    checked = statuses.count(401) + statuses.count(303)
    assert checked <= support.LOGIN_FAILURES
    assert statuses.count(429) == len(guesses) - checked


async def test_an_unknown_badge_is_rate_limited_too(client: TestClient, node: Node) -> None:
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    for _ in range(support.LOGIN_FAILURES):
        assert (await badge_login(client, "DEADBEEF", PIN)).status == 401
    assert (await badge_login(client, "DEADBEEF", PIN)).status == 429
    assert (await badge_login(client, BADGE, PIN)).status == 303


async def test_pin_and_badge_are_never_kept_or_logged_in_clear(
    client: TestClient, node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    entry = user(node, "rel")
    assert set(entry["pin"]) == {"alg", "salt", "hash"}
    assert entry["badge"] != BADGE
    state = node.docs[cm.CLUSTER_DOC].get_update()
    assert PIN.encode() not in state
    assert BADGE.encode() not in state
    assert BADGE.lower().encode() not in state
    with caplog.at_level(logging.DEBUG):
        await badge_login(client, BADGE, "7777")
        await badge_login(client, "0BADC0DE", "7777")
        await password_login(client, "rel", "7777wrong")
        await password_login(client, "s3cret-typed-in-login", "x")  # a password, wrong field
    assert caplog.records
    assert "'rel'" in caplog.text  # a real login is named for IT
    for secret in (BADGE, "0BADC0DE", "7777", "s3cret-typed-in-login"):
        assert secret not in caplog.text
        assert secret.lower() not in caplog.text


async def test_a_badge_belongs_to_one_user_and_needs_a_pin(node: Node) -> None:
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    with pytest.raises(Exception, match="already given to rel"):
        await async_update_user(node, "op", {"badge": BADGE.lower(), "pin": "1234"}, "test")
    with pytest.raises(Exception, match="needs a PIN"):
        await async_update_user(node, "op", {"badge": "0A0B0C0D"}, "test")
    with pytest.raises(Exception, match="4 to 8 digits"):
        await async_update_user(node, "op", {"badge": "0A0B0C0D", "pin": "12a4"}, "test")
    with pytest.raises(Exception, match="4 to 8 digits"):
        await async_update_user(node, "op", {"pin": "123456789"}, "test")
    assert "badge" not in user(node, "op")
    assert "pin" not in user(node, "op")


# -- the administrator gives and takes badges ---------------------------------------------


async def test_admin_gives_a_badge_and_pin_then_takes_them_back(
    client: TestClient, node: Node
) -> None:
    await password_login(client, "adm")
    page = await (await client.get("/admin")).text()
    assert 'id="user-badge"' in page
    assert 'data-user="op" data-badge="no" data-pin="no"' in page

    fields = {"login": "op", "badge": BADGE, "pin": PIN, "pin2": PIN, "action": "save"}
    resp = await post_form(client, "/admin", "/admin/badge", **{**fields, "pin2": "1111"})
    assert resp.status == 422
    assert "Les deux codes PIN diffèrent." in html.unescape(await resp.text())
    resp = await post_form(
        client, "/admin", "/admin/badge", **{**fields, "pin": "12", "pin2": "12"}
    )
    assert resp.status == 422
    assert "Un code PIN compte 4 à 8 chiffres." in html.unescape(await resp.text())
    resp = await post_form(client, "/admin", "/admin/badge", **fields)
    assert resp.status == 200
    page = html.unescape(await resp.text())
    assert "Badge et code PIN enregistrés." in page
    assert 'data-user="op" data-badge="yes" data-pin="yes"' in page
    assert PIN not in page

    resp = await post_form(client, "/admin", "/admin/badge", **{**fields, "login": "chef"})
    assert resp.status == 409
    assert "Ce badge est déjà attribué à op." in html.unescape(await resp.text())

    client.session.cookie_jar.clear()
    assert (await badge_login(client, BADGE, PIN)).status == 303

    client.session.cookie_jar.clear()
    await password_login(client, "adm")
    resp = await post_form(client, "/admin", "/admin/badge", login="op", action="clear")
    assert resp.status == 200
    assert 'data-user="op" data-badge="no" data-pin="no"' in await resp.text()
    client.session.cookie_jar.clear()
    assert (await badge_login(client, BADGE, PIN)).status == 401
    assert 'id="badge"' not in await (await client.get("/login")).text()


async def test_admin_disables_a_user_and_revokes_a_token_from_the_page(
    client: TestClient, node: Node
) -> None:
    token = await node.async_create_token("xline", "integration", "test")
    await password_login(client, "adm")
    page = await (await client.get("/admin")).text()
    assert 'id="disable-op"' in page
    assert 'id="disable-adm"' not in page  # not their own login
    resp = await post_form(client, "/admin", "/admin/user-state", login="op", action="disable")
    assert resp.status == 200
    page = html.unescape(await resp.text())
    assert "Utilisateur désactivé : ses sessions sont fermées aussitôt." in page
    assert 'id="enable-op"' in page
    assert node.authenticate(token) is not None
    resp = await post_form(client, "/admin", "/admin/token-revoke", name="xline")
    assert "Jeton révoqué." in html.unescape(await resp.text())
    assert node.authenticate(token) is None
    resp = await post_form(client, "/admin", "/admin/user-state", login="adm", action="disable")
    assert resp.status == 422
    client.session.cookie_jar.clear()
    assert (await password_login(client, "op")).status == 401  # disabled
    await password_login(client, "adm")
    await post_form(client, "/admin", "/admin/user-state", login="op", action="enable")
    client.session.cookie_jar.clear()
    assert (await password_login(client, "op")).status == 303


async def test_replacing_a_password_keeps_badge_pin_and_language(
    client: TestClient, node: Node
) -> None:
    await async_update_user(node, "op", {"badge": BADGE, "pin": PIN, "lang": "nl"}, "test")
    await password_login(client, "adm")
    resp = await post_form(
        client,
        "/admin",
        "/admin/users",
        login="op",
        role="operator",
        password="a new long password",
        password2="a new long password",
    )
    assert resp.status == 200
    entry = user(node, "op")
    assert entry["lang"] == "nl"
    assert entry["badge"]
    assert entry["pin"]
    client.session.cookie_jar.clear()
    assert (await password_login(client, "op", "a new long password")).status == 303
    assert (await badge_login(client, BADGE, PIN)).status == 303


async def test_users_api_sets_and_clears_badge_pin_and_language(
    client: TestClient, node: Node
) -> None:
    admin = {"Authorization": "Bearer " + await node.async_create_token("it", "admin", "test")}
    operator = {"Authorization": "Bearer " + await node.async_create_token("st", "operator", "t")}
    resp = await client.patch("/api/users/op", json={"badge": BADGE, "pin": PIN}, headers=admin)
    assert resp.status == 200
    answer = await resp.json()
    assert answer == {"login": "op", "role": "operator", "badge": True, "pin": True, "lang": None}
    assert (await badge_login(client, BADGE, PIN)).status == 303

    resp = await client.patch("/api/users/op", json={"lang": "en"}, headers=operator)
    assert resp.status == 403
    resp = await client.patch("/api/users/nobody", json={"lang": "en"}, headers=admin)
    body = await resp.json()
    assert resp.status == 404
    assert set(body) == {"ok", "error", "errors", "status"}
    resp = await client.patch("/api/users/rel", json={"badge": BADGE, "pin": "1234"}, headers=admin)
    assert resp.status == 409
    resp = await client.patch("/api/users/rel", json={"badge": "0A0B0C0D"}, headers=admin)
    assert resp.status == 422
    assert "needs a PIN" in (await resp.json())["error"]
    resp = await client.patch("/api/users/op", json={"password": "x" * 12}, headers=admin)
    assert resp.status == 422
    resp = await client.patch("/api/users/op", json={"lang": "de"}, headers=admin)
    assert resp.status == 422

    resp = await client.post(
        "/api/users",
        json={"login": "op", "role": "operator", "password": "yet another password"},
        headers=admin,
    )
    assert resp.status == 201
    assert user(node, "op")["badge"]  # replacing the password kept the badge

    resp = await client.patch(
        "/api/users/op", json={"badge": None, "pin": None, "lang": "nl"}, headers=admin
    )
    assert await resp.json() == {
        "login": "op",
        "role": "operator",
        "badge": False,
        "pin": False,
        "lang": "nl",
    }
    assert (await badge_login(client, BADGE, PIN)).status == 401


# -- PIN confirmation of a release --------------------------------------------------------


async def test_a_release_is_signed_with_the_pin(client: TestClient, node: Node) -> None:
    await async_update_user(node, "rel", {"pin": PIN}, "test")
    load = await load_with_cycle(node, "pass")
    url = f"/loads/{quote(load)}"
    await password_login(client, "rel")
    page = html.unescape(await (await client.get(url)).text())
    assert "Tapez votre code PIN pour confirmer" in page
    assert 'inputmode="numeric"' in page
    # release and rejection are two forms: Enter after a reason and the PIN rejects
    release_form = re.search(r'id="release-form".*?</form>', page, re.S)
    assert release_form is not None
    assert 'name="reason"' not in release_form.group(0)

    before = node.index.count
    resp = await post_form(
        client, url, f"{url}/release", decision="released", reason="BI douteux", password=PIN
    )
    assert "Un motif a été saisi" in html.unescape(await resp.text())
    assert node.index.count == before
    resp = await post_form(client, url, f"{url}/release", decision="released", password="0000")
    assert "Code PIN erroné : rien n'a été enregistré." in html.unescape(await resp.text())
    assert node.index.count == before
    resp = await post_form(client, url, f"{url}/release", decision="released", password=PIN)
    assert "Charge libérée." in html.unescape(await resp.text())
    view = node.trace.fold.load(load)
    assert view is not None
    assert view.status == "released"
    assert view.release is not None
    assert view.release.user == "rel"


async def test_wrong_pins_count_in_the_rate_limit(client: TestClient, node: Node) -> None:
    await async_update_user(node, "rel", {"pin": PIN}, "test")
    load = await load_with_cycle(node, "pass")
    url = f"/loads/{quote(load)}"
    await password_login(client, "rel")
    before = node.index.count
    for _ in range(support.LOGIN_FAILURES):
        resp = await post_form(client, url, f"{url}/release", decision="released", password="1")
        assert "Code PIN erroné" in html.unescape(await resp.text())
    resp = await post_form(client, url, f"{url}/release", decision="released", password=PIN)
    assert "Trop d'essais" in html.unescape(await resp.text())
    assert node.index.count == before
    client.session.cookie_jar.clear()
    await async_update_user(node, "rel", {"badge": BADGE}, "test")
    assert (await badge_login(client, BADGE, PIN)).status == 429  # the same count as PINs
    assert (await password_login(client, "rel")).status == 303  # the password still works


async def test_the_station_release_is_signed_too(client: TestClient, node: Node) -> None:
    await async_update_user(node, "rel", {"pin": PIN}, "test")
    await load_with_cycle(node, "pass")
    await password_login(client, "rel")
    page = await (await client.get("/station", params={"zone": "sterile", "code": SET})).text()
    assert re.search(r'<input name="confirm" type="password" inputmode="numeric"', page)
    before = node.index.count

    async def release(secret: str) -> str:
        resp = await post_form(
            client,
            f"/station?zone=sterile&code={quote(SET)}",
            "/station",
            zone="sterile",
            code=SET,
            action="release",
            confirm=secret,
        )
        return html.unescape(await resp.text())

    for secret in ("", "1234"):
        assert "Code PIN erroné" in await release(secret)
    assert node.index.count == before
    assert "Charge libérée." in await release(PIN)
    assert node.trace.fold.set_status(SET).status == "sterile"


# -- language ---------------------------------------------------------------------------------


def test_accept_language_picks_the_first_known_language() -> None:
    assert support.accepted_language("nl-BE,nl;q=0.9,en;q=0.8") == "nl"
    assert support.accepted_language("de-DE,de;q=0.9,en;q=0.5,fr;q=0.7") == "fr"
    assert support.accepted_language("de, it;q=0.5") is None
    assert support.accepted_language("en;q=0, nl;q=0.1") == "nl"
    assert support.accepted_language(None) is None


async def test_before_login_the_browser_language_applies(client: TestClient) -> None:
    page = await (await client.get("/login", headers={"Accept-Language": "en-GB,en"})).text()
    assert '<html lang="en">' in page
    assert "Password" in page
    await client.get("/lang/nl")  # a choice made on this browser wins over its header
    page = await (await client.get("/login", headers={"Accept-Language": "en-GB,en"})).text()
    assert '<html lang="nl">' in page


async def test_the_language_follows_the_user(
    client: TestClient, node: Node, aiohttp_client: Any
) -> None:
    await password_login(client, "op")
    resp = await client.get("/lang/nl", params={"next": "/station"})  # a link: this browser
    assert resp.status == 200
    page = await resp.text()
    assert '<html lang="nl">' in page
    assert "lang" not in user(node, "op")  # a GET never writes
    resp = await client.post(
        "/lang/nl", params={"next": "/station"}, data={"csrf": csrf_of(page)}
    )  # the header's form: kept in the user's record
    assert resp.status == 200
    assert '<html lang="nl">' in await resp.text()
    assert user(node, "op")["lang"] == "nl"
    resp = await client.post("/lang/en", data={"csrf": "forged"})
    assert resp.status == 403
    assert user(node, "op")["lang"] == "nl"

    # another browser (another node of the cluster: the same replicated user record)
    other: TestClient = await aiohttp_client(make_app(node))
    other.session.cookie_jar.update_cookies({"sm_lang": "en"})
    page = await (await other.get("/login")).text()
    assert '<html lang="en">' in page
    resp = await password_login(other, "op")
    assert resp.status == 303
    page = await (await other.get("/station")).text()
    assert '<html lang="nl">' in page
    assert "Scan of typ een setcode" in page

    # a change made elsewhere reaches a session already open
    await async_set_language(node, "op", "en")
    page = await (await client.get("/station")).text()
    assert '<html lang="en">' in page
    assert user(node, "op")["lang"] == "en"


async def test_a_user_without_a_language_keeps_the_browser_choice(
    client: TestClient, node: Node
) -> None:
    client.session.cookie_jar.update_cookies({"sm_lang": "en"})
    await password_login(client, "chef")
    page = await (await client.get("/dashboard")).text()
    assert '<html lang="en">' in page
    assert "lang" not in user(node, "chef")


async def test_a_new_password_is_never_put_back_by_a_change_made_at_once(node: Node) -> None:
    """An admin replaces a password while the user picks a language: both hold."""
    import asyncio

    from node._auth import verify_password

    await node.async_add_user("mdupont", "operator", "old-password-1", "admin")
    replaced = asyncio.create_task(
        node.async_add_user("mdupont", "operator", "new-password-2", "admin")
    )
    await asyncio.sleep(0)  # the replacement is on its way to the disk
    await async_update_user(node, "mdupont", {"lang": "nl"}, "mdupont")
    await replaced
    entry = user(node, "mdupont")
    assert verify_password("new-password-2", entry["password"])
    assert not verify_password("old-password-1", entry["password"])
    assert entry["lang"] == "nl"


async def test_a_typed_login_never_reaches_a_pin_counter(client: TestClient, node: Node) -> None:
    """'pin:rel' typed as a login counts under no one's PIN: rel's badge still works."""
    await async_update_user(node, "rel", {"badge": BADGE, "pin": PIN}, "test")
    for _ in range(support.PIN_FAILURES + 1):
        resp = await password_login(client, "pin:rel", "wrong password")
        assert resp.status in (401, 429)
    assert (await badge_login(client, BADGE, PIN)).status == 303

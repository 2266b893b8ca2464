"""The admin page says why it refused in the administrator's language; the API stays English."""

from __future__ import annotations

import html
import pickle
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import crdt_model as cm
from node import Node
from node import _web_support as support
from node._auth import (
    ADMIN_MESSAGES,
    AdminMessage,
    AuthError,
    admin_message,
    badge_code,
    check_login,
    check_role,
    check_token_name,
    hash_password,
    hash_pin,
)
from node._cluster import async_invite, async_revoke, code_sequence, next_code
from node._node import ConflictError, NodeError
from node._pki import NodePki
from node._users import UnknownUserError, async_update_user
from tests.web.helpers import PASSWORD, csrf_of

BADGE = "04A1B2C3D4"
PIN = "4821"


async def admin_in(client: TestClient, node: Node, lang: str) -> None:
    """Log the administrator in, with `lang` as their own language."""
    await async_update_user(node, "adm", {"lang": lang}, "test")
    page = await client.get("/login")
    resp = await client.post(
        "/login", data={"csrf": csrf_of(await page.text()), "login": "adm", "password": PASSWORD}
    )
    assert resp.status == 200


async def post(client: TestClient, target: str, **fields: str) -> tuple[int, str]:
    token = csrf_of(await (await client.get("/admin")).text())
    resp = await client.post(target, data={"csrf": token, **fields})
    return resp.status, html.unescape(await resp.text())


def refusal(page: str) -> tuple[str, str]:
    """The admin page's error: its headline and its detail."""
    match = re.search(
        r'<div class="flash error" role="alert" id="error">([^<]*)'
        r'<div class="detail" id="error-detail">([^<]*)</div>',
        page,
    )
    assert match is not None, page[:1500]
    return match.group(1).strip(), match.group(2).strip()


def said(lang: str, code: str, **params: str) -> str:
    gettext = support.translator(support.load_catalogs(), lang)
    return str(gettext("admin." + code, **params))


# -- the English text is the API's, as before -------------------------------------------------

ENGLISH = [
    (
        AdminMessage("unknown_role", role="boss", roles="a, b"),
        "unknown role 'boss': choose one of a, b",
    ),
    (AdminMessage("bad_login"), "a login is 1-64 lower-case letters, digits, '.', '_' or '-'"),
    (AdminMessage("short_password"), "a password has at least 8 characters"),
    (AdminMessage("bad_pin"), "a PIN has 4 to 8 digits"),
    (
        AdminMessage("bad_badge"),
        "a badge code has 4 to 64 letters, digits, '.', '_', ':' or '-'",
    ),
    (
        AdminMessage("bad_token_name"),
        "a token name has 1 to 64 printable characters and does not start with device:",
    ),
    (
        AdminMessage("not_changeable", kept="badge, pin, lang", name="role"),
        "only badge, pin, lang can be changed here, not 'role'",
    ),
    (
        AdminMessage("not_string_or_null", name="pin"),
        "pin must be a string, or null to clear it",
    ),
    (AdminMessage("bad_language", languages="fr, nl, en"), "a language is one of fr, nl, en"),
    (AdminMessage("unknown_user", login="nobody"), "no user 'nobody'"),
    (AdminMessage("unknown_token", name="xline"), "no API token named 'xline' in use"),
    (AdminMessage("badge_taken", login="op"), "this badge is already given to op"),
    (AdminMessage("badge_needs_pin"), "a user with a badge needs a PIN"),
    (AdminMessage("no_code_left"), "no node code left"),
    (AdminMessage("cannot_invite"), "this node holds no cluster CA key and cannot invite"),
    (AdminMessage("revoke_self"), "a node cannot revoke itself; revoke it from another node"),
    (AdminMessage("unknown_member", node="ZZ"), "no member 'ZZ'"),
]


def test_every_code_keeps_its_english_text() -> None:
    assert {m.code for m, _ in ENGLISH} == set(ADMIN_MESSAGES)
    for message, english in ENGLISH:
        assert str(message) == english
        assert isinstance(message, str)
        again = pickle.loads(pickle.dumps(message))
        assert (again, again.code, again.params) == (english, message.code, message.params)


def test_the_checks_raise_coded_messages_with_the_old_text() -> None:
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: check_role("boss"), AuthError, "unknown_role"),
        (lambda: check_login("Bad Login"), AuthError, "bad_login"),
        (lambda: hash_password("short"), AuthError, "short_password"),
        (lambda: hash_pin("12a4"), AuthError, "bad_pin"),
        (lambda: badge_code("ab"), AuthError, "bad_badge"),
        (lambda: check_token_name("   "), AuthError, "bad_token_name"),
        (lambda: next_code(set(code_sequence())), NodeError, "no_code_left"),
    ]
    for call, kind, code in cases:
        with pytest.raises(kind) as caught:
            call()
        message = admin_message(caught.value)
        assert message is not None, code
        assert message.code == code
        assert str(caught.value) == str(message)
    with pytest.raises(AuthError, match=r"^unknown role 'boss': choose one of operator, "):
        check_role("boss")
    assert admin_message(ValueError("plain")) is None
    assert admin_message(NodeError("a", "b")) is None


async def test_users_and_cluster_raise_coded_messages(node: Node) -> None:
    await async_update_user(node, "op", {"badge": BADGE, "pin": PIN}, "test")
    cases: list[tuple[Any, type[Exception], str, dict[str, str]]] = [
        ({"badge": BADGE, "pin": "1234"}, ConflictError, "badge_taken", {"login": "op"}),
        ({"badge": "0A0B0C0D"}, AuthError, "badge_needs_pin", {}),
        ({"lang": "de"}, AuthError, "bad_language", {"languages": "fr, nl, en"}),
        ({"pin": 1234}, AuthError, "not_string_or_null", {"name": "pin"}),
        ({"role": "admin"}, AuthError, "not_changeable", {"kept": "badge, pin, lang"}),
    ]
    for changes, kind, code, params in cases:
        with pytest.raises(kind) as caught:
            await async_update_user(node, "chef", changes, "test")
        message = admin_message(caught.value)
        assert message is not None
        assert message.code == code
        assert params.items() <= message.params.items()
    with pytest.raises(UnknownUserError) as unknown:
        await async_update_user(node, "nobody", {"lang": "fr"}, "test")
    assert str(unknown.value) == "no user 'nobody'"
    with pytest.raises(NodeError) as itself:
        await async_revoke(node, node.code, "test")
    assert admin_message(itself.value) == AdminMessage("revoke_self")
    with pytest.raises(NodeError) as nobody:
        await async_revoke(node, "ZZ", "test")
    assert str(nobody.value) == "no member 'ZZ'"
    NodePki(node.data.pki).ca_key.unlink()
    with pytest.raises(NodeError) as cannot:
        await async_invite(node, "test")
    assert str(cannot.value) == "this node holds no cluster CA key and cannot invite"
    assert getattr(admin_message(cannot.value), "code", None) == "cannot_invite"


# -- the admin page says it in the administrator's language -----------------------------------


async def test_a_short_password_is_refused_in_dutch_and_the_api_keeps_english(
    client: TestClient, node: Node
) -> None:
    await admin_in(client, node, "nl")
    status, page = await post(
        client, "/admin/users", login="nina", role="operator", password="kort", password2="kort"
    )
    assert status == 422
    assert refusal(page) == (
        "De gebruiker werd geweigerd.",
        "Een wachtwoord heeft minstens 8 tekens.",
    )
    assert "at least 8 characters" not in page
    assert cm.cluster_get(node.docs[cm.CLUSTER_DOC], "users", "nina") is None

    admin = {"Authorization": "Bearer " + await node.async_create_token("it", "admin", "test")}
    resp = await client.post(
        "/api/users", json={"login": "nina", "role": "operator", "password": "kort"}, headers=admin
    )
    assert resp.status == 422
    assert (await resp.json())["error"] == "a password has at least 8 characters"


@pytest.mark.parametrize("lang", ["fr", "nl", "en"])
async def test_badge_refusals_in_each_language(client: TestClient, node: Node, lang: str) -> None:
    await async_update_user(node, "op", {"badge": BADGE, "pin": PIN}, "test")
    await admin_in(client, node, lang)
    fields = {"login": "chef", "badge": BADGE, "pin": PIN, "pin2": PIN, "action": "save"}
    status, page = await post(client, "/admin/badge", **fields)
    assert status == 409
    assert refusal(page)[1] == said(lang, "badge_taken", login="op")
    status, page = await post(client, "/admin/badge", **{**fields, "pin": "12", "pin2": "12"})
    assert status == 422
    assert refusal(page)[1] == said(lang, "bad_pin")
    status, page = await post(client, "/admin/badge", **{**fields, "badge": "ab"})
    assert status == 422
    assert refusal(page)[1] == said(lang, "bad_badge")
    status, page = await post(client, "/admin/badge", login="chef", badge="0A0B0C0D", action="save")
    assert status == 422
    assert refusal(page)[1] == said(lang, "badge_needs_pin")
    status, page = await post(client, "/admin/badge", login="nobody", pin=PIN, pin2=PIN)
    assert status == 404
    assert refusal(page)[1] == said(lang, "unknown_user", login="nobody")
    if lang != "en":
        assert "already given" not in page


async def test_user_token_and_node_refusals_in_french(client: TestClient, node: Node) -> None:
    await admin_in(client, node, "fr")
    status, page = await post(
        client,
        "/admin/users",
        login="Nina Smith",
        role="operator",
        password=PASSWORD,
        password2=PASSWORD,
    )
    assert status == 422
    assert refusal(page) == (
        "L'utilisateur a été refusé.",
        "Un identifiant compte 1 à 64 caractères : lettres minuscules, chiffres, « . », « _ » ou « - ».",
    )
    status, page = await post(client, "/admin/tokens", name="   ", role="integration")
    assert status == 422
    assert refusal(page) == (
        "Le jeton a été refusé.",
        "Le nom d'un jeton compte 1 à 64 caractères imprimables et ne commence pas par device:.",
    )
    status, page = await post(client, "/admin/tokens", name="platform", role="boss")
    assert status == 422
    roles = "operator, releaser, head, admin, integration"
    assert refusal(page)[1] == f"Rôle inconnu « boss » : choisissez parmi {roles}."
    status, page = await post(client, "/admin/revoke", node=node.node_id, confirm="yes")
    assert status == 422
    assert refusal(page) == (
        "Le poste n'a pas été révoqué.",
        "Un poste ne peut pas se révoquer lui-même : révoquez-le depuis un autre poste.",
    )
    status, page = await post(client, "/admin/revoke", node="ZZ", confirm="yes")
    assert status == 422
    assert refusal(page)[1] == "Aucun poste « ZZ » dans le réseau."
    NodePki(node.data.pki).ca_key.unlink()
    status, page = await post(client, "/admin/invite")
    assert status == 409
    assert refusal(page) == ("L'invitation a échoué.", said("fr", "cannot_invite"))
    assert not cm.cluster_items(node.docs[cm.CLUSTER_DOC], "tokens")


async def test_the_api_keeps_the_english_messages(client: TestClient, node: Node) -> None:
    await async_update_user(node, "op", {"badge": BADGE, "pin": PIN}, "test")
    admin = {"Authorization": "Bearer " + await node.async_create_token("it", "admin", "test")}
    answers = [
        ("POST", "/api/tokens", {"name": "x", "role": "boss"}, 422, "unknown role 'boss': "),
        ("POST", "/api/tokens", {"name": " ", "role": "admin"}, 422, "a token name has 1 to 64"),
        ("PATCH", "/api/users/chef", {"badge": BADGE, "pin": PIN}, 409, "this badge is already"),
        ("PATCH", "/api/users/nobody", {"lang": "en"}, 404, "no user 'nobody'"),
        ("POST", f"/api/nodes/{node.node_id}/revoke", None, 400, "a node cannot revoke itself;"),
        ("POST", "/api/nodes/ZZ/revoke", None, 400, "no member 'ZZ'"),
    ]
    for method, path, body, status, start in answers:
        resp = await client.request(method, path, json=body, headers=admin)
        assert resp.status == status, (path, await resp.text())
        assert (await resp.json())["error"].startswith(start), path


def test_an_unknown_or_malformed_admin_item_says_nothing_or_its_text() -> None:
    gettext = support.translator(support.load_catalogs(), "fr")
    assert support.say_problem({"a": "nope", "p": {}}, gettext) == ""
    assert support.say_problem({"a": "bad_pin", "p": "x"}, gettext) == ""
    assert support.say_problem("plain text", gettext) == "plain text"
    assert support.admin_item(NodeError("not coded")) == "not coded"
    item = support.admin_item(AuthError(AdminMessage("unknown_user", login="x" * 200)))
    assert isinstance(item, dict)
    assert len(item["p"]["login"]) == 80
    # a catalog out of step falls back to the English text
    broken = support.translator({"fr": {"admin.badge_taken": "{nobody}"}}, "fr")
    assert (
        support.say_admin("badge_taken", {"login": "op"}, broken)
        == "this badge is already given to op"
    )

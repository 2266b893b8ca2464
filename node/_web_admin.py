"""Web pages for the administrator: users (badge, PIN), API tokens, nodes, scheduled backups.

A refusal (AuthError, NodeError) is shown in the administrator's language from the
message's code (`admin.<code>`, see `ADMIN_MESSAGES`); the API keeps the English text.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiohttp import web

import crdt_model as cm

from ._auth import ROLES, AuthError, Principal, check_token_name
from ._cluster import async_invite, async_revoke, members
from ._node import NodeError
from ._pki import PkiError
from ._user_records import user_records
from ._users import async_update_user
from ._web import (
    FLASH_COOKIE,
    _flash,
    _gate,
    _gated_form,
    _node,
    _redirect,
    render,
)
from ._web_dash import backup_view
from ._web_support import admin_item

USER_ROLES = ("operator", "releaser", "head", "admin")
BADGE_ACTIONS = {
    "save": "Badge and PIN saved.",
    "clear_badge": "Badge removed.",
    "clear": "Badge and PIN removed.",
}
"""What the badge form can do, and what it says once done."""


def _admin_page(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
    doc = _node(request).docs[cm.CLUSTER_DOC]
    users = sorted(user_records(doc).items())
    tokens = sorted(cm.cluster_items(doc, "tokens").values(), key=lambda t: str(t.get("name")))
    context: dict[str, Any] = {
        "users": [(login, entry) for login, entry in users],
        "tokens": tokens,
        "members": members(_node(request)),
        "backup": backup_view(_node(request)),
        "user_roles": USER_ROLES,
        "token_roles": ROLES,
        "flash": _flash(request),
        "secret": None,
        "error": None,
        "badge_login": None,  # the person the badge form was about (kept on a refusal)
        "new_user": {},
        **extra,
    }
    response = render(request, "admin.html", status, **context)
    response.del_cookie(FLASH_COOKIE, path="/")
    return response


async def admin_page(request: web.Request) -> web.StreamResponse:
    """Users, tokens and nodes of the cluster."""
    principal = _gate(request, "admin")
    if not isinstance(principal, Principal):
        return principal
    return _admin_page(request)


async def user_post(request: web.Request) -> web.StreamResponse:
    """Create (or replace) a user with a role and a password."""
    checked = await _gated_form(request, "admin")
    if not isinstance(checked, tuple):
        return checked
    principal, form = checked
    login = form.get("login", "").strip().lower()[:64]
    role = form.get("role", "")
    typed = {"login": login, "role": role}  # given back on a refusal (never the passwords)
    if role not in USER_ROLES:
        return _admin_page(request, 422, error="Choose a role.", new_user=typed)
    if form.get("password", "") != form.get("password2", ""):
        return _admin_page(request, 422, error="The two passwords differ.", new_user=typed)
    try:
        await _node(request).async_add_user(login, role, form.get("password", ""), principal.name)
    except AuthError as err:
        return _admin_page(
            request, 422, error="The user was refused.", detail=admin_item(err), new_user=typed
        )
    return _redirect(request, "/admin", {"k": "ok", "m": "User saved.", "d": login})


async def badge_post(request: web.Request) -> web.StreamResponse:
    """Give a user a badge and a PIN, or take them away."""
    checked = await _gated_form(request, "admin")
    if not isinstance(checked, tuple):
        return checked
    principal, form = checked
    login = form.get("login", "")[:64]
    action = form.get("action", "save")
    if action not in BADGE_ACTIONS:
        return _redirect(request, "/admin")
    changes: dict[str, str | None] = {}
    if action == "clear":
        changes = {"badge": None, "pin": None}
    elif action == "clear_badge":
        changes = {"badge": None}
    else:
        if form.get("badge", "").strip():
            changes["badge"] = form["badge"]
        if form.get("pin", ""):
            if form["pin"] != form.get("pin2", ""):
                return _admin_page(request, 422, error="The two PINs differ.", badge_login=login)
            changes["pin"] = form["pin"]
        if not changes:
            return _admin_page(request, 422, error="Scan a badge or type a PIN.", badge_login=login)
    try:
        await async_update_user(_node(request), login, changes, principal.name)
    except (AuthError, NodeError) as err:
        status = err.status if isinstance(err, NodeError) else 422
        return _admin_page(
            request,
            status,
            error="The badge or PIN was refused.",
            detail=admin_item(err),
            badge_login=login,
        )
    return _redirect(request, "/admin", {"k": "ok", "m": BADGE_ACTIONS[action], "d": login})


async def token_post(request: web.Request) -> web.StreamResponse:
    """Create an API token and show it once."""
    checked = await _gated_form(request, "admin")
    if not isinstance(checked, tuple):
        return checked
    principal, form = checked
    name = form.get("name", "").strip()[:64]
    try:
        check_token_name(name)  # the node says it in English only
        token = await _node(request).async_create_token(name, form.get("role", ""), principal.name)
    except (AuthError, NodeError) as err:
        return _admin_page(request, 422, error="The token was refused.", detail=admin_item(err))
    return _admin_page(
        request,
        secret={"what": "Token created: copy it now, it is shown only once.", "value": token},
    )


async def invite_post(request: web.Request) -> web.StreamResponse:
    """Invite a new node: a one-time join token, shown once."""
    checked = await _gated_form(request, "admin")
    if not isinstance(checked, tuple):
        return checked
    principal, _ = checked
    try:
        token = await async_invite(_node(request), principal.name)
    except (NodeError, PkiError) as err:  # PkiError: the CA file is damaged
        return _admin_page(request, 409, error="The invitation failed.", detail=admin_item(err))
    return _admin_page(
        request,
        secret={
            "what": "Join token for a new node (valid one hour): it is shown only once.",
            "value": token,
        },
    )


async def revoke_post(request: web.Request) -> web.StreamResponse:
    """Revoke a node, once the administrator ticked the confirmation."""
    checked = await _gated_form(request, "admin")
    if not isinstance(checked, tuple):
        return checked
    principal, form = checked
    which = form.get("node", "")[:64]
    if form.get("confirm") != "yes":
        return _admin_page(request, 422, error="Tick the confirmation to revoke a node.")
    try:
        await async_revoke(_node(request), which, principal.name)
    except NodeError as err:
        return _admin_page(request, 422, error="The node was not revoked.", detail=admin_item(err))
    return _redirect(request, "/admin", {"k": "ok", "m": "Node revoked.", "d": which})


async def user_state_post(request: web.Request) -> web.StreamResponse:
    """Disable a user (their sessions end at once, on every PC) or enable them again."""
    checked = await _gated_form(request, "admin")
    if not isinstance(checked, tuple):
        return checked
    principal, form = checked
    login, action = form.get("login", "")[:64], form.get("action", "")
    if action not in ("disable", "enable"):
        return _redirect(request, "/admin")
    if login == principal.name:
        return _admin_page(request, 422, error="An administrator cannot disable their own login.")
    done = "User disabled: their sessions end at once." if action == "disable" else "User enabled."
    change = _node(request).async_disable_user(login, principal.name, disabled=action == "disable")
    return await _changed(request, change, done, login)


async def token_revoke_post(request: web.Request) -> web.StreamResponse:
    """Revoke the API tokens of a name: refused at once, on every node."""
    checked = await _gated_form(request, "admin")
    if not isinstance(checked, tuple):
        return checked
    principal, form = checked
    name = form.get("name", "")[:64]
    change = _node(request).async_revoke_tokens(name, principal.name)
    return await _changed(request, change, "Token revoked.", name)


async def _changed(
    request: web.Request, change: Awaitable[Any], done: str, subject: str
) -> web.StreamResponse:
    """Make an administrator's change; back to the page saying it was done, or why not."""
    try:
        await change
    except NodeError as err:
        return _admin_page(
            request, err.status, error="The change was refused.", detail=admin_item(err)
        )
    return _redirect(request, "/admin", {"k": "ok", "m": done, "d": subject})


def add_admin_routes(app: web.Application) -> None:
    """Register the administration pages."""
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/users", user_post)
    app.router.add_post("/admin/badge", badge_post)
    app.router.add_post("/admin/tokens", token_post)
    app.router.add_post("/admin/invite", invite_post)
    app.router.add_post("/admin/revoke", revoke_post)
    app.router.add_post("/admin/user-state", user_state_post)
    app.router.add_post("/admin/token-revoke", token_revoke_post)

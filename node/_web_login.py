"""Web login: password, or badge then PIN where users have badges; logout; language choice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ._auth import Principal, badge_hash, decoy_hash, verify_password
from ._node import NodeError
from ._users import active_user, any_badge, async_set_language, badge_owner
from ._web import (
    IDLE_GRACE_S,
    IDLE_KEY,
    LANG_COOKIE,
    PRE_COOKIE,
    SESSION_COOKIE,
    SESSION_KEY,
    _cookie,
    _csrf_ok,
    _csrf_refused,
    _form,
    _home,
    _lang,
    _node,
    _principal,
    _redirect,
    _safe_next,
    _state,
    idle_words,
    render,
)
from ._web_support import (
    KEY_FAILURES,
    LANGUAGES,
    PIN_FAILURES,
    PIN_KEY,
    new_session,
    same_text,
    translator,
)

_LOGGER = logging.getLogger(__name__)


_LOGIN_SHAPE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""What a login can be (node/_auth.py check_login)."""


async def login_page(
    request: web.Request, error: str | None = None, form: dict[str, str] | None = None
) -> web.Response:
    """The login form (with a pre-session CSRF token, double-submitted); after a failure,
    `form` gives back where the person was going, never the login typed (it may be a
    password; and showing it back only when someone holds it would say who exists)."""
    token = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        401 if error else 200,
        pre=token,
        error=error,
        badges=any_badge(_node(request)),
        next=_safe_next((form or {}).get("next") or request.query.get("next")),
        idle=_idle_minutes(request) if request.query.get("idle") == "1" else None,
    )
    _cookie(response, request, PRE_COOKIE, token)
    return response


def _idle_minutes(request: web.Request) -> str | None:
    """After how long unused a station locks itself, as the login page says it."""
    idle_s = _state(request).idle_s
    return idle_words(idle_s) if idle_s else None


async def login_post(request: web.Request) -> web.StreamResponse:
    """Check user and password; rate-limited per login and address."""
    form = await _form(request)
    login = form.get("login", "").strip().lower()[:64]
    # a text no login can be ("pin:alice") counts under one key of its own: it must not
    # reach another counter (alice's PINs)
    refused = await _refused(request, form, login if _LOGIN_SHAPE.fullmatch(login) else "?")
    if refused is not None:
        return refused
    entry = active_user(_node(request), login)
    stored = None if entry is None else entry.get("password")
    if not await _verify(form.get("password", ""), stored) or entry is None:
        # what was typed is logged only when it is someone's login: it may be a password
        who = login if entry is not None else "a login nobody active holds"
        return await _failed(request, form, who, "Unknown user or wrong password.")
    return _logged_in(request, form, login, entry, login)


async def login_badge_post(request: web.Request) -> web.StreamResponse:
    """Check a scanned badge and its holder's PIN; rate-limited like passwords.

    Failures count against the badge holder's login (with password failures), or against the
    badge itself when nobody holds it; the answer never says which of badge or PIN was wrong.
    """
    form = await _form(request)
    badge = form.get("badge", "")[:80]
    login = badge_owner(_node(request), badge)
    if login is None:
        try:
            key = "badge:" + badge_hash(badge)[:16]
        except ValueError:
            key = "badge:?"
    else:
        key = PIN_KEY + login  # PINs have their own, lower count: past it, the password works
    refused = await _refused(request, form, key, total=PIN_FAILURES)
    if refused is not None:
        return refused
    entry = None if login is None else active_user(_node(request), login)
    stored = None if entry is None else entry.get("pin")
    if not await _verify(form.get("pin", ""), stored) or login is None or entry is None:
        who = "badge of " + login if login is not None else "unknown badge"
        return await _failed(
            request, {"next": form.get("next", "")}, who, "Unknown badge or wrong PIN."
        )
    return _logged_in(request, form, login, entry, key)


async def _refused(
    request: web.Request, form: dict[str, str], key: str, *, total: int = KEY_FAILURES
) -> web.StreamResponse | None:
    """The answer when the form is forged or the key has used up its failures; else None,
    the try counted as failed until it succeeds."""
    state = _state(request)
    gettext = translator(state.catalogs, _lang(request))
    pre = request.cookies.get(PRE_COOKIE, "")
    if not pre or not same_text(pre, form.get("csrf", "")):
        return await login_page(
            request, gettext("The form expired or did not come from this page: try again."), form
        )
    known = active_user(_node(request), key.removeprefix(PIN_KEY)) is not None
    if not state.limiter.attempt(key, request.remote or "?", known=known, total=total):
        response = await login_page(
            request, gettext("Too many failed attempts: wait 5 minutes and try again."), form
        )
        response.set_status(429)
        return response
    return None


async def _verify(secret: str, stored: Any) -> bool:
    hashed = stored if isinstance(stored, dict) else decoy_hash()
    # an empty secret costs the same as any other: failures are never cheap to make
    good = await asyncio.to_thread(verify_password, secret or "\x00", hashed)
    return good and bool(secret) and hashed is stored


async def _failed(
    request: web.Request, form: dict[str, str], who: str, message: str
) -> web.Response:
    state = _state(request)
    address = request.remote or "?"  # the try was counted as it began (_refused)
    _LOGGER.info("failed web login for %r from %s", who, address)
    gettext = translator(state.catalogs, _lang(request))
    return await login_page(request, gettext(message), form)


def _logged_in(
    request: web.Request, form: dict[str, str], login: str, entry: dict[str, Any], key: str
) -> web.Response:
    """Open the session, in the person's language if they chose one, else this browser's."""
    state = _state(request)
    state.limiter.succeeded(key, request.remote or "?")
    lang = entry.get("lang") if entry.get("lang") in LANGUAGES else _lang(request)
    session = new_session(login, str(lang), state.clock(), entry)
    principal = Principal(name=login, role=str(entry.get("role")))
    target = _safe_next(form.get("next"))
    response = _redirect(request, _home(principal) if target == "/" else target)
    _cookie(response, request, SESSION_COOKIE, state.signer.dumps(session))
    response.del_cookie(PRE_COOKIE, path="/")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the person's sessions, here and on every other PC (a copied cookie too), also
    when this page's own session is over already (unused too long)."""
    principal = _principal(request)
    form = await _form(request)
    if request.get(SESSION_KEY) is not None and not _csrf_ok(request, form):
        return _csrf_refused(request)
    login = principal.name if principal is not None else _idle_login(request, form)
    if login is not None:
        with contextlib.suppress(NodeError):  # a node that lost its disk still logs out here
            await _node(request).async_end_sessions(login)
    response = _redirect(request, "/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _idle_login(request: web.Request, form: dict[str, str]) -> str | None:
    """Who a session over for want of use belonged to (its form's token checked): logging
    out from its page still ends that person's sessions elsewhere."""
    if not request.get(IDLE_KEY):
        return None
    session = _state(request).signer.loads(request.cookies.get(SESSION_COOKIE))
    token = form.get("csrf", "")
    if session is None or not token or not same_text(str(session.get("c", "")), token):
        return None
    return str(session.get("u"))


async def lock(request: web.Request) -> web.StreamResponse:
    """What a page sends when it locks itself (idle.js): this browser's session ends now (the
    person's sessions on other PCs go on); the login page says why and leads back. A session
    another tab of this browser used well within the idle time is kept: that tab goes on,
    and this one shows its page again."""
    principal = _principal(request)
    form = await _form(request)
    back = _safe_next(form.get("next"))
    session = request.get(SESSION_KEY)
    state = _state(request)
    last = int(session.get("a", 0)) if principal is not None and session is not None else 0
    if last and _csrf_ok(request, form) and state.clock() - last < state.idle_s - IDLE_GRACE_S:
        return _redirect(request, back)  # used in another tab since
    response = _redirect(request, "/login?" + urlencode({"next": back, "idle": "1"}))
    if session is None or _csrf_ok(request, form):
        response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def set_language(request: web.Request) -> web.StreamResponse:
    """Choose the language of this browser (GET, a link); a logged-in person's choice is
    kept in their record by the header's form (POST, with its CSRF token)."""
    lang = request.match_info["lang"]
    if lang not in LANGUAGES:
        raise web.HTTPNotFound
    principal = _principal(request)
    session = request.get(SESSION_KEY)
    keep = False
    if request.method == "POST":
        form = await _form(request)
        if principal is None or not _csrf_ok(request, form):
            return _csrf_refused(request)
        keep = True
    response = _redirect(request, _safe_next(request.query.get("next")))
    _cookie(response, request, LANG_COOKIE, lang)
    if principal is not None and session is not None:
        session["l"] = lang
        _cookie(response, request, SESSION_COOKIE, _state(request).signer.dumps(session))
        if keep:
            with contextlib.suppress(NodeError):  # a node that lost its disk still shows pages
                await async_set_language(_node(request), principal.name, lang)
    return response


def add_login_routes(app: web.Application) -> None:
    """Register the login pages."""
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_post)
    app.router.add_post("/login/badge", login_badge_post)
    app.router.add_post("/logout", logout)
    app.router.add_post("/lock", lock)
    app.router.add_get("/lang/{lang}", set_language)
    app.router.add_post("/lang/{lang}", set_language)

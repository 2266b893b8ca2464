"""Web UI: login, zone stations for operators, a live dashboard for heads (server-rendered)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from aiohttp import web

import crdt_model as cm
import devices

from ._api_trace import PRINTING_KEY, SCANNERS_KEY
from ._auth import AuthError, Principal, badge_hash, decoy_hash, verify_password
from ._devices import resolve_scan
from ._http import NODE_KEY, PRINCIPAL_KEY, SESSION_AUTH_KEY, ApiError, Handler, read_body
from ._node import Node, NodeError, NodeFailedError, RuleError
from ._users import active_user, badge_owner
from ._web_dash import dashboard_context
from ._web_station import (
    CONFIRMED,
    KEPT_FIELDS,
    LOADS,
    STATION_ZONES,
    STEPS,
    async_perform,
    is_known_set,
    is_set_code,
    new_load_url,
    set_programs,
    station_context,
    station_url,
)
from ._web_support import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    PIN_FAILURES,
    PIN_KEY,
    LoginLimiter,
    Signer,
    accepted_language,
    field_errors_item,
    load_catalogs,
    local_time,
    node_secret,
    problem_item,
    same_text,
    say_anomaly,
    say_problem,
    session_mark,
    translator,
)

_LOGGER = logging.getLogger(__name__)

SESSION_COOKIE = "sm_session"
LANG_COOKIE = "sm_lang"
PRE_COOKIE = "sm_pre"
FLASH_COOKIE = "sm_flash"
STREAM_DEBOUNCE_S = 0.3
STREAM_KEEPALIVE_S = 25.0
MAX_STREAMS = 64
"""Live dashboards (server-sent event connections) one node serves at once."""
MAX_STREAMS_PER_USER = 6
"""Live dashboards one session (a browser) holds open at once."""
_RETRY = {"Retry-After": "60"}
STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
_API_PREFIXES = ("/api/", "/metrics")
_MAX_FORM = 64 * 1024
_NEXT_RE = re.compile(r"/[A-Za-z0-9/_.~%?=&#+,:;@!$'()*-]*")
"""Where a page may send back to after login or a language change: a plain local path."""
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)


IDLE_MINUTES = 15
"""Default of [web] idle_minutes: a station unused this long locks itself."""
IDLE_GRACE_S = 60
_ACTIVITY_STEP_S = 20
"""A session's activity is written into its cookie at most this often."""


@dataclass
class WebState:
    """What the web UI keeps per application."""

    env: jinja2.Environment
    catalogs: dict[str, dict[str, str]]
    signer: Signer
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    clock: Callable[[], float] = time.time
    streams: set[asyncio.Event] = field(default_factory=set)
    stream_users: dict[asyncio.Event, str] = field(default_factory=dict)
    closing: bool = False
    zones: dict[str, str] = field(default_factory=dict)
    """Event id -> zone of the station that recorded it, read on demand (events never change)."""
    once: dict[str, asyncio.Future[str | None]] = field(default_factory=dict)
    """A load form's one-time name -> the load it recorded (None: refused), the newest kept:
    the same form sent twice (a double tap) records one load."""
    idle_s: float = IDLE_MINUTES * 60
    """A session unused this long is over (0: never): the next person at a shared station
    logs in as themselves. The pages lock themselves then; the node allows IDLE_GRACE_S more
    (a tap just before the lock still counts)."""


WEB_KEY: web.AppKey[WebState] = web.AppKey("web", WebState)
SESSION_KEY: web.RequestKey[dict[str, Any]] = web.RequestKey("session", dict)
USER_LANG_KEY: web.RequestKey[str] = web.RequestKey("user_lang", str)
IDLE_KEY: web.RequestKey[bool] = web.RequestKey("idle", bool)


class WebConfigError(NodeError):
    """A [web] setting of node.toml that cannot be used."""


def idle_seconds(config: dict[str, Any]) -> float:
    """[web] idle_minutes of node.toml in seconds (default IDLE_MINUTES; 0: never)."""
    section = config.get("web", {})
    if not isinstance(section, dict):
        raise WebConfigError("[web] in node.toml must be a section (idle_minutes = 15)")
    unknown = sorted(set(section) - {"idle_minutes"})
    if unknown:
        raise WebConfigError(f"[web] in node.toml: unknown setting {unknown[0][:40]!r}")
    minutes = section.get("idle_minutes", IDLE_MINUTES)
    number = not isinstance(minutes, bool) and isinstance(minutes, int | float)
    if not number or not (minutes == 0 or 0.05 <= minutes <= 720):
        raise WebConfigError(
            "[web] idle_minutes must be 0 (never) or a number of minutes from 0.05 to 720"
        )
    return float(minutes) * 60


def idle_words(idle_s: float) -> str:
    """How long a station waits before it locks itself, as people read it: "15 min", "30 s"."""
    return f"{idle_s / 60:g} min" if idle_s >= 60 else f"{idle_s:g} s"


def add_web_routes(app: web.Application, idle_s: float = IDLE_MINUTES * 60) -> None:
    """Register the web UI on a node's application (after the API routes); a session unused
    for `idle_s` seconds is over (0: never)."""
    node = app[NODE_KEY]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["segment"] = lambda value: quote(str(value), safe="")  # one part of a path
    env.globals["CANNOT_RECORD"] = CANNOT_RECORD
    app[WEB_KEY] = WebState(
        env, load_catalogs(), Signer(node_secret(node.data.root)), idle_s=idle_s
    )
    app[SESSION_AUTH_KEY] = _api_session
    # the pages authenticate by session cookie, not by the API's bearer token
    app.middlewares.insert(1, _web_middleware)
    app.router.add_get("/", index)
    app.router.add_get("/station", station_page)
    app.router.add_post("/station", station_post)
    app.router.add_get("/station/scans", station_scans)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/body", dashboard_body)
    app.router.add_get("/dashboard/stream", dashboard_stream)
    app.router.add_get("/still-here", still_here)
    app.router.add_post("/dashboard/resolve", resolve_post)
    app.router.add_static("/static/", STATIC_DIR, name="static")
    # the pages of loads, recall, reference and administration use this module's helpers
    from ._web_admin import add_admin_routes  # noqa: PLC0415
    from ._web_loads import add_load_routes  # noqa: PLC0415
    from ._web_login import add_login_routes  # noqa: PLC0415
    from ._web_recall import add_recall_routes  # noqa: PLC0415

    add_login_routes(app)
    add_load_routes(app)
    add_recall_routes(app)
    add_admin_routes(app)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)


# -- plumbing -------------------------------------------------------------------------


@web.middleware
async def _web_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages skip the bearer-token middleware: they check the session cookie themselves."""
    if request.path.startswith(_API_PREFIXES) or request.app.get(WEB_KEY) is None:
        return await handler(request)
    match = request.match_info
    try:
        if match.http_exception is not None:
            raise match.http_exception
        response = await match.handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        response = _error_page(request, err.status)  # a person reads it: a page, not JSON
    except NodeFailedError:
        response = _error_page(request, 503, NODE_FAILED)
    except NodeError as err:  # a refusal no page handler expected: said as a page too
        _LOGGER.warning("page %s: %s", request.path, err)
        response = _error_page(request, err.status)
    _keep_alive(request, response)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/static/"):  # pages show patient codes, one-time tokens:
        response.headers.setdefault("Cache-Control", "no-store")  # not for Back after logout
    return response


_NOT_ACTIVITY = ("/static/", "/dashboard/body", "/dashboard/stream", "/station/scans", "/lock")
"""What pages fetch by themselves: it keeps no session alive (a board refreshing itself is
not someone at the station; nor does a page that locks itself)."""


def _keep_alive(request: web.Request, response: web.StreamResponse) -> None:
    """A request of the person (a page, a form, /still-here) renews their session's activity."""
    session = request.get(SESSION_KEY)
    if session is None or request.path.startswith(_NOT_ACTIVITY):
        return
    if SESSION_COOKIE in response.cookies:  # logged in, out, or changed language just now
        return
    state = _state(request)
    now = int(state.clock())
    if now - int(session.get("a", 0)) < _ACTIVITY_STEP_S:
        return  # renewed moments ago: spare a new cookie on every request
    _cookie(response, request, SESSION_COOKIE, state.signer.dumps({**session, "a": now}))


async def still_here(request: web.Request) -> web.StreamResponse:
    """What a page sends when its person types or taps without sending anything (a long list
    of sets scanned into a form): their session stays alive. 204; 401 once it is over."""
    if _principal(request) is None:
        return web.Response(status=401)
    return web.Response(status=204)


async def _on_startup(app: web.Application) -> None:
    state = app[WEB_KEY]

    def changed(_name: str, _update: bytes, _origin: str | None) -> None:
        for flag in list(state.streams):
            flag.set()

    unsubscribe = app[NODE_KEY].add_listener(changed)

    async def stop(_app: web.Application) -> None:
        unsubscribe()

    app.on_cleanup.append(stop)


async def _on_shutdown(app: web.Application) -> None:
    state = app[WEB_KEY]
    state.closing = True
    for flag in list(state.streams):
        flag.set()


def _state(request: web.Request) -> WebState:
    return request.app[WEB_KEY]


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _lang(request: web.Request) -> str:
    """The page's language: the person's own, else their session's, cookie's or browser's."""
    for lang in (
        request.get(USER_LANG_KEY),
        (request.get(SESSION_KEY) or {}).get("l"),
        request.cookies.get(LANG_COOKIE),
        accepted_language(request.headers.get("Accept-Language")),
    ):
        if lang in LANGUAGES:
            return str(lang)
    return DEFAULT_LANGUAGE


def _cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    max_age: int | None = None,
) -> None:
    """Set a cookie of the pages (`max_age`: kept that many seconds, else for the session)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )


def _principal(request: web.Request) -> Principal | None:
    """The logged-in person (role read from the cluster document on every request)."""
    state = _state(request)
    session = state.signer.loads(request.cookies.get(SESSION_COOKIE))
    if session is None or not isinstance(session.get("u"), str):
        return None
    now = state.clock()
    if not isinstance(session.get("e"), int) or session["e"] < now:
        return None
    last = session.get("a")
    if state.idle_s and (not isinstance(last, int) or last + state.idle_s + IDLE_GRACE_S < now):
        if isinstance(last, int):  # the login page says why (not to a cookie from before)
            request[IDLE_KEY] = True
        return None  # unused too long: the next person logs in as themselves
    entry = active_user(_node(request), session["u"])
    if entry is None or session.get("g") != session_mark(entry):
        return None  # disabled, password replaced, or logged out since
    request[SESSION_KEY] = session
    if entry.get("lang") in LANGUAGES:
        request[USER_LANG_KEY] = entry["lang"]
    principal = Principal(name=session["u"], role=str(entry.get("role")))
    request[PRINCIPAL_KEY] = principal
    return principal


def _api_session(request: web.Request) -> tuple[Principal, str] | None:
    """For /api/*: the logged-in person and their session's CSRF token."""
    principal = _principal(request)
    if principal is None:
        return None
    return principal, str(request[SESSION_KEY].get("c") or "")


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """A page in the person's language."""
    state = _state(request)
    session = request.get(SESSION_KEY)
    lang = _lang(request)
    node = _node(request)
    gettext = translator(state.catalogs, lang)
    principal = request.get(PRINCIPAL_KEY)
    html = state.env.get_template(template).render(
        _=gettext,
        say=lambda item: say_problem(item, gettext),
        say_anomaly=lambda anomaly: say_anomaly(anomaly, gettext),
        lang=lang,
        languages=LANGUAGES,
        node=node,
        user=principal,
        csrf=(session or {}).get("c", ""),
        idle_ms=int(state.idle_s * 1000) if principal is not None else 0,
        path=request.path_qs,
        when=lambda value, fmt="%d/%m %H:%M": local_time(value, node.timezone, fmt),
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


_HTTP_ERRORS = {
    404: "This page does not exist, or what it showed is no longer here.",
    413: "What was sent is too large.",
}


NODE_FAILED = (
    "This PC can no longer record (its storage failed): nothing was recorded. Use another"
    " station, or paper, and call IT."
)
CANNOT_RECORD = (
    "This PC can no longer record (its storage failed): use another station, or paper, and call IT."
)
"""What every page and the load form's list say while this PC's storage has failed."""


def _error_page(request: web.Request, status: int, message: str | None = None) -> web.Response:
    """error.html with `message` (English, translated here), else what `status` means."""
    if message is None:
        message = _HTTP_ERRORS.get(
            status, "The request could not be understood: go back and try again."
        )
    gettext = translator(_state(request).catalogs, _lang(request))
    return render(request, "error.html", status, message=gettext(message))


def _deny(request: web.Request, principal: Principal | None) -> web.StreamResponse:
    if principal is None:
        query = {"next": request.path_qs, **({"idle": "1"} if request.get(IDLE_KEY) else {})}
        raise web.HTTPSeeOther("/login?" + urlencode(query))
    return _error_page(request, 403, "Your role may not use this page.")


def _gate(request: web.Request, permission: str) -> Principal | web.StreamResponse:
    principal = _principal(request)
    if principal is None or not principal.can(permission):
        return _deny(request, principal)
    return principal


async def _form(request: web.Request) -> dict[str, str]:
    """A urlencoded form, at most _MAX_FORM bytes (read with the limit kept: chunked too)."""
    try:
        raw = await read_body(request, _MAX_FORM)
    except ApiError:
        raise web.HTTPRequestEntityTooLarge(max_size=_MAX_FORM, actual_size=_MAX_FORM + 1) from None
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise web.HTTPBadRequest(text="malformed form") from None
    return dict(pairs)


def _csrf_ok(request: web.Request, form: dict[str, str]) -> bool:
    expected = (request.get(SESSION_KEY) or {}).get("c")
    given = form.get("csrf", "")
    return isinstance(expected, str) and bool(given) and same_text(expected, given)


def refused_flash(
    err: cm.EventError | NodeError, message: str = "The step was refused."
) -> dict[str, Any]:
    """The message telling the operator why the node refused a step, in their language."""
    detail: str | dict[str, Any]
    if isinstance(err, NodeFailedError):
        return {"k": "error", "m": NODE_FAILED}  # not a refusal: this PC cannot record now
    if isinstance(err, cm.EventError):
        detail = field_errors_item(err)
    elif isinstance(err, RuleError):
        detail = problem_item(err.problem)
    else:
        detail = str(err)[:300]
    return {"k": "error", "m": message, "d": detail}


def done_flash(message: str, warnings: list[str], **extra: Any) -> dict[str, Any]:
    """The message of a recorded step, with the rules it broke (at most five)."""
    return {"k": "ok", "m": message, "w": [problem_item(w) for w in warnings[:5]], **extra}


async def async_confirm(request: web.Request, principal: Principal, secret: str) -> str | None:
    """Check the PIN (or password) a person types to sign a decision; None when it is theirs.

    Failures count in the login rate limit of that person and address.
    """
    state = _state(request)
    address = request.remote or "?"
    key = PIN_KEY + principal.name  # counted as a PIN: it may be one
    if not state.limiter.attempt(key, address, total=PIN_FAILURES):
        return "Too many failed attempts: wait 5 minutes and try again."
    entry = active_user(_node(request), principal.name)
    stored = [] if entry is None else [entry.get("pin"), entry.get("password")]
    for hashed in stored:
        if (
            secret
            and isinstance(hashed, dict)
            and await asyncio.to_thread(verify_password, secret, hashed)
        ):
            state.limiter.succeeded(key, address)
            return None
    _LOGGER.info("failed confirmation by %r from %s", principal.name, address)
    with_pin = entry is not None and isinstance(entry.get("pin"), dict)
    return (
        "Wrong PIN: nothing was recorded." if with_pin else "Wrong password: nothing was recorded."
    )


async def async_sign_with_badge(
    request: web.Request, badge: str, pin: str, permission: str
) -> Principal | str:
    """Another person signs a decision on this session (a releaser at an operator's
    station): their badge and PIN. Their principal, or why not (counted as PIN failures).
    """
    state = _state(request)
    node = _node(request)
    address = request.remote or "?"
    owner = badge_owner(node, badge)
    try:  # an unknown badge counts under its own hash, as at the login page
        key = PIN_KEY + owner if owner is not None else "badge:" + badge_hash(badge)[:16]
    except AuthError:
        key = "badge:?"
    if not state.limiter.attempt(key, address, known=owner is not None, total=PIN_FAILURES):
        return "Too many failed attempts: wait 5 minutes and try again."
    entry = None if owner is None else active_user(node, owner)
    stored = None if entry is None else entry.get("pin")
    hashed = stored if isinstance(stored, dict) else decoy_hash()  # every failure costs alike
    good = await asyncio.to_thread(verify_password, pin or "\x00", hashed)
    if not good or not pin or owner is None or entry is None or hashed is not stored:
        _LOGGER.info("failed badge signature from %s", address)
        return "Unknown badge or wrong PIN: nothing was recorded."
    state.limiter.succeeded(key, address)
    signer = Principal(name=owner, role=str(entry.get("role")))
    if not signer.can(permission):
        return "Your role may not do this step."
    holder = _principal(request)
    _LOGGER.info(  # who was at the station: the decision names the signer only
        "%s signed with their badge on the session of %s", owner, holder.name if holder else "?"
    )
    return signer


def has_pin(request: web.Request, principal: Principal) -> bool:
    """True when the person confirms decisions with a PIN."""
    entry = active_user(_node(request), principal.name)
    return entry is not None and isinstance(entry.get("pin"), dict)


async def _gated_form(
    request: web.Request, permission: str
) -> tuple[Principal, dict[str, str]] | web.StreamResponse:
    """The caller, if its role grants `permission`, and its form, if its CSRF token holds."""
    principal = _gate(request, permission)
    if not isinstance(principal, Principal):
        return principal
    form = await _form(request)
    if not _csrf_ok(request, form):
        return _csrf_refused(request)
    return principal, form


def _csrf_refused(request: web.Request) -> web.Response:
    return _error_page(request, 403, "The form expired or did not come from this page: try again.")


def _safe_next(value: str | None) -> str:
    # a path of this node only: browsers drop tabs and newlines, so "/\t/evil" is "//evil"
    if value and _NEXT_RE.fullmatch(value) and not value.startswith("//"):
        return value
    return "/"


def _flash(request: web.Request) -> dict[str, Any] | None:
    return _state(request).signer.loads(request.cookies.get(FLASH_COOKIE))


def _redirect(request: web.Request, to: str, flash: dict[str, Any] | None = None) -> web.Response:
    response = web.Response(status=303, headers={"Location": to})
    if flash is not None:
        _cookie(response, request, FLASH_COOKIE, _state(request).signer.dumps(flash))
    return response


def _home(principal: Principal) -> str:
    return "/station" if principal.can("record") else "/dashboard"


async def index(request: web.Request) -> web.StreamResponse:
    """The person's home page, or the login page."""
    principal = _principal(request)
    raise web.HTTPSeeOther("/login" if principal is None else _home(principal))


# -- station --------------------------------------------------------------------------


def _zone(request: web.Request, raw: str | None) -> str:
    zone = raw if raw in STATION_ZONES else _node(request).zone
    return zone if zone in STATION_ZONES else "sale"


async def station_page(request: web.Request) -> web.StreamResponse:
    """Scan or type a code; see what it is and the next step for this zone."""
    principal = _gate(request, "record")
    if not isinstance(principal, Principal):
        return principal
    zone = _zone(request, request.query.get("zone"))
    code, scan_note = scanned_code(_node(request), request.query.get("code", ""))
    context = station_context(_node(request), principal, zone, code)
    flash = _flash(request)
    if context.get("item") is not None and flash is not None and flash.get("code") == code:
        context["defaults"].update(flash.get("f") or {})  # what a refused step was given
    response = render(
        request,
        "station.html",
        zone=zone,
        code=code,
        flash=flash,
        scanner_station=scanner_station(request),
        pin=has_pin(request, principal),
        printers=node_printers(request),
        printer_default=chosen_printer(request),
        scan_note=scan_note,
        **context,
    )
    response.del_cookie(FLASH_COOKIE, path="/")
    return response


def node_printers(request: web.Request) -> list[str]:
    """The names of this node's label printers."""
    printing = request.app.get(PRINTING_KEY)
    return sorted(printing.formats) if printing is not None else []


PRINTER_COOKIE = "sm_printer"


def chosen_printer(request: web.Request) -> str:
    """The printer a label form offers first: the one this browser (a station) printed with
    last, else the node's only printer ("" when neither: a PDF only)."""
    printers = node_printers(request)
    last = request.cookies.get(PRINTER_COOKIE)
    if last in printers:
        return str(last)
    return printers[0] if len(printers) == 1 else ""


def remember_printer(
    response: web.StreamResponse, request: web.Request, printer: str | None
) -> None:
    """Keep the printer a label was just issued for as this browser's first choice. A label
    issued as a PDF only is not remembered: the next one offers a printer again (else one
    PDF would leave the station's labels unprinted)."""
    if printer is None:
        response.del_cookie(PRINTER_COOKIE, path="/")
        return
    _cookie(response, request, PRINTER_COOKIE, printer, max_age=365 * 86400)


def scanned_code(node: Node, raw: str) -> tuple[str, dict[str, str] | None]:
    """The set code that what a keyboard-wedge scanner typed names, with a note when it names
    none: a label's or an instrument's DataMatrix is read as the node's own scanners read it."""
    raw = raw.strip()[:512]  # a scan's longest (devices.MAX_SCAN_LENGTH)
    try:
        scan = devices.parse_scan(raw) if raw else None
    except devices.BarcodeError:
        scan = None
    if scan is None or scan.gs1 is None:
        return raw[:80], None
    found = resolve_scan(node, scan)
    if found.get("set"):
        return str(found["set"])[:80], None
    if found.get("instrument"):
        text = "Instrument {code}: it belongs to no set here; scan the set."
        return "", {"m": text, "code": str(found["instrument"])[:80]}
    return "", {"m": "{code} is not a set code.", "code": scan.text[:80]}


def scanner_station(request: web.Request, wanted: str | None = None) -> str | None:
    """The serial scanner station a page follows: `wanted` (else ?station=), or the node's
    only one."""
    scanners = request.app.get(SCANNERS_KEY)
    if scanners is None or not scanners.stations:
        return None
    wanted = wanted or request.query.get("station")
    if wanted in scanners.stations:
        return wanted
    return scanners.stations[0] if len(scanners.stations) == 1 else None


async def station_scans(request: web.Request) -> web.StreamResponse:
    """Scans of a serial scanner station, for the station page (long poll, JSON)."""
    principal = _gate(request, "record")
    if not isinstance(principal, Principal):
        return principal
    scanners = request.app.get(SCANNERS_KEY)
    station = request.query.get("station", "")
    if scanners is None or station not in scanners.stations:
        return web.json_response({"scans": [], "last": 0}, status=404)
    try:
        after = int(request.query.get("after", "0"))
        wait = min(max(float(request.query.get("wait", "0")), 0.0), 20.0)
    except ValueError:
        return web.json_response({"scans": [], "last": 0}, status=400)
    scans = await scanners.async_scans(station, after, wait)
    return web.json_response(scanners.answer(scans))


SET_AS_CYCLE = "That is a set's code, not a cycle number: type the number the machine printed."
UNKNOWN_CODE = "This code is not in the reference data: check it, or tick 'Record it all the same'."


async def station_post(request: web.Request) -> web.StreamResponse:
    """Record the chosen step in one action, then show the set again."""
    gated = await _gated_form(request, "record")
    if not isinstance(gated, tuple):
        return gated
    principal, form = gated
    zone = _zone(request, form.get("zone"))
    code = form.get("code", "").strip()[:80]
    action = form.get("action", "")
    station = form.get("station", "")[:64]
    back = station_url(zone, code, station)
    if action not in STEPS:
        return _redirect(request, back)
    needed = STEPS[action].permission
    kept = {f: form[f].strip()[:120] for f in KEPT_FIELDS if form.get(f, "").strip()}
    signed = False
    if needed is not None and not principal.can(needed):
        if action not in CONFIRMED or not form.get("badge"):
            return _redirect(request, back, {"k": "error", "m": "Your role may not do this step."})
        signer = await async_sign_with_badge(
            request, form.get("badge", "")[:80], form.get("confirm", ""), needed
        )
        if isinstance(signer, str):
            return _redirect(request, back, {"k": "error", "m": signer, "f": kept, "code": code})
        principal, signed = signer, True  # the releaser who signed records the decision
    if action in LOADS:  # a load is built on its own form, the scanned set on it
        ref = _node(request).trace.fold.reference
        program = set_programs(ref, ref.type_code(code) if ref else None)[LOADS[action]]
        machine = form.get("machine", "").strip()[:120]
        url = new_load_url(LOADS[action], code, machine, program, zone, station=station)
        return _redirect(request, url)
    if action == "reject" and not kept.get("reason"):
        return _redirect(request, back, {"k": "error", "m": "Say why the load is rejected."})
    if not form.get("unknown_ok") and not is_known_set(_node(request), code):
        return _redirect(request, back, {"k": "error", "m": UNKNOWN_CODE, "f": kept, "code": code})
    if "cycle_no" in STEPS[action].fields and is_set_code(_node(request), kept.get("cycle_no", "")):
        kept.pop("cycle_no")  # a set scanned while the cycle number field had the focus
        return _redirect(request, back, {"k": "error", "m": SET_AS_CYCLE, "f": kept, "code": code})
    printer = form.get("printer") or None
    if action == "label" and printer is not None and printer not in node_printers(request):
        return _redirect(request, back, {"k": "error", "m": "No such printer on this node."})
    if action in CONFIRMED and not signed:
        wrong = await async_confirm(request, principal, form.get("confirm", ""))
        if wrong is not None:
            return _redirect(request, back, {"k": "error", "m": wrong, "f": kept, "code": code})
    try:
        result = await async_perform(_node(request), principal, action, code, form, zone=zone)
    except (cm.EventError, NodeError) as err:
        return _redirect(request, back, {**refused_flash(err), "f": kept, "code": code})
    if action == "label" and printer is not None:
        request.app[PRINTING_KEY].submit(result["label"], printer)
    response = _redirect(request, back, {"k": "ok", "m": STEPS[action].done, **result})
    if action == "label":
        remember_printer(response, request, printer)
    return response


# -- dashboard ------------------------------------------------------------------------


async def dashboard_page(request: web.Request) -> web.StreamResponse:
    """The department head's view; its body refreshes live."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    response = render(
        request,
        "dashboard.html",
        flash=_flash(request),
        **dashboard_context(request, _state(request).zones),
    )
    response.del_cookie(FLASH_COOKIE, path="/")
    return response


async def dashboard_body(request: web.Request) -> web.StreamResponse:
    """The dashboard's body alone, fetched again on each change."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    return render(
        request, "dashboard_body.html", **dashboard_context(request, _state(request).zones)
    )


async def dashboard_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `changed` after durable changes (local or from peers), debounced."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    state = _state(request)
    # per session: wall screens sharing one login each have their own
    session = str((request.get(SESSION_KEY) or {}).get("c", principal.name))
    mine = sum(1 for who in state.stream_users.values() if who == session)
    if len(state.streams) >= MAX_STREAMS or mine >= MAX_STREAMS_PER_USER:
        # each is an open connection: the page still works, refreshed by hand
        return web.Response(status=429, text="too many live dashboards open", headers=_RETRY)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    flag = asyncio.Event()
    state.streams.add(flag)
    state.stream_users[flag] = session
    try:
        await response.write(b"retry: 2000\n: hello\n\n")
        while not state.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flag.wait(), STREAM_KEEPALIVE_S)
            if state.closing:
                break
            if not flag.is_set():
                await response.write(b": keep-alive\n\n")
                continue
            await asyncio.sleep(STREAM_DEBOUNCE_S)
            flag.clear()
            await response.write(b"event: changed\ndata: 1\n\n")
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        state.streams.discard(flag)
        state.stream_users.pop(flag, None)
    return response


async def resolve_post(request: web.Request) -> web.StreamResponse:
    """Record a decision on an anomaly (releaser or head)."""
    gated = await _gated_form(request, "resolve")
    if not isinstance(gated, tuple):
        return gated
    principal, form = gated
    submission: dict[str, Any] = {
        "type": "anomaly.resolved",
        "anomaly": form.get("anomaly", ""),
        "decision": form.get("decision", ""),
    }
    if form.get("comment", "").strip():
        submission["comment"] = form["comment"].strip()[:500]
    try:
        await _node(request).async_submit(submission, principal)
    except (cm.EventError, NodeError) as err:
        _LOGGER.info("anomaly decision refused: %s", str(err)[:200])
        return _redirect(request, "/dashboard", refused_flash(err, "The decision was refused."))
    return _redirect(request, "/dashboard", {"k": "ok", "m": "Decision recorded."})

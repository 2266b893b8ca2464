"""REST API (aiohttp): JSON in, JSON out, one error shape."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

import crdt_model as cm

from ._auth import AuthError, Principal
from ._bundle import BundleError, read_bundle
from ._cluster import async_invite, async_revoke, members
from ._node import VERSION, Node, NodeError
from ._pki import PkiError

_LOGGER = logging.getLogger(__name__)

NODE_KEY: web.AppKey[Node] = web.AppKey("node", Node)
CONTROL_KEY: web.AppKey[bool] = web.AppKey("control", bool)
PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
EVENT_PERMISSION = {"load.released": "release", "anomaly.resolved": "resolve"}
"""Event types that need more than the `record` permission."""

MAX_JSON_BODY = 1024 * 1024
MAX_BUNDLE_BODY = 256 * 1024 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
OPEN_ROUTES = frozenset({"/api/health"})

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success, in the one error shape."""

    def __init__(self, status: int, error: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.errors = errors or []


def error_response(
    status: int, error: str, errors: list[dict[str, str]] | None = None
) -> web.Response:
    """The one error shape: {"ok": false, "error", "errors", "status"}."""
    return web.json_response(
        {"ok": False, "error": error, "errors": errors or [], "status": status}, status=status
    )


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to the one error shape, and count answers."""
    node = request.app[NODE_KEY]
    try:
        response = await handler(request)
    except ApiError as err:
        response = error_response(err.status, err.error, err.errors)
    except cm.EventError as err:
        response = error_response(422, "the event is not valid", [e.as_dict() for e in err.errors])
    except NodeError as err:
        response = error_response(err.status, str(err))
    except (AuthError, PkiError) as err:
        response = error_response(422, str(err))
    except web.HTTPException as err:
        if err.status < 400:
            raise
        reason = {404: "no such endpoint", 405: "method not allowed here"}.get(
            err.status, err.reason
        )
        response = error_response(err.status, reason)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        _LOGGER.exception(
            "unexpected failure answering %s %s", request.method, _route_name(request)
        )
        response = error_response(500, "internal error; see the node's log")
    node.metrics.http_requests.labels(request.method, _route_name(request), response.status).inc()
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token for people and integrations; the control socket is the local machine."""
    if request.app[CONTROL_KEY]:
        request[PRINCIPAL_KEY] = Principal(name="local-admin", role="local")
        return await handler(request)
    if request.path in OPEN_ROUTES:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "authentication required: send Authorization: Bearer TOKEN")
    principal = request.app[NODE_KEY].authenticate(token.strip())
    if principal is None:
        raise ApiError(401, "unknown or revoked token")
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


def require(request: web.Request, permission: str) -> Principal:
    """The caller, if its role grants the permission; 403 otherwise."""
    principal: Principal = request[PRINCIPAL_KEY]
    if not principal.can(permission):
        raise ApiError(403, f"the role {principal.role} may not do this ({permission})")
    return principal


async def read_json(request: web.Request) -> Any:
    """The JSON body of a request, size-limited."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise ApiError(413, f"body larger than {MAX_JSON_BODY} bytes")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise ApiError(413, f"body larger than {MAX_JSON_BODY} bytes")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "the body is not valid JSON") from None


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400,
            "bad query parameter",
            [{"field": name, "message": f"must be a whole number from {low} to {high}"}],
        )
    return value


# -- handlers ---------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """Open liveness check."""
    node = request.app[NODE_KEY]
    return web.json_response(
        {"ok": node.failed is None, "node": node.code, "name": node.name, "version": VERSION}
    )


async def post_event(request: web.Request) -> web.Response:
    """Record an event; 201 once it is durable."""
    body = await read_json(request)
    kind = body.get("type") if isinstance(body, dict) else None
    principal = require(request, EVENT_PERMISSION.get(str(kind), "record"))
    event = await request.app[NODE_KEY].async_record(body, principal)
    answer = {"id": event["id"], "hlc": event["hlc"]}
    if "load" in event and event["type"].endswith(".loaded"):
        answer["load"] = event["load"]
    return web.json_response(answer, status=201)


async def get_events(request: web.Request) -> web.Response:
    """Events in (hlc, id) order, filtered by day, type, set; paged with after/limit."""
    require(request, "read")
    query = request.query
    errors = []
    day = query.get("day") or None
    if day is not None and not _DAY_RE.match(day):
        errors.append({"field": "day", "message": "must be a date YYYY-MM-DD"})
    event_type = query.get("type") or None
    if event_type is not None and event_type not in cm.EVENT_TYPES:
        errors.append({"field": "type", "message": "unknown event type"})
    after = query.get("after") or None
    if after is not None:
        try:
            cm.split_event_id(after)
        except cm.ClockError:
            errors.append({"field": "after", "message": "must be an event id"})
    if errors:
        raise ApiError(400, "bad query parameter", errors)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    events = []
    for event in request.app[NODE_KEY].iter_events(
        day=day, set_code=query.get("set") or None, event_type=event_type, after=after
    ):
        events.append(event)
        if len(events) == limit:
            break
    return web.json_response(
        {
            "events": events,
            "after": after,
            "limit": limit,
            "next": events[-1]["id"] if len(events) == limit else None,
        }
    )


async def get_event(request: web.Request) -> web.Response:
    """One event by id."""
    require(request, "read")
    event = request.app[NODE_KEY].get_event(request.match_info["event_id"])
    if event is None:
        raise ApiError(404, "no such event")
    return web.json_response(event)


async def get_status(request: web.Request) -> web.Response:
    """The node's status."""
    require(request, "read")
    return web.json_response(request.app[NODE_KEY].status())


async def post_reference(request: web.Request) -> web.Response:
    """Import an export bundle sent as a .zip body; all or nothing."""
    require(request, "reference")
    node = request.app[NODE_KEY]
    with tempfile.TemporaryDirectory(prefix="sterimesh-import-") as tmp:
        path = Path(tmp) / "bundle.zip"
        size = 0
        with path.open("wb") as fh:
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > MAX_BUNDLE_BODY:
                    raise ApiError(413, f"bundle larger than {MAX_BUNDLE_BODY} bytes")
                fh.write(chunk)
        if size == 0:
            raise ApiError(400, "send the export bundle (.zip) as the request body")
        try:
            bundle = await asyncio.to_thread(read_bundle, path)
        except BundleError as err:
            raise ApiError(
                422,
                f"bundle refused: {err}",
                [
                    {
                        "field": err.file,
                        "message": f"line {err.line}: {err.reason}" if err.line else err.reason,
                    }
                ],
            ) from None
    summary = await node.async_import(bundle)
    return web.json_response(summary, status=201 if summary["status"] == "imported" else 200)


async def post_token(request: web.Request) -> web.Response:
    """Create an API token (admin)."""
    principal = require(request, "admin")
    body = await read_json(request)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("name"), str)
        or not isinstance(body.get("role"), str)
    ):
        raise ApiError(422, 'send {"name": ..., "role": ...}')
    token = await request.app[NODE_KEY].async_create_token(
        body["name"], body["role"], principal.name
    )
    return web.json_response(
        {"token": token, "name": body["name"], "role": body["role"]}, status=201
    )


async def post_user(request: web.Request) -> web.Response:
    """Create or replace a user (admin)."""
    principal = require(request, "admin")
    body = await read_json(request)
    fields = ("login", "role", "password")
    if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in fields):
        raise ApiError(422, 'send {"login": ..., "role": ..., "password": ...}')
    await request.app[NODE_KEY].async_add_user(
        body["login"], body["role"], body["password"], principal.name
    )
    return web.json_response({"login": body["login"], "role": body["role"]}, status=201)


async def post_invite(request: web.Request) -> web.Response:
    """A one-time join token for a new node (admin)."""
    principal = require(request, "admin")
    token = await async_invite(request.app[NODE_KEY], principal.name)
    return web.json_response({"token": token}, status=201)


async def get_nodes(request: web.Request) -> web.Response:
    """Cluster members."""
    require(request, "read")
    return web.json_response({"nodes": members(request.app[NODE_KEY])})


async def post_revoke(request: web.Request) -> web.Response:
    """Revoke a member (admin): every peer refuses it from then on."""
    principal = require(request, "admin")
    answer = await async_revoke(request.app[NODE_KEY], request.match_info["node"], principal.name)
    return web.json_response(answer)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    require(request, "read")
    body = request.app[NODE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def make_app(node: Node, *, control: bool = False) -> web.Application:
    """The HTTP application for a node; `control` for its local control socket."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BUNDLE_BODY
    )
    app[NODE_KEY] = node
    app[CONTROL_KEY] = control
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/status", get_status)
    app.router.add_post("/api/events", post_event)
    app.router.add_get("/api/events", get_events)
    app.router.add_get("/api/events/{event_id}", get_event)
    app.router.add_post("/api/reference", post_reference)
    app.router.add_post("/api/tokens", post_token)
    app.router.add_post("/api/users", post_user)
    app.router.add_post("/api/invites", post_invite)
    app.router.add_get("/api/nodes", get_nodes)
    app.router.add_post("/api/nodes/{node}/revoke", post_revoke)
    app.router.add_get("/metrics", metrics)
    return app

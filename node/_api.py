"""REST API (aiohttp): JSON in, JSON out, one error shape."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

import crdt_model as cm

from ._api_trace import PRINTING_KEY, SCANNERS_KEY, add_routes
from ._backup import node_info, snapshot, write_backup
from ._bundle import BundleError, read_bundle
from ._cluster import async_invite, async_revoke, members
from ._devices import Scanners
from ._http import (
    BY_SESSION_KEY,
    CONTROL_KEY,
    DEFAULT_LIMIT,
    MAX_BUNDLE_BODY,
    MAX_LIMIT,
    NODE_KEY,
    ApiError,
    auth_middleware,
    error_middleware,
    for_principal,
    int_param,
    is_day,
    read_json,
    require,
)
from ._node import VERSION, Node, NodeError, RuleError
from ._printing import Printing
from ._replication import REPLICATION_KEY as REPLICATION_APP_KEY
from ._replication import Replication
from ._settings import async_set_settings, settings_of
from ._users import KEPT, async_update_user
from ._web import IDLE_MINUTES, add_web_routes

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
    principal = require(request, "read")  # what the event takes: Node.permission_for
    node = request.app[NODE_KEY]
    if request.get(BY_SESSION_KEY) and isinstance(body, dict):
        try:
            signed = node.permission_for(body) == "release"
        except RuleError:
            signed = False  # an unknown target: async_submit says so
        if signed:  # the web pages ask for the PIN; a page's cookie alone is not a signature
            raise ApiError(
                403,
                "a release decision is signed with a PIN or password on the load's page or"
                " at the station, or sent with an API token",
            )
    event, warnings = await node.async_submit(body, principal)
    answer: dict[str, Any] = {"id": event["id"], "hlc": event["hlc"]}
    if "load" in event and event["type"].endswith(".loaded"):
        answer["load"] = event["load"]
    if warnings:
        answer["warnings"] = warnings
    return web.json_response(answer, status=201)


async def get_events(request: web.Request) -> web.Response:
    """Events in (hlc, id) order, filtered by day, type, set; paged with after/limit."""
    require(request, "read")
    query = request.query
    errors = []
    day = query.get("day") or None
    if day is not None and not is_day(day):
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
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    events = []
    for event in request.app[NODE_KEY].iter_events(
        day=day, set_code=query.get("set") or None, event_type=event_type, after=after
    ):
        events.append(event)
        if len(events) == limit:
            break
    return web.json_response(
        {
            "events": for_principal(request, events),
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
    return web.json_response(for_principal(request, event))


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
    """Create a user, or replace their role and password (badge, PIN, language kept) (admin)."""
    principal = require(request, "admin")
    body = await read_json(request)
    fields = ("login", "role", "password")
    if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in fields):
        raise ApiError(422, 'send {"login": ..., "role": ..., "password": ...}')
    await request.app[NODE_KEY].async_add_user(
        body["login"], body["role"], body["password"], principal.name
    )
    return web.json_response({"login": body["login"], "role": body["role"]}, status=201)


async def patch_user(request: web.Request) -> web.Response:
    """Set or clear (null) a user's badge, PIN and language (admin); never answers a hash."""
    principal = require(request, "admin")
    body = await read_json(request)
    if not isinstance(body, dict) or not body or not set(body) <= set(KEPT):
        raise ApiError(422, 'send any of {"badge": ..., "pin": ..., "lang": ...}, null clears')
    record = await async_update_user(
        request.app[NODE_KEY], request.match_info["login"], body, principal.name
    )
    return web.json_response(record)


async def post_token_revoke(request: web.Request) -> web.Response:
    """Revoke the API tokens of a name (admin): they are refused at once, on every node."""
    principal = require(request, "admin")
    name = request.match_info["name"]
    count = await request.app[NODE_KEY].async_revoke_tokens(name, principal.name)
    return web.json_response({"name": name, "revoked": count})


async def get_settings(request: web.Request) -> web.Response:
    """The cluster settings: site, views (shelf lives by packaging), label layout (admin)."""
    require(request, "admin")
    return web.json_response(settings_of(request.app[NODE_KEY]))


async def put_settings(request: web.Request) -> web.Response:
    """Replace one section of the cluster settings, on every node (admin)."""
    principal = require(request, "admin")
    body = await read_json(request)
    section = request.match_info["section"]
    kept = await async_set_settings(request.app[NODE_KEY], section, body, principal.name)
    return web.json_response({section: kept})


async def post_user_state(request: web.Request) -> web.Response:
    """Disable a user (their sessions end at once) or enable them again (admin)."""
    principal = require(request, "admin")
    login, action = request.match_info["login"], request.match_info["action"]
    if login == principal.name and action == "disable":
        raise ApiError(422, "an administrator cannot disable their own login")
    await request.app[NODE_KEY].async_disable_user(
        login, principal.name, disabled=action == "disable"
    )
    return web.json_response({"login": login, "disabled": action == "disable"})


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


async def get_peers(request: web.Request) -> web.Response:
    """Sync status per peer."""
    require(request, "read")
    replication = request.app.get(REPLICATION_APP_KEY)
    peers = [] if replication is None else replication.peers()
    return web.json_response({"peers": peers, "sync": replication is not None})


async def get_backup(request: web.Request) -> web.Response:
    """Every document of the node in one backup file (admin): `sterimesh backup` asks here."""
    require(request, "admin")
    node = request.app[NODE_KEY]
    docs, info = snapshot(node), node_info(node)
    raw = await asyncio.to_thread(write_backup, info, docs)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"sterimesh-{node.code}-{stamp}.zip"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return web.Response(body=raw, content_type="application/zip", headers=headers)


async def post_clear_flag(request: web.Request) -> web.Response:
    """Let a flagged peer sync again (admin), e.g. after it was repaired or upgraded."""
    principal = require(request, "admin")
    replication = request.app.get(REPLICATION_APP_KEY)
    if replication is None:
        raise NodeError("this node does not sync with peers")
    return web.json_response(replication.clear_flag(request.match_info["node"], principal.name))


def make_app(
    node: Node,
    *,
    control: bool = False,
    replication: Replication | None = None,
    printing: Printing | None = None,
    scanners: Scanners | None = None,
    idle_s: float = IDLE_MINUTES * 60,
) -> web.Application:
    """The HTTP application for a node; `control` for its local control socket; pages unused
    for `idle_s` seconds lock (0: never)."""
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
    app.router.add_patch("/api/users/{login}", patch_user)
    app.router.add_post(r"/api/users/{login}/{action:disable|enable}", post_user_state)
    app.router.add_post("/api/tokens/{name}/revoke", post_token_revoke)
    app.router.add_get("/api/settings", get_settings)
    app.router.add_put("/api/settings/{section}", put_settings)
    app.router.add_post("/api/invites", post_invite)
    app.router.add_get("/api/nodes", get_nodes)
    app.router.add_post("/api/nodes/{node}/revoke", post_revoke)
    app.router.add_get("/api/peers", get_peers)
    app.router.add_get("/api/backup", get_backup)
    app.router.add_post("/api/peers/{node}/clear-flag", post_clear_flag)
    if replication is not None:
        app[REPLICATION_APP_KEY] = replication
    if printing is not None:
        app[PRINTING_KEY] = printing
    if scanners is not None:
        app[SCANNERS_KEY] = scanners
    app.router.add_get("/metrics", metrics)
    add_routes(app)
    add_web_routes(app, idle_s)
    return app

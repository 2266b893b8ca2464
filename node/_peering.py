"""The sync listener: mutual TLS for peers, plus the two join endpoints."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from aiohttp import web
from cryptography import x509

from sync import sanitize

from ._cluster import async_accept_join, member_by_cert
from ._http import NODE_KEY, ApiError, error_middleware, read_json
from ._node import Node
from ._pki import NodePki, fingerprint, node_id_of
from ._replication import REPLICATION_KEY, Replication, sync_endpoint

_LOGGER = logging.getLogger(__name__)


def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The verified client certificate of a TLS request, if the peer sent one."""
    transport = request.transport
    ssl_obj = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_obj is None:
        return None
    der = ssl_obj.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None


REFUSAL_LOG_EVERY_S = 600.0
"""A refused knock is logged once per this many seconds per address and certificate."""

_refusals_logged: dict[tuple[str, str], float] = {}


def authenticate_peer(
    node: Node, cert: x509.Certificate | None, remote: str | None = None
) -> dict[str, Any]:
    """The member a certificate proves; ApiError 401/403 otherwise (logged, for IT)."""
    if cert is None:
        _log_refusal(remote, "", "no client certificate")
        raise ApiError(401, "a cluster certificate is required")
    node_id = node_id_of(cert)
    member = member_by_cert(node, node_id, fingerprint(cert))
    if member is None:
        _log_refusal(
            remote, node_id, f"node {node_id[:32]} is revoked, or not known here as a member yet"
        )
        raise ApiError(403, "this certificate is not of a current member")
    return {"node_id": node_id, **member}


def _log_refusal(remote: str | None, who: str, why: str) -> None:
    now = time.monotonic()
    key = (remote or "?", who)
    if now - _refusals_logged.get(key, -REFUSAL_LOG_EVERY_S) < REFUSAL_LOG_EVERY_S:
        return
    if len(_refusals_logged) > 1000:
        _refusals_logged.clear()
    _refusals_logged[key] = now
    _LOGGER.warning("sync connection from %s refused: %s", sanitize(remote or "?", 64), why)


async def join_ca(request: web.Request) -> web.Response:
    """The cluster CA certificate, for a joining node to check against its token."""
    pki = NodePki(request.app[NODE_KEY].data.pki)
    return web.Response(body=pki.ca_cert.read_bytes(), content_type="application/x-pem-file")


JOIN_BODY_S = 10.0
"""A join request's body must arrive within this (anyone may connect: a body trickled a
byte at a time would hold the connection for ever)."""


async def join(request: web.Request) -> web.Response:
    """Admit a node with a valid one-time invitation."""
    try:
        async with asyncio.timeout(JOIN_BODY_S):
            body = await read_json(request)
    except TimeoutError:
        raise ApiError(408, "the join request did not arrive in time") from None
    if not isinstance(body, dict):
        raise ApiError(422, "send a JSON object")
    try:
        answer = await async_accept_join(request.app[NODE_KEY], body)
    except PermissionError as err:
        raise ApiError(403, str(err)) from None
    return web.json_response(answer)


async def sync_socket(request: web.Request) -> web.StreamResponse:
    """A peer's sync WebSocket: a current member's certificate, then the session."""
    node = request.app[NODE_KEY]
    cert = peer_certificate(request)
    authenticate_peer(node, cert, request.remote)
    assert cert is not None
    return await sync_endpoint(request, request.app[REPLICATION_KEY], cert)


def make_sync_app(node: Node, replication: Replication) -> web.Application:
    """The application served on --sync-listen."""
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app[NODE_KEY] = node
    app[REPLICATION_KEY] = replication
    app.router.add_get("/join/ca", join_ca)
    app.router.add_post("/join", join)
    app.router.add_get("/sync", sync_socket)
    return app


def server_ssl(node: Node) -> ssl.SSLContext:
    """TLS context of the sync listener."""
    return NodePki(node.data.pki).server_context()

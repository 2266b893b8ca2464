"""HTTP plumbing shared by the API modules: keys, the error shape, auth, body reading."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from aiohttp import web

import crdt_model as cm
import devices

from ._auth import AuthError, Principal
from ._node import Node, NodeError
from ._pki import PkiError

_LOGGER = logging.getLogger(__name__)

NODE_KEY: web.AppKey[Node] = web.AppKey("node", Node)
CONTROL_KEY: web.AppKey[bool] = web.AppKey("control", bool)
PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
SessionAuth = Callable[[web.Request], tuple[Principal, str] | None]
"""The person of a request's session cookie and the session's CSRF token (set by the web UI)."""
SESSION_AUTH_KEY: web.AppKey[SessionAuth] = web.AppKey("session_auth")
BY_SESSION_KEY: web.RequestKey[bool] = web.RequestKey("by_session", bool)
"""Set on a request authenticated by a web session's cookie (not a token)."""
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_JSON_BODY = 1024 * 1024
MAX_BUNDLE_BODY = 256 * 1024 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
OPEN_ROUTES = frozenset({"/api/health"})

DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


def is_day(value: str) -> bool:
    """True for a calendar date written YYYY-MM-DD (2026-13-45 is not one)."""
    if not DAY_RE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


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
    except cm.FoldError as err:
        response = error_response(404, str(err))
    except devices.JobNotFoundError as err:
        response = error_response(404, str(err))
    except devices.DeviceError as err:
        response = error_response(409, str(err))
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
    """Bearer token for people and integrations, or a web session's cookie (with its CSRF
    token in X-CSRF-Token to change anything); the control socket is the local machine."""
    if request.app[CONTROL_KEY]:
        request[PRINCIPAL_KEY] = Principal(name="local-admin", role="local")
        return await handler(request)
    if request.path in OPEN_ROUTES:
        return await handler(request)
    header = request.headers.get("Authorization")
    if header is None:
        request[PRINCIPAL_KEY] = _session_principal(request)
        request[BY_SESSION_KEY] = True
        return await handler(request)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "authentication required: send Authorization: Bearer TOKEN")
    principal = request.app[NODE_KEY].authenticate(token.strip())
    if principal is None:
        raise ApiError(401, "unknown or revoked token")
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


def _session_principal(request: web.Request) -> Principal:
    session_auth = request.app.get(SESSION_AUTH_KEY)
    found = None if session_auth is None else session_auth(request)
    if found is None:
        raise ApiError(401, "authentication required: send Authorization: Bearer TOKEN, or log in")
    principal, csrf = found
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not csrf or not hmac.compare_digest(csrf.encode(), given.encode("utf-8", "replace")):
            raise ApiError(
                403, f"a change made with a session cookie needs the session's {CSRF_HEADER}"
            )
    return principal


def require(request: web.Request, permission: str) -> Principal:
    """The caller, if its role grants the permission; 403 otherwise."""
    principal: Principal = request[PRINCIPAL_KEY]
    if not principal.can(permission):
        raise ApiError(403, f"the role {principal.role} may not do this ({permission})")
    return principal


PATIENT_FIELDS = frozenset({"patient", "patients", "patient_code"})


def for_principal(request: web.Request, answer: Any) -> Any:
    """`answer` as the caller may see it: without patient codes unless its role sees them."""
    principal = request.get(PRINCIPAL_KEY)
    if principal is not None and principal.can("patients"):
        return answer
    return _without_patients(answer)


def _without_patients(value: Any) -> Any:
    """A JSON-like value with every patient field left out, at any depth."""
    if isinstance(value, dict):
        return {k: _without_patients(v) for k, v in value.items() if k not in PATIENT_FIELDS}
    if isinstance(value, list):
        return [_without_patients(v) for v in value]
    return value


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused (413) beyond `limit` bytes before more is read.

    Chunked bodies carry no Content-Length: the limit is kept while reading.
    """
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body larger than {limit} bytes")
    return b"".join(chunks)


async def read_json(request: web.Request) -> Any:
    """The JSON body of a request, size-limited."""
    raw = await read_body(request, MAX_JSON_BODY)
    try:
        value = json.loads(raw)
        if b"\\u" in raw:  # "\\ud800" decodes to half a surrogate pair: not text
            json.dumps(value, ensure_ascii=False).encode()
    except (UnicodeError, json.JSONDecodeError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    return value


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
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

"""REST API of the traceability views: sets, loads, anomalies, readiness, recall, feed, labels."""

from __future__ import annotations

import bisect
import hashlib

from aiohttp import web

import crdt_model as cm
import devices

from ._devices import Scanners
from ._http import (
    MAX_LIMIT,
    NODE_KEY,
    PRINCIPAL_KEY,
    ApiError,
    for_principal,
    int_param,
    is_day,
    read_json,
    require,
)
from ._node import Node
from ._printing import Printing

PRINTING_KEY: web.AppKey[Printing] = web.AppKey("printing", Printing)
SCANNERS_KEY: web.AppKey[Scanners] = web.AppKey("scanners", Scanners)

DEFAULT_FEED_LIMIT = 1000
MAX_FEED_LIMIT = 10000


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _today(node: Node) -> str:
    return node.trace.today(node._clock())


async def get_set(request: web.Request) -> web.Response:
    """A set instance: status, location, label, history, content."""
    require(request, "read")
    node = _node(request)
    code = request.match_info["instance"]
    ref = node.trace.fold.reference
    known = node.trace.fold.set_state(code) is not None
    type_code = ref.type_code(code) if ref is not None else None
    if not known and type_code is None:
        raise ApiError(404, f"no set {code[:64]}")
    view = node.trace.fold.set_status(code, _today(node)).as_dict()
    view["history"] = for_principal(request, list(node.iter_events(set_code=code)))
    if ref is not None and type_code is not None:
        view["type"] = dict(ref.set_types.get(type_code, {}))
        view["storage"] = ref.locations.get(code)
        doc = node.docs.get(cm.ref_doc_name(ref.export_id))
        if doc is not None:
            view["contents"] = [
                row for row in cm.read_table(doc, "set_contents") if row["type_code"] == type_code
            ]
    return web.json_response(view)


async def get_load(request: web.Request) -> web.Response:
    """A load: contents, cycle, release, labels."""
    require(request, "read")
    view = _node(request).trace.fold.load(request.match_info["load"])
    if view is None:
        raise ApiError(404, "no such load")
    return web.json_response(view.as_dict())


async def get_anomalies(request: web.Request) -> web.Response:
    """Anomalies in (trigger event, id) order, all or the open ones (?open=1); after/limit."""
    require(request, "read")
    open_only = request.query.get("open") in {"1", "true", "yes"}
    fold = _node(request).trace.fold
    found = fold.anomalies(open_only=open_only)
    after = request.query.get("after") or None
    start = 0
    if after is not None:
        # the cursor's place in the order, even once it is resolved (open=1 no longer lists
        # it): the next page starts after it
        cursor = fold.anomaly(after)
        if cursor is None:
            raise ApiError(
                400, "bad query parameter", [{"field": "after", "message": "unknown anomaly"}]
            )
        place = (cursor.trigger, cursor.id)
        start = bisect.bisect_right(found, place, key=lambda a: (a.trigger, a.id))
    limit = int_param(request, "limit", MAX_LIMIT, 1, MAX_LIMIT)  # a department has few
    page = found[start : start + limit]
    return web.json_response(
        {
            "anomalies": [a.as_dict() for a in page],
            "after": after,
            "limit": limit,
            "next": page[-1].id if start + limit < len(found) else None,
        }
    )


async def post_resolve(request: web.Request) -> web.Response:
    """Record a person's decision on an anomaly (releaser or head)."""
    principal = require(request, "resolve")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(422, 'send {"decision": ..., "comment": ...}')
    submission = {"type": "anomaly.resolved", "anomaly": request.match_info["anomaly"]}
    for name in ("decision", "comment"):  # absent or null: the validation says "required"
        if body.get(name) is not None:
            submission[name] = body[name]
    event, _ = await _node(request).async_submit(submission, principal)
    return web.json_response({"id": event["id"], "hlc": event["hlc"]}, status=201)


def _day_param(request: web.Request, name: str, default: str) -> str:
    value = request.query.get(name) or default
    if not is_day(value):
        raise ApiError(
            400, "bad query parameter", [{"field": name, "message": "must be a date YYYY-MM-DD"}]
        )
    return value


async def get_readiness(request: web.Request) -> web.Response:
    """Per planned operation of a date: sets needed, sterile sets available, ok/short."""
    require(request, "read")
    node = _node(request)
    day = _day_param(request, "date", _today(node))
    ref = node.trace.fold.reference
    if ref is None:
        raise ApiError(409, "no reference data imported yet: import the platform's export first")
    answer = cm.readiness_from(node.trace.fold, day, _today(node), ref)
    return web.json_response(for_principal(request, answer))


async def get_recall(request: web.Request) -> web.Response:
    """Recall by lot (load), set, endoscope, patient, or machine (a sterilizer since its last
    passed BI; an endoscope washer-disinfector: the uses it reprocessed for)."""
    principal = require(request, "read")
    fold = _node(request).trace.fold
    query = request.query
    given = [k for k in ("lot", "set", "endoscope", "patient", "machine") if query.get(k)]
    if len(given) != 1:
        raise ApiError(400, "give exactly one of lot, set, endoscope, patient, machine")
    key = given[0]
    if key == "patient" and not principal.can("patients"):
        raise ApiError(403, "only a releaser, head or admin looks up a patient")
    value = query[key]
    if key == "lot":
        found = cm.recall_lot(fold, value)
    elif key == "set":
        found = cm.recall_set(fold, value)
    elif key == "patient":
        found = cm.recall_patient(fold, value)
    elif key == "endoscope":
        found = cm.recall_endoscope(fold, value)
    else:
        found = cm.recall_machine(fold, value)
    return web.json_response(for_principal(request, found))


async def get_feed(request: web.Request) -> web.StreamResponse:
    """Events as NDJSON in (hlc, id) order; ?after=ID&limit=N, or ?unacked=1."""
    require(request, "feed" if request[PRINCIPAL_KEY].can("feed") else "read")
    node = _node(request)
    after = request.query.get("after") or None
    if after is not None:
        try:
            cm.split_event_id(after)
        except cm.ClockError:
            raise ApiError(
                400, "bad query parameter", [{"field": "after", "message": "must be an event id"}]
            ) from None
    limit = int_param(request, "limit", DEFAULT_FEED_LIMIT, 1, MAX_FEED_LIMIT)
    unacked = request.query.get("unacked") in {"1", "true", "yes"}
    lines: list[bytes] = []
    fed: list[str] = []
    last = None
    acked = node.trace.acked if unacked else frozenset()
    for event_id in node.index.ids_after(after):
        if event_id in acked:
            continue  # skipped before it is read: most of a long feed is acknowledged
        event = node.get_event(event_id)
        if event is None:
            continue
        lines.append(cm.feed_line(for_principal(request, event)))
        fed.append(event_id)
        last = event["id"]
        if len(lines) == limit:
            break
    headers = {"Sterimesh-Count": str(len(lines))}
    if last is not None and len(lines) == limit:
        headers["Sterimesh-Next-After"] = last
    body = b"".join(lines)
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/x-ndjson"
    response.content_length = len(body)
    try:
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
    except ConnectionError:
        return response  # the reader went away (a timed-out try): nothing was handed out
    reader = _reader(request)
    if reader is not None:
        node.index.fed.setdefault(reader, set()).update(fed)
    return response


def _reader(request: web.Request) -> str | None:
    """Who a feed page is handed out to, for `up_to`: a token (by its digest: two tokens
    may share a name), else a person; None when it may not acknowledge (the local socket's
    exports, a role without `feed`)."""
    principal = request[PRINCIPAL_KEY]
    if not principal.can("feed") or principal.role == "local":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()
    return "user:" + principal.name


async def post_feed_ack(request: web.Request) -> web.Response:
    """Mark events as taken by the platform: {"up_to": ID} or {"ids": [...]}."""
    principal = require(request, "feed")
    body = await read_json(request)
    node = _node(request)
    if isinstance(body, dict) and isinstance(body.get("up_to"), str):
        try:
            cm.split_event_id(body["up_to"])
        except cm.ClockError:
            raise ApiError(422, "up_to must be an event id") from None
        # what this node handed out to this reader, up to there: an event merged in since
        # with an older id was never read by it, and stays in the unacked feed
        fed = node.index.fed.get(_reader(request) or "", set())
        ids = sorted(i for i in fed if i <= body["up_to"])
    elif (
        isinstance(body, dict) and isinstance(body.get("ids"), list) and len(body["ids"]) <= 100000
    ):
        ids = [str(i) for i in body["ids"]]
        unknown = [i for i in ids if node.get_event(i) is None]
        if unknown:
            raise ApiError(422, f"unknown event ids, e.g. {unknown[0][:40]}")
    else:
        raise ApiError(422, 'send {"up_to": EVENT_ID} or {"ids": [EVENT_ID, ...]}')
    done = await node.async_ack(ids, principal.name)
    handed = node.index.fed.get(_reader(request) or "")
    if handed:
        handed.difference_update(ids)  # once stored: a failed ack can be sent again
    return web.json_response({"acked": done, "total_acked": len(node.trace.acked)})


async def post_label(request: web.Request) -> web.Response:
    """Issue a label for a set of a released load; records label.printed."""
    principal = require(request, "record")
    body = await read_json(request)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("set"), str)
        or not isinstance(body.get("load"), str)
        or not isinstance(body.get("printer"), str | None)
    ):
        raise ApiError(422, 'send {"set": ..., "load": ...} (and "printer": NAME to print)')
    printer = body.get("printer")
    printing = request.app.get(PRINTING_KEY)
    if printer is not None and (printing is None or printer not in printing.formats):
        raise ApiError(422, f"no printer {str(printer)[:40]!r} on this node")
    label = await _node(request).async_issue_label(body["set"], body["load"], principal, printer)
    if printer is not None and printing is not None:
        label["job"] = printing.submit(label["label_id"], printer)
    return web.json_response(label, status=201)


async def get_printers(request: web.Request) -> web.Response:
    """Printers of this node and their unfinished jobs (errors shown to the operator)."""
    require(request, "read")
    printing = request.app.get(PRINTING_KEY)
    return web.json_response(printing.status() if printing else {"printers": [], "jobs": []})


async def post_print_job(request: web.Request) -> web.Response:
    """Retry or cancel a print job."""
    require(request, "record")
    printing = request.app.get(PRINTING_KEY)
    if printing is None:
        raise ApiError(404, "no printers on this node")
    job_id, action = request.match_info["job"], request.match_info["action"]
    job = printing.queue.retry(job_id) if action == "retry" else printing.queue.cancel(job_id)
    return web.json_response(job.to_json())


async def get_label_file(request: web.Request) -> web.Response:
    """A printed label as PDF or ZPL."""
    require(request, "read")
    node = _node(request)
    label_id, fmt = request.match_info["label_id"], request.match_info["fmt"]
    data = node.label_for_printing(label_id)
    if data is None:
        raise ApiError(404, "no such label")
    if fmt == "pdf":
        body = devices.render_pdf(data, node.label_layout())
        return web.Response(body=body, content_type="application/pdf")
    return web.Response(
        body=devices.render_zpl(data, node.label_layout()), content_type="application/zpl"
    )


async def get_scans(request: web.Request) -> web.Response:
    """A station's scans after `after`, waiting up to `wait` seconds for the next one."""
    require(request, "read")
    scanners = request.app.get(SCANNERS_KEY)
    station = request.query.get("station", "")
    try:
        after = int(request.query.get("after", "0"))
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        raise ApiError(400, "after is a whole number, wait a number of seconds") from None
    if scanners is None or station not in scanners.stations:
        raise ApiError(404, f"no scanner at station {station[:40]!r}")
    scans = await scanners.async_scans(station, after, max(0.0, wait))
    return web.json_response(scanners.answer(scans))


def add_routes(app: web.Application) -> None:
    """Register the traceability routes."""
    app.router.add_get("/api/sets/{instance}", get_set)
    app.router.add_get("/api/loads/{load}", get_load)
    app.router.add_get("/api/anomalies", get_anomalies)
    app.router.add_post("/api/anomalies/{anomaly}/resolve", post_resolve)
    app.router.add_get("/api/readiness", get_readiness)
    app.router.add_get("/api/recall", get_recall)
    app.router.add_get("/api/feed", get_feed)
    app.router.add_post("/api/feed/ack", post_feed_ack)
    app.router.add_post("/api/labels", post_label)
    app.router.add_get("/api/printers", get_printers)
    app.router.add_get("/api/scans", get_scans)
    app.router.add_post(r"/api/print-jobs/{job}/{action:retry|cancel}", post_print_job)
    app.router.add_get(r"/api/labels/{label_id}.{fmt:pdf|zpl}", get_label_file)

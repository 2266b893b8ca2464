"""Web pages for recall (lookback) and the reference data browser."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from aiohttp import web

import crdt_model as cm

from ._auth import Principal
from ._http import for_principal
from ._web import _gate, _node, render
from ._web_support import anomalies_by_subject

RECALL_KEYS = ("lot", "set", "endoscope", "patient", "machine")
MAX_RESULTS = 200


def may_look_up_patients(principal: Principal) -> bool:
    """Only a releaser, head or admin looks up a patient (or sees patient codes)."""
    return principal.can("patients")


async def recall_page(request: web.Request) -> web.StreamResponse:
    """The recall form and, when asked, its printable result."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    fold = _node(request).trace.fold
    given = [k for k in RECALL_KEYS if request.query.get(k, "").strip()]
    context: dict[str, Any] = {
        "keys": [k for k in RECALL_KEYS if k != "patient" or may_look_up_patients(principal)],
        "values": {k: request.query.get(k, "").strip()[:80] for k in RECALL_KEYS},
        "key": None,
        "result": None,
        "error": None,
        "anomalies": {},
    }
    status = 200
    if len(given) > 1:
        context["error"] = "Fill in one field only."
        status = 400
    elif given:
        key = given[0]
        value = context["values"][key]
        context["key"] = key
        if key == "patient" and not may_look_up_patients(principal):
            context["error"] = "Only a releaser, head or admin looks up a patient."
            status = 403
        else:
            try:
                if key == "lot":
                    context["result"] = cm.recall_lot(fold, value)
                elif key == "set":
                    context["result"] = cm.recall_set(fold, value)
                elif key == "patient":
                    context["result"] = cm.recall_patient(fold, value)
                elif key == "endoscope":
                    context["result"] = cm.recall_endoscope(fold, value)
                else:
                    context["result"] = cm.recall_machine(fold, value)
            except cm.FoldError:
                context["error"] = "Nothing known under this number."
                status = 404
            else:
                context["anomalies"] = anomalies_by_subject(fold.anomalies(), "load")
                context["result"] = for_principal(request, context["result"])
    return render(request, "recall.html", status, **context)


def _reference(request: web.Request) -> cm.Reference | None:
    return _node(request).trace.fold.reference


def _table(request: web.Request, table: str) -> list[dict[str, Any]]:
    ref = _reference(request)
    if ref is None:
        return []
    doc = _node(request).docs.get(cm.ref_doc_name(ref.export_id))
    return [] if doc is None else list(cm.read_table(doc, table))


async def reference_page(request: web.Request) -> web.StreamResponse:
    """Set types, searchable by code or name."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    ref = _reference(request)
    search = request.query.get("q", "").strip()[:80]
    types = [] if ref is None else sorted(ref.set_types.values(), key=lambda r: str(r["code"]))
    if search:
        needle = search.casefold()
        types = [
            r
            for r in types
            if needle in str(r.get("code", "")).casefold()
            or needle in str(r.get("name", "")).casefold()
        ]
    return render(
        request,
        "reference.html",
        tab="sets",
        ref=ref,
        search=search,
        types=types[:MAX_RESULTS],
        counts={} if ref is None else {k: len(v) for k, v in ref.instances_by_type.items()},
    )


async def set_type_page(request: web.Request) -> web.StreamResponse:
    """One set type: its content, its instances, its processing steps."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    ref = _reference(request)
    code = request.match_info["code"]
    kind = None if ref is None else ref.set_types.get(code)
    if ref is None or kind is None:
        raise web.HTTPNotFound(text="no such set type")
    contents = [r for r in _table(request, "set_contents") if r["type_code"] == code]
    steps = [r for r in _table(request, "procedures") if r.get("type_code") == code]
    return render(
        request,
        "reference_set.html",
        tab="sets",
        ref=ref,
        kind=kind,
        contents=sorted(contents, key=lambda r: r.get("line") or 0),
        steps=steps,
        instances=[(i, ref.locations.get(i)) for i in ref.instances_by_type.get(code, [])],
    )


async def profiles_page(request: web.Request) -> web.StreamResponse:
    """Operative profiles: what to prepare for a procedure."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    ref = _reference(request)
    search = request.query.get("q", "").strip()[:80].casefold()
    profiles = [] if ref is None else sorted(ref.profiles.items())
    if search:
        profiles = [
            (code, rows)
            for code, rows in profiles
            if search in code.casefold()
            or any(search in str(r.get("procedure", "")).casefold() for r in rows)
        ]
    return render(
        request,
        "reference_profiles.html",
        tab="profiles",
        ref=ref,
        search=request.query.get("q", "").strip()[:80],
        profiles=profiles[:MAX_RESULTS],
    )


async def planning_page(request: web.Request) -> web.StreamResponse:
    """The OR and endoscopy planning of a date."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    node = _node(request)
    ref = _reference(request)
    day = request.query.get("date", "").strip()
    error = None
    try:
        day = date.fromisoformat(day).isoformat() if day else node.trace.today(node._clock())
    except ValueError:
        error = "Give a date as YYYY-MM-DD."
        day = node.trace.today(node._clock())
    rows = [] if ref is None else sorted(ref.or_planning.get(day, ()), key=_slot)
    endo = [] if ref is None else sorted(ref.endo_planning.get(day, ()), key=_slot)
    return render(
        request,
        "reference_planning.html",
        400 if error else 200,
        tab="planning",
        ref=ref,
        day=day,
        error=error,
        rows=rows,
        endo=endo,
        patients=may_look_up_patients(principal),
    )


async def readiness_page(request: web.Request) -> web.StreamResponse:
    """Readiness of a date: each planned operation with the sets it is given and those it
    lacks, per room; each endoscopy with its endoscope."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    node = _node(request)
    today = node.trace.today(node._clock())
    raw = request.query.get("date", "").strip()
    error = None
    try:
        day = date.fromisoformat(raw).isoformat() if raw else today
    except ValueError:
        error, day = "Give a date as YYYY-MM-DD.", today
    fold = node.trace.fold
    answer = (
        None
        if fold.reference is None
        else for_principal(request, cm.readiness_from(fold, day, today))
    )
    rooms: dict[str, list[dict[str, Any]]] = {}
    for op in [] if answer is None else answer["operations"]:
        rooms.setdefault(op["room"], []).append(op)
    shown = date.fromisoformat(day)
    return render(
        request,
        "readiness.html",
        400 if error else 200,
        day=day,
        today=today,
        before=(shown - timedelta(days=1)).isoformat(),
        after=(shown + timedelta(days=1)).isoformat(),
        error=error,
        answer=answer,
        rooms=sorted(rooms.items()),
        patients=may_look_up_patients(principal),
    )


def _slot(row: Any) -> tuple[str, str]:
    return (str(row.get("room", "")), str(row.get("start", "")))


def add_recall_routes(app: web.Application) -> None:
    """Register the recall and reference pages."""
    app.router.add_get("/recall", recall_page)
    app.router.add_get("/reference", reference_page)
    app.router.add_get("/reference/sets/{code}", set_type_page)
    app.router.add_get("/reference/profiles", profiles_page)
    app.router.add_get("/reference/planning", planning_page)
    app.router.add_get("/readiness", readiness_page)

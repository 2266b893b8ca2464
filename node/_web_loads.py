"""Web pages for loads: today's loads, building one by scanning, release with PIN, labels."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

import crdt_model as cm
import devices

from ._api_trace import PRINTING_KEY
from ._auth import Principal
from ._node import NodeError
from ._web import (
    CANNOT_RECORD,
    FLASH_COOKIE,
    _flash,
    _gate,
    _gated_form,
    _node,
    _principal,
    _redirect,
    _state,
    async_confirm,
    chosen_printer,
    done_flash,
    has_pin,
    node_printers,
    refused_flash,
    remember_printer,
    render,
    scanner_station,
)
from ._web_station import (
    DEFAULT_PROGRAMS,
    STATION_ZONES,
    is_set_code,
    new_load_url,
    station_url,
)
from ._web_support import anomalies_by_subject, field_errors_item, problem_item

KINDS = ("wash", "steri")
MAX_SETS = 200
_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_PENDING = {"open", "passed", "failed"}


def _pending(view: cm.LoadView) -> bool:
    """A load still waiting: no cycle yet, or a sterilizer load not yet decided."""
    return view.status == "open" or (view.kind == "steri" and view.status in _PENDING)


def load_url(load: str) -> str:
    """The page of a load."""
    return "/loads/" + quote(load, safe="")


async def loads_page(request: web.Request) -> web.StreamResponse:
    """Today's loads, the ones still waiting first."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    node = _node(request)
    fold = node.trace.fold
    today = node.trace.today(node._clock())
    loads = [
        v
        for n in sorted(node.trace.loads_by_day.get(today, ()))
        if (v := fold.load(n)) is not None and v.day == today
    ]
    loads.sort(key=lambda v: v.load, reverse=True)
    loads.sort(key=lambda v: not _pending(v))
    response = render(
        request,
        "loads.html",
        loads=loads,
        today=today,
        pending={v.load for v in loads if _pending(v)},
        flash=_flash(request),
        url=load_url,
    )
    response.del_cookie(FLASH_COOKIE, path="/")
    return response


MAX_SETS_TEXT = 20_000
"""The longest list of sets a link to the load form carries (far more than a load's 200
sets; the web server refuses longer addresses first)."""


def _kind(raw: str | None) -> str:
    return raw if raw in KINDS else "wash"


async def new_load_page(request: web.Request) -> web.StreamResponse:
    """The form: machine, program, then the sets scanned one per line."""
    principal = _gate(request, "record")
    if not isinstance(principal, Principal):
        return principal
    kind = _kind(request.query.get("kind"))
    keys = ("machine", "program", "zone", "station")
    given = {k: request.query.get(k, "")[:2000] for k in keys}
    sets = _whole_codes(request.query.get("sets", ""), MAX_SETS_TEXT)
    return _new_load_form(request, kind, given | {"sets": sets})


def _whole_codes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, never inside a code (a code cut short could
    name another set)."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if not _SEPARATOR.match(text[limit]):
        cut = _LAST_CODE.sub("", cut)
    return cut


_SEPARATORS = r"\s,;"
"""What separates the codes of a scanned list (`scanned_codes`)."""
_SEPARATOR = re.compile(f"[{_SEPARATORS}]")
_LAST_CODE = re.compile(f"[^{_SEPARATORS}]*\\Z")


def _new_load_form(
    request: web.Request,
    kind: str,
    form: dict[str, str],
    error: str | None = None,
    detail: str | dict[str, Any] | None = None,
) -> web.Response:
    machines = _node(request).trace.fold.machines(kind)
    zone = form.get("zone", "")
    zone = zone if zone in STATION_ZONES else ""
    station = scanner_station(request, form.get("station"))
    sets = "\n".join(scanned_codes(form.get("sets", "")))
    # the other kind's tab keeps the sets scanned (the page's script adds those typed since)
    tabs = [(k, new_load_url(k, sets, "", "", zone, station=station or "")) for k in KINDS]
    return render(
        request,
        "load_new.html",
        422 if error else 200,
        kind=kind,
        tabs=tabs,
        machine=form.get("machine") or (machines[0] if len(machines) == 1 else ""),
        machines=machines,
        program=form.get("program") or DEFAULT_PROGRAMS[kind],
        sets=sets,
        zone=zone,
        scanner_station=station,
        once=secrets.token_urlsafe(12),
        error=error,
        detail=detail,
    )


def scanned_codes(text: str) -> list[str]:
    """The set codes of a scanned list: one per line (or separated by spaces), each once."""
    codes = [c.strip() for c in re.split(f"[{_SEPARATORS}]+", text) if c.strip()]
    return list(dict.fromkeys(c[:80] for c in codes))


async def new_load_post(request: web.Request) -> web.StreamResponse:
    """Record the whole load as one wash.loaded or steri.loaded event."""
    gated = await _gated_form(request, "record")
    if not isinstance(gated, tuple):
        return gated
    principal, form = gated
    kind = _kind(form.get("kind"))
    sets = scanned_codes(form.get("sets", ""))
    if not sets:
        return _new_load_form(request, kind, form, "Scan at least one set.")
    if len(sets) > MAX_SETS:
        return _new_load_form(request, kind, form, "Too many sets in one load.")
    machine = form.get("machine", "").strip()[:120]
    if is_set_code(_node(request), machine):
        return _new_load_form(request, kind, {**form, "machine": ""}, SET_AS_MACHINE)
    body = {
        "type": f"{kind}.loaded",
        "machine": machine,
        "program": form.get("program", "").strip()[:120],
        "sets": sets,
    }
    recorded = _once(request, form.get("once", ""))
    if isinstance(recorded, asyncio.Future):  # the same form sent before: its load, once
        first = await asyncio.shield(recorded)
        if first is None:
            return _new_load_form(request, kind, form, "The load was refused.")
        return _redirect(request, load_url(first), {"k": "ok", "m": "Load recorded."})
    load: str | None = None
    try:
        event, warnings = await _node(request).async_submit(body, principal)
        load = str(event["load"])
    except (cm.EventError, NodeError) as err:
        detail = refused_flash(err)["d"]
        return _new_load_form(request, kind, form, "The load was refused.", detail)
    finally:  # whatever happened, a second sending of the form hears of it
        if recorded is not None:
            recorded(load)
    zone = form.get("zone", "")
    if zone in STATION_ZONES:  # back to the station the first set was scanned at
        back = station_url(zone, sets[0], form.get("station", "")[:64])
        return _redirect(request, back, done_flash("Load recorded.", warnings, load=load))
    return _redirect(request, load_url(load), done_flash("Load recorded.", warnings))


async def check_load(request: web.Request) -> web.StreamResponse:
    """What the load form shows under its list as sets are scanned, before anything is
    recorded: each line's set name and status, and what recording would refuse or warn about
    (codes no event may carry, too many sets, a set code as machine; a set still in an open
    load, a step out of order, a code the reference does not know). POST, with the form's
    token (a list of 200 codes is too long for an address); 401 once the session is over."""
    if _principal(request) is None:
        return web.Response(status=401)
    gated = await _gated_form(request, "record")
    if not isinstance(gated, tuple):
        return gated
    _, form = gated
    node = _node(request)
    fold = node.trace.fold
    kind = _kind(form.get("kind"))
    codes = scanned_codes(form.get("sets", ""))
    machine = form.get("machine", "").strip()[:120]
    today = node.trace.today(node._clock())
    refusals: list[str | dict[str, Any]] = []
    if node.failed is not None:  # said before anything is scanned in vain (the page says it too)
        refusals.append(CANNOT_RECORD)
    if len(codes) > MAX_SETS:
        refusals.append("Too many sets in one load.")
    if machine and is_set_code(node, machine):
        refusals.append(SET_AS_MACHINE)
        machine = ""
    draft = {"type": f"{kind}.loaded", "sets": codes, "machine": machine or "-", "program": "-"}
    try:
        if codes:
            cm.validate_submission(draft)
    except cm.EventError as err:
        refusals.append(field_errors_item(err))
    problems = [p for p in node.trace.warnings(draft, today) if isinstance(p, cm.Problem)]
    ref = fold.reference
    lines = []
    for code in codes[:MAX_SETS]:
        type_code = None if ref is None else ref.type_code(code)
        name = None if ref is None or type_code is None else ref.set_types[type_code].get("name")
        lines.append(
            {
                "code": code,
                "name": name,
                "status": fold.set_status(code, today, events=False).status,
                "problems": [problem_item(p) for p in problems if p.params.get("set") == code],
            }
        )
    general = [problem_item(p) for p in problems if "set" not in p.params and machine]
    return render(
        request,
        "_scanned.html",
        lines=lines,
        general=general,
        refusals=refusals,
        no_reference=ref is None,
    )


SET_AS_MACHINE = "That is a set's code, not a machine: scan the sets in the list below."
MAX_ONCE = 500


def _once(
    request: web.Request, name: str
) -> asyncio.Future[str | None] | Callable[[str | None], None] | None:
    """The load already recorded (or being recorded) by this form, or how to say what this
    request recorded; None for a form without a name."""
    if not name:
        return None
    state = _state(request)
    found = state.once.get(name)
    if found is not None:
        return found
    future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    state.once[name] = future
    while len(state.once) > MAX_ONCE:
        del state.once[next(iter(state.once))]
    return future.set_result


def _load_or_404(request: web.Request) -> cm.LoadView:
    view = _node(request).trace.fold.load(request.match_info["load"])
    if view is None or view.loaded is None:
        raise web.HTTPNotFound(text="no such load")
    return view


async def load_page(request: web.Request) -> web.StreamResponse:
    """A load: its sets, its cycle record (with the machine's raw text), release, labels."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    node = _node(request)
    view = _load_or_404(request)
    cycle = None if view.cycle is None else node.get_event(view.cycle.event)
    details = {}
    if cycle is not None:
        hidden = {"id", "hlc", "raw", "type", "node", "zone", "load", "machine", "params", "phases"}
        details = {k: v for k, v in cycle.items() if k not in hidden}
    ref = node.trace.fold.reference
    names = {}
    for code in view.sets:
        type_code = None if ref is None else ref.type_code(code)
        if ref is not None and type_code is not None:
            names[code] = ref.set_types.get(type_code, {}).get("name")
    labels: dict[str, list[cm.LabelInfo]] = {}
    for label in view.labels:
        labels.setdefault(label.set, []).append(label)
    response = render(
        request,
        "load.html",
        load=view,
        cycle=cycle,
        details=details,
        names=names,
        labels=labels,
        printers=node_printers(request),
        printer_default=chosen_printer(request),
        flash=_flash(request),
        url=load_url(view.load),
        can_release=principal.can("release") and view.kind == "steri",
        pin=has_pin(request, principal),
        can_label=principal.can("record") and view.kind == "steri" and view.safe,
        anomalies=anomalies_by_subject(node.trace.fold.anomalies(), "load").get(view.load, []),
        once=secrets.token_urlsafe(12),
    )
    response.del_cookie(FLASH_COOKIE, path="/")
    return response


RELEASE_WITH_REASON = "A reason was typed: to reject the load, use Reject. Nothing was recorded."


async def release_post(request: web.Request) -> web.StreamResponse:
    """Release or reject a load; the releaser signs with their PIN (or password)."""
    gated = await _gated_form(request, "release")
    if not isinstance(gated, tuple):
        return gated
    principal, form = gated
    node = _node(request)
    view = _load_or_404(request)
    back = load_url(view.load)
    wrong = await async_confirm(request, principal, form.get("password", ""))
    if wrong is not None:
        return _redirect(request, back, {"k": "error", "m": wrong})
    decision = form.get("decision")
    if decision not in {"released", "rejected"}:
        return _redirect(request, back)
    body: dict[str, Any] = {"type": "load.released", "load": view.load, "decision": decision}
    reason = form.get("reason", "").strip()[:500]
    if decision == "released" and reason:  # a reason typed, then Enter: not a release
        return _redirect(request, back, {"k": "error", "m": RELEASE_WITH_REASON})
    if decision == "rejected":
        if not reason:
            return _redirect(request, back, {"k": "error", "m": "Say why the load is rejected."})
        body["reason"] = reason
    try:
        _, warnings = await node.async_submit(body, principal)
    except (cm.EventError, NodeError) as err:
        return _redirect(request, back, refused_flash(err))
    done = "Load released." if decision == "released" else "Load rejected."
    return _redirect(request, back, done_flash(done, warnings))


async def _label_form(
    request: web.Request,
) -> tuple[Principal, dict[str, str], cm.LoadView, str, str | None] | web.StreamResponse:
    """A label form of a load's page: (who, the form, the load, its page, the printer chosen),
    or the answer when it is refused."""
    gated = await _gated_form(request, "record")
    if not isinstance(gated, tuple):
        return gated
    principal, form = gated
    view = _load_or_404(request)
    back = load_url(view.load)
    printer = form.get("printer") or None
    if printer is not None and printer not in node_printers(request):
        return _redirect(request, back, {"k": "error", "m": "No such printer on this node."})
    return principal, form, view, back, printer


async def label_post(request: web.Request) -> web.StreamResponse:
    """Issue (and print, when a printer is chosen) the label of one set of the load."""
    taken = await _label_form(request)
    if not isinstance(taken, tuple):
        return taken
    principal, form, view, back, printer = taken
    code = form.get("set", "")
    if code not in view.sets:
        return _redirect(request, back, {"k": "error", "m": "This set is not in this load."})
    try:
        label = await _node(request).async_issue_label(code, view.load, principal, printer)
    except (cm.EventError, NodeError) as err:
        return _redirect(request, back, refused_flash(err, "The label was refused."))
    if printer is not None:
        request.app[PRINTING_KEY].submit(label["label_id"], printer)
    response = _redirect(
        request, back, {"k": "ok", "m": "Label issued.", "label": label["label_id"]}
    )
    remember_printer(response, request, printer)
    return response


async def labels_post(request: web.Request) -> web.StreamResponse:
    """Issue (and print, when a printer is chosen) the labels of every set of the load that
    has none yet: one tap for a load of twenty sets."""
    taken = await _label_form(request)
    if not isinstance(taken, tuple):
        return taken
    principal, form, view, back, printer = taken
    sent_before = _once(request, form.get("once", ""))
    if isinstance(sent_before, asyncio.Future):  # a double tap: the labels are issued once
        await asyncio.shield(sent_before)
        return _redirect(request, back)
    labelled = {label.set for label in view.labels}
    issued: list[str] = []
    refusal: dict[str, Any] | None = None
    try:
        for code in view.sets:
            if code in labelled:
                continue
            try:
                label = await _node(request).async_issue_label(code, view.load, principal, printer)
            except (cm.EventError, NodeError) as err:
                refusal = refusal or refused_flash(err, "The label was refused.")
                continue  # the others are labelled all the same
            issued.append(label["label_id"])
            if printer is not None:
                request.app[PRINTING_KEY].submit(label["label_id"], printer)
    finally:
        if sent_before is not None:
            sent_before(None)
    if refusal is not None:
        response = _redirect(request, back, {**refusal, "n": len(issued)})
    else:
        response = _redirect(
            request, back, {"k": "ok", "m": "{n} labels issued.", "n": len(issued)}
        )
    if issued:
        remember_printer(response, request, printer)
    return response


async def label_pdf(request: web.Request) -> web.StreamResponse:
    """A recorded label as PDF, for a logged-in person (the page's link)."""
    principal = _gate(request, "read")
    if not isinstance(principal, Principal):
        return principal
    label_id = request.match_info["label_id"]
    data = None if not _LABEL_RE.match(label_id) else _node(request).label_for_printing(label_id)
    if data is None:
        raise web.HTTPNotFound(text="no such label")
    pdf = await asyncio.to_thread(devices.render_pdf, data, _node(request).label_layout())
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{label_id}.pdf"'},
    )


def add_load_routes(app: web.Application) -> None:
    """Register the load pages."""
    app.router.add_get("/loads", loads_page)
    app.router.add_get("/loads/new", new_load_page)
    app.router.add_post("/loads/new", new_load_post)
    app.router.add_post("/loads/check", check_load)
    app.router.add_get("/loads/{load}", load_page)
    app.router.add_post("/loads/{load}/release", release_post)
    app.router.add_post("/loads/{load}/label", label_post)
    app.router.add_post("/loads/{load}/labels", labels_post)
    app.router.add_get("/labels/{label_id}.pdf", label_pdf)

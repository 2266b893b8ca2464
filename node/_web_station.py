"""Station logic: what a scanned code is, and the next valid step for a zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import crdt_model as cm

from ._auth import Principal
from ._node import Node
from ._web_support import problem_item

DEFAULT_MACHINES = {"wash": "LAV-1", "steri": "STE-1"}
DEFAULT_PROGRAMS = {"wash": "INSTRU 93°C 3MIN NORMAL", "steri": "NORMAL 134°"}
ZONE_OF_STATUS = {
    "unknown": "sale",
    "dirty": "sale",
    "washing": "sale",
    "washed": "propre",
    "packed": "sterile",
    "in_sterilizer": "sterile",
    "sterilized": "sterile",
    "sterile": "sterile",
    "expired": "sterile",
    "dispatched": "sale",
    "used": "sale",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One action a station offers: its button, what it needs, who may do it."""

    label: str
    done: str
    fields: tuple[str, ...] = ()
    permission: str | None = None
    style: str = "primary"


STEPS: dict[str, Step] = {
    "receive": Step("Receive the set", "Set received."),
    "wash_load": Step(
        "Load into the washer", "Set loaded into the washer.", ("machine", "program")
    ),
    "wash_pass": Step("Washer cycle passed", "Washer cycle recorded.", ("cycle_no",)),
    "wash_fail": Step(
        "Washer cycle failed", "Washer cycle recorded.", ("cycle_no",), style="danger"
    ),
    "inspect_ok": Step("Inspection OK, packed", "Inspection recorded.", ("packaging",)),
    "inspect_nok": Step("Inspection not OK", "Inspection recorded.", style="danger"),
    "steri_load": Step(
        "Load into the sterilizer", "Set loaded into the sterilizer.", ("machine", "program")
    ),
    "steri_pass": Step("Sterilizer cycle passed", "Sterilizer cycle recorded.", ("cycle_no",)),
    "steri_fail": Step(
        "Sterilizer cycle failed", "Sterilizer cycle recorded.", ("cycle_no",), style="danger"
    ),
    "release": Step("Release the load", "Load released.", ("confirm",), permission="release"),
    "reject": Step(
        "Reject the load",
        "Load rejected.",
        ("reason", "confirm"),
        permission="release",
        style="danger",
    ),
    "label": Step("Print the label", "Label issued."),
    "dispatch": Step("Dispatch the set", "Set dispatched.", ("to",)),
}

CONFIRMED = frozenset({"release", "reject"})
"""Steps a releaser signs with their PIN (or password)."""

_NEXT: dict[tuple[str, str], tuple[str, ...]] = {
    ("sale", "unknown"): ("receive",),
    ("sale", "dispatched"): ("receive",),
    ("sale", "used"): ("receive",),
    ("sale", "sterile"): ("receive",),
    ("sale", "quarantined"): ("receive",),
    ("sale", "dirty"): ("wash_load",),
    ("sale", "washing"): ("wash_pass", "wash_fail"),
    ("propre", "washed"): ("inspect_ok", "inspect_nok"),
    ("propre", "quarantined"): ("inspect_ok", "inspect_nok"),
    ("sterile", "packed"): ("steri_load",),
    ("sterile", "in_sterilizer"): ("steri_pass", "steri_fail"),
    ("sterile", "sterilized"): ("release", "reject"),
}


def station_context(node: Node, principal: Principal, zone: str, code: str) -> dict[str, Any]:
    """What the station shows for a scanned code in a zone."""
    if not code:
        return {"item": None}
    fold = node.trace.fold
    ref = fold.reference
    type_code = ref.type_code(code) if ref is not None else None
    known = fold.set_state(code) is not None
    today = node.trace.today(node._clock())
    view = fold.set_status(code, today)
    item: dict[str, Any] = {
        "code": code,
        "since_at": event_time(node, view.since),
        "known": known or type_code is not None,
        "view": view,
        "type_name": None,
        "contents": [],
        "storage": None,
    }
    programs = dict(DEFAULT_PROGRAMS)
    if ref is not None and type_code is not None:
        kind = ref.set_types.get(type_code, {})
        item["type_name"] = kind.get("name")
        item["packaging"] = kind.get("packaging")
        programs["wash"] = kind.get("wash_program") or programs["wash"]
        programs["steri"] = kind.get("steri_program") or programs["steri"]
        item["storage"] = ref.locations.get(code)
        doc = node.docs.get(cm.ref_doc_name(ref.export_id))
        if doc is not None:
            item["contents"] = [
                row for row in cm.read_table(doc, "set_contents") if row["type_code"] == type_code
            ]
    status = view.status
    if status == "sterile":
        steps: tuple[str, ...] = ("dispatch",) if view.labelled else ("label",)
        steps = ("receive",) if zone == "sale" else steps
    else:
        steps = _NEXT.get((zone, status), ())
    load = fold.load(view.load) if view.load else None
    found = (fold.anomaly(anomaly_id) for anomaly_id in view.anomalies)
    return {
        "item": item,
        "anomalies": [a for a in found if a is not None and a.open],
        "steps": [(name, STEPS[name]) for name in steps],
        "allowed": {
            name
            for name in steps
            if STEPS[name].permission is None or principal.can(STEPS[name].permission or "")
        },
        "elsewhere": None if steps else ZONE_OF_STATUS.get(status),
        "load": load,
        "defaults": {
            "machine": DEFAULT_MACHINES["steri" if zone == "sterile" else "wash"],
            "program": programs["steri" if zone == "sterile" else "wash"],
            "cycle_no": datetime.fromtimestamp(node._clock() / 1000, node.timezone).strftime(
                "%H%M%S"
            ),
            "packaging": item.get("packaging") or "",
            "to": view.location or item["storage"] or "",
            "reason": "",
        },
    }


def event_time(node: Node, event_id: str | None) -> str | None:
    """The wall-clock time (ISO 8601) of an event, for display."""
    event = None if event_id is None else node.get_event(event_id)
    return None if event is None else str(event.get("at") or "") or None


def _field(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()[:120]


async def async_perform(
    node: Node, principal: Principal, action: str, code: str, form: dict[str, str], *, zone: str
) -> dict[str, Any]:
    """Record the step `action` for the set `code`; the flash data to show."""
    fold = node.trace.fold
    view = fold.set_status(code)
    body: dict[str, Any]
    if action == "receive":
        body = {"type": "set.received", "set": code}
    elif action in {"wash_load", "steri_load"}:
        body = {
            "type": "wash.loaded" if action == "wash_load" else "steri.loaded",
            "machine": _field(form, "machine"),
            "program": _field(form, "program"),
            "sets": [code],
        }
    elif action in {"wash_pass", "wash_fail", "steri_pass", "steri_fail"}:
        body = {
            "type": "wash.cycle" if action.startswith("wash") else "steri.cycle",
            "machine": view.machine or "",
            "cycle_no": _field(form, "cycle_no"),
            "result": "pass" if action.endswith("pass") else "fail",
        }
        if view.load:
            body["load"] = view.load
    elif action in {"inspect_ok", "inspect_nok"}:
        body = {"type": "set.inspected", "set": code, "result": action.removeprefix("inspect_")}
        if action == "inspect_ok" and _field(form, "packaging"):
            body["packaging"] = _field(form, "packaging")
        body["packer"] = principal.name
    elif action in {"release", "reject"}:
        body = {
            "type": "load.released",
            "load": view.load or "",
            "decision": "released" if action == "release" else "rejected",
        }
        if action == "reject":
            body["reason"] = _field(form, "reason") or "rejected at the station"
    elif action == "label":
        label = await node.async_issue_label(code, view.load or "", principal)
        return {"label": label["label_id"], "pdf": label["pdf"]}
    else:  # dispatch
        body = {"type": "set.dispatched", "set": code, "to": _field(form, "to") or "?"}
    body["zone"] = zone  # the station's zone, which may differ from the node's
    event, warnings = await node.async_submit(body, principal)
    answer: dict[str, Any] = {"w": [problem_item(w) for w in warnings[:5]]}
    if event.get("load") and event["type"].endswith(".loaded"):
        answer["load"] = event["load"]
    return answer

"""Station logic: what a scanned code is, and the next valid step for a zone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import crdt_model as cm

from ._auth import Principal
from ._node import Node
from ._web_support import problem_item

STATION_ZONES = ("sale", "propre", "sterile")
"""The zones that have stations (the office has none)."""
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
    "expired": "sale",
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
    "wash_load": Step("Load into the washer", "Load recorded.", ("machine",)),
    "wash_pass": Step("Washer cycle passed", "Washer cycle recorded.", ("cycle_no",)),
    "wash_fail": Step(
        "Washer cycle failed", "Washer cycle recorded.", ("cycle_no",), style="danger"
    ),
    "inspect_ok": Step("Inspection OK, packed", "Inspection recorded.", ("packaging",)),
    "inspect_nok": Step("Inspection not OK", "Inspection recorded.", style="danger"),
    "steri_load": Step("Load into the sterilizer", "Load recorded.", ("machine",)),
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
    "label": Step("Print the label", "Label issued.", ("printer",)),
    "dispatch": Step("Dispatch the set", "Set dispatched.", ("to",)),
    "stock": Step(
        "Record as sterile stock (label from before the outage)",
        "Set recorded as sterile stock.",
        ("lot", "expires_on"),
    ),
}

CONFIRMED = frozenset({"release", "reject"})
"""Steps a releaser signs with their PIN (or password)."""

LOADS = {"wash_load": "wash", "steri_load": "steri"}
"""Steps that open the load form with the scanned set: a load is several sets, scanned
one after the other and recorded once (a load a set would leave the machine's cycle to one
of them)."""

KEPT_FIELDS = ("cycle_no", "packaging", "to", "reason", "lot", "expires_on")
"""What a refused step gives back to its form (never the PIN)."""

_NEXT: dict[tuple[str, str], tuple[str, ...]] = {
    ("sale", "unknown"): ("receive",),
    ("sale", "dispatched"): ("receive",),
    ("sale", "used"): ("receive",),
    ("sale", "sterile"): ("receive",),
    ("sale", "expired"): ("receive",),
    ("sale", "dirty"): ("wash_load",),
    ("sale", "washing"): ("wash_pass", "wash_fail"),
    ("propre", "washed"): ("inspect_ok", "inspect_nok"),
    ("propre", "packed"): ("steri_load",),  # a pass-through sterilizer is loaded from here
    ("sterile", "packed"): ("steri_load",),
    ("sterile", "in_sterilizer"): ("steri_pass", "steri_fail"),
    ("sterile", "sterilized"): ("release", "reject"),
    ("sterile", "unknown"): ("stock",),  # no record since the outage: its platform label
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
        "confirm": not is_known_set(node, code),  # a step asks "the code is right"
        "view": view,
        "type_name": None,
        "contents": [],
        "storage": None,
    }
    programs = set_programs(ref, type_code)
    if ref is not None and type_code is not None:
        kind = ref.set_types.get(type_code, {})
        item["type_name"] = kind.get("name")
        item["packaging"] = kind.get("packaging")
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
        elsewhere = None
    elif status == "quarantined":
        where, steps = _QUARANTINE.get(view.reason or "", ("sale", ()))
        steps = steps if zone == where else ("receive",) if zone == "sale" else ()
        elsewhere = where
    else:
        steps = _NEXT.get((zone, status), ())
        elsewhere = ZONE_OF_STATUS.get(status)
    load = fold.load(view.load) if view.load else None
    deciding = "release" in steps or "reject" in steps
    found = (fold.anomaly(anomaly_id) for anomaly_id in view.anomalies)
    machine_kind = "steri" if zone == "sterile" or "steri_load" in steps else "wash"
    machines = fold.machines(machine_kind)
    return {
        "item": item,
        "anomalies": [a for a in found if a is not None and a.open],
        "steps": [(name, STEPS[name]) for name in steps],
        "allowed": {
            name
            for name in steps
            if STEPS[name].permission is None or principal.can(STEPS[name].permission or "")
        },
        "signable": {name for name in steps if name in CONFIRMED},
        "elsewhere": None if steps else elsewhere,
        "load": load,
        "cycle_values": cycle_values(node, load) if deciding else {},
        "kind": machine_kind,
        "machines": machines,
        "defaults": {
            "machine": machines[0] if len(machines) == 1 else "",
            "program": programs[machine_kind],
            "cycle_no": "",  # the number the machine printed: never made up here
            "packaging": item.get("packaging") or "",
            "to": view.location or item["storage"] or "",
            "reason": "",
            "lot": "",
            "expires_on": "",
        },
    }


CYCLE_VALUES = (
    "cycle_no",
    "program",
    "result",
    "started",
    "ended",
    "t_min",
    "t_max",
    "p_max",
    "hold_s",
    "a0",
    "flags",
)
"""What a releaser checks of a cycle before deciding, in that order (when recorded)."""


def cycle_values(node: Node, load: cm.LoadView | None) -> dict[str, Any]:
    """What the machine recorded of a load's cycle, as the station shows it beside the
    release: the values the releaser checks (the load's page has the whole record)."""
    cycle = None if load is None or load.cycle is None else node.get_event(load.cycle.event)
    if cycle is None:
        return {}
    return {k: cycle[k] for k in CYCLE_VALUES if cycle.get(k) not in (None, "", [])}


_QUARANTINE: dict[str, tuple[str, tuple[str, ...]]] = {
    cm.INSPECTION_FAILED: ("propre", ("inspect_ok", "inspect_nok")),
    cm.WASH_FAILED: ("sale", ("wash_load", "receive")),
    cm.CYCLE_FAILED: ("sterile", ("steri_load",)),
    cm.LOAD_REJECTED: ("sterile", ("steri_load",)),
    cm.RELEASED_WITHOUT_CYCLE: ("sterile", ("steri_load",)),
    cm.BI_FAILED: ("sale", ("receive",)),  # it may have left the store: all over again
}
"""Where a quarantined set goes next, by why it is there: back through the step that failed
(the reception, in the dirty zone, starts it all over)."""


def set_programs(ref: cm.Reference | None, type_code: str | None) -> dict[str, str]:
    """The washer and sterilizer programs of a set type (the defaults where it has none)."""
    kind = ref.set_types.get(type_code, {}) if ref is not None and type_code else {}
    return {
        machine: kind.get(f"{machine}_program") or default
        for machine, default in DEFAULT_PROGRAMS.items()
    }


def _url(path: str, query: dict[str, str]) -> str:
    return f"{path}?" + urlencode({k: v for k, v in query.items() if v})


def new_load_url(
    kind: str, code: str, machine: str, program: str, zone: str, *, station: str = ""
) -> str:
    """The load form with a scanned set on it, coming back to the station once recorded
    (`station`: the node's scanner station the page follows, if any)."""
    query = {"kind": kind, "sets": code, "machine": machine, "program": program, "zone": zone}
    return _url("/loads/new", {**query, "station": station})


def station_url(zone: str, code: str, station: str = "") -> str:
    """The station page of a zone showing a set (following a scanner station, if any)."""
    return _url("/station", {"zone": zone, "code": code, "station": station})


def is_known_set(node: Node, code: str) -> bool:
    """True for a set the records or the reference know (or when no reference is imported
    yet: then no code is known, and none is questioned)."""
    ref = node.trace.fold.reference
    if ref is None or not ref.instance_type:
        return True
    return names_a_set(node, code)


def is_set_code(node: Node, text: str) -> bool:
    """True when `text` names a set instance (scanned into a field meant for something else):
    never digits alone (a cycle number a set may share) nor a machine the records know."""
    fold = node.trace.fold
    if text.isdigit() or text in fold.machines("wash") or text in fold.machines("steri"):
        return False
    return names_a_set(node, text)


def names_a_set(node: Node, text: str) -> bool:
    """True when the records or the reference know `text` as a set instance."""
    fold = node.trace.fold
    ref = fold.reference
    return bool(text) and (
        fold.set_state(text) is not None or (ref is not None and ref.type_code(text) is not None)
    )


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
            body["reason"] = _field(form, "reason")
    elif action == "label":
        printer = _field(form, "printer") or None
        label = await node.async_issue_label(code, view.load or "", principal, printer)
        return {"label": label["label_id"], "printer": printer}
    elif action == "stock":
        body = {
            "type": "set.stocked",
            "set": code,
            "lot": _field(form, "lot"),
            "expires_on": _field(form, "expires_on"),
        }
        ref = fold.reference
        location = None if ref is None else ref.locations.get(code)
        if location:
            body["location"] = str(location)[:64]
    else:  # dispatch
        body = {"type": "set.dispatched", "set": code, "to": _field(form, "to") or "?"}
    body["zone"] = zone  # the station's zone, which may differ from the node's
    event, warnings = await node.async_submit(body, principal)
    answer: dict[str, Any] = {"w": [problem_item(w) for w in warnings[:5]]}
    if event.get("load") and event["type"].endswith(".loaded"):
        answer["load"] = event["load"]
    return answer

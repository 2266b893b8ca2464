"""Recall (lookback): from a load, a set, a patient or a sterilizer to everything it reached."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._views import LOADED, FoldError, Record

if TYPE_CHECKING:
    from ._fold import Fold


def recall_lot(fold: Fold, load: str) -> dict[str, Any]:
    """Every set of a load, where each went after it and the patients it was used on."""
    view = fold.load(load)
    if view is None or view.loaded is None:
        raise FoldError(f"unknown load {load}")
    sets = [_after_load(fold, code, load) for code in view.sets]
    return {
        "load": view.as_dict(),
        "sets": sets,
        "patients": sorted({use["patient"] for entry in sets for use in entry["uses"]}),
    }


def recall_set(fold: Fold, set_code: str) -> dict[str, Any]:
    """Every load a set went through and, for each, its dispatches and uses."""
    loads: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for rec in _records(fold, set_code):
        if rec.type in LOADED:
            current = _load_entry(fold, rec.load or "")
            loads.append(current)
        elif rec.type == "set.received":
            current = None
        elif current is not None:
            _note(current, rec, current["load"])
    return {
        "set": set_code,
        "status": fold.set_status(set_code).status,
        "loads": loads,
        "patients": sorted({use["patient"] for entry in loads for use in entry["uses"]}),
    }


def recall_patient(fold: Fold, patient: str) -> dict[str, Any]:
    """Every set and endoscope used on a patient, with the load or reprocessing behind it."""
    sets: list[dict[str, Any]] = []
    endoscopes: list[dict[str, Any]] = []
    for use in fold.patient_uses(patient):
        if use.type == "set.used":
            sets.append({**_use(use), "set": use.key, **_load_at(fold, use.key or "", use.id)})
        else:
            endoscopes.append(
                {**_use(use), "endoscope": use.key, "reprocessing": _aer_before(fold, use)}
            )
    return {"patient": patient, "sets": sets, "endoscopes": endoscopes}


def recall_machine(fold: Fold, machine: str) -> dict[str, Any]:
    """Every load of a sterilizer since its last passed biological indicator (all if none).

    When the passed indicator names the load it rode in (`lot`), loads after that one count;
    otherwise loads recorded after the test.
    """
    passed = [r for r in fold.machine_test_records(machine) if r.key == "bi" and r.result == "pass"]
    since = ""
    indicator = None
    if passed:
        last = passed[-1]
        indicator = {"event": last.id, "lot": last.get("lot"), "day": last.day}
        lot = fold.load(last.get("lot") or "")
        since = lot.loaded if lot is not None and lot.loaded is not None else last.id
    loads = [
        recall_lot(fold, r.load) for r in fold.machine_loads(machine) if r.id > since and r.load
    ]
    return {
        "machine": machine,
        "last_passed_bi": indicator,
        "loads": loads,
        "patients": sorted({p for entry in loads for p in entry["patients"]}),
    }


def _records(fold: Fold, set_code: str) -> list[Record]:
    st = fold.set_state(set_code)
    if st is None:
        return []
    voided = fold.voided
    return [r for r in st.items if r.id not in voided]


def _after_load(fold: Fold, set_code: str, load: str) -> dict[str, Any]:
    """What happened to a set from entering `load` to its next load or reception."""
    entry: dict[str, Any] = {
        "set": set_code,
        "status": fold.set_status(set_code).status,
        "labels": [],
        "dispatches": [],
        "uses": [],
    }
    inside = False
    for rec in _records(fold, set_code):
        if rec.type in LOADED or rec.type == "set.received":
            if inside:
                break
            inside = rec.type in LOADED and rec.load == load
        elif inside:
            _note(entry, rec, load)
    return entry


def _note(entry: dict[str, Any], rec: Record, load: str | None) -> None:
    if rec.type == "label.printed" and rec.load == load:
        label = {"event": rec.id, "label_id": rec.get("label_id"), "day": rec.day}
        entry["labels"].append(label)
    elif rec.type == "set.dispatched":
        entry["dispatches"].append({"event": rec.id, "to": rec.get("to"), "day": rec.day})
    elif rec.type == "set.used":
        entry["uses"].append(_use(rec))


def _use(rec: Record) -> dict[str, Any]:
    return {
        "event": rec.id,
        "patient": rec.get("patient"),
        "day": rec.day,
        "room": rec.get("room"),
        "procedure": rec.get("procedure"),
    }


def _load_entry(fold: Fold, load: str) -> dict[str, Any]:
    view = fold.load(load)
    return {
        "load": load,
        "kind": None if view is None else view.kind,
        "machine": None if view is None else view.machine,
        "status": "unknown" if view is None else view.status,
        "safe": False if view is None else view.safe,
        "labels": [],
        "dispatches": [],
        "uses": [],
    }


def _load_at(fold: Fold, set_code: str, at: str) -> dict[str, Any]:
    """The load a set came from when it was used at `at`."""
    load = None
    for rec in _records(fold, set_code):
        if rec.id >= at:
            break
        if rec.type in LOADED:
            load = rec.load
        elif rec.type == "set.received":
            load = None
    if load is None:
        return {"load": None, "machine": None, "load_status": None, "safe": False}
    view = fold.load(load)
    return {
        "load": load,
        "machine": None if view is None else view.machine,
        "load_status": None if view is None else view.status,
        "safe": False if view is None else view.safe,
    }


def _aer_before(fold: Fold, use: Record) -> dict[str, Any] | None:
    """The last passed reprocessing cycle of an endoscope before a use."""
    state = fold.endo_state(use.key or "")
    found = None
    for rec in [] if state is None else state.items:
        if rec.id >= use.id:
            break
        if rec.type == "endo.aer_cycle" and rec.result == "pass" and rec.id not in fold.voided:
            found = {"event": rec.id, "machine": rec.machine, "cycle_no": rec.get("cycle_no")}
    return found

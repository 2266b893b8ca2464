"""Recall (lookback): from a load, a set, a patient or a sterilizer to everything it reached."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._views import KIND_OF, LOADED, FoldError, Record, lot_key

if TYPE_CHECKING:
    from ._fold import Fold


_FOLLOWED = frozenset({"label.printed", "set.dispatched", "set.used"})
_REPROCESSING = frozenset({"set.received", "wash.loaded"})
PLATFORM = "platform"
"""The kind and status of a platform lot: stock sterilized before the outage (set.stocked)."""
_STERILE = frozenset({"steri", PLATFORM})


def recall_lot(fold: Fold, load: str) -> dict[str, Any]:
    """Every set of a load, where each went after it and the patients it was used on.

    A number no load of the cluster has may be a lot of the platform's (stock sterilized
    before the outage, recorded by set.stocked): its sets are followed from there on, and
    `load` describes the lot (kind and status `platform`).
    """
    view = fold.load(load)
    if view is None or view.loaded is None:
        return _recall_platform_lot(fold, load)
    sets = [_after_load(fold, code, load) for code in view.sets]
    sets += [_after_stock(fold, code, load) for code in _stocked_sets(fold, load)]
    return {
        "load": view.as_dict(),
        "sets": sets,
        "patients": sorted({use["patient"] for entry in sets for use in entry["uses"]}),
    }


def _recall_platform_lot(fold: Fold, lot: str) -> dict[str, Any]:
    codes = _stocked_sets(fold, lot)
    if not codes:
        raise FoldError(f"unknown load {lot}")
    sets = [_after_stock(fold, code, lot) for code in codes]
    return {
        "load": {**_platform_entry(fold, lot), "sets": codes},
        "sets": sets,
        "patients": sorted({use["patient"] for entry in sets for use in entry["uses"]}),
    }


def _stocked_sets(fold: Fold, lot: str) -> list[str]:
    return list(dict.fromkeys(rec.key or "" for rec in fold.stocked(lot)))


def _platform_entry(fold: Fold, lot: str) -> dict[str, Any]:
    """A platform lot where a load would be (kind and status `platform`)."""
    return {
        "load": lot,
        "kind": PLATFORM,
        "machine": None,
        "status": PLATFORM,
        "safe": fold.failed_indicator(lot) is None,
        "labels": [],
        "dispatches": [],
        "uses": [],
    }


def _after_stock(fold: Fold, set_code: str, lot: str) -> dict[str, Any]:
    """What happened to a set taken as stock of platform lot `lot` (typed by hand: compared
    by letters and digits alone), until it went into a sterilizer load of ours, as
    `_after_load` follows a load (a reception or a wash in between does not end it: a use
    typed in late still came from that lot; nor does the set read under another lot)."""
    entry = _set_entry(fold, set_code)
    inside = False
    key = lot_key(lot)
    for rec in _records(fold, set_code):
        if rec.type == "set.stocked":
            inside = inside or lot_key(str(rec.get("lot"))) == key
        elif inside and rec.type == "steri.loaded":
            break  # sterilized again: what follows comes from a load of ours
        elif inside:
            _note(entry, rec, None)
    return entry


def recall_set(fold: Fold, set_code: str) -> dict[str, Any]:
    """Every load a set went through and, for each, its dispatches and uses.

    A use or dispatch belongs to the set's last sterilizer load before it (a reception or a
    wash in between does not clear it: a use typed in late, or recorded on a node cut off
    from the one that received the set, still came from that load); before any sterilizer
    load, to its last washer load; before any load, to an entry without a load.
    """
    loads: dict[tuple[str, str] | None, dict[str, Any]] = {}
    steri: list[dict[str, Any]] = []  # its last sterilizer load, or every platform lot since
    other: dict[str, Any] | None = None
    for rec in _records(fold, set_code):
        if rec.type in LOADED:
            no = rec.load or ""
            entry = loads.get(("load", no)) or loads.setdefault(("load", no), _load_entry(fold, no))
            if rec.type == "steri.loaded":
                steri = [entry]
            else:
                other = entry
        elif rec.type == "set.stocked":  # stock sterilized before the outage: its lot is its load
            lot = str(rec.get("lot"))
            entry = loads.get((PLATFORM, lot)) or loads.setdefault(
                (PLATFORM, lot), _platform_entry(fold, lot)
            )
            platform = all(e["kind"] == PLATFORM for e in steri)
            steri = [*steri, entry] if platform and entry not in steri else steri
            steri = steri if platform else [entry]
        elif rec.type in _FOLLOWED:
            targets = steri or ([other] if other is not None else [])
            if not targets:
                targets = [loads.get(None) or loads.setdefault(None, _load_entry(fold, None))]
            for target in targets:
                _note(target, rec, target["load"])
    entries = list(loads.values())
    return {
        "set": set_code,
        "status": fold.set_status(set_code).status,
        "loads": entries,
        "patients": sorted({use["patient"] for entry in entries for use in entry["uses"]}),
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
    """Every load of a sterilizer since its last passed biological indicator (all if none);
    for an endoscope washer-disinfector, every endoscope use it reprocessed for.

    A passed indicator that names the load it rode in (`lot`) vouches for the loads up to
    that one. One without `lot` rode in some load before its result was read (incubation
    takes a day or two) and vouches for nothing more than the passes that name theirs. An
    indicator that failed in a load before that point, its result read after the last
    pass, brings the recall back to the last pass before it.
    """
    indicators = [r for r in fold.machine_test_records(machine) if r.key == "bi"]
    passed = [r for r in indicators if r.result == "pass"]
    vouched = [p for r in passed if (p := _rode_in(fold, r)) is not None]
    since = max(vouched, default="")
    indicator = None
    if passed:
        last = passed[-1]
        indicator = {"event": last.id, "lot": last.get("lot"), "day": last.day}
        for failed in indicators:
            at = _rode_in(fold, failed) or failed.id
            if failed.result != "pass" and failed.id > last.id and at <= since:
                since = max((p for p in vouched if p < at), default="")
    numbers = dict.fromkeys(r.load for r in fold.machine_loads(machine) if r.id > since and r.load)
    loads = [recall_lot(fold, no) for no in numbers if no is not None]
    endoscope_uses = _reprocessed_by(fold, machine)  # an endoscope washer-disinfector
    return {
        "machine": machine,
        "last_passed_bi": indicator,
        "loads": loads,
        "endoscope_uses": endoscope_uses,
        "patients": sorted(
            {p for entry in loads for p in entry["patients"]}
            | {use["patient"] for use in endoscope_uses}
        ),
    }


def recall_endoscope(fold: Fold, code: str) -> dict[str, Any]:
    """Every use of an endoscope (named by any of its codes), with its patient and the last
    passed reprocessing cycle before it (None: used without one)."""
    state = fold.endo_state(code)
    voided = fold.voided
    uses = [
        {**_use(rec), "reprocessing": _aer_before(fold, rec)}
        for rec in ([] if state is None else state.items)
        if rec.type == "endo.used" and rec.id not in voided
    ]
    return {
        "endoscope": code if state is None else state.code,
        "uses": uses,
        "patients": sorted({u["patient"] for u in uses}),
    }


def _reprocessed_by(fold: Fold, machine: str) -> list[dict[str, Any]]:
    """The endoscope uses whose last passed reprocessing before them ran on `machine`."""
    found = []
    for code in fold.endoscope_codes():
        for use in recall_endoscope(fold, code)["uses"]:
            cycle = use["reprocessing"]
            if cycle is not None and cycle["machine"] == machine:
                found.append({"endoscope": code, **use})
    return sorted(found, key=lambda use: str(use["event"]))


def _rode_in(fold: Fold, indicator: Record) -> str | None:
    """Where an indicator rode: the first record of the load it names, if known."""
    view = fold.load(indicator.get("lot") or "")
    return None if view is None else view.loaded


def _records(fold: Fold, set_code: str) -> list[Record]:
    st = fold.set_state(set_code)
    if st is None:
        return []
    voided = fold.voided
    return [r for r in st.items if r.id not in voided]


def _after_load(fold: Fold, set_code: str, load: str) -> dict[str, Any]:
    """What happened to a set from entering `load` until another load took over.

    A sterilizer load holds its sets' labels, dispatches and uses until the set goes into
    another sterilizer load after this one's cycle (a reception or a wash in between does
    not end it: see recall_set); a set put into a second load before this one's cycle went
    through one of them, and its uses count for both. A washer load ends at the next load.
    """
    entry = _set_entry(fold, set_code)
    view = fold.load(load)
    steri = view is not None and view.kind == "steri"
    cycles = () if view is None else view.cycles
    inside = False
    others = 0  # sterilizer loads the set went into since this one
    for rec in _records(fold, set_code):
        if rec.type in LOADED:
            if rec.load == load:
                inside = True
            elif inside and not steri:
                break  # a washer load ends at the set's next load
            elif inside and rec.type == "steri.loaded":
                others += 1
                if others > 1 or any(c < rec.id for c in cycles):
                    break  # it went on to another load after this one's cycle, or to two
        elif inside:
            _note(entry, rec, load)
    return entry


def _set_entry(fold: Fold, set_code: str) -> dict[str, Any]:
    """A set's line of a recall by lot: its status, then what `_note` adds."""
    return {
        "set": set_code,
        "status": fold.set_status(set_code).status,
        "labels": [],
        "dispatches": [],
        "uses": [],
    }


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


def _load_entry(fold: Fold, load: str | None) -> dict[str, Any]:
    view = None if load is None else fold.load(load)
    return {
        "load": load,
        "kind": None if view is None else view.kind,
        "machine": None if view is None else view.machine,
        "status": "unknown" if view is None else view.status,
        "safe": view is not None and view.safe and fold.failed_indicator(load) is None,
        "labels": [],
        "dispatches": [],
        "uses": [],
    }


def _load_at(fold: Fold, set_code: str, at: str) -> dict[str, Any]:
    """The load a set came from when it was used at `at`: its last sterilizer load before
    (else its last washer load), and whether it was received or washed again in between
    (then the use is not vouched for by that load: `safe` is false)."""
    load = kind = None
    since = False
    for rec in _records(fold, set_code):
        if rec.id >= at:
            break
        if rec.type == "steri.loaded" or (rec.type in LOADED and kind not in _STERILE):
            load, kind, since = rec.load, KIND_OF[rec.type], False
        elif rec.type == "set.stocked":
            load, kind, since = str(rec.get("lot")), PLATFORM, False
        elif rec.type in _REPROCESSING:
            since = load is not None
    if load is None:
        return {
            "load": None,
            "kind": None,
            "machine": None,
            "load_status": None,
            "safe": False,
            "reprocessed_since": False,
        }
    if kind == PLATFORM:
        return {
            "load": load,
            "kind": kind,
            "machine": None,
            "load_status": PLATFORM,
            "safe": not since and fold.failed_indicator(load) is None,
            "reprocessed_since": since,
        }
    view = fold.load(load)
    return {
        "load": load,
        "kind": kind,
        "machine": None if view is None else view.machine,
        "load_status": None if view is None else view.status,
        "safe": view is not None and view.safe and not since and not fold.failed_indicator(load),
        "reprocessed_since": since,
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

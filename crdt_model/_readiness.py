"""What a station asks before it records: checks, warnings, label data, readiness.

Settings (the cluster document's `settings` map, passed as a mapping) read here:
``shelf_life_by_packaging``: {packaging name: days}, overriding a set type's
shelf_life_days for sets packed that way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ._anomalies import (
    BI_FAILED,
    WHY,
    SetState,
    effective,
    load_problem,
    out_of_order,
    stock_read_again,
)
from ._coded import CodedText
from ._views import LOADED, FoldError, LabelInfo, Record, SetView, cycle_day

if TYPE_CHECKING:
    from ._fold import Fold

END = "\uffff"
"""Greater than every event id: "as of now"."""

ENDO_TURNAROUND_MINUTES = 60
"""An endoscope used for a procedure is ready again this long after its start."""

AVAILABLE = frozenset({"sterile", "dispatched"})
_VOUCHED = frozenset({"sterilized", "sterile", "dispatched"})
"""Statuses a load's (or a platform lot's) biological indicator can still take back."""
_IN_REPAIR = frozenset({"en reparation", "hors service", "en maintenance"})
_TO_REPROCESS = frozenset({"a retraiter"})
"""Endoscope states of the export (compared without case or accents)."""
_MACHINE_PHASE = frozenset({"washing", "washed", "in_sterilizer", "sterilized"})

PROBLEMS: dict[str, str] = {
    # refusals: the node records nothing
    "unknown_load": "unknown load {load}",
    "load_rejected": "load {load} was rejected",
    "load_already_released": "load {load} is already released",
    "load_without_cycle": "load {load} has no cycle recorded",
    "wash_load_release": "load {load} is a washer load: only sterilizer loads are released",
    "cycle_failed": "the cycle of load {load} failed",
    "indicator_failed": "the biological indicator of load {load} failed",
    "numbered_cycle_failed": "the cycle {cycle} of load {load} failed",
    "label_refused": "set {set}, load {load}: {why}",
    "label_mismatch": (
        "a label of load {load} carries lot {lot} and expiry {expires_on}: "
        "issue labels with POST /api/labels"
    ),
    "no_shelf_life": "no shelf life known for {set}: import the reference data first",
    "label_not_printable": (
        "no label can be printed for set {set}: its code or names hold characters a label"
        " cannot carry, or too many (the barcode takes printable ASCII, within the label)"
    ),
    "label_id_taken": "label id {label} is taken, or in another node's numbering",
    "set_expired": "set {set} expired on {expires_on}",
    "set_not_sterile": "set {set} is not sterile (status: {status})",
    "set_has_record": (
        "set {set} was recorded since the outage (status: {status}): a label from before"
        " no longer vouches for it"
    ),
    "stock_dates": "set {set}: a label cannot expire ({expires_on}) before it was made"
    " ({sterilized_on})",
    "set_no_record": (
        "set {set} is not sterile (status: unknown): nothing recorded of it since the outage;"
        " if its label from before the outage is intact and valid, record it (set.stocked)"
    ),
    "unknown_anomaly": "no anomaly {anomaly}",
    "unknown_event": "no event {event} to void",
    "anomaly_already_resolved": (
        "anomaly {anomaly} was resolved on {day}: void that decision ({event}) to record another"
    ),
    # warnings: the fact is recorded anyway
    "set_in_open_load": "set {set} is still in open load {load}",
    "out_of_order": "{step} of set {set} is out of the usual order (status: {status})",
    "no_bowie_dick": "sterilizer {machine} has no passed Bowie-Dick test on {day}",
    "set_not_safe": "set {set}: {why}",
    "unknown_set": "set {set} is not in the reference data: check the code",
}
"""English message of each refusal and warning code, with its parameters."""


class Problem(CodedText):
    """A refusal or warning: its English message, with a stable `code` and its `params`.

    A str, so that the API, logs and callers keep the English text; the web UI shows
    `code` from its catalogs. A `why` parameter is a reason code of load_problem (shown in
    English through WHY), a `status` a set status, a `step` an event type.
    """

    MESSAGES = PROBLEMS

    @classmethod
    def english(cls, values: dict[str, str]) -> dict[str, str]:
        """A `why` reads as its English reason."""
        if "why" not in values:
            return values
        return {**values, "why": WHY[values["why"]][1]}


class Reference:
    """The current reference snapshot, indexed for the fold's questions."""

    def __init__(
        self,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        export_id: str = "",
        exported_at: str = "",
    ) -> None:
        t = {name.removesuffix(".csv"): rows for name, rows in tables.items()}
        self.export_id = export_id
        self.exported_at = exported_at
        self.set_types: dict[str, Mapping[str, Any]] = {
            r["code"]: r for r in t.get("set_types", ())
        }
        self.instance_type: dict[str, str] = {}
        self.locations: dict[str, str] = {}
        self.instances_by_type: dict[str, list[str]] = {}
        for row in t.get("set_instances", ()):
            self.instance_type[row["instance"]] = row["type_code"]
            self.instances_by_type.setdefault(row["type_code"], []).append(row["instance"])
            if row.get("location"):
                self.locations[row["instance"]] = row["location"]
        for instances in self.instances_by_type.values():
            instances.sort()
        self.profiles: dict[str, list[Mapping[str, Any]]] = {}
        by_procedure: dict[str, set[str]] = {}
        for row in t.get("profiles", ()):
            self.profiles.setdefault(row["profile_code"], []).append(row)
            if row.get("procedure"):
                by_procedure.setdefault(_plain(row["procedure"]), set()).add(row["profile_code"])
        self._by_procedure = {k: min(v) for k, v in by_procedure.items() if len(v) == 1}
        self.or_planning = _by_date(t.get("or_planning", ()))
        self.endo_planning = _by_date(t.get("endo_planning", ()))
        self.endoscopes: dict[str, Mapping[str, Any]] = {}
        self.endoscopes_by_type: dict[str, list[str]] = {}
        self._endoscope_aliases: dict[str, str] = {}
        """model-serial -> serial."""
        for row in t.get("endoscopes", ()):
            serial = str(row["serial"])
            self.endoscopes[serial] = row
            self.endoscopes_by_type.setdefault(row["type"], []).append(serial)
        for serial in self.endoscopes:
            for code in self.endoscope_codes(serial)[1:]:
                if code not in self.endoscopes:  # a serial wins over another's model-serial
                    self._endoscope_aliases[code] = serial

    def profile_of_procedure(self, procedure: str | None) -> str | None:
        """The profile of a procedure, when exactly one profile names it."""
        return self._by_procedure.get(_plain(procedure or "")) if procedure else None

    def type_code(self, instance: str) -> str | None:
        """The set type of an instance; for an unlisted `TYPE#n`, TYPE when it is a known type."""
        found = self.instance_type.get(instance)
        if found is None and "#" in instance:
            base = instance.split("#", 1)[0]
            found = base if base in self.set_types else None
        return found

    def shelf_life_days(
        self, instance: str, packaging: str | None, settings: Mapping[str, Any] | None = None
    ) -> int | None:
        """Days a sterile set keeps: the packaging rule of the settings, else its type's."""
        rules = (settings or {}).get("shelf_life_by_packaging") or {}
        type_row = self.set_types.get(self.type_code(instance) or "")
        packaging = packaging or (type_row or {}).get("packaging") or None
        if packaging is not None and isinstance(rules.get(packaging), int):
            return int(rules[packaging])
        days = None if type_row is None else type_row.get("shelf_life_days")
        return days if isinstance(days, int) else None

    def endoscope_codes(self, serial: str) -> tuple[str, ...]:
        """The codes an endoscope may be scanned as: its serial, then model-serial."""
        row = self.endoscopes.get(serial)
        model = (row or {}).get("model")
        return (serial, f"{model}-{serial}") if model else (serial,)

    def endoscope_serial(self, code: str) -> str:
        """The serial of the endoscope scanned as `code` (its serial or model-serial);
        `code` itself when the reference does not know it."""
        return self._endoscope_aliases.get(code, code)

    def endoscope_aliases(self) -> dict[str, str]:
        """model-serial -> serial, for every endoscope with a model."""
        return dict(self._endoscope_aliases)


def expiry(sterilized_on: str | None, days: int | None) -> str | None:
    """The expiry date: the sterilization date plus the shelf life."""
    if sterilized_on is None or days is None:
        return None
    return (date.fromisoformat(sterilized_on) + timedelta(days=days)).isoformat()


def sterilized_on(fold: Fold, st: SetState) -> str | None:
    """The date of the passed sterilization cycle of the set's current load (of stock
    sterilized before the outage: the date its label shows, if it shows one)."""
    if st.stock is not None:
        shown = st.stock.get("sterilized_on")
        return shown if isinstance(shown, str) else None
    load = fold.load_state(st.load) if st.kind == "steri" else None
    if load is None:
        return None
    cycle, _, _ = load.state_between(st.loaded, END)
    return cycle_day(cycle) if cycle is not None and cycle.result == "pass" else None


def set_expiry(fold: Fold, st: SetState, sterilized: str | None = None) -> str | None:
    """A sterilized set's expiry: its label's date, else computed from the reference."""
    if st.stock is not None:
        return str(st.stock.get("expires_on"))
    sterilized = sterilized or sterilized_on(fold, st)
    if sterilized is None:
        return None
    if st.label is not None:
        printed = st.label.get("expires_on")
        if isinstance(printed, str):
            return printed
    if fold.reference is None:
        return None
    days = fold.reference.shelf_life_days(st.code, st.packaging, fold.settings)
    return expiry(sterilized, days)


def set_view(fold: Fold, code: str, today: str | None, *, events: bool = True) -> SetView:
    """The view of a set; with `today`, a sterile set past its expiry is `expired`.

    `events=False` leaves its event ids out (views of every set at once, e.g. a dashboard).
    """
    ref = fold.reference
    type_code = None if ref is None else ref.type_code(code)
    storage = None if ref is None else ref.locations.get(code)
    st = fold.set_state(code)
    if st is None:
        st = SetState(code)
    status, reason, by = effective(fold, st, END)
    if status in _VOUCHED:
        indicator = failed_indicator(fold, st)
        if indicator is not None:
            status, reason, by = "quarantined", BI_FAILED, indicator
    since, since_day = (st.since, st.since_day) if by is None else (by.id, by.day)
    sterilized = sterilized_on(fold, st)
    expires_on = set_expiry(fold, st, sterilized)
    expired = None if today is None or expires_on is None else today > expires_on
    if status == "sterile" and expired:
        status = "expired"
    load = fold.load_state(st.load)
    machine = load.loaded[0].machine if load is not None and load.loaded else None
    if status in ("dispatched", "used"):
        location = st.location
    elif status in _MACHINE_PHASE:
        location = machine
    else:
        location = storage if status in ("sterile", "expired", "unknown") else None
    voided = fold.voided
    return SetView(
        set=code,
        type_code=type_code,
        status=status,
        since=since,
        day=since_day,
        load=st.load,
        load_kind=st.kind,
        machine=machine,
        reason=reason if status == "quarantined" else None,
        location=location,
        labelled=st.label is not None or st.stock is not None,
        label=None if st.label is None else LabelInfo.of(st.label),
        stock=None if st.stock is None else LabelInfo.of(st.stock),
        sterilized_on=sterilized,
        expires_on=expires_on,
        expired=expired,
        packaging=st.packaging,
        packer=st.packer,
        events=tuple(r.id for r in st.items if r.id not in voided) if events else (),
        anomalies=tuple(a.id for a in st.anomalies),
    )


def label_data(
    fold: Fold,
    ref: Reference | None,
    set_code: str,
    load: str,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a label for `set_code` of `load` shows; a reprint keeps the first label's lot and expiry."""
    state = fold.load_state(load)
    if state is None or not state.loaded:
        raise FoldError(f"unknown load {load}")
    ref = ref if ref is not None else fold.reference
    cycle, _, _ = state.state_between("", END)
    st = fold.set_state(set_code)
    type_code = None if ref is None else ref.type_code(set_code)
    type_row: Mapping[str, Any] = {} if ref is None else ref.set_types.get(type_code or "", {})
    packaging = (st.packaging if st is not None else None) or type_row.get("packaging") or None
    days = None if ref is None else ref.shelf_life_days(set_code, packaging, settings)
    sterilized = None if cycle is None else cycle_day(cycle)
    previous = [r for r in state.labels if r.key == set_code]
    first = previous[0] if previous else None
    return {
        "set": set_code,
        "set_type": type_code,
        "set_name": type_row.get("name"),
        "load": load,
        "lot": load if first is None else first.get("lot"),
        "sterilized_on": sterilized,
        "expires_on": expiry(sterilized, days) if first is None else first.get("expires_on"),
        "shelf_life_days": days,
        "packaging": packaging,
        "sterilizer": state.loaded[0].machine,
        "program": state.loaded[0].get("program"),
        "cycle_no": None if cycle is None else cycle.get("cycle_no"),
        "packer": None if st is None else st.packer,
        "reprint": first is not None,
        "previous_label": None if first is None else (first.get("label_id") or first.id),
    }


# -- safety rules the node can check before it records ---------------------------------


def check_release(fold: Fold, load: str, decision: str = "released") -> Problem | None:
    """Why `load` may not be released now (None when it may); a rejection is always allowed."""
    state = fold.load_state(load)
    if state is None or not state.loaded:
        return Problem("unknown_load", load=load)
    if decision != "released":
        return None
    if state.kind == "wash":
        return Problem("wash_load_release", load=load)
    cycle, released, rejected = state.state_between("", END)
    if rejected is not None:
        return Problem("load_rejected", load=load)
    if released is not None:
        return Problem("load_already_released", load=load)
    if cycle is None:
        return Problem("load_without_cycle", load=load)
    if cycle.result != "pass":
        number = cycle.get("cycle_no")
        if number is None:
            return Problem("cycle_failed", load=load)
        return Problem("numbered_cycle_failed", cycle=number, load=load)
    if fold.failed_indicator(load) is not None:
        return Problem("indicator_failed", load=load)
    return None


def check_label(fold: Fold, set_code: str, load: str) -> Problem | None:
    """Why a label may not be issued for `set_code` of `load` (None when it may)."""
    st = fold.set_state(set_code) or SetState(set_code)
    state = fold.load_state(load)
    if state is None or not state.loaded:
        return Problem("unknown_load", load=load)
    why, _ = load_problem(fold, st, load, END)
    if why is None and fold.failed_indicator(load) is not None:
        why = BI_FAILED
    if why is None and effective(fold, st, END)[0] == "quarantined":
        why = "quarantined"  # e.g. a torn wrap found after the release
    return None if why is None else Problem("label_refused", set=set_code, load=load, why=why)


def check_use(fold: Fold, set_code: str, today: str) -> Problem | None:
    """Why `set_code` may not be used on `today` (None when it may): not sterile, or expired."""
    view = set_view(fold, set_code, today)
    if view.expired:
        return Problem("set_expired", set=set_code, expires_on=view.expires_on)
    if view.status == "unknown":
        return Problem("set_no_record", set=set_code)
    if view.status not in AVAILABLE:
        return Problem("set_not_sterile", set=set_code, status=view.status)
    why = _unsafe(fold, set_code)
    if why is not None:  # e.g. dispatched from a load never released, or released no more
        return Problem("set_not_safe", set=set_code, why=why)
    return None


def check_stock(fold: Fold, submission: Mapping[str, Any]) -> Problem | None:
    """Why a set may not be recorded as stock from before the outage (None when it may):
    it was recorded since (the same label read again aside), or the label's dates clash."""
    code = str(submission["set"])
    lot, expires_on = submission["lot"], submission["expires_on"]
    sterilized_on = submission.get("sterilized_on")
    if isinstance(sterilized_on, str) and sterilized_on > expires_on:
        return Problem("stock_dates", set=code, expires_on=expires_on, sterilized_on=sterilized_on)
    st = fold.set_state(code)
    status = "unknown" if st is None else effective(fold, st, END)[0]
    if status == "unknown":
        return None
    if st is not None and stock_read_again(st, status, lot, expires_on):
        return None
    return Problem("set_has_record", set=code, status=status)


def _unsafe(fold: Fold, set_code: str) -> str | None:
    """Why a set whose status says available is not safe to use (None when it is)."""
    st = fold.set_state(set_code)
    if st is None:
        return "no_load"
    why, _ = load_problem(fold, st, st.load, END)
    return BI_FAILED if why is None and failed_indicator(fold, st) is not None else why


def failed_indicator(fold: Fold, st: SetState) -> Record | None:
    """A failed biological indicator of the load (or platform lot) that vouches for the set."""
    if st.stock is not None:
        return fold.failed_indicator(str(st.stock.get("lot")))
    return fold.failed_indicator(st.load) if st.kind == "steri" else None


def warnings_for(fold: Fold, submission: Mapping[str, Any], today: str) -> list[Problem]:
    """What a station warns about before recording a fact that breaks a rule."""
    kind = str(submission.get("type"))
    out = _unknown_sets(fold, submission)
    if kind in LOADED:
        for code in submission.get("sets") or ():
            st = fold.set_state(code)
            if st is None or (st.load is not None and st.load == submission.get("load")):
                continue  # unknown set, or the same load named again
            current = fold.load_state(st.load) if st.phase else None
            status, reason, _ = effective(fold, st, END)
            if current is not None and current.open_at(st.loaded, END):
                out.append(Problem("set_in_open_load", set=code, load=st.load))
            elif out_of_order(kind, status, reason):
                out.append(Problem("out_of_order", step=kind, set=code, status=status))
        machine = submission.get("machine")
        if (
            kind == "steri.loaded"
            and isinstance(machine, str)
            and fold.machine_tests(machine, today).bowie_dick != "pass"
        ):
            out.append(Problem("no_bowie_dick", machine=machine, day=today))
    elif kind in ("set.received", "set.stocked", "set.inspected", "set.used", "set.dispatched"):
        code = str(submission.get("set"))
        st = fold.set_state(code)
        if st is None:
            return out
        status, reason, _ = effective(fold, st, END)
        lot, expires_on = submission.get("lot"), submission.get("expires_on")
        if kind == "set.stocked" and stock_read_again(st, status, lot, expires_on):
            return out  # nothing out of order
        why = None
        if kind == "set.dispatched":
            why = _unsafe(fold, code)
            if why is not None:
                out.append(Problem("set_not_safe", set=code, why=why))
        if why is None and out_of_order(kind, status, reason):
            out.append(Problem("out_of_order", step=kind, set=code, status=status))
    return out


def _unknown_sets(fold: Fold, submission: Mapping[str, Any]) -> list[Problem]:
    """Set codes the current reference does not list (a misread or mistyped barcode)."""
    ref = fold.reference
    if ref is None or not ref.instance_type:
        return []  # no reference imported yet: every code is unknown, say nothing
    codes = submission.get("sets")
    if not isinstance(codes, list):
        codes = [submission["set"]] if isinstance(submission.get("set"), str) else []
    return [Problem("unknown_set", set=c) for c in codes if c not in ref.instance_type]


# -- readiness -----------------------------------------------------------------------


def readiness(
    fold: Fold,
    day: str,
    reference: Reference | None = None,
    *,
    reserved: Iterable[str] = (),
) -> dict[str, Any]:
    """For each operation planned on `day`: the sets its profile needs and those available.

    An instance is available when sterile or dispatched and not expired on `day`; each is
    given to one operation only, earliest start first, the soonest to expire first (one
    dispatched to the operation's room before others). A profile's lines for the
    operation's surgeon replace its lines for no one in particular; a row without a profile
    code takes the one profile of its procedure, if only one has it. Sets already used on
    the patient that day count for the operation (done, or under way) and take nothing
    from the others. An operation that cannot have all it needs keeps what it has.
    `reserved`: sets given to operations before `day` (today's, for tomorrow's readiness):
    counted for none of `day`'s.
    """
    ref = reference if reference is not None else fold.reference
    if ref is None:
        return {"date": day, "reference": None, "operations": [], "rooms": [], "summary": {}}
    pools: dict[str, list[str]] = {}
    unlisted: dict[str, list[str]] | None = None
    operations = []
    taken_before = frozenset(reserved)
    for row in _in_order(ref.or_planning.get(day, ())):
        profile = row.get("profile_code") or ref.profile_of_procedure(row.get("procedure"))
        items = _lines_for(ref.profiles.get(profile or ""), row.get("surgeon"))
        entry: dict[str, Any] = {
            k: row.get(k)
            for k in ("room", "start", "patient_code", "procedure", "surgeon", "profile_code")
        }
        entry["profile_code"] = profile
        if not items:
            entry.update(status="no_profile", sets=[], instruments=[])
            operations.append(entry)
            continue
        needs, short = [], False
        used = _used_on(fold, ref, row.get("patient_code"), day)
        for item in items:
            if item["item_kind"] != "set":
                continue
            code = item["item_code"]
            pool = pools.get(code)
            if pool is None:
                if unlisted is None:
                    unlisted = _unlisted_by_type(fold, ref)
                candidates = (*ref.instances_by_type.get(code, ()), *unlisted.get(code, ()))
                free = (c for c in candidates if c not in taken_before)
                pool = pools[code] = _available_sets(fold, free, day)
            done = used.get(code, [])[: item["qty"]]
            del used.get(code, [])[: len(done)]
            taken = done + _take(fold, pool, item["qty"] - len(done), row.get("room"))
            short = short or len(taken) < item["qty"]
            name = ref.set_types.get(code, {}).get("name")
            needs.append(
                {
                    "type_code": code,
                    "name": name,
                    "qty": item["qty"],
                    "assigned": taken,
                    "used": done,
                    "missing": item["qty"] - len(taken),
                }
            )
        instruments = [
            {"ref": i["item_code"], "qty": i["qty"]} for i in items if i["item_kind"] != "set"
        ]
        entry.update(status="short" if short else "ok", sets=needs, instruments=instruments)
        operations.append(entry)
    return {
        "date": day,
        "reference": ref.export_id,
        "operations": operations,
        "rooms": _rooms(operations),
        "summary": _summary(operations),
        "endoscopy": endoscopy_readiness(fold, day, ref),
    }


def _lines_for(
    items: Sequence[Mapping[str, Any]] | None, surgeon: str | None
) -> list[Mapping[str, Any]]:
    """A profile's lines for a surgeon: theirs if it has any, else those for no one."""
    if not items:
        return []
    who = _plain(surgeon or "")
    own = [i for i in items if who and _plain(i.get("surgeon") or "") == who]
    return own or [i for i in items if not i.get("surgeon")] or list(items)


def _used_on(fold: Fold, ref: Reference, patient: str | None, day: str) -> dict[str, list[str]]:
    """Sets used on the patient on `day`, by type."""
    found: dict[str, list[str]] = {}
    for use in fold.patient_uses(patient) if patient else ():
        kind = ref.type_code(use.key or "") if use.type == "set.used" else None
        if kind is not None and use.day == day:
            found.setdefault(kind, []).append(use.key or "")
    return found


def _take(fold: Fold, pool: list[str], count: int, room: str | None) -> list[str]:
    """`count` sets from `pool` (the one to give first at its end): those dispatched to
    `room` first, then those on the shelves, then those dispatched to another room."""
    taken = []
    for _ in range(min(count, len(pool))):
        rank = [(_where(fold, code, room), i) for i, code in enumerate(pool)]
        taken.append(pool.pop(max(rank)[1]))
    return taken


def _where(fold: Fold, code: str, room: str | None) -> int:
    """2 for a set dispatched to `room`, 1 for one on the shelves, 0 for one sent elsewhere."""
    st = fold.set_state(code)
    if st is None or st.status != "dispatched" or not st.location:
        return 1
    return 2 if st.location == room else 0


def readiness_from(
    fold: Fold, day: str, today: str, reference: Reference | None = None
) -> dict[str, Any]:
    """`readiness` of `day` as seen `today`: for a later day, the sets today's operations
    are given (and have not used yet) are counted for none of that day's."""
    if day <= today:
        return readiness(fold, day, reference)
    reserved = given_sets(readiness(fold, today, reference))
    return readiness(fold, day, reference, reserved=reserved)


def given_sets(answer: Mapping[str, Any]) -> set[str]:
    """The sets a readiness answer gives to operations and that are not used yet."""
    return {
        code
        for op in answer.get("operations", ())
        for need in op.get("sets", ())
        for code in need["assigned"]
        if code not in need.get("used", ())
    }


def endoscopy_readiness(fold: Fold, day: str, ref: Reference) -> dict[str, Any]:
    """For each endoscopy planned on `day`: an endoscope of the type, ready by its start."""
    free: dict[str, dict[str, int]] = {}
    procedures = []
    for row in _in_order(ref.endo_planning.get(day, ())):
        kind = row.get("endoscope_type") or ""
        entry = {k: row.get(k) for k in ("room", "start", "patient_code", "procedure")}
        entry["endoscope_type"] = kind
        pool = free.get(kind)
        if pool is None:
            pool = free[kind] = _endoscope_pool(fold, ref, kind, day)
        start = _minutes(row.get("start") or "00:00")
        ready = sorted((at, code) for code, at in pool.items() if at <= start)
        if ready:
            code = ready[0][1]
            pool[code] = start + ENDO_TURNAROUND_MINUTES
            entry.update(status="ok", endoscope=code)
        else:
            entry.update(status="short", endoscope=None)
        procedures.append(entry)
    return {"procedures": procedures, "rooms": _rooms(procedures), "summary": _summary(procedures)}


def _unlisted_by_type(fold: Fold, ref: Reference) -> dict[str, list[str]]:
    """Instances the events name that the reference export does not list, by their type
    (`TYPE#n` of a known type: a set made after the export)."""
    found: dict[str, list[str]] = {}
    for code in fold.set_codes():
        if code not in ref.instance_type:
            kind = ref.type_code(code)
            if kind is not None:
                found.setdefault(kind, []).append(code)
    return found


def _available_sets(fold: Fold, candidates: Iterable[str], day: str) -> list[str]:
    """The available instances among `candidates`, the one to give first at the end."""
    found: list[tuple[str, str]] = []
    for code in candidates:
        st = fold.set_state(code)
        if st is None or effective(fold, st, END)[0] not in AVAILABLE or _unsafe(fold, code):
            continue
        expires = set_expiry(fold, st)
        if expires is None or expires >= day:
            found.append((expires or "9999-12-31", code))
    found.sort(reverse=True)
    return [code for _, code in found]


def _endoscope_pool(fold: Fold, ref: Reference, kind: str, day: str) -> dict[str, int]:
    """Endoscopes of a type and the minute of `day` each is ready: now if reprocessed, after
    the night's reprocessing if used before `day`; those failed or in repair, and those used
    on `day` itself and not reprocessed since, left out."""
    pool: dict[str, int] = {}
    for serial in ref.endoscopes_by_type.get(kind, ()):
        state = _plain(ref.endoscopes[serial].get("state") or "")
        walk = fold.endo_state(serial)  # its records under any of its codes, walked as one
        ready = None if walk is None else walk.ready
        if walk is not None and walk.failure is not None:
            # a failed leak test or reprocessing, whatever was scanned since (used, cleaned,
            # stored): to repair or redo, not for the day
            continue
        if ready is None:
            if state in _IN_REPAIR:
                continue
            ready = state not in _TO_REPROCESS
        elif not ready and walk is not None and walk.blocker and walk.blocker.day >= day:
            continue  # used (or half reprocessed) that day: not ready again on the day
        pool[serial] = 0 if ready else ENDO_TURNAROUND_MINUTES
    return pool


def _plain(text: str) -> str:
    """Lower case, accents off, spaces single: how export states are compared."""
    bare = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in bare if not unicodedata.combining(c)).split())


def _by_date(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["date"], []).append(row)
    return out


def _in_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    indexed = sorted(enumerate(rows), key=lambda p: (p[1].get("start") or "", p[1]["room"], p[0]))
    return [row for _, row in indexed]


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    return int(hours) * 60 + int(minutes or 0)


def _rooms(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rooms: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        rooms.setdefault(entry["room"], []).append(entry)
    return [{"room": room, **_summary(rows)} for room, rows in sorted(rooms.items())]


def _summary(entries: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"total": len(entries), "ok": 0, "short": 0, "no_profile": 0}
    for entry in entries:
        counts[entry["status"]] += 1
    return counts

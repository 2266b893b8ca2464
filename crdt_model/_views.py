"""What the fold keeps of each event (a slim record) and the views it answers with."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from ._anomalies import Anomaly

WASH_LOADED: Final = "wash.loaded"
STERI_LOADED: Final = "steri.loaded"
WASH_CYCLE: Final = "wash.cycle"
STERI_CYCLE: Final = "steri.cycle"
LOADED: Final = frozenset({WASH_LOADED, STERI_LOADED})
CYCLES: Final = frozenset({WASH_CYCLE, STERI_CYCLE})
KIND_OF: Final = {
    WASH_LOADED: "wash",
    STERI_LOADED: "steri",
    WASH_CYCLE: "wash",
    STERI_CYCLE: "steri",
}
SET_EVENTS: Final = frozenset(
    {"set.received", "set.stocked", "set.inspected", "set.dispatched", "set.used", "label.printed"}
)
ENDO_EVENTS: Final = frozenset(
    {"endo.leak_test", "endo.cleaned", "endo.aer_cycle", "endo.stored", "endo.used"}
)

SET_STATES: Final = (
    "dirty",
    "washing",
    "washed",
    "packed",
    "in_sterilizer",
    "sterilized",
    "sterile",
    "expired",
    "dispatched",
    "used",
    "quarantined",
    "unknown",
)
"""Set status: DESIGN.md's states, plus `expired` for a sterile set past its expiry date."""

# Where each event type keeps its main subject (Record.key) and what else the views need.
_KEY_FIELD: Final = {
    **{t: "set" for t in SET_EVENTS},
    **{t: "endoscope" for t in ENDO_EVENTS},
    "steri.test": "kind",
    "event.voided": "target",
    "anomaly.resolved": "anomaly",
}
_RESULT_FIELD: Final = {"load.released": "decision", "anomaly.resolved": "decision"}
_EXTRA: Final[dict[str, tuple[str, ...]]] = {
    "set.received": ("from",),
    WASH_LOADED: ("program",),
    STERI_LOADED: ("program",),
    WASH_CYCLE: ("cycle_no", "program", "started", "ended"),
    STERI_CYCLE: ("cycle_no", "program", "started", "ended"),
    "steri.test": ("lot",),
    "load.released": ("user", "reason"),
    "label.printed": ("lot", "expires_on", "label_id", "reprint", "printer"),
    "set.inspected": ("packaging", "packer"),
    "set.stocked": ("lot", "expires_on", "sterilized_on", "location"),
    "set.dispatched": ("to",),
    "set.used": ("patient", "room", "procedure", "planning_ref"),
    "endo.aer_cycle": ("cycle_no",),
    "endo.used": ("patient", "room", "procedure"),
    "anomaly.resolved": ("comment", "user"),
}
_INDEX: Final = {t: {name: i for i, name in enumerate(fields)} for t, fields in _EXTRA.items()}
_UNIQUE: Final = frozenset({"patient", "reason", "comment", "label_id", "planning_ref"})
"""Extra fields whose values seldom repeat: not kept once like the codes."""
_WITH_LOAD: Final = LOADED | CYCLES | {"load.released", "label.printed"}
_WITH_MACHINE: Final = LOADED | CYCLES | {"steri.test"} | ENDO_EVENTS


class Spec(NamedTuple):
    """What a type's record keeps, worked out once per type."""

    type: str
    key: str
    result: str
    load: bool
    machine: bool
    fields: tuple[str, ...]
    shared: tuple[int, ...]
    unique: tuple[int, ...]


def spec_of(kind: str) -> Spec:
    """What records of type `kind` keep."""
    spec = _SPECS.get(kind)
    if spec is None:
        fields = _EXTRA.get(kind, ())
        spec = _SPECS[kind] = Spec(
            type=kind,
            key=_KEY_FIELD.get(kind, ""),
            result=_RESULT_FIELD.get(kind, "result"),
            load=kind in _WITH_LOAD,
            machine=kind in _WITH_MACHINE,
            fields=fields,
            shared=tuple(i for i, name in enumerate(fields) if name not in _UNIQUE),
            unique=tuple(i for i, name in enumerate(fields) if name in _UNIQUE),
        )
    return spec


_SPECS: Final[dict[str, Spec]] = {}


@mypyc_attr(acyclic=True)
class Record:
    """The slim form of one event kept by the fold (a few slots, no raw text).

    It holds only strings, None and tuples of the event's values: never part of a reference
    cycle, so the compiled fold keeps its records out of the cyclic garbage collector (the
    collector scanned the whole month of records again and again for nothing). Made from a
    decoded event by `record_of`, or straight from its stored bytes (`_decode.py`).
    """

    __slots__ = (
        "data",
        "day",
        "id",
        "key",
        "load",
        "machine",
        "node",
        "result",
        "sets",
        "type",
        "zone",
    )

    def __init__(
        self,
        event_id: str,
        spec: Spec,
        *,
        day: str,
        node: str,
        zone: str | None,
        key: str | None,
        load: str | None,
        machine: str | None,
        result: str | None,
        sets: tuple[str, ...],
        data: tuple[Any, ...] | None,
    ) -> None:
        self.id: str = event_id
        self.type: str = spec.type
        self.day: str = day
        self.node: str = node
        self.zone: str | None = zone
        self.key: str | None = key
        self.load: str | None = load if spec.load else None
        self.machine: str | None = machine if spec.machine else None
        self.result: str | None = result
        self.sets: tuple[str, ...] = sets
        self.data: tuple[Any, ...] | None = data

    def get(self, name: str) -> Any:
        """An extra field kept for the views (None when absent)."""
        if self.data is None:
            return None
        index = _INDEX[self.type].get(name)
        return None if index is None else self.data[index]

    def __repr__(self) -> str:
        return f"Record({self.id} {self.type})"


def record_of(event: dict[str, Any], intern: dict[Any, Any], day: str = "") -> Record:
    """The record of a decoded event. Codes, days and types repeat: each is kept once
    (`intern`, which also keeps repeated tuples of extras); `day`, when given, is the local
    day of `at` kept so already. Written for the compiled fold: dict methods called on the
    dict, no bound methods in locals."""
    spec = spec_of(event["type"])
    if not day:
        day = event["at"][:10]
        day = intern.setdefault(day, day)
    node: str = event["node"]
    zone: str | None = event.get("zone")
    key: str | None = event.get(spec.key)
    load: str | None = event.get("load")
    machine: str | None = event.get("machine")
    result: str | None = event.get(spec.result)
    given: Any = event.get("sets")
    if given is not None and not isinstance(given, list):  # the same refusal, compiled or not
        raise TypeError("sets must be a list")
    sets: list[str] = given or []
    data = extras([event.get(name) for name in spec.fields], spec, intern)
    return Record(
        event["id"],
        spec,
        day=day,
        node=intern.setdefault(node, node),
        zone=None if zone is None else intern.setdefault(zone, zone),
        key=None if key is None else intern.setdefault(key, key),
        load=None if load is None else intern.setdefault(load, load),
        machine=None if machine is None else intern.setdefault(machine, machine),
        result=None if result is None else intern.setdefault(result, result),
        sets=tuple([intern.setdefault(c, c) for c in sets]),
        data=data,
    )


def extras(values: list[Any], spec: Spec, intern: dict[Any, Any]) -> tuple[Any, ...] | None:
    """The extra fields of a record (`values`, in the order of `spec.fields`), their
    repeated texts kept once; a tuple of such texts alone (an inspection's packaging, a
    dispatch's destination) is itself kept once. None when the event has none of them."""
    if values.count(None) == len(values):
        return None
    alone = True
    for i in spec.shared:
        value = values[i]
        if isinstance(value, str):
            values[i] = intern.setdefault(value, value)
        elif value is not None:
            alone = False
    for i in spec.unique:
        if values[i] is not None:
            alone = False
    data = tuple(values)
    return intern.setdefault(data, data) if alone else data


def lot_key(lot: str) -> str:
    """A lot number as recall compares it: its letters and digits, upper case (a lot read
    off a label and typed by hand may differ from the printed one in case and separators)."""
    return "".join(ch for ch in lot.upper() if ch.isalnum())


def record_id(record: Record) -> str:
    """Sort key of records: (hlc, id) order is the order of ids."""
    return record.id


def cycle_day(cycle: Record) -> str:
    """The sterilization date of a cycle: the local date it ended, by the machine's own clock,
    but never after the date it was recorded (a cycle is recorded once it ended: a later date
    is a machine clock running ahead, which must not move expiry dates later; a clock behind
    gives an earlier date, the safe side); else the date it was recorded."""
    ended = cycle.get("ended")
    if isinstance(ended, str) and _DAY.match(ended):
        return min(ended[:10], cycle.day)
    return cycle.day


_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class FoldError(LookupError):
    """A question about something the fold does not know (e.g. an unknown load)."""


# -- views ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, _View):
        return value.as_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class _View:
    """as_dict for the frozen view dataclasses: nested views and tuples become dicts and lists."""

    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LabelInfo(_View):
    """A printed label, as shown beside a set or a load."""

    event: str
    set: str
    load: str
    lot: str | None
    expires_on: str | None
    label_id: str | None
    reprint: bool
    day: str

    @classmethod
    def of(cls, rec: Record) -> LabelInfo:
        """From a label.printed record (or set.stocked: the platform's label, of no load)."""
        return cls(
            rec.id,
            rec.key or "",
            rec.load or "",
            rec.get("lot"),
            rec.get("expires_on"),
            rec.get("label_id"),
            bool(rec.get("reprint")),
            rec.day,
        )


@dataclass(frozen=True, slots=True)
class SetView(_View):
    """Where a set instance is and in what state (GET /api/sets/{instance})."""

    set: str
    type_code: str | None
    status: str
    since: str | None
    day: str | None
    load: str | None
    load_kind: str | None
    machine: str | None
    reason: str | None
    location: str | None
    labelled: bool
    label: LabelInfo | None
    stock: LabelInfo | None
    """The platform's label of stock sterilized before the outage (set.stocked), while it
    vouches for the set."""
    sterilized_on: str | None
    expires_on: str | None
    expired: bool | None
    packaging: str | None
    packer: str | None
    events: tuple[str, ...]
    anomalies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CycleInfo(_View):
    """The machine cycle of a load."""

    event: str
    cycle_no: str | None
    result: str | None
    program: str | None
    started: str | None
    ended: str | None
    day: str

    @classmethod
    def of(cls, rec: Record) -> CycleInfo:
        """From a wash.cycle or steri.cycle record."""
        return cls(
            rec.id,
            rec.get("cycle_no"),
            rec.result,
            rec.get("program"),
            rec.get("started"),
            rec.get("ended"),
            cycle_day(rec),
        )


@dataclass(frozen=True, slots=True)
class ReleaseInfo(_View):
    """The decision on a load."""

    event: str
    decision: str | None
    user: str | None
    reason: str | None
    day: str

    @classmethod
    def of(cls, rec: Record) -> ReleaseInfo:
        """From a load.released record."""
        return cls(rec.id, rec.result, rec.get("user"), rec.get("reason"), rec.day)


@dataclass(frozen=True, slots=True)
class LoadView(_View):
    """One machine load (GET /api/loads/{load}): contents, cycle, release, labels."""

    load: str
    kind: str | None
    machine: str | None
    program: str | None
    loaded: str | None
    day: str | None
    node: str | None
    sets: tuple[str, ...]
    status: str
    safe: bool
    cycle: CycleInfo | None
    cycles: tuple[str, ...]
    release: ReleaseInfo | None
    releases: tuple[str, ...]
    labels: tuple[LabelInfo, ...]
    anomalies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EndoscopeView(_View):
    """An endoscope's reprocessing state; ready when reprocessed since its last use."""

    endoscope: str
    status: str
    ready: bool | None
    since: str | None
    last_use: str | None
    last_reprocessing: str | None
    events: tuple[str, ...]
    anomalies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TestInfo(_View):
    """One machine test (Bowie-Dick, leak, biological indicator)."""

    event: str
    kind: str
    result: str | None
    lot: str | None


@dataclass(frozen=True, slots=True)
class MachineDayView(_View):
    """One machine on one local day: its tests, its loads, the Bowie-Dick verdict."""

    machine: str
    day: str
    tests: tuple[TestInfo, ...]
    bowie_dick: str | None
    loads: tuple[str, ...]
    anomalies: tuple[str, ...]


def anomaly_ids(anomalies: Sequence[Anomaly]) -> tuple[str, ...]:
    """The ids of anomalies, in their order."""
    return tuple(a.id for a in anomalies)


# -- the state of a load and of a machine -------------------------------------------------


class LoadState:
    """The records of one load number (a loaded event, cycles, decisions, labels)."""

    __slots__ = (
        "anomalies",
        "contents",
        "cycles",
        "labels",
        "labels_all",
        "loaded",
        "loaded_all",
        "no",
        "releases",
        "releases_all",
    )

    def __init__(self, no: str) -> None:
        self.no = no
        self.loaded_all: list[Record] = []  # voided included
        self.releases_all: list[Record] = []
        self.labels_all: list[Record] = []
        self.loaded: list[Record] = []  # effective only
        self.releases: list[Record] = []
        self.labels: list[Record] = []
        self.cycles: list[Record] = []  # attributed by the machine; effective only
        self.contents: tuple[str, ...] = ()
        self.anomalies: Sequence[Anomaly] = ()

    @property
    def kind(self) -> str | None:
        """wash or steri (None while no loaded event is known)."""
        return KIND_OF[self.loaded[0].type] if self.loaded else None

    def state_between(
        self, after: str, at: str
    ) -> tuple[Record | None, Record | None, Record | None]:
        """(last cycle, first release, first rejection) among records with after < id <= at."""
        cycle = released = rejected = None
        for rec in self.cycles:
            if rec.id > at:
                break
            if rec.id > after:
                cycle = rec
        for rec in self.releases:
            if rec.id > at:
                break
            if rec.id <= after:
                continue
            if rec.result == "rejected":
                rejected = rejected or rec
            else:
                released = released or rec
        return cycle, released, rejected

    def open_at(self, after: str, at: str) -> bool:
        """True while no cycle and no decision is recorded with after < id < at."""
        for records in (self.cycles, self.releases):
            for rec in records:
                if rec.id >= at:
                    break
                if rec.id > after:
                    return False
        return True

    def first_failure(self, after: str, at: str) -> Record | None:
        """The first failed cycle or rejection with after < id <= at."""
        found = None
        for rec in self.cycles:
            if after < rec.id <= at and rec.result != "pass":
                found = rec
                break
        for rec in self.releases:
            if after < rec.id <= at and rec.result == "rejected":
                if found is None or rec.id < found.id:
                    found = rec
                break
        return found


Snapshot = tuple[tuple[str, ...], tuple[str, ...]]
CHECKPOINT_EVERY: Final = 32
"""A machine keeps the state of its open loads every this many records, to replay from."""


class MachineState:
    """A washer's or sterilizer's loads and cycles: which load each cycle belongs to."""

    __slots__ = (
        "attr",
        "checkpoints",
        "count",
        "cycled",
        "items",
        "kinds",
        "last",
        "loads_by_day",
        "name",
        "open",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[Record] = []  # loaded and cycle records, voided included
        self.loads_by_day: dict[str, list[Record]] = {}  # loaded records, voided included
        self.attr: dict[str, str | None] = {}  # cycle id -> load number
        self.cycled: dict[str, set[str]] = {}  # load number -> the cycles that closed it
        self.kinds: set[str] = set()  # "wash", "steri": what it has loaded or cycled
        self.checkpoints: list[tuple[str, Snapshot]] = []
        self.restart("", ((), ()), 0)

    def restart(self, last: str, snapshot: Snapshot, count: int) -> None:
        """Go back to the state after record `last` (`attr` holds only cycles up to it)."""
        self.last = last
        # Open loads per kind, oldest first: dicts as ordered sets (a washer whose cycles are
        # not captured can pile up thousands; membership and removal stay O(1)).
        self.open = {"wash": dict.fromkeys(snapshot[0]), "steri": dict.fromkeys(snapshot[1])}
        self.count = count

    def step(self, rec: Record) -> str | None:
        """Apply a loaded or cycle record; for a cycle, the load it belongs to.

        A cycle naming no load belongs to the machine's latest load without a cycle yet; a
        load whose cycle closed it never waits for another (a second record of it, sets added
        after its cycle, must not take the next load's cycle). A cycle naming a load not
        open yet (a peer's clock behind: it comes before the load in clock order) closes
        nothing: the load opens when it comes, as any other.
        """
        kind = KIND_OF[rec.type]
        self.kinds.add(kind)
        stack = self.open[kind]
        found: str | None = None
        if rec.type in LOADED:
            if rec.load is not None and rec.load not in self.cycled:
                stack.setdefault(rec.load)
        else:
            found = rec.load
            closed = True
            if found is None:
                found = stack.popitem()[0] if stack else None
            else:
                closed = found in stack
                stack.pop(found, None)
            self.attr[rec.id] = found
            if found is not None and closed:
                self.cycled.setdefault(found, set()).add(rec.id)
        self.last = rec.id
        self.count += 1
        if self.count % CHECKPOINT_EVERY == 0:
            self.checkpoints.append((rec.id, (tuple(self.open["wash"]), tuple(self.open["steri"]))))
        return found

    def forget(self, cycle: str) -> None:
        """Take back a cycle's attribution (its machine replays from before it)."""
        load = self.attr.pop(cycle)
        closed = self.cycled.get(load) if load is not None else None
        if load is None or closed is None:
            return
        closed.discard(cycle)
        if not closed:
            del self.cycled[load]


def load_view(load: LoadState, *, labels: bool = True) -> LoadView:
    """The view of a load; `labels=False` leaves its labels out (lists of many loads)."""
    first = load.loaded[0] if load.loaded else None
    cycle = load.cycles[-1] if load.cycles else None
    decision = _decision(load)
    return LoadView(
        load=load.no,
        kind=load.kind,
        machine=None if first is None else first.machine,
        program=None if first is None else first.get("program"),
        loaded=None if first is None else first.id,
        day=None if first is None else first.day,
        node=None if first is None else first.node,
        sets=load.contents,
        status=_load_status(load, cycle, decision),
        safe=first is not None and _safe(load.kind, cycle, decision),
        cycle=None if cycle is None else CycleInfo.of(cycle),
        cycles=tuple(r.id for r in load.cycles),
        release=None if decision is None else ReleaseInfo.of(decision),
        releases=tuple(r.id for r in load.releases),
        labels=tuple(LabelInfo.of(r) for r in load.labels) if labels else (),
        anomalies=anomaly_ids(load.anomalies),
    )


def _decision(load: LoadState) -> Record | None:
    """The deciding release: the first rejection, else the first release."""
    rejected = next((r for r in load.releases if r.result == "rejected"), None)
    return rejected or (load.releases[0] if load.releases else None)


def _safe(kind: str | None, cycle: Record | None, decision: Record | None) -> bool:
    """A sterilizer load is safe once released with a passed cycle; a washer load once passed."""
    if cycle is None or cycle.result != "pass":
        return False
    if decision is not None and decision.result == "rejected":
        return False
    return kind == "wash" or decision is not None


def _load_status(load: LoadState, cycle: Record | None, decision: Record | None) -> str:
    if not load.loaded:
        return "unknown"
    if decision is not None:
        return "rejected" if decision.result == "rejected" else "released"
    if cycle is not None:
        return "passed" if cycle.result == "pass" else "failed"
    return "open"

"""The fold: merged events in (hlc, id) order -> set, load, machine and endoscope views.

Incremental and order-free. Each entity (set, load, machine, endoscope) files its records
sorted by id. A record later than everything folded is applied in place (the common case);
an earlier one, or a void, marks the entities it touches and they replay from a point before
it. A step only reads other entities "as of" its own id, so replaying an entity alone gives
what a fold of everything in (hlc, id) order gives: the same views, anomalies and ids
whatever the order and batches of arrival.
"""

from __future__ import annotations

import bisect
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ._anomalies import (
    CLOCK_SKEW,
    NO_BOWIE_DICK,
    RELEASE_WITHOUT_PASSED_CYCLE,
    SKEW_LIMIT_MS,
    Anomaly,
    EndoState,
    Resolution,
    SetState,
    make_anomaly,
    replay_endo,
    replay_set,
    step_endo,
    step_set,
)
from ._codec import decode_map
from ._decode import RecordReader, reads_bytes
from ._readiness import set_view
from ._views import (
    CHECKPOINT_EVERY,
    CYCLES,
    ENDO_EVENTS,
    LOADED,
    SET_EVENTS,
    STERI_LOADED,
    EndoscopeView,
    FoldError,
    LoadState,
    LoadView,
    MachineDayView,
    MachineState,
    Record,
    SetView,
    TestInfo,
    anomaly_ids,
    load_view,
    lot_key,
    record_id,
    record_of,
)

if TYPE_CHECKING:
    from ._readiness import Reference

__all__ = ["Fold", "FoldError", "collector_paused"]

VOIDED: Final = "event.voided"
RESOLVED: Final = "anomaly.resolved"
STERI_TEST: Final = "steri.test"
RELEASED: Final = "load.released"
LABEL: Final = "label.printed"
STOCKED: Final = "set.stocked"


class Fold:
    """The merged event log folded into views and anomalies; add events in any order.

    `reference` (the current reference snapshot) and `settings` (the cluster settings) are
    read when answering (expiry, set types); they may be replaced at any time. The reference
    also says which codes name one endoscope (serial, model-serial): their records are
    walked as one endoscope's, filed under its serial.
    """

    def __init__(
        self, reference: Reference | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        self._reference: Reference | None = None
        self._endo_alias: Mapping[str, str] = {}
        self.settings: Mapping[str, Any] = settings or {}
        self._records: dict[str, Record] = {}
        self._intern: dict[Any, Any] = {}
        self._reader = RecordReader(self._intern)
        self._minutes: dict[str, tuple[str, str, str, str]] = {}
        self._voids: dict[str, list[Record]] = {}
        self._voided: set[str] = set()
        self._sets: dict[str, SetState] = {}
        self._loads: dict[str, LoadState] = {}
        self._machines: dict[str, MachineState] = {}
        self._tests: dict[tuple[str, str], list[Record]] = {}
        self._bd: dict[tuple[str, str], list[Anomaly]] = {}
        self._endos: dict[str, EndoState] = {}
        self._patients: dict[str, list[Record]] = {}
        self._stock_lots: dict[str, list[Record]] = {}
        self._failed_bi: dict[str, list[Record]] = {}
        self._resolutions: dict[str, list[Record]] = {}
        self._skew: dict[str, Anomaly] = {}
        self._dirty_sets: dict[str, str] = {}
        self._dirty_loads: dict[str, str] = {}
        self._dirty_machines: dict[str, str] = {}
        self._dirty_endos: set[str] = set()
        self._dirty_days: set[tuple[str, str]] = set()
        self._anomaly_cache: list[Anomaly] | None = None
        self._max = ""
        self.reference = reference

    @property
    def reference(self) -> Reference | None:
        """The current reference snapshot (None before any import)."""
        return self._reference

    @reference.setter
    def reference(self, reference: Reference | None) -> None:
        self._reference = reference
        aliases = {} if reference is None else reference.endoscope_aliases()
        if aliases != self._endo_alias:
            self._endo_alias = aliases
            self._refile_endoscopes()

    def _refile_endoscopes(self) -> None:
        """File every endo record under its endoscope's code as the reference now names it."""
        records = [rec for endo in self._endos.values() for rec in endo.items]
        self._endos.clear()
        for rec in sorted(records, key=record_id):
            self._endo(self._endo_key(rec)).items.append(rec)
        for endo in self._endos.values():
            replay_endo(self, endo)
        self._anomaly_cache = None

    def _endo_key(self, rec: Record) -> str:
        code = rec.key or ""
        return self._endo_alias.get(code, code)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._records

    # -- adding events --------------------------------------------------------------

    def add(self, event: Mapping[str, Any]) -> bool:
        """Fold one validated event (local or from a peer, in any order); False if known."""
        if event["id"] in self._records:
            return False
        rec = self._record(event)
        self._records[rec.id] = rec
        self._fold_one(rec)
        return True

    def add_many(self, events: Iterable[Mapping[str, Any]]) -> list[Record]:
        """Fold a batch of events; the same result as adding them one by one. Returns the
        records of the new ones, in id order."""
        with collector_paused():
            return self._add_batch(events, stored=False)

    def add_encoded(self, values: Iterable[bytes | bytearray | memoryview]) -> list[Record]:
        """Fold a batch of stored events (CBOR maps, as the events documents keep them); the
        same result as decoding and adding them. Returns the records of the new ones, in id
        order."""
        with collector_paused():
            return self._add_batch(values, stored=True)

    def _add_batch(self, items: Iterable[Any], stored: bool) -> list[Record]:
        """Fold events, or stored values (`stored`) read into records when compiled, else
        decoded whole first.

        Slim records first, in the order the items come (each is read once, while it is in
        the cache), each kept by id as soon as it is made (its place in the big dict is still
        in the cache too), then only the records are sorted: a month's refold spent a third
        of its time reading decoded events again in id order.
        """
        known = self._records
        reader = self._reader
        direct = stored and reads_bytes()
        fresh: list[Record] = []
        try:
            for item in items:
                rec: Record | None = None
                event: Any = item
                if stored:
                    blob = item if isinstance(item, bytes) else bytes(item)
                    rec = reader.read(blob) if direct else None
                    if rec is None:  # not of the common shape, or interpreted
                        event = decode_map(blob)
                if rec is None:
                    if event["id"] in known:  # known, or twice in the batch
                        continue
                    rec = self._record(event)
                elif rec.id in known:
                    continue
                elif not self._minute_day(reader.at, reader.hlc):
                    self._check_skew(reader.at, reader.hlc, rec)
                known[rec.id] = rec
                fresh.append(rec)
        except BaseException:
            self._forget(fresh)
            raise
        self._fold_fresh(fresh)
        return fresh

    def _forget(self, fresh: list[Record]) -> None:
        """Take back the records of a batch that cannot be read: it changes nothing."""
        for rec in fresh:
            del self._records[rec.id]
            if self._skew.pop(rec.id, None) is not None:
                self._anomaly_cache = None

    def _fold_fresh(self, fresh: list[Record]) -> None:
        """Fold new records (kept by id already): those later than everything in place,
        after replaying what the earlier ones change. (A void may come before its target in
        id order: marking the target then names entities not filed yet, which replaying
        makes.)"""
        fresh.sort(key=record_id)
        late = bisect.bisect_right(fresh, self._max, key=record_id)
        for rec in fresh[:late]:
            self._keep(rec)
            self._index(rec)
            self._mark(rec)
        self._flush()
        for rec in fresh[late:]:
            self._fold_one(rec)

    def _fold_one(self, rec: Record) -> None:
        """Fold a new record (kept by id already): in place when later than everything, else
        replay."""
        self._keep(rec)
        if rec.id > self._max and rec.type != VOIDED and rec.id not in self._voids:
            self._max = rec.id
            self._apply(rec)
        else:
            self._max = max(self._max, rec.id)
            self._index(rec)
            self._mark(rec)
            self._flush()

    def _record(self, event: Mapping[str, Any]) -> Record:
        """The slim record of an event, its clock checked against its wall time."""
        data = event if isinstance(event, dict) else dict(event)
        at: str = data["at"]
        hlc: str = data["hlc"]
        day = self._minute_day(at, hlc)
        rec = record_of(data, self._intern, day)
        if not day:
            self._check_skew(at, hlc, rec)
        return rec

    def _minute_day(self, at: str, hlc: str) -> str:
        """The local day of `at` when its minute is known and the clock `hlc` within the skew
        limit of it, else "". Each minute of `at` (YYYY-MM-DDTHH:MM, as nodes write it) gives
        its local day and the HLCs within the skew limit of it (for its offset), worked out
        once per minute: most events need no date parsed."""
        minute = self._minutes.get(at[:16])
        if minute is not None and minute[1] <= hlc <= minute[2] and at.endswith(minute[3]):
            return minute[0]
        return ""

    def _keep(self, rec: Record) -> None:
        """File a new record (kept by id already) in the lists kept across entities."""
        kind = rec.type
        if kind == VOIDED and rec.key is not None:
            self._voids.setdefault(rec.key, []).append(rec)
        elif kind == RESOLVED and rec.key is not None:
            _insort(self._resolutions.setdefault(rec.key, []), rec)
            self._anomaly_cache = None
        elif kind in ("set.used", "endo.used"):
            patient = rec.get("patient")
            if patient is not None:
                _insort(self._patients.setdefault(patient, []), rec)
        elif kind == STOCKED:
            _insort(self._stock_lots.setdefault(lot_key(str(rec.get("lot"))), []), rec)
        elif kind == STERI_TEST and rec.key == "bi" and rec.result == "fail" and rec.get("lot"):
            _insort(self._failed_bi.setdefault(lot_key(str(rec.get("lot"))), []), rec)

    def _check_skew(self, at: str, hlc: str, rec: Record) -> None:
        """Raise clock_skew when the wall clock `at` is far from the HLC's physical time."""
        try:
            wall = datetime.fromisoformat(at).timestamp() * 1000
            gap = wall - int(hlc[:13])
        except ValueError:
            return
        if len(at) == 29 and at[19] == ".":
            start = int(wall - int(at[17:19]) * 1000 - int(at[20:23]))
            low, high = start + 60_000 - SKEW_LIMIT_MS, start + SKEW_LIMIT_MS
            self._minutes[at[:16]] = (rec.day, f"{low:013d}", f"{high:013d}", at[23:])
        if abs(gap) > SKEW_LIMIT_MS:
            minutes = str(round(gap / 60000))
            found = make_anomaly(CLOCK_SKEW, [rec.id], rec.day, node=rec.node, minutes=minutes)
            self._skew[rec.id] = found
            self._anomaly_cache = None

    def _index(self, rec: Record) -> None:
        """File a record under every entity it concerns (no state is computed)."""
        kind = rec.type
        if kind in SET_EVENTS:
            _insort(self._set(rec.key or "").items, rec)
            if kind == LABEL and rec.load is not None:
                _insort(self._load(rec.load).labels_all, rec)
        elif kind in LOADED:
            for code in rec.sets:
                _insort(self._set(code).items, rec)
            if rec.load is not None:
                _insort(self._load(rec.load).loaded_all, rec)
            if rec.machine is not None:
                machine = self._machine(rec.machine)
                _insort(machine.items, rec)
                _insort(machine.loads_by_day.setdefault(rec.day, []), rec)
        elif kind in CYCLES:
            if rec.machine is not None:
                _insort(self._machine(rec.machine).items, rec)
        elif kind == RELEASED:
            if rec.load is not None:
                _insort(self._load(rec.load).releases_all, rec)
        elif kind == STERI_TEST:
            if rec.machine is not None:
                self._machine(rec.machine)
                _insort(self._tests.setdefault((rec.machine, rec.day), []), rec)
        elif kind in ENDO_EVENTS:
            _insort(self._endo(self._endo_key(rec)).items, rec)

    # -- the fast path: a record later than everything folded -------------------------

    def _apply(self, rec: Record) -> None:
        kind = rec.type
        if kind in SET_EVENTS:
            st = self._sets.get(rec.key or "") or self._set(rec.key or "")
            st.items.append(rec)
            step_set(self, st, rec)
            if kind == LABEL and rec.load is not None:
                load = self._load(rec.load)
                load.labels_all.append(rec)
                load.labels.append(rec)
            if kind not in ("set.received", "set.inspected"):
                self._anomaly_cache = None
            return
        self._index(rec)
        if kind in LOADED:
            self._apply_loaded(rec)
        elif kind in CYCLES:
            if rec.machine is not None:
                found = self._machines[rec.machine].step(rec)
                if found is not None:
                    load = self._load(found)
                    load.cycles.append(rec)
                    self._release_anomalies(load)
        elif kind == RELEASED:
            if rec.load is not None:
                load = self._loads[rec.load]
                load.releases.append(rec)
                self._release_anomalies(load)
        elif kind == STERI_TEST:
            if rec.machine is not None:
                self._bowie_dick(rec.machine, rec.day)
        elif kind in ENDO_EVENTS:
            step_endo(self._endos[self._endo_key(rec)], rec)
            if kind == "endo.used":
                self._anomaly_cache = None

    def _apply_loaded(self, rec: Record) -> None:
        if rec.machine is not None:
            self._machines[rec.machine].step(rec)
        if rec.load is not None:
            load = self._loads[rec.load]
            load.loaded.append(rec)
            load.contents = _contents(load.loaded)
        sets = self._sets
        for code in rec.sets:
            step_set(self, sets[code], rec)
        if rec.type == STERI_LOADED and rec.machine is not None:
            self._bowie_dick(rec.machine, rec.day)
        self._anomaly_cache = None

    # -- the slow path: replays ------------------------------------------------------

    def _mark(self, rec: Record) -> None:
        """Mark what a late (or voided, or restored) record changes."""
        kind = rec.type
        self._anomaly_cache = None
        if kind == VOIDED:
            if rec.key is not None:
                self._refresh_void(rec.key)
        elif kind in SET_EVENTS:
            self._dirty(self._dirty_sets, rec.key or "", rec.id)
            if kind == LABEL and rec.load is not None:
                self._dirty(self._dirty_loads, rec.load, rec.id)
        elif kind in LOADED:
            for code in rec.sets:
                self._dirty(self._dirty_sets, code, rec.id)
            if rec.load is not None:
                self._dirty(self._dirty_loads, rec.load, rec.id)
            if rec.machine is not None:
                self._dirty(self._dirty_machines, rec.machine, rec.id)
                self._dirty_days.add((rec.machine, rec.day))
        elif kind in CYCLES:
            if rec.machine is not None:
                self._dirty(self._dirty_machines, rec.machine, rec.id)
        elif kind == RELEASED:
            if rec.load is not None:
                self._dirty(self._dirty_loads, rec.load, rec.id)
        elif kind == STERI_TEST:
            if rec.machine is not None:
                self._dirty_days.add((rec.machine, rec.day))
        elif kind in ENDO_EVENTS:
            self._dirty_endos.add(self._endo_key(rec))

    def _refresh_void(self, target: str, depth: int = 0) -> None:
        """Recompute whether `target` is voided; on a change, mark what it touched."""
        voided = any(v.id not in self._voided for v in self._voids.get(target, ()))
        if voided == (target in self._voided) or depth > 64:
            return
        if voided:
            self._voided.add(target)
        else:
            self._voided.discard(target)
        rec = self._records.get(target)
        if rec is None:
            return
        if rec.type == VOIDED and rec.key is not None:
            self._refresh_void(rec.key, depth + 1)
        else:
            self._mark(rec)

    @staticmethod
    def _dirty(marks: dict[str, str], key: str, since: str) -> None:
        known = marks.get(key)
        if known is None or since < known:
            marks[key] = since

    def _flush(self) -> None:
        """Replay every marked entity: machines, then loads, then sets and endoscopes."""
        while self._dirty_machines:
            self._replay_machine(*self._dirty_machines.popitem())
        while self._dirty_days:
            self._bowie_dick(*self._dirty_days.pop())
        while self._dirty_loads:
            self._refresh_load(*self._dirty_loads.popitem())
        while self._dirty_sets:
            code, since = self._dirty_sets.popitem()
            replay_set(self, self._set(code), since)
        while self._dirty_endos:
            replay_endo(self, self._endo(self._dirty_endos.pop()))

    def _replay_machine(self, name: str, since: str) -> None:
        """Replay a machine's attribution of cycles from its last checkpoint before `since`."""
        machine = self._machine(name)
        while machine.checkpoints and machine.checkpoints[-1][0] >= since:
            machine.checkpoints.pop()
        start, snapshot = machine.checkpoints[-1] if machine.checkpoints else ("", ((), ()))
        before = {cid: load for cid, load in machine.attr.items() if cid > start}
        for cid in before:
            machine.forget(cid)
        machine.restart(start, snapshot, len(machine.checkpoints) * CHECKPOINT_EVERY)
        for rec in machine.items[bisect.bisect_right(machine.items, start, key=record_id) :]:
            if rec.id not in self._voided:
                machine.step(rec)
        for cid in sorted(before.keys() | {c for c in machine.attr if c > start}):
            old, new = before.get(cid), machine.attr.get(cid)
            if old == new:
                continue
            rec = self._records[cid]
            if old is not None and rec in self._load(old).cycles:
                self._load(old).cycles.remove(rec)
                self._dirty(self._dirty_loads, old, cid)
            if new is not None:
                _insort(self._load(new).cycles, rec)
                self._dirty(self._dirty_loads, new, cid)

    def _refresh_load(self, no: str, since: str) -> None:
        """Rebuild a load's lists; sets that stepped after `since` replay from there."""
        load = self._load(no)
        before = load.contents
        voided = self._voided
        load.loaded = [r for r in load.loaded_all if r.id not in voided]
        load.releases = [r for r in load.releases_all if r.id not in voided]
        load.labels = [r for r in load.labels_all if r.id not in voided]
        load.contents = _contents(load.loaded)
        self._release_anomalies(load)
        for code in {*before, *load.contents}:
            st = self._sets.get(code)
            if st is not None and st.last >= since:
                self._dirty(self._dirty_sets, code, since)

    def _release_anomalies(self, load: LoadState) -> None:
        """A release recorded while the load's last cycle had failed or was missing."""
        found: list[Anomaly] = []
        for rec in load.releases:
            if rec.result != "released":
                continue
            cycle, _, _ = load.state_between("", rec.id)
            if cycle is None or cycle.result != "pass":
                why = "missing" if cycle is None else "failed"
                events = [rec.id, None if cycle is None else cycle.id]
                found.append(
                    make_anomaly(RELEASE_WITHOUT_PASSED_CYCLE, events, rec.day, why, load=load.no)
                )
        if found or load.anomalies:
            load.anomalies = found
            self._anomaly_cache = None

    def _bowie_dick(self, machine: str, day: str) -> None:
        """The Bowie-Dick anomalies of one sterilizer on one local day."""
        tests = [
            t
            for t in self._tests.get((machine, day), ())
            if t.key == "bowie_dick" and t.id not in self._voided
        ]
        found: list[Anomaly] = []
        for rec in self._machine(machine).loads_by_day.get(day, ()):
            if rec.type != STERI_LOADED or rec.id in self._voided:
                continue
            last = None
            for test in tests:
                if test.id > rec.id:
                    break
                last = test
            if last is None or last.result != "pass":
                events = [rec.id, None if last is None else last.id]
                found.append(
                    make_anomaly(NO_BOWIE_DICK, events, day, machine=machine, load=rec.load or "")
                )
        if found or (machine, day) in self._bd:
            self._bd[(machine, day)] = found
            self._anomaly_cache = None

    # -- entities ------------------------------------------------------------------

    def _set(self, code: str) -> SetState:
        st = self._sets.get(code)
        if st is None:
            st = self._sets[code] = SetState(code)
        return st

    def _load(self, no: str) -> LoadState:
        load = self._loads.get(no)
        if load is None:
            load = self._loads[no] = LoadState(no)
        return load

    def _machine(self, name: str) -> MachineState:
        machine = self._machines.get(name)
        if machine is None:
            machine = self._machines[name] = MachineState(name)
        return machine

    def _endo(self, code: str) -> EndoState:
        endo = self._endos.get(code)
        if endo is None:
            endo = self._endos[code] = EndoState(code)
        return endo

    @property
    def voided(self) -> set[str]:
        """Ids of the events an effective event.voided cancels (read only)."""
        return self._voided

    def load_state(self, no: str | None) -> LoadState | None:
        """The state of a load (for the walks, the rules and recall)."""
        return None if no is None else self._loads.get(no)

    def set_state(self, code: str) -> SetState | None:
        """The state of a set (for the rules, readiness and recall)."""
        return self._sets.get(code)

    def endo_state(self, code: str) -> EndoState | None:
        """The state of an endoscope, named by any of its codes."""
        return self._endos.get(self._endo_alias.get(code, code))

    def machine_loads(self, machine: str) -> list[Record]:
        """The effective loaded records of a machine, in (hlc, id) order."""
        state = self._machines.get(machine)
        items = () if state is None else state.items
        return [r for r in items if r.type in LOADED and r.id not in self._voided]

    def machines(self, kind: str) -> list[str]:
        """The machines that had a load or a cycle of `kind` ("wash", "steri"), by name."""
        return sorted(name for name, st in self._machines.items() if kind in st.kinds)

    def last_cycle(self, machine: str) -> str | None:
        """The id of the machine's latest cycle record attributed so far (None: none)."""
        state = self._machines.get(machine)
        return max(state.attr, default=None) if state is not None else None

    def open_loads(self, machine: str, kind: str) -> list[str]:
        """The machine's loads of `kind` still waiting for their cycle, oldest first."""
        state = self._machines.get(machine)
        return [] if state is None else [no for no in state.open[kind] if no is not None]

    def machine_test_records(self, machine: str) -> list[Record]:
        """The effective steri.test records of a machine, in (hlc, id) order."""
        found = [
            r
            for (name, _), tests in self._tests.items()
            if name == machine
            for r in tests
            if r.id not in self._voided
        ]
        return sorted(found, key=record_id)

    def patient_uses(self, patient: str) -> list[Record]:
        """The effective set.used and endo.used records of a patient."""
        return [r for r in self._patients.get(patient, ()) if r.id not in self._voided]

    def stocked(self, lot: str) -> list[Record]:
        """The effective set.stocked records of a platform lot (stock from before the outage;
        the lot compared by its letters and digits, as recall does)."""
        return [r for r in self._stock_lots.get(lot_key(lot), ()) if r.id not in self._voided]

    def failed_indicator(self, lot: str | None) -> Record | None:
        """The first effective failed biological indicator naming a load or platform lot."""
        if not lot:
            return None
        found = self._failed_bi.get(lot_key(lot), ())
        return next((r for r in found if r.id not in self._voided), None)

    def record(self, event_id: str) -> Record | None:
        """The slim record kept of an event."""
        return self._records.get(event_id)

    # -- views ---------------------------------------------------------------------

    def set_codes(self) -> list[str]:
        """Every set instance named by an event, sorted."""
        return sorted(self._sets)

    def load_numbers(self) -> list[str]:
        """Every load number named by an event, sorted."""
        return sorted(self._loads)

    def endoscope_codes(self) -> list[str]:
        """Every endoscope named by an event, sorted."""
        return sorted(self._endos)

    def machine_days(self) -> list[tuple[str, str]]:
        """Every (machine, local day) with a load or a test, sorted."""
        days = {key for key, tests in self._tests.items() if tests}
        for name, machine in self._machines.items():
            days.update((name, r.day) for r in machine.items if r.type in LOADED)
        return sorted(days)

    def set_status(self, code: str, today: str | None = None, *, events: bool = True) -> SetView:
        """Where a set is and its status; with `today` (YYYY-MM-DD), whether it expired.

        `events=False`: without the set's event ids (cheaper, for views of every set).
        """
        return set_view(self, code, today, events=events)

    def last_event(self, code: str) -> str | None:
        """The id of the set's latest own event that is not voided."""
        st = self._sets.get(code)
        if st is None:
            return None
        return next((r.id for r in reversed(st.items) if r.id not in self._voided), None)

    def load(self, no: str, *, labels: bool = True) -> LoadView | None:
        """A load's contents, cycle, release and labels; None for an unknown number.

        `labels=False`: without its labels (cheaper, for lists of loads).
        """
        load = self._loads.get(no)
        return None if load is None else load_view(load, labels=labels)

    def endoscope(self, code: str) -> EndoscopeView:
        """An endoscope's reprocessing state, named by any of its codes (status unknown when
        no event names it)."""
        code = self._endo_alias.get(code, code)
        endo = self._endos.get(code)
        return (endo or EndoState(code)).view(self._voided)

    def machine_tests(self, machine: str, day: str) -> MachineDayView:
        """One machine's tests and loads on one local day."""
        tests = [t for t in self._tests.get((machine, day), ()) if t.id not in self._voided]
        bowie = [t for t in tests if t.key == "bowie_dick"]
        state = self._machines.get(machine)
        of_day = () if state is None else state.loads_by_day.get(day, ())
        loads = [r.load or "" for r in of_day if r.id not in self._voided]
        return MachineDayView(
            machine=machine,
            day=day,
            tests=tuple(TestInfo(t.id, t.key or "", t.result, t.get("lot")) for t in tests),
            bowie_dick=bowie[-1].result if bowie else None,
            loads=tuple(loads),
            anomalies=anomaly_ids(self._bd.get((machine, day), [])),
        )

    def anomalies(self, open_only: bool = False) -> list[Anomaly]:
        """Every anomaly in (trigger event, id) order with its resolution; or the open ones."""
        if self._anomaly_cache is None:
            self._anomaly_cache = self._collect_anomalies()
        if open_only:
            return [a for a in self._anomaly_cache if a.resolution is None]
        return list(self._anomaly_cache)

    def anomaly(self, anomaly_id: str) -> Anomaly | None:
        """One anomaly by id."""
        return next((a for a in self.anomalies() if a.id == anomaly_id), None)

    def _collect_anomalies(self) -> list[Anomaly]:
        groups: list[Iterable[Anomaly]] = [self._skew.values(), *self._bd.values()]
        groups.extend(st.anomalies for st in self._sets.values())
        groups.extend(load.anomalies for load in self._loads.values())
        groups.extend(endo.anomalies for endo in self._endos.values())
        found = {item.id: item for group in groups for item in group}
        out: list[Anomaly] = []
        for item in found.values():
            decisions: Sequence[Record] = self._resolutions.get(item.id, ())
            if item.former_id is not None and item.former_id in self._resolutions:
                decisions = sorted([*decisions, *self._resolutions[item.former_id]], key=record_id)
            last = next((r for r in reversed(decisions) if r.id not in self._voided), None)
            if last is None:
                out.append(item)
                continue
            resolution = Resolution(
                last.id, last.result or "", last.get("comment"), last.get("user"), last.day
            )
            out.append(replace(item, resolution=resolution))
        out.sort(key=lambda a: (a.trigger, a.id))
        return out

    def snapshot(self, today: str | None = None) -> dict[str, Any]:
        """Every view and anomaly as JSON-ready data (for tests and diagnostics)."""
        return {
            "sets": {c: self.set_status(c, today).as_dict() for c in self.set_codes()},
            "loads": {n: v.as_dict() for n in self.load_numbers() if (v := self.load(n))},
            "endoscopes": {c: self.endoscope(c).as_dict() for c in self.endoscope_codes()},
            "machines": [self.machine_tests(m, d).as_dict() for m, d in self.machine_days()],
            "anomalies": [a.as_dict() for a in self.anomalies()],
        }


# -- helpers -----------------------------------------------------------------------------


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is folded (or a node's whole start-up).

    The fold makes no reference cycles, but each batch allocates hundreds of thousands of
    objects: the collector would scan the whole (large, long-lived) heap again and again
    for nothing (a fifth of a month's refold). Reference counting still frees everything.
    Nested, the outermost one decides.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _insort(items: list[Record], rec: Record) -> None:
    if not items or items[-1].id < rec.id:
        items.append(rec)
    else:
        bisect.insort(items, rec, key=record_id)


def _contents(loaded: list[Record]) -> tuple[str, ...]:
    if len(loaded) == 1:
        return loaded[0].sets
    seen: dict[str, None] = {}
    for rec in loaded:
        seen.update(dict.fromkeys(rec.sets))
    return tuple(seen)

"""Builders of realistic stamped events for the fold tests."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import crdt_model as cm

# The fold's public names (crdt_model/__init__.py re-exports them); tests import them from here.
from crdt_model._anomalies import RULES, Anomaly, anomaly_id
from crdt_model._feed import event_json_schemas, feed_bytes, feed_csv, feed_line
from crdt_model._fold import Fold, FoldError
from crdt_model._readiness import (
    Reference,
    check_label,
    check_release,
    check_stock,
    check_use,
    given_sets,
    label_data,
    readiness,
    readiness_from,
    warnings_for,
)
from crdt_model._recall import (
    recall_endoscope,
    recall_lot,
    recall_machine,
    recall_patient,
    recall_set,
)

TZ = timezone(timedelta(hours=1))
DAY = "2026-11-28"
START_MS = int(datetime(2026, 11, 28, 6, 0, tzinfo=TZ).timestamp() * 1000)

_DEFAULTS: dict[str, dict[str, Any]] = {
    "set.received": {},
    "wash.loaded": {"machine": "LAV-1", "program": "INSTRU 93°C 3MIN NORMAL"},
    "wash.cycle": {"machine": "LAV-1", "result": "pass"},
    "set.inspected": {"result": "ok", "packaging": "ONE STEP 121 X121", "packer": "mdupont"},
    "steri.loaded": {"machine": "AUTO-2", "program": "NORMAL 134°"},
    "steri.cycle": {"machine": "AUTO-2", "result": "pass"},
    "steri.test": {"machine": "AUTO-2", "kind": "bowie_dick", "result": "pass"},
    "load.released": {"decision": "released"},
    "set.dispatched": {"to": "Bloc J"},
    "set.used": {"patient": "000501492", "room": "J Salle 3"},
}


class Stamper:
    """Stamps submissions as nodes do: each node has its HLC; the wall clock moves forward."""

    def __init__(self, start_ms: int = START_MS, step_ms: int = 60_000) -> None:
        self.wall = start_ms
        self.step_ms = step_ms
        self.clocks: dict[str, cm.HybridClock] = {}
        self.loads = itertools.count(1)
        self.cycles = itertools.count(100)
        self.events: list[dict[str, Any]] = []

    def make(
        self, event_type: str, node: str = "A", *, skew_ms: int = 0, **fields: Any
    ) -> dict[str, Any]:
        """A stored event of `event_type` recorded now on `node`; the wall clock then moves."""
        body = {"type": event_type, **_DEFAULTS.get(event_type, {}), **fields}
        if event_type in ("wash.cycle", "steri.cycle") and "cycle_no" not in body:
            body["cycle_no"] = next(self.cycles)
        submission = cm.validate_submission(body)
        clock = self.clocks.setdefault(node, cm.HybridClock())
        ts = clock.now(self.wall)
        at = datetime.fromtimestamp((self.wall + skew_ms) / 1000, TZ)
        event = cm.validate_event(
            {
                **submission,
                "id": cm.make_event_id(ts, node),
                "hlc": str(ts),
                "at": at.isoformat(timespec="milliseconds"),
                "node": node,
                "user": "mdupont",
                "zone": "sterile",
            }
        )
        self.wall += self.step_ms
        self.events.append(event)
        return event

    def load_no(self, node: str = "A") -> str:
        """A fresh load number of a node."""
        day = datetime.fromtimestamp(self.wall / 1000, TZ).strftime("%y%m%d")
        return f"{node}-{day}-{next(self.loads):03d}"

    def day(self) -> str:
        """The local date of the wall clock."""
        return datetime.fromtimestamp(self.wall / 1000, TZ).date().isoformat()

    def advance(self, ms: int) -> None:
        """Move the wall clock."""
        self.wall += ms


def process(
    s: Stamper,
    sets: list[str],
    node: str = "A",
    *,
    use: bool = True,
    steri_result: str = "pass",
    decision: str = "released",
    expires_on: str = "2027-05-27",
    patient: str = "000501492",
) -> dict[str, str]:
    """The whole normal loop for some sets; returns the load numbers and key event ids."""
    ids: dict[str, str] = {}
    for code in sets:
        s.make("set.received", node, set=code)
    wash = s.load_no(node)
    s.make("wash.loaded", node, sets=sets, load=wash)
    s.make("wash.cycle", node)
    for code in sets:
        s.make("set.inspected", node, set=code)
    steri = s.load_no(node)
    ids["steri.loaded"] = s.make("steri.loaded", node, sets=sets, load=steri)["id"]
    ids["steri.cycle"] = s.make("steri.cycle", node, result=steri_result)["id"]
    ids["load.released"] = s.make("load.released", node, load=steri, decision=decision)["id"]
    if decision == "released" and steri_result == "pass":
        for code in sets:
            s.make("label.printed", node, set=code, load=steri, lot=steri, expires_on=expires_on)
            s.make("set.dispatched", node, set=code)
            if use:
                s.make("set.used", node, set=code, patient=patient)
    ids["wash"], ids["steri"] = wash, steri
    return ids


def random_history(rng: random.Random, n_sets: int = 6, rounds: int = 3) -> list[dict[str, Any]]:
    """A realistic history on three nodes with failures, voids, double loads, skew, endoscopes."""
    s = Stamper(step_ms=rng.choice((1_000, 30_000, 60_000)))
    sets = [f"JDIGGRBA#{100 + n}" for n in range(n_sets)]
    nodes = ("A", "B", "C")
    for code in sets:  # stock sterilized before the outage, some of it used
        if rng.random() < 0.3:
            expires_on = rng.choice(("2027-03-13", "2026-11-27"))
            s.make("set.stocked", rng.choice(nodes), set=code, lot="L1", expires_on=expires_on)
            if rng.random() < 0.5:
                s.make("set.used", rng.choice(nodes), set=code, patient=f"P{rng.randint(1, 9)}")
    for _ in range(rounds):
        if rng.random() < 0.8:
            bowie_dick(s, rng.choice(nodes), result=rng.choice(("pass", "pass", "fail")))
        batch = rng.sample(sets, rng.randint(1, min(4, n_sets)))
        node = rng.choice(nodes)
        _random_loop(s, rng, batch, node)
        if rng.random() < 0.3:  # a concurrent double load from another node
            other = rng.choice([n for n in nodes if n != node])
            code = rng.choice(batch)
            s.make("steri.loaded", other, sets=[code], load=s.load_no(other), machine="AUTO-3")
            s.make("steri.cycle", other, machine="AUTO-3", result="pass")
        _random_endoscope(s, rng)
        if rng.random() < 0.2:  # a biological indicator read later, failed
            loads = [e["load"] for e in s.events if e["type"] == "steri.loaded"]
            lot = rng.choice(loads)
            s.make("steri.test", "C", machine="AUTO-2", kind="bi", result="fail", lot=lot)
        s.advance(rng.choice((3_600_000, 86_400_000)))
    events = list(s.events)
    targets = [e for e in events if e["type"] not in ("event.voided", "anomaly.resolved")]
    voids = [
        s.make("event.voided", rng.choice(nodes), target=target["id"], reason="erreur")
        for target in rng.sample(targets, min(len(targets), rng.randint(0, 3)))
    ]
    if voids and rng.random() < 0.3:  # a void voided: its target counts again
        s.make("event.voided", rng.choice(nodes), target=rng.choice(voids)["id"], reason="non")
    events = list(s.events)
    if rng.random() < 0.3 and targets:  # from a node whose clock is behind: before its target
        behind = Stamper(start_ms=int(targets[0]["hlc"][:13]) - 3_600_000)
        target = rng.choice(targets)
        events.append(behind.make("event.voided", "D", target=target["id"], reason="retard"))
    if rng.random() < 0.2 and len(events) > 2:
        events.append(s.make("note", "A", text="horloge", skew_ms=rng.choice((-1, 1)) * 600_000))
    first = fold_of(events)
    for found in first.anomalies()[: rng.randint(0, 2)]:
        events.append(s.make("anomaly.resolved", "A", anomaly=found.id, decision="accepted"))
    return events


def _random_loop(s: Stamper, rng: random.Random, sets: list[str], node: str) -> None:
    for code in sets:
        if rng.random() < 0.95:
            s.make("set.received", node, set=code)
    wash = s.load_no(node)
    s.make("wash.loaded", node, sets=sets, load=wash)
    s.make("wash.cycle", node, result="pass" if rng.random() < 0.9 else "fail")
    for code in sets:
        s.make("set.inspected", node, set=code, result="ok" if rng.random() < 0.9 else "nok")
    steri = s.load_no(node)
    s.make("steri.loaded", node, sets=sets, load=steri)
    if rng.random() < 0.9:
        explicit = {"load": steri} if rng.random() < 0.3 else {}
        s.make("steri.cycle", node, result="pass" if rng.random() < 0.85 else "fail", **explicit)
    if rng.random() < 0.9:
        decision = "released" if rng.random() < 0.85 else "rejected"
        s.make("load.released", rng.choice(("A", "B", "C")), load=steri, decision=decision)
    for code in sets:
        if rng.random() < 0.9:
            s.make(
                "label.printed",
                node,
                set=code,
                load=steri,
                lot=steri,
                expires_on=rng.choice(("2027-05-27", "2026-11-29")),
            )
        if rng.random() < 0.8:
            s.make("set.dispatched", node, set=code)
            if rng.random() < 0.8:
                s.make(
                    "set.used", rng.choice(("A", "B")), set=code, patient=f"P{rng.randint(1, 9)}"
                )


def _random_endoscope(s: Stamper, rng: random.Random) -> None:
    code = rng.choice(("GIF-H190-2101234", "CF-HQ190L-2200001"))
    if rng.random() < 0.7:
        s.make("endo.leak_test", "C", endoscope=code, result="pass")
        s.make("endo.cleaned", "C", endoscope=code)
        s.make(
            "endo.aer_cycle",
            "C",
            endoscope=code,
            machine="LDE-1",
            cycle_no=rng.randint(1, 99),
            result=rng.choice(("pass", "pass", "fail")),
        )
        s.make("endo.stored", "C", endoscope=code)
    s.make("endo.used", "B", endoscope=code, patient=f"P{rng.randint(1, 9)}")


def bowie_dick(s: Stamper, node: str = "A", machine: str = "AUTO-2", result: str = "pass") -> str:
    """A Bowie-Dick test of a sterilizer; its event id."""
    return str(s.make("steri.test", node, machine=machine, kind="bowie_dick", result=result)["id"])


def fold_of(events: list[dict[str, Any]], **kwargs: Any) -> Fold:
    """A fold of the events added one by one in the given order."""
    fold = Fold(**kwargs)
    for event in events:
        fold.add(event)
    return fold


def rules(fold: Fold) -> list[str]:
    """The rules of the fold's anomalies, in order."""
    return [a.rule for a in fold.anomalies()]


def small_reference(**changes: list[dict[str, Any]]) -> Reference:
    """A reference with two set types, a profile and a one-day planning (`changes`: tables
    replaced or, under `more_<table>`, rows added)."""
    tables = small_tables()
    for name, rows in changes.items():
        if name.startswith("more_"):
            tables[name.removeprefix("more_")] = [*tables[name.removeprefix("more_")], *rows]
        else:
            tables[name] = rows
    return Reference(tables, export_id="TEST-1")


def small_tables() -> dict[str, list[dict[str, Any]]]:
    """The tables of small_reference()."""
    return {
        "set_types": [
            {
                "code": "JDIGGRBA",
                "name": "JOL-GRANDE BASE DIGESTIVE",
                "packaging": "ONE STEP 121 X121",
                "shelf_life_days": 180,
            },
            {"code": "JDIGELAP", "name": "JOL-ELAP", "packaging": "", "shelf_life_days": 30},
        ],
        "set_instances": [
            {"instance": f"JDIGGRBA#{n}", "type_code": "JDIGGRBA", "location": "Armoire U"}
            for n in (111, 112, 113)
        ]
        + [{"instance": "JDIGELAP01", "type_code": "JDIGELAP", "location": ""}],
        "profiles": [
            {
                "profile_code": "PDIG001",
                "procedure": "Colectomie",
                "surgeon": "",
                "item_kind": "set",
                "item_code": "JDIGGRBA",
                "qty": 1,
            },
            {
                "profile_code": "PDIG001",
                "procedure": "Colectomie",
                "surgeon": "",
                "item_kind": "instrument",
                "item_code": "BB084R",
                "qty": 1,
            },
            {
                "profile_code": "PDIG002",
                "procedure": "Cholécystectomie",
                "surgeon": "",
                "item_kind": "set",
                "item_code": "JDIGELAP",
                "qty": 1,
            },
        ],
        "or_planning": [
            {
                "date": "2026-11-30",
                "room": "J Salle 1",
                "start": "08:00",
                "patient_code": "000000001",
                "procedure": "Colectomie",
                "surgeon": "Dr X",
                "profile_code": "PDIG001",
            },
            {
                "date": "2026-11-30",
                "room": "J Salle 2",
                "start": "07:30",
                "patient_code": "000000002",
                "procedure": "Colectomie",
                "surgeon": "Dr Y",
                "profile_code": "PDIG001",
            },
            {
                "date": "2026-11-30",
                "room": "J Salle 1",
                "start": "11:00",
                "patient_code": "000000003",
                "procedure": "Colectomie",
                "surgeon": "Dr X",
                "profile_code": "PDIG001",
            },
            {
                "date": "2026-11-30",
                "room": "J Salle 1",
                "start": "14:00",
                "patient_code": "000000004",
                "procedure": "Cholécystectomie",
                "surgeon": "Dr X",
                "profile_code": "PDIG002",
            },
            {
                "date": "2026-11-30",
                "room": "J Salle 2",
                "start": "15:00",
                "patient_code": "000000005",
                "procedure": "Autre",
                "surgeon": "Dr Y",
                "profile_code": "",
            },
        ],
        "endoscopes": [
            {
                "serial": "2101234",
                "model": "GIF-H190",
                "type": "Gastroscope",
                "state": "Disponible",
                "storage": "",
                "last_reprocessed_at": None,
            },
            {
                "serial": "2101235",
                "model": "GIF-H190",
                "type": "Gastroscope",
                "state": "En réparation",
                "storage": "",
                "last_reprocessed_at": None,
            },
        ],
        "endo_planning": [
            {
                "date": "2026-11-30",
                "room": "J Endoscopie 1",
                "start": "08:00",
                "patient_code": "000000006",
                "procedure": "Gastroscopie",
                "endoscope_type": "Gastroscope",
            },
            {
                "date": "2026-11-30",
                "room": "J Endoscopie 1",
                "start": "08:30",
                "patient_code": "000000007",
                "procedure": "Gastroscopie",
                "endoscope_type": "Gastroscope",
            },
            {
                "date": "2026-11-30",
                "room": "J Endoscopie 1",
                "start": "09:30",
                "patient_code": "000000008",
                "procedure": "Gastroscopie",
                "endoscope_type": "Gastroscope",
            },
        ],
    }


__all__ = [
    "RULES",
    "Anomaly",
    "Fold",
    "FoldError",
    "Reference",
    "anomaly_id",
    "check_label",
    "check_release",
    "check_stock",
    "check_use",
    "event_json_schemas",
    "feed_bytes",
    "feed_csv",
    "feed_line",
    "given_sets",
    "label_data",
    "readiness",
    "readiness_from",
    "recall_endoscope",
    "recall_lot",
    "recall_machine",
    "recall_patient",
    "recall_set",
    "warnings_for",
]

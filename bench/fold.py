"""Benchmark of the fold at hospital scale: 600,000 events (30 days x 20,000).

Events follow the sample hospital's reference (2,500 set instances, 40 endoscopes): batches of
20 sets go through reception, two washer loads, inspection, one sterilizer load (cycles
without a load number, attributed by the machine), release, labels, dispatch and use (70 %);
endoscopes are used and reprocessed; every sterilizer has its daily tests. Stored as
canonical CBOR values, as in the events documents.

Anchor, measured in the same run on the same bytes: a plain loop that only decodes the CBOR
values (cbor2.loads). Measured: full refold (read + fold, one add_encoded per day, the
stored values of a day read into the fold's records as they come, in storage order, the
cyclic collector paused throughout, as a node starts), incremental add of one event (a new
one, and one arriving late from a peer with an older HLC: p50/p99 over 1,000 adds each),
readiness of one day at hospital scale, and the resident memory the fold keeps. Reference
rows show what a fold costs before any rule: decoding each value and keeping it (the decoded
map, or the fold's slim record made from it) by id, as a fold must to replay an entity or
answer a recall; and, compiled, the slim record read straight from the bytes and kept.
Aims: refold within 3x the anchor, readiness under 100 ms, one incremental event under 1 ms.
The fold runs compiled when `make` built it for these sources (crdt_model/_compiled.py),
else interpreted (STERIMESH_PURE=1 asks for that): the table says which. Run: make bench, or
python -m bench fold (or python -m bench.fold).
"""

from __future__ import annotations

import gc
import os
import random
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cbor2

from bench._util import format_table, latency_summary
from crdt_model import encode
from crdt_model._compiled import is_compiled
from crdt_model._decode import RecordReader, reads_bytes
from crdt_model._fold import Fold, collector_paused
from crdt_model._readiness import Reference, readiness
from crdt_model._views import Record, record_of
from node._bundle import read_bundle
from node._sample import write_sample

DAYS = 30
PER_DAY = 20_000
BATCH = 20
WASH_PER_BATCH = 2
WASHERS = 24
STERILIZERS = 16
INCREMENTAL = 1000
AIM_REFOLD_RATIO = 3.0
AIM_READINESS_S = 0.100
AIM_INCREMENTAL_S = 0.001
PLANNED = date(2026, 12, 1)
_TZ = timezone(timedelta(hours=1))
_MIN = 60_000


class _Clock:
    """Stamps events with unique (hlc, node) ids; the bench's own fast HLC."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, int]] = {}

    def stamp(self, ms: int, node: str) -> tuple[str, str, str]:
        physical, logical = self.last.get(node, (0, 0))
        if ms > physical:
            physical, logical = ms, 0
        else:
            logical += 1
        self.last[node] = (physical, logical)
        hlc = f"{physical:013d}-{logical:05d}"
        at = datetime.fromtimestamp(ms / 1000, _TZ).isoformat(timespec="milliseconds")
        return f"{hlc}-{node}", hlc, at


class _History:
    """Generates the 30 days of events, day by day, deterministically."""

    def __init__(self, ref: Reference, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.sets = sorted(ref.instance_type)
        self.endoscopes = [
            f"{row.get('model')}-{serial}" for serial, row in sorted(ref.endoscopes.items())
        ]
        self.next_set = 0
        self.loads = 0
        self.cycle_no = 0
        self.clock = _Clock()

    def day(self, day: date) -> list[dict[str, Any]]:
        """The events of one local day, in no particular order."""
        base = int(datetime.combine(day, datetime.min.time(), _TZ).timestamp() * 1000)
        raw: list[tuple[int, str, dict[str, Any]]] = []
        for n in range(STERILIZERS):
            machine = f"AUTO-{n + 1}"
            raw.append((base + 6 * 60 * _MIN + n, "C", self._test(machine, "bowie_dick")))
            raw.append((base + 6 * 60 * _MIN + 30_000 + n, "C", self._test(machine, "leak")))
            raw.append((base + 6 * 60 * _MIN + 60_000 + n, "C", self._test(machine, "bi")))
        for i in range(len(self.endoscopes) * 3):
            raw.extend(self._endoscopy(base + 7 * 60 * _MIN + i * 17 * _MIN // 3, i))
        washer_free = [base + 6 * 60 * _MIN] * WASHERS
        steri_free = [base + 6 * 60 * _MIN + 10 * _MIN] * STERILIZERS
        budget = PER_DAY - len(raw) - 40
        batch = 0
        while budget > 0:
            events = self._batch(base, batch, washer_free, steri_free)
            raw.extend(events)
            budget -= len(events)
            batch += 1
        for i in range(40):
            raw.append((base + 8 * 60 * _MIN + i * 20 * _MIN, "D", {"type": "note", "text": "RAS"}))
        raw.sort(key=lambda item: item[0])
        out = []
        for ms, node, body in raw:
            event_id, hlc, at = self.clock.stamp(ms, node)
            zone = {"A": "sale", "B": "propre", "C": "sterile", "D": "office"}[node]
            out.append(
                {
                    **body,
                    "id": event_id,
                    "hlc": hlc,
                    "at": at,
                    "node": node,
                    "user": "u",
                    "zone": zone,
                }
            )
        self.rng.shuffle(out)  # storage order is not clock order
        return out

    def _test(self, machine: str, kind: str) -> dict[str, Any]:
        return {"type": "steri.test", "machine": machine, "kind": kind, "result": "pass"}

    def _endoscopy(self, at: int, i: int) -> list[tuple[int, str, dict[str, Any]]]:
        code = self.endoscopes[i % len(self.endoscopes)]
        patient = f"000{self.rng.randrange(100_000, 1_000_000)}"
        return [
            (at, "D", {"type": "endo.used", "endoscope": code, "patient": patient}),
            (at + 20 * _MIN, "C", {"type": "endo.leak_test", "endoscope": code, "result": "pass"}),
            (at + 25 * _MIN, "C", {"type": "endo.cleaned", "endoscope": code}),
            (
                at + 60 * _MIN,
                "C",
                {
                    "type": "endo.aer_cycle",
                    "endoscope": code,
                    "machine": "LDE-1",
                    "cycle_no": str(i),
                    "result": "pass",
                },
            ),
            (at + 65 * _MIN, "C", {"type": "endo.stored", "endoscope": code}),
        ]

    def _load_no(self, node: str, day_ms: int) -> str:
        self.loads += 1
        day = datetime.fromtimestamp(day_ms / 1000, _TZ).strftime("%y%m%d")
        return f"{node}-{day}-{self.loads:05d}"

    def _cycle(
        self, kind: str, machine: str, at: int, node: str
    ) -> tuple[int, str, dict[str, Any]]:
        self.cycle_no += 1
        body = {"type": kind, "machine": machine, "cycle_no": str(self.cycle_no), "result": "pass"}
        return at, node, body

    def _batch(
        self, base: int, n: int, washer_free: list[int], steri_free: list[int]
    ) -> list[tuple[int, str, dict[str, Any]]]:
        sets = [self.sets[(self.next_set + k) % len(self.sets)] for k in range(BATCH)]
        self.next_set += BATCH
        start = base + 6 * 60 * _MIN + n * 4 * _MIN
        out = [
            (start + k * 10_000, "A", {"type": "set.received", "set": s})
            for k, s in enumerate(sets)
        ]
        washed = start
        per_wash = BATCH // WASH_PER_BATCH
        for w in range(WASH_PER_BATCH):
            m = min(range(WASHERS), key=lambda i: washer_free[i])
            at = max(start + 5 * _MIN, washer_free[m])
            machine = f"LAV-{m + 1}"
            group = sets[w * per_wash : (w + 1) * per_wash]
            load = self._load_no("A", at)
            out.append(
                (
                    at,
                    "A",
                    {
                        "type": "wash.loaded",
                        "machine": machine,
                        "program": "INSTRU 93°C",
                        "sets": group,
                        "load": load,
                    },
                )
            )
            out.append(self._cycle("wash.cycle", machine, at + 50 * _MIN, "A"))
            washer_free[m] = at + 51 * _MIN
            washed = max(washed, at + 50 * _MIN)
        for k, s in enumerate(sets):
            out.append(
                (
                    washed + _MIN + k * 20_000,
                    "B",
                    {"type": "set.inspected", "set": s, "result": "ok", "packaging": "CONTENEUR"},
                )
            )
        m = min(range(STERILIZERS), key=lambda i: steri_free[i])
        at = max(washed + 10 * _MIN, steri_free[m])
        machine = f"AUTO-{m + 1}"
        load = self._load_no("B", at)
        out.append(
            (
                at,
                "B",
                {
                    "type": "steri.loaded",
                    "machine": machine,
                    "program": "NORMAL 134°",
                    "sets": sets,
                    "load": load,
                },
            )
        )
        out.append(self._cycle("steri.cycle", machine, at + 60 * _MIN, "B"))
        steri_free[m] = at + 61 * _MIN
        done = at + 62 * _MIN
        out.append((done, "C", {"type": "load.released", "load": load, "decision": "released"}))
        expires = (datetime.fromtimestamp(done / 1000, _TZ).date() + timedelta(days=90)).isoformat()
        for k, s in enumerate(sets):
            t = done + _MIN + k * 6_000
            out.append(
                (
                    t,
                    "C",
                    {
                        "type": "label.printed",
                        "set": s,
                        "load": load,
                        "lot": load,
                        "expires_on": expires,
                    },
                )
            )
            if self.rng.random() < 0.7:
                out.append((t + 3_000, "C", {"type": "set.dispatched", "set": s, "to": "Bloc J"}))
                patient = f"000{self.rng.randrange(100_000, 1_000_000)}"
                out.append(
                    (
                        t + 90 * _MIN,
                        "D",
                        {"type": "set.used", "set": s, "patient": patient, "room": "J Salle 1"},
                    )
                )
        return out


def _rss() -> int:
    """Resident memory of this process, bytes."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reference() -> Reference:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_sample(Path(tmp) / "bundle", scale="hospital", start=PLANNED)
        bundle = read_bundle(folder)
    return Reference(bundle.tables, export_id=bundle.export_id, exported_at=bundle.exported_at)


def _late_events(fold: Fold, history: _History, count: int) -> list[dict[str, Any]]:
    """Events from a peer whose clock is behind: older HLCs than most of the log.

    A mix of set events (dispatch, inspection), endoscope and machine tests, and 10 % of
    sterilizer cycles naming a recent load (the replay path of a machine and its sets).
    """
    rng = random.Random(7)
    last_ms = max(p for p, _ in history.clock.last.values())
    recent = [n for n in fold.load_numbers() if n.startswith("B-")][-200:]
    out = []
    for i in range(count):
        ms = last_ms - rng.randrange(5, 600) * _MIN
        code = rng.choice(history.sets)
        kind = rng.random()
        if kind < 0.5:
            body: dict[str, Any] = {"type": "set.dispatched", "set": code, "to": "Bloc K"}
        elif kind < 0.7:
            body = {"type": "set.inspected", "set": code, "result": "ok"}
        elif kind < 0.8:
            body = {"type": "endo.stored", "endoscope": rng.choice(history.endoscopes)}
        elif kind < 0.9:
            machine = f"AUTO-{rng.randint(1, STERILIZERS)}"
            body = {"type": "steri.test", "machine": machine, "kind": "leak", "result": "pass"}
        else:
            load = fold.load(rng.choice(recent))
            machine = load.machine if load is not None and load.machine else "AUTO-1"
            body = {
                "type": "steri.cycle",
                "machine": machine,
                "load": load.load if load else "B-0",
                "cycle_no": str(90_000 + i),
                "result": "pass",
            }
        hlc = f"{ms:013d}-{i % 99_999:05d}"
        at = datetime.fromtimestamp(ms / 1000, _TZ).isoformat(timespec="milliseconds")
        out.append(
            {
                **body,
                "id": f"{hlc}-E",
                "hlc": hlc,
                "at": at,
                "node": "E",
                "user": "u",
                "zone": "sterile",
            }
        )
    return out


def _new_events(history: _History, count: int) -> list[dict[str, Any]]:
    """The next local events: later than everything folded."""
    first = PLANNED
    events = sorted(history.day(first), key=lambda e: str(e["id"]))
    return events[:count]


def _time_kept(
    days: list[list[bytes]], maker: Callable[[dict[Any, Any]], Callable[[bytes], Any]]
) -> float:
    """Keep what `maker(intern)` makes of every stored value by event id: no rules, no views.

    The least any fold that can answer about past events (replays, recall) keeps alive;
    unlike the anchor, whose values die at once, its memory grows with the month.
    """
    kept: dict[str, Any] = {}
    make = maker({})
    gc.collect()
    gc.disable()  # as the fold does while it folds a batch
    try:
        started = time.perf_counter()
        for blobs in days:
            for blob in blobs:
                made = make(blob)
                kept[made["id"] if isinstance(made, dict) else made.id] = made
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    del kept
    return elapsed


def _decoded_record(intern: dict[Any, Any]) -> Callable[[bytes], Record]:
    return lambda blob: record_of(cbor2.loads(blob), intern)


def run() -> dict[str, Any]:
    """Measure and return the rows of the table."""
    ref = _reference()
    history = _History(ref)
    first_day = PLANNED - timedelta(days=DAYS)
    days = [[encode(e) for e in history.day(first_day + timedelta(days=d))] for d in range(DAYS)]
    total = sum(len(d) for d in days)
    loads = cbor2.loads
    gc.collect()
    started = time.perf_counter()
    for blobs in days:
        for blob in blobs:
            loads(blob)
    anchor = time.perf_counter() - started

    kept = _time_kept(days, lambda intern: cbor2.loads)
    slim = _time_kept(days, _decoded_record)
    read = _time_kept(days, lambda intern: RecordReader(intern).read) if reads_bytes() else None

    gc.collect()
    rss_before = _rss()
    started = time.perf_counter()
    fold = Fold(reference=ref)
    with collector_paused():  # as Node.async_open folds its documents
        for blobs in days:
            fold.add_encoded(blobs)  # as a node reads a day's document
    refold = time.perf_counter() - started
    gc.collect()
    rss_after = _rss()
    anomalies = len(fold.anomalies())

    late = []
    for event in _late_events(fold, history, INCREMENTAL):
        t0 = time.perf_counter()
        fold.add(event)
        late.append(time.perf_counter() - t0)
    new = []
    for event in _new_events(history, INCREMENTAL):
        t0 = time.perf_counter()
        fold.add(event)
        new.append(time.perf_counter() - t0)
    ready_times = []
    answer: dict[str, Any] = {}
    for _ in range(5):
        t0 = time.perf_counter()
        answer = readiness(fold, PLANNED.isoformat())
        ready_times.append(time.perf_counter() - t0)
    lat_late, lat_new = latency_summary(late), latency_summary(new)
    rows = [
        {"name": "anchor: decode CBOR only", "seconds": anchor, "ratio": 1.0, "aim": ""},
        {
            "name": "reference: decode, keep each event (dict by id)",
            "seconds": kept,
            "ratio": kept / anchor,
            "aim": "",
        },
        {
            "name": "reference: decode, keep a slim record per event",
            "seconds": slim,
            "ratio": slim / anchor,
            "aim": "",
        },
        *(
            []
            if read is None
            else [
                {
                    "name": "reference: read a slim record from the bytes, keep it",
                    "seconds": read,
                    "ratio": read / anchor,
                    "aim": "",
                }
            ]
        ),
        {
            "name": "full refold (read + fold)",
            "seconds": refold,
            "ratio": refold / anchor,
            "aim": f"<= {AIM_REFOLD_RATIO:g}x",
        },
        {
            "name": "add one new event p50",
            "seconds": lat_new["p50_ms"] / 1000,
            "ratio": None,
            "aim": "< 1 ms",
        },
        {
            "name": "add one new event p99",
            "seconds": lat_new["p99_ms"] / 1000,
            "ratio": None,
            "aim": "< 1 ms",
        },
        {
            "name": "add one late event p50",
            "seconds": lat_late["p50_ms"] / 1000,
            "ratio": None,
            "aim": "< 1 ms",
        },
        {
            "name": "add one late event p99",
            "seconds": lat_late["p99_ms"] / 1000,
            "ratio": None,
            "aim": "< 1 ms",
        },
        {
            "name": "add one late event max",
            "seconds": lat_late["max_ms"] / 1000,
            "ratio": None,
            "aim": "",
        },
        {
            "name": "readiness of one day",
            "seconds": min(ready_times),
            "ratio": None,
            "aim": "< 100 ms",
        },
    ]
    return {
        "events": total,
        "compiled": is_compiled(),
        "rows": rows,
        "fold_rss_mb": (rss_after - rss_before) / 1e6,
        "bytes_per_event": (rss_after - rss_before) / total,
        "anomalies": anomalies,
        "anomalies_after_late": len(fold.anomalies()),
        "operations": answer.get("summary", {}),
        "endoscopy": answer.get("endoscopy", {}).get("summary", {}),
    }


def render(results: dict[str, Any]) -> str:
    """The table of run()'s results."""
    table = format_table(
        ["measure", "time", "x anchor", "aim"],
        [
            [
                r["name"],
                _time(r["seconds"]),
                None if r["ratio"] is None else round(r["ratio"], 2),
                r["aim"],
            ]
            for r in results["rows"]
        ],
    )
    how = "compiled (mypyc)" if results.get("compiled") else "interpreted"
    return (
        f"{results['events']:,} events, fold {how}; it keeps {results['fold_rss_mb']:.0f} MB "
        f"({results['bytes_per_event']:.0f} bytes/event); {results['anomalies']} anomalies "
        f"({results['anomalies_after_late']} after the late events)\n"
        f"readiness: operations {results['operations']}, endoscopy {results['endoscopy']}\n" + table
    )


def _time(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds >= 1 else f"{seconds * 1000:.3f} ms"


def main() -> None:
    """Print the benchmark table."""
    print(render(run()))


if __name__ == "__main__":
    main()

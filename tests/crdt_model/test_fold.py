"""The fold's views: set status through its loop, loads, machines, endoscopes, voids, order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.crdt_model.fold_helpers import (
    START_MS,
    Fold,
    Stamper,
    bowie_dick,
    fold_of,
    process,
    small_reference,
)

SET = "JDIGGRBA#111"
OTHER = "JDIGELAP01"


def statuses(s: Stamper, code: str = SET) -> list[str]:
    """The set's status after each event, folding them one by one."""
    fold = Fold()
    out = []
    for event in s.events:
        fold.add(event)
        out.append(fold.set_status(code).status)
    return out


def test_a_set_walks_every_state_of_its_loop() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("set.received", set=SET)
    s.make("wash.loaded", sets=[SET], load="A-1")
    s.make("wash.cycle")
    s.make("set.inspected", set=SET)
    s.make("steri.loaded", sets=[SET], load="A-2")
    s.make("steri.cycle")
    s.make("load.released", load="A-2")
    s.make("label.printed", set=SET, load="A-2", lot="A-2", expires_on="2027-05-27")
    s.make("set.dispatched", set=SET)
    s.make("set.used", set=SET)
    assert statuses(s) == [
        "unknown",
        "dirty",
        "washing",
        "washed",
        "packed",
        "in_sterilizer",
        "sterilized",
        "sterile",
        "sterile",
        "dispatched",
        "used",
    ]


def test_the_set_view_shows_load_label_expiry_and_location() -> None:
    s = Stamper()
    bowie_dick(s)
    ids = process(s, [SET], use=False)
    fold = fold_of(s.events, reference=small_reference())
    view = fold.set_status(SET, today="2026-11-29")
    assert view.type_code == "JDIGGRBA"
    assert view.status == "dispatched"
    assert view.load == ids["steri"]
    assert view.load_kind == "steri"
    assert view.machine == "AUTO-2"
    assert view.location == "Bloc J"
    assert view.labelled
    assert view.label is not None
    assert view.label.lot == ids["steri"]
    assert view.sterilized_on == "2026-11-28"
    assert view.expires_on == "2027-05-27"
    assert view.expired is False
    assert view.packaging == "ONE STEP 121 X121"
    assert view.events[0] == s.events[1]["id"]
    assert view.anomalies == ()
    json.dumps(view.as_dict())  # JSON-serialisable


def test_a_sterile_set_without_label_expires_by_its_shelf_life() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=[OTHER], load="A-1")
    s.make("steri.cycle")
    s.make("load.released", load="A-1")
    fold = fold_of(s.events, reference=small_reference())
    view = fold.set_status(OTHER, today="2026-12-28")  # JDIGELAP keeps 30 days
    assert (view.status, view.expires_on, view.expired) == ("sterile", "2026-12-28", False)
    view = fold.set_status(OTHER, today="2026-12-29")
    assert (view.status, view.expired) == ("expired", True)
    assert fold.set_status(OTHER).status == "sterile"  # no date: no expiry judged
    fold.settings = {"shelf_life_by_packaging": {"": 10}}
    assert fold.set_status(OTHER).expires_on == "2026-12-28"  # empty packaging name is no rule
    fold.reference = None
    assert fold.set_status(OTHER).expires_on is None


def test_the_packaging_rule_of_the_settings_overrides_the_type() -> None:
    s = Stamper()
    s.make("set.inspected", set=SET, packaging="SACHET")
    s.make("steri.loaded", sets=[SET], load="A-1")
    s.make("steri.cycle")
    s.make("load.released", load="A-1")
    fold = fold_of(s.events, reference=small_reference())
    assert fold.set_status(SET).expires_on == "2027-05-27"  # 180 days
    fold.settings = {"shelf_life_by_packaging": {"SACHET": 30}}
    assert fold.set_status(SET).expires_on == "2026-12-28"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"steri_result": "fail"}, "cycle_failed"),
        ({"decision": "rejected"}, "load_rejected"),
    ],
)
def test_failed_cycle_or_rejected_load_quarantines_its_sets(
    change: dict[str, str], reason: str
) -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET, OTHER], **change)  # type: ignore[arg-type]
    fold = fold_of(s.events)
    for code in (SET, OTHER):
        view = fold.set_status(code)
        assert (view.status, view.reason) == ("quarantined", reason)


def test_a_failed_wash_or_inspection_quarantines_the_set() -> None:
    s = Stamper()
    s.make("wash.loaded", sets=[SET, OTHER], load="A-1")
    s.make("wash.cycle", result="fail")
    fold = fold_of(s.events)
    assert fold.set_status(SET).reason == "wash_failed"
    s.make("wash.loaded", sets=[SET], load="A-2")
    s.make("wash.cycle")
    s.make("set.inspected", set=SET, result="nok")
    fold = fold_of(s.events)
    view = fold.set_status(SET)
    assert (view.status, view.reason) == ("quarantined", "inspection_failed")


def test_a_late_failure_quarantines_a_set_that_moved_on_but_not_one_used() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", sets=[SET, OTHER], load="A-1")
    s.make("steri.cycle")
    s.make("load.released", load="A-1")
    s.make("set.dispatched", set=SET)
    s.make("set.dispatched", set=OTHER)
    s.make("set.used", set=OTHER)
    s.make("load.released", load="A-1", decision="rejected", reason="indicateur")
    fold = fold_of(s.events)
    assert fold.set_status(SET).status == "quarantined"
    assert fold.set_status(OTHER).status == "used"
    assert fold.load("A-1").status == "rejected"  # type: ignore[union-attr]


def test_the_load_view_holds_contents_cycle_release_and_labels() -> None:
    s = Stamper()
    bowie_dick(s)
    ids = process(s, [SET, OTHER], use=False)
    fold = fold_of(s.events)
    load = fold.load(ids["steri"])
    assert load is not None
    assert (load.kind, load.machine, load.program) == ("steri", "AUTO-2", "NORMAL 134°")
    assert load.sets == (SET, OTHER)
    assert (load.status, load.safe) == ("released", True)
    assert load.cycle is not None
    assert load.cycle.event == ids["steri.cycle"]
    assert load.cycle.result == "pass"
    assert load.release is not None
    assert load.release.decision == "released"
    assert [label.set for label in load.labels] == [SET, OTHER]
    wash = fold.load(ids["wash"])
    assert wash is not None
    assert (wash.kind, wash.status, wash.safe) == ("wash", "passed", True)
    assert fold.load("nope") is None
    json.dumps(load.as_dict())


def test_load_status_goes_open_passed_failed_released_rejected() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=[SET], load="A-1")
    fold = fold_of(s.events)
    assert fold.load("A-1").status == "open"  # type: ignore[union-attr]
    fold.add(s.make("steri.cycle"))
    assert fold.load("A-1").status == "passed"  # type: ignore[union-attr]
    fold.add(s.make("load.released", load="A-1"))
    assert fold.load("A-1").status == "released"  # type: ignore[union-attr]
    fold.add(s.make("load.released", load="A-1", decision="rejected"))
    load = fold.load("A-1")
    assert load is not None
    assert (load.status, load.safe) == ("rejected", False)
    assert len(load.releases) == 2
    s2 = Stamper()
    s2.make("steri.loaded", sets=[SET], load="B-1")
    s2.make("steri.cycle", result="fail")
    assert fold_of(s2.events).load("B-1").status == "failed"  # type: ignore[union-attr]


def test_a_cycle_without_load_goes_to_the_latest_open_load_of_its_machine() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    s.make("steri.loaded", sets=["S2"], load="A-2")
    s.make("steri.loaded", sets=["S3"], load="A-3", machine="AUTO-9")
    first = s.make("steri.cycle")["id"]
    second = s.make("steri.cycle", result="fail")["id"]
    third = s.make("steri.cycle", load="A-3", machine="AUTO-9")["id"]
    orphan = s.make("steri.cycle")["id"]
    fold = fold_of(s.events)
    assert fold.load("A-2").cycles == (first,)  # type: ignore[union-attr]
    assert fold.load("A-1").cycles == (second,)  # type: ignore[union-attr]
    assert fold.load("A-3").cycles == (third,)  # type: ignore[union-attr]
    assert all(orphan not in fold.load(n).cycles for n in ("A-1", "A-2", "A-3"))  # type: ignore[union-attr]
    assert fold.set_status("S1").status == "quarantined"


def test_a_cycle_naming_its_load_closes_that_load_only() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    s.make("steri.loaded", sets=["S2"], load="A-2")
    s.make("steri.loaded", sets=["S3"], load="A-3")
    s.make("steri.loaded", sets=["S4"], load="A-1")  # named again: keeps its place
    named = s.make("steri.cycle", load="A-2")["id"]
    latest = s.make("steri.cycle")["id"]
    oldest = s.make("steri.cycle")["id"]
    orphan = s.make("steri.cycle")["id"]
    fold = fold_of(s.events)
    assert fold.load("A-2").cycles == (named,)  # type: ignore[union-attr]
    assert fold.load("A-3").cycles == (latest,)  # type: ignore[union-attr]
    assert fold.load("A-1").cycles == (oldest,)  # type: ignore[union-attr]
    assert fold.load("A-1").sets == ("S1", "S4")  # type: ignore[union-attr]
    assert all(orphan not in fold.load(n).cycles for n in ("A-1", "A-2", "A-3"))  # type: ignore[union-attr]


def test_a_load_named_again_after_its_cycle_never_takes_the_next_loads_cycle() -> None:
    """A-1's cycle failed; a record adding a set to A-1 comes after A-2 was loaded: the next
    captured cycle (no load number) is A-2's, and A-1 stays failed, in any arrival order."""
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    failed = s.make("steri.cycle", result="fail")["id"]
    s.make("steri.loaded", sets=["S2"], load="A-2")
    s.make("steri.loaded", sets=["S3"], load="A-1")  # a set forgotten in A-1's record
    passed = s.make("steri.cycle")["id"]
    for events in (s.events, s.events[::-1]):
        fold = fold_of(events)
        a1, a2 = fold.load("A-1"), fold.load("A-2")
        assert a1 is not None
        assert a2 is not None
        assert a1.cycles == (failed,)
        assert a1.status == "failed"
        assert a2.cycles == (passed,)
        assert fold.set_status("S1").status == "quarantined"
    one_by_one = Fold()
    for event in s.events:
        one_by_one.add(event)
    assert one_by_one.snapshot() == fold_of(s.events).snapshot()


def test_a_cycle_naming_a_load_before_it_is_loaded_closes_nothing() -> None:
    """A peer's clock behind puts a cycle naming A-2 before A-2's loaded record: A-2 still
    opens when loaded, and the next cycle of the machine is A-2's, not A-3's."""
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    s.make("steri.cycle")  # A-1's
    early = s.make("steri.cycle", "B", load="A-2", skew_ms=-30 * 60_000)  # named, early
    s.make("steri.loaded", sets=["S2"], load="A-2")
    s.make("steri.loaded", sets=["S3"], load="A-3")
    own = s.make("steri.cycle")["id"]  # the latest open load's: A-3
    s.make("steri.cycle")  # then A-2's
    for events in (s.events, s.events[::-1]):
        fold = fold_of(events)
        a2, a3 = fold.load("A-2"), fold.load("A-3")
        assert a2 is not None
        assert a3 is not None
        assert early["id"] in a2.cycles
        assert a3.cycles == (own,)
        assert len(a2.cycles) == 2


def test_a_washer_cycle_only_closes_a_washer_load() -> None:
    s = Stamper()
    s.make("wash.loaded", sets=["S1"], load="A-1", machine="M-1")
    s.make("steri.loaded", sets=["S2"], load="A-2", machine="M-1")
    s.make("wash.cycle", machine="M-1")
    fold = fold_of(s.events)
    assert fold.load("A-1").status == "passed"  # type: ignore[union-attr]
    assert fold.load("A-2").status == "open"  # type: ignore[union-attr]


def test_a_late_cycle_from_a_peer_is_attributed_as_in_clock_order() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    late = s.make("steri.cycle", "B")
    s.make("steri.loaded", sets=["S2"], load="A-2")
    s.make("steri.cycle")
    events = s.events
    fold = fold_of([e for e in events if e is not late])
    assert fold.load("A-1").status == "open"  # type: ignore[union-attr]
    fold.add(late)
    assert fold.snapshot() == fold_of(events).snapshot()
    assert fold.load("A-1").cycles == (late["id"],)  # type: ignore[union-attr]


def test_machine_tests_of_a_day() -> None:
    s = Stamper()
    failed = bowie_dick(s, result="fail")
    passed = bowie_dick(s)
    s.make("steri.test", kind="leak", result="pass")
    s.make("steri.test", kind="bi", result="pass", lot="A-0")
    s.make("steri.loaded", sets=[SET], load="A-1")
    fold = fold_of(s.events)
    day = fold.machine_tests("AUTO-2", "2026-11-28")
    assert [t.kind for t in day.tests] == ["bowie_dick", "bowie_dick", "leak", "bi"]
    assert [t.event for t in day.tests[:2]] == [failed, passed]
    assert day.bowie_dick == "pass"
    assert day.loads == ("A-1",)
    assert day.anomalies == ()
    assert fold.machine_tests("AUTO-2", "2026-11-29").tests == ()
    assert fold.machine_days() == [("AUTO-2", "2026-11-28")]
    json.dumps(day.as_dict())


def test_a_machines_loads_of_a_day_leave_voided_ones_out() -> None:
    s = Stamper()
    s.make("wash.loaded", machine="LAV-1", sets=[SET], load="A-1")
    wrong = s.make("wash.loaded", machine="LAV-1", sets=["JX#1"], load="A-2")
    s.make("steri.loaded", sets=[SET], load="A-3")
    s.make("event.voided", target=wrong["id"], reason="mauvaise charge")
    fold = fold_of(s.events)
    assert fold.machine_tests("LAV-1", "2026-11-28").loads == ("A-1",)
    assert fold.machine_tests("LAV-1", "2026-11-28").anomalies == ()  # a washer: no test
    assert fold.machine_tests("AUTO-2", "2026-11-28").loads == ("A-3",)
    assert fold.machine_tests("LAV-1", "2026-11-29").loads == ()


def test_an_endoscope_is_ready_after_a_passed_reprocessing() -> None:
    s = Stamper()
    code = "GIF-H190-2101234"
    fold = Fold()
    assert fold.endoscope(code).status == "unknown"
    steps = [
        ("endo.used", {"patient": "P1"}, "used", False),
        ("endo.leak_test", {"result": "pass"}, "leak_tested", False),
        ("endo.cleaned", {}, "cleaned", False),
        ("endo.aer_cycle", {"result": "fail"}, "reprocessing_failed", False),
        (
            "endo.aer_cycle",
            {"result": "pass", "machine": "LDE-1", "cycle_no": 3},
            "reprocessed",
            True,
        ),
        ("endo.stored", {}, "stored", True),
    ]
    for kind, fields, status, ready in steps:
        fold.add(s.make(kind, "C", endoscope=code, **fields))
        view = fold.endoscope(code)
        assert (view.status, view.ready) == (status, ready)
    assert view.last_use == s.events[0]["id"]
    assert view.last_reprocessing == s.events[4]["id"]
    assert len(view.events) == 6
    json.dumps(view.as_dict())


def test_a_voided_event_loses_its_effect_and_a_voided_void_restores_it() -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET], use=False)
    fold = fold_of(s.events)
    assert fold.set_status(SET).status == "dispatched"
    dispatch = s.events[-1]["id"]
    void = s.make("event.voided", "B", target=dispatch, reason="mauvais set")
    fold.add(void)
    assert fold.set_status(SET).status == "sterile"
    assert dispatch not in fold.set_status(SET).events
    fold.add(s.make("event.voided", "C", target=void["id"], reason="c'était bien lui"))
    assert fold.set_status(SET).status == "dispatched"
    assert fold.snapshot() == fold_of(s.events).snapshot()


def test_voiding_a_load_removes_it_from_its_sets_and_frees_the_cycle() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    wrong = s.make("steri.loaded", sets=["S2"], load="A-2")
    s.make("event.voided", target=wrong["id"], reason="mauvaise charge")
    s.make("steri.cycle")
    fold = fold_of(s.events)
    assert fold.load("A-1").status == "passed"  # type: ignore[union-attr]
    assert fold.load("A-2").status == "unknown"  # type: ignore[union-attr]
    assert fold.set_status("S2").status == "unknown"
    reversed_fold = fold_of(list(reversed(s.events)))
    assert reversed_fold.snapshot() == fold.snapshot()


def test_a_void_arriving_before_its_target_applies_when_the_target_comes() -> None:
    s = Stamper()
    target = s.make("set.received", set=SET)
    void = s.make("event.voided", target=target["id"], reason="doublon")
    fold = fold_of([void, target])
    assert fold.set_status(SET).status == "unknown"
    assert fold.snapshot() == fold_of([target, void]).snapshot()


def test_adding_the_same_event_twice_changes_nothing() -> None:
    s = Stamper()
    process(s, [SET])
    fold = fold_of(s.events)
    before = fold.snapshot()
    assert fold.add(s.events[3]) is False
    assert fold.add_many(s.events) == []
    assert fold.snapshot() == before
    assert len(fold) == len(s.events)
    assert s.events[0]["id"] in fold


def test_a_batch_with_the_same_event_twice_folds_it_once() -> None:
    s = Stamper()
    process(s, [SET])
    fold = Fold()
    assert len(fold.add_many([*s.events, s.events[2], s.events[0]])) == len(s.events)
    assert fold.snapshot() == fold_of(s.events).snapshot()


def test_a_void_that_sorts_before_its_target_cancels_it_in_one_batch() -> None:
    """A node whose clock is behind voids an event: in (hlc, id) order the void comes first,
    and a start-up refold reads both in one batch (a set's event, a machine's cycle)."""
    s = Stamper()
    bowie_dick(s)
    process(s, [SET, OTHER])
    s.make("endo.used", endoscope="GIF-H190-2104567", patient="0000123456")
    kinds = ("set.dispatched", "steri.cycle", "wash.loaded", "steri.test", "endo.used")
    targets = [e for e in s.events if e["type"] in kinds]
    assert {t["type"] for t in targets} == set(kinds)
    behind = Stamper(start_ms=START_MS - 3_600_000)
    voids = [behind.make("event.voided", "B", target=t["id"], reason="doublon") for t in targets]
    assert all(v["id"] < t["id"] for v, t in zip(voids, targets, strict=True))
    everything = s.events + voids
    one_by_one = fold_of(everything)
    batch = Fold()
    assert len(batch.add_many(everything)) == len(everything)
    assert batch.snapshot() == one_by_one.snapshot()
    assert batch.voided == {t["id"] for t in targets}
    assert batch.set_status(SET).status != "dispatched"


def test_a_batch_that_cannot_be_read_changes_nothing() -> None:
    s = Stamper()
    process(s, [SET])
    fold = fold_of(s.events[:3])
    before = fold.snapshot()
    skewed = {**s.events[3], "at": "2020-01-01T00:00:00.000+01:00"}  # would raise clock_skew

    def batch() -> Iterator[dict[str, Any]]:
        yield skewed
        yield from s.events[4:6]
        raise ValueError("a value that does not decode")

    with pytest.raises(ValueError, match="does not decode"):
        fold.add_many(batch())
    assert fold.snapshot() == before
    assert len(fold) == 3
    assert skewed["id"] not in fold
    fold.add_many(s.events[3:])
    assert fold.snapshot() == fold_of(s.events).snapshot()


def test_out_of_order_arrival_equals_clock_order() -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET, OTHER])
    process(s, [SET], steri_result="fail")
    events = s.events
    want = fold_of(events).snapshot()
    assert fold_of(list(reversed(events))).snapshot() == want
    batched = Fold()
    batched.add_many(events[10:])
    batched.add_many(events[:10])
    assert batched.snapshot() == want
    middle = Fold()
    for event in events[::2] + events[1::2]:
        middle.add(event)
    assert middle.snapshot() == want


def test_a_set_no_event_names_is_unknown_with_its_storage_place() -> None:
    fold = Fold(reference=small_reference())
    view = fold.set_status("JDIGGRBA#113")
    assert (view.status, view.location, view.type_code) == ("unknown", "Armoire U", "JDIGGRBA")
    assert fold.set_codes() == []


def test_the_snapshot_is_json_ready() -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET, OTHER])
    s.make("endo.used", "B", endoscope="GIF-1", patient="P1")
    snapshot = fold_of(s.events, reference=small_reference()).snapshot("2026-12-01")
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert set(snapshot) == {"sets", "loads", "endoscopes", "machines", "anomalies"}


@pytest.mark.parametrize(
    ("ended", "day"),
    [
        ("2026-11-27T23:50:00+01:00", "2026-11-27"),  # ended before midnight, recorded after
        ("2027-11-28T07:46:00+01:00", "2026-11-28"),  # a machine clock a year ahead
        ("2025-11-28T07:46:00", "2025-11-28"),  # a year behind: earlier, the safe side
        ("bientôt", "2026-11-28"),
    ],
)
def test_a_cycle_is_dated_by_the_machine_but_never_after_it_was_recorded(
    ended: str, day: str
) -> None:
    from crdt_model._views import cycle_day, record_of

    event = {
        "type": "steri.cycle",
        "id": "1795864291234-00000-A",
        "hlc": "1795864291234-00000",
        "at": "2026-11-28T08:11:31.234+01:00",
        "node": "A",
        "machine": "AUTO-1",
        "cycle_no": "7",
        "result": "pass",
        "ended": ended,
    }
    assert cycle_day(record_of(event, {})) == day

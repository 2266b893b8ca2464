"""Every anomaly rule: a flow that raises it, and the normal flow that does not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.crdt_model.fold_helpers import (
    RULES,
    Anomaly,
    Stamper,
    anomaly_id,
    bowie_dick,
    fold_of,
    process,
    rules,
    small_reference,
)

SET = "JDIGGRBA#111"
OTHER = "JDIGELAP01"
PATIENT = "000501492"


def only(found: list[Anomaly], rule: str) -> Anomaly:
    """The one anomaly of `rule`."""
    matching = [a for a in found if a.rule == rule]
    assert len(matching) == 1, [a.as_dict() for a in found]
    return matching[0]


def normal_day() -> Stamper:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET, OTHER], patient=PATIENT)
    for code in (SET, OTHER):  # back to the department, a second loop
        s.make("set.received", set=code)
    process(s, [SET, OTHER])
    code = "GIF-H190-2101234"
    for _ in range(2):
        s.make("endo.used", "B", endoscope=code, patient="000501493")
        s.make("endo.leak_test", "C", endoscope=code, result="pass")
        s.make("endo.cleaned", "C", endoscope=code)
        s.make("endo.aer_cycle", "C", endoscope=code, result="pass")
        s.make("endo.stored", "C", endoscope=code)
    return s


def test_the_normal_flow_raises_no_anomaly() -> None:
    s = normal_day()
    assert fold_of(s.events).anomalies() == []


def test_a_set_in_two_loads_at_once() -> None:
    s = Stamper()
    bowie_dick(s)
    first = s.make("steri.loaded", "A", sets=[SET, OTHER], load="A-1")
    second = s.make("steri.loaded", "B", sets=[SET], load="B-1", machine="AUTO-3")
    s.make("steri.cycle")
    found = only(fold_of(s.events).anomalies(), "set_in_two_loads")
    assert found.events == (first["id"], second["id"])
    assert dict(found.subject) == {"set": SET, "load": "B-1"}
    assert found.severity == "major"
    assert "A-1" in found.message_en
    assert "A-1" in found.message_fr


def test_an_inspection_takes_the_set_out_of_a_washer_load_without_a_cycle_yet() -> None:
    """A washer whose cycle is captured late: the inspected set is in no open load any more."""
    from tests.crdt_model.fold_helpers import warnings_for

    s = Stamper()
    bowie_dick(s)
    s.make("set.received", set=SET)
    s.make("wash.loaded", sets=[SET], load="A-1")
    s.make("set.inspected", set=SET)  # before the washer's record came in: out of order only
    loading = {"type": "steri.loaded", "machine": "AUTO-2", "program": "P", "sets": [SET]}
    assert warnings_for(fold_of(s.events), {**loading, "load": "A-2"}, "2026-11-28") == []
    s.make("steri.loaded", sets=[SET], load="A-2")
    s.make("wash.cycle", load="A-1")  # the washer's record arrives from its drop folder
    assert rules(fold_of(s.events)) == ["out_of_order"]


def test_a_set_whose_load_has_a_cycle_may_enter_the_next_load() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("wash.loaded", sets=[SET], load="A-1")
    s.make("wash.cycle")
    s.make("set.inspected", set=SET)
    s.make("steri.loaded", sets=[SET], load="A-2")
    assert rules(fold_of(s.events)) == []


def released_load(s: Stamper, **cycle: Any) -> None:
    bowie_dick(s)
    s.make("steri.loaded", sets=[SET], load="A-1")
    if cycle.get("result") != "none":
        s.make("steri.cycle", **cycle)


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("not_released", "not_released"),
        ("failed", "cycle_failed"),
        ("rejected", "rejected"),
        ("no_cycle", "no_cycle"),
        ("other_load", "not_in_load"),
    ],
)
def test_a_label_for_a_set_whose_load_is_not_released(setup: str, reason: str) -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", sets=[SET], load="A-1")
    if setup != "no_cycle":
        s.make("steri.cycle", result="fail" if setup == "failed" else "pass")
    if setup == "rejected":
        s.make("load.released", load="A-1", decision="rejected")
    if setup == "other_load":
        s.make("load.released", load="A-1")
    load = "A-0" if setup == "other_load" else "A-1"
    label = s.make("label.printed", set=SET, load=load, lot=load, expires_on="2027-05-27")
    found = only(fold_of(s.events).anomalies(), "label_not_released")
    assert dict(found.subject) == {"set": SET, "load": load, "reason": reason}
    assert found.trigger == label["id"]


def test_a_dispatch_before_the_release() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", sets=[SET], load="A-1")
    s.make("steri.cycle")
    dispatch = s.make("set.dispatched", set=SET)
    s.make("load.released", load="A-1")
    found = only(fold_of(s.events).anomalies(), "dispatch_not_released")
    assert found.trigger == dispatch["id"]
    assert dict(found.subject)["reason"] == "not_released"


def test_a_dispatch_of_a_set_never_sterilized() -> None:
    s = Stamper()
    s.make("set.received", set=SET)
    s.make("set.dispatched", set=SET)
    found = only(fold_of(s.events).anomalies(), "dispatch_not_released")
    assert dict(found.subject) == {"set": SET, "load": "-", "reason": "no_load"}


@pytest.mark.parametrize(("result", "why"), [("none", "missing"), ("fail", "failed")])
def test_a_release_with_a_failed_or_missing_cycle(result: str, why: str) -> None:
    s = Stamper()
    released_load(s, result=result)
    release = s.make("load.released", load="A-1")
    fold = fold_of(s.events)
    found = only(fold.anomalies(), "release_without_passed_cycle")
    assert found.severity == "critical"
    assert dict(found.subject) == {"load": "A-1", "reason": why}
    assert release["id"] in found.events
    assert fold.load("A-1").anomalies == (found.id,)  # type: ignore[union-attr]
    assert fold.set_status(SET).status == "quarantined"


def test_a_cycle_recorded_after_the_release_leaves_the_anomaly() -> None:
    s = Stamper()
    released_load(s, result="none")
    s.make("load.released", load="A-1")
    s.make("steri.cycle")
    fold = fold_of(s.events)
    assert rules(fold) == ["release_without_passed_cycle"]
    assert fold.set_status(SET).status == "sterile"


def test_a_set_used_after_its_expiry() -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET], expires_on="2026-11-27", patient=PATIENT)
    found = only(fold_of(s.events).anomalies(), "use_after_expiry")
    assert found.severity == "critical"
    assert PATIENT not in found.message_en + found.message_fr
    assert "2026-11-27" in found.message_en


@pytest.mark.parametrize("setup", ["no_label", "quarantined", "never_sterilized"])
def test_a_set_used_without_a_valid_label(setup: str) -> None:
    s = Stamper()
    bowie_dick(s)
    if setup == "no_label":
        s.make("steri.loaded", sets=[SET], load="A-1")
        s.make("steri.cycle")
        s.make("load.released", load="A-1")
    elif setup == "quarantined":
        ids = process(s, [SET], use=False)
        s.make("load.released", load=ids["steri"], decision="rejected")
    else:
        s.make("set.received", set=SET)
    use = s.make("set.used", set=SET, patient=PATIENT)
    found = only(fold_of(s.events).anomalies(), "use_without_valid_label")
    assert found.trigger == use["id"]
    assert PATIENT not in found.message_fr


def test_an_endoscope_used_twice_without_reprocessing() -> None:
    s = Stamper()
    code = "GIF-H190-2101234"
    first = s.make("endo.used", "B", endoscope=code, patient="P1")
    s.make("endo.cleaned", "C", endoscope=code)
    second = s.make("endo.used", "B", endoscope=code, patient="P2")
    found = only(fold_of(s.events).anomalies(), "endoscope_not_reprocessed")
    assert found.events == (first["id"], second["id"])
    assert dict(found.subject) == {"endoscope": code, "reason": "last_use"}


def test_an_endoscope_used_after_a_failed_reprocessing() -> None:
    s = Stamper()
    code = "GIF-H190-2101234"
    s.make("endo.aer_cycle", "C", endoscope=code, result="fail")
    s.make("endo.used", "B", endoscope=code, patient="P1")
    found = only(fold_of(s.events).anomalies(), "endoscope_not_reprocessed")
    assert dict(found.subject)["reason"] == "failed_step"


def test_an_endoscope_scanned_under_its_two_codes_is_one_endoscope() -> None:
    """Uses under model-serial then serial, no reprocessing between: raised once the
    reference says both codes name one endoscope, whenever it comes."""
    s = Stamper()
    first = s.make("endo.used", "B", endoscope="GIF-H190-2101234", patient="P1")
    second = s.make("endo.used", "B", endoscope="2101234", patient="P2")
    fold = fold_of(s.events)
    assert rules(fold) == []  # without a reference: two endoscopes, each used once
    fold.reference = small_reference()  # the reference arrives: one endoscope
    found = only(fold.anomalies(), "endoscope_not_reprocessed")
    assert found.events == (first["id"], second["id"])
    assert fold.endoscope("GIF-H190-2101234") == fold.endoscope("2101234")
    assert fold.endoscope_codes() == ["2101234"]
    later = fold_of(s.events, reference=small_reference())  # or there from the start
    assert [a.id for a in later.anomalies()] == [found.id]


def test_a_resolved_endoscope_anomaly_stays_resolved_when_the_reference_names_it_anew() -> None:
    """Filed under the model-serial code until an export says it is serial 2101234: the
    same anomaly, with its decision."""
    s = Stamper()
    s.make("endo.used", "B", endoscope="GIF-H190-2101234", patient="P1")
    s.make("endo.used", "B", endoscope="GIF-H190-2101234", patient="P2")
    fold = fold_of(s.events)
    found = only(fold.anomalies(), "endoscope_not_reprocessed")
    fold.add(s.make("anomaly.resolved", "A", anomaly=found.id, decision="accepted"))
    assert fold.anomalies(open_only=True) == []
    fold.reference = small_reference()
    again = only(fold.anomalies(), "endoscope_not_reprocessed")
    assert again.id == found.id
    assert dict(again.subject)["endoscope"] == "2101234"
    assert fold.anomalies(open_only=True) == []


def test_a_first_known_use_of_an_endoscope_raises_nothing() -> None:
    s = Stamper()
    s.make("endo.used", "B", endoscope="GIF-1", patient="P1")
    assert rules(fold_of(s.events)) == []


@pytest.mark.parametrize("test", ["none", "fail", "later", "other_machine"])
def test_a_sterilizer_load_without_a_passed_bowie_dick(test: str) -> None:
    s = Stamper()
    if test == "fail":
        bowie_dick(s, result="fail")
    if test == "other_machine":
        bowie_dick(s, machine="AUTO-9")
    load = s.make("steri.loaded", sets=[SET], load="A-1")
    if test == "later":
        bowie_dick(s)
    fold = fold_of(s.events)
    found = only(fold.anomalies(), "no_bowie_dick")
    assert dict(found.subject) == {"machine": "AUTO-2", "load": "A-1"}
    assert found.trigger == load["id"]
    assert fold.machine_tests("AUTO-2", "2026-11-28").anomalies == (found.id,)


def test_a_bowie_dick_of_the_day_before_does_not_count() -> None:
    s = Stamper()
    bowie_dick(s)
    s.advance(86_400_000)
    s.make("steri.loaded", sets=[SET], load="A-1")
    assert rules(fold_of(s.events)) == ["no_bowie_dick"]


def test_a_bowie_dick_arriving_late_from_a_peer_clears_the_anomaly() -> None:
    s = Stamper()
    test = s.make("steri.test", "C", kind="bowie_dick", result="pass")
    s.make("steri.loaded", "B", sets=[SET], load="B-1")
    fold = fold_of(s.events[1:])
    assert rules(fold) == ["no_bowie_dick"]
    fold.add(test)
    assert rules(fold) == []


def test_washer_loads_need_no_bowie_dick() -> None:
    s = Stamper()
    s.make("wash.loaded", sets=[SET], load="A-1")
    assert rules(fold_of(s.events)) == []


@pytest.mark.parametrize(
    ("steps", "step", "status"),
    [
        ([("set.received", {})], "set.inspected", "dirty"),
        ([("set.received", {})], "steri.loaded", "dirty"),
        ([("wash.loaded", {"sets": [SET], "load": "A-1"})], "set.received", "washing"),
        ([("set.inspected", {"set": SET})], "wash.loaded", "packed"),
    ],
)
def test_a_step_out_of_the_usual_order(
    steps: list[tuple[str, dict[str, Any]]], step: str, status: str
) -> None:
    s = Stamper()
    bowie_dick(s)
    for kind, fields in steps:
        s.make(kind, **{"set": SET, **fields} if kind.startswith("set.") else fields)
    if step.endswith(".loaded"):
        s.make(step, sets=[SET], load="A-9")
    else:
        s.make(step, set=SET)
    found = only(fold_of(s.events).anomalies(), "out_of_order")
    assert found.severity == "minor"
    assert status in found.message_en
    assert step in found.message_en
    assert dict(found.subject) == {"set": SET}


def test_a_set_used_twice_without_reprocessing_is_out_of_order() -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET])
    s.make("set.used", set=SET, patient="000000009")
    assert rules(fold_of(s.events)) == ["out_of_order"]


@pytest.mark.parametrize(("skew_min", "raised"), [(6, True), (-6, True), (4, False), (-4, False)])
def test_an_event_whose_wall_clock_is_far_from_its_hlc(skew_min: int, raised: bool) -> None:
    s = Stamper()
    note = s.make("note", "C", text="RAS", skew_ms=skew_min * 60_000)
    found = fold_of(s.events).anomalies()
    if not raised:
        assert found == []
        return
    assert [a.rule for a in found] == ["clock_skew"]
    assert found[0].events == (note["id"],)
    assert dict(found[0].subject) == {"node": "C"}
    assert str(skew_min) in found[0].message_en


def test_every_rule_has_a_test_here() -> None:
    assert set(RULES) == {
        "set_in_two_loads",
        "label_not_released",
        "dispatch_not_released",
        "release_without_passed_cycle",
        "use_after_expiry",
        "use_without_valid_label",
        "endoscope_not_reprocessed",
        "no_bowie_dick",
        "out_of_order",
        "clock_skew",
    }


def test_anomaly_ids_depend_on_rule_subject_and_events_only() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", "A", sets=[SET, OTHER], load="A-1")
    s.make("steri.loaded", "B", sets=[SET, OTHER], load="B-1")
    found = fold_of(s.events).anomalies()
    assert len({a.id for a in found}) == 2  # two sets, same two events
    for item in found:
        assert item.id == anomaly_id(item.rule, item.events, item.subject)
        assert item.id.startswith("an-")
        assert len(item.id) == 19
    assert [a.id for a in fold_of(list(reversed(s.events))).anomalies()] == [a.id for a in found]


def test_a_resolution_keeps_the_anomaly_listed_and_a_voided_one_reopens_it() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=[SET], load="A-1")
    fold = fold_of(s.events)
    (found,) = fold.anomalies()
    decision = s.make(
        "anomaly.resolved", "D", anomaly=found.id, decision="accepted", comment="BD fait sur papier"
    )
    fold.add(decision)
    (resolved,) = fold.anomalies()
    assert resolved.resolution is not None
    assert resolved.as_dict()["status"] == "resolved"
    assert resolved.as_dict()["resolution"]["comment"] == "BD fait sur papier"
    assert fold.anomalies(open_only=True) == []
    assert fold.anomaly(found.id) == resolved
    fold.add(s.make("event.voided", "D", target=decision["id"], reason="erreur"))
    assert fold.anomalies(open_only=True)[0].id == found.id


def test_a_resolution_arriving_before_its_anomaly_applies() -> None:
    s = Stamper()
    load = s.make("steri.loaded", sets=[SET], load="A-1")
    found_id = fold_of([load]).anomalies()[0].id
    decision = s.make("anomaly.resolved", "D", anomaly=found_id, decision="accepted")
    fold = fold_of([decision, load])
    assert fold.anomalies()[0].resolution is not None


def test_voiding_the_faulty_event_removes_the_anomaly() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", "A", sets=[SET], load="A-1")
    wrong = s.make("steri.loaded", "B", sets=[SET], load="B-1")
    fold = fold_of(s.events)
    assert rules(fold) == ["set_in_two_loads"]
    fold.add(s.make("event.voided", "B", target=wrong["id"], reason="erreur de scan"))
    assert rules(fold) == []


def test_anomalies_are_ordered_by_their_trigger_event() -> None:
    s = Stamper()
    s.make("note", text="a", skew_ms=600_000)
    s.make("steri.loaded", sets=[SET], load="A-1")
    s.make("note", text="b", skew_ms=-600_000)
    found = fold_of(list(reversed(s.events))).anomalies()
    assert [a.rule for a in found] == ["clock_skew", "no_bowie_dick", "clock_skew"]
    assert [a.trigger for a in found] == sorted(a.trigger for a in found)


def test_a_decision_recorded_under_an_endoscope_anomalys_former_id_still_counts() -> None:
    """An earlier version named the endoscope in the id: decisions recorded then stay."""
    s = Stamper()
    s.make("endo.used", "B", endoscope="2101234", patient="P1")
    s.make("endo.used", "B", endoscope="2101234", patient="P2")
    found = only(fold_of(s.events).anomalies(), "endoscope_not_reprocessed")
    assert found.former_id is not None
    assert found.former_id != found.id
    s.make("anomaly.resolved", "A", anomaly=found.former_id, decision="accepted")
    fold = fold_of(s.events)
    assert fold.anomalies(open_only=True) == []
    assert only(fold.anomalies(), "endoscope_not_reprocessed").resolution is not None

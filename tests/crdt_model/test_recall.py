"""Recall: from a lot, a set, a patient or a sterilizer to every patient it reached."""

from __future__ import annotations

import json

import pytest

from tests.crdt_model.fold_helpers import (
    FoldError,
    Stamper,
    bowie_dick,
    fold_of,
    process,
    recall_endoscope,
    recall_lot,
    recall_machine,
    recall_patient,
    recall_set,
    small_reference,
)


def two_loops() -> tuple[Stamper, dict[str, str], dict[str, str]]:
    """S1 and S2 in a first load (used on P1, P2), then S1 again in a second (used on P3)."""
    s = Stamper()
    bowie_dick(s)
    first = process(s, ["S1"], patient="P1")
    s.make("set.received", set="S2")
    s.make("steri.loaded", sets=["S2"], load="X-1")
    s.make("steri.cycle")
    s.make("load.released", load="X-1")
    s.make("label.printed", set="S2", load="X-1", lot="X-1", expires_on="2027-01-01")
    s.make("set.used", set="S2", patient="P2")
    s.make("set.received", set="S1")
    second = process(s, ["S1"], patient="P3")
    return s, first, second


def test_recall_of_a_lot_reaches_its_sets_and_their_patients_only() -> None:
    s, first, second = two_loops()
    fold = fold_of(s.events)
    answer = recall_lot(fold, first["steri"])
    assert answer["load"]["load"] == first["steri"]
    (entry,) = answer["sets"]
    assert entry["set"] == "S1"
    assert [d["to"] for d in entry["dispatches"]] == ["Bloc J"]
    assert [u["patient"] for u in entry["uses"]] == ["P1"]
    assert len(entry["labels"]) == 1
    assert answer["patients"] == ["P1"]
    assert recall_lot(fold, second["steri"])["patients"] == ["P3"]
    assert recall_lot(fold, "X-1")["patients"] == ["P2"]
    json.dumps(answer)
    with pytest.raises(FoldError):
        recall_lot(fold, "nope")


def test_a_voided_use_is_not_recalled() -> None:
    s, first, _ = two_loops()
    use = next(e for e in s.events if e["type"] == "set.used" and e["patient"] == "P1")
    s.make("event.voided", target=use["id"], reason="mauvais patient")
    assert recall_lot(fold_of(s.events), first["steri"])["patients"] == []


def test_recall_of_a_set_lists_each_load_and_its_uses() -> None:
    s, first, second = two_loops()
    answer = recall_set(fold_of(s.events), "S1")
    assert [(x["load"], x["kind"]) for x in answer["loads"]] == [
        (first["wash"], "wash"),
        (first["steri"], "steri"),
        (second["wash"], "wash"),
        (second["steri"], "steri"),
    ]
    assert [u["patient"] for u in answer["loads"][1]["uses"]] == ["P1"]
    assert [u["patient"] for u in answer["loads"][3]["uses"]] == ["P3"]
    assert answer["loads"][1]["safe"] is True
    assert answer["patients"] == ["P1", "P3"]
    assert recall_set(fold_of(s.events), "nothing")["loads"] == []


def test_a_use_recorded_after_the_sets_reception_is_still_recalled_with_its_load() -> None:
    """Node B, cut off, records a use after node A received the set back (or an operator
    types it in late): the use came from the set's sterilizer load, and recall says so."""
    s = Stamper()
    bowie_dick(s)
    first = process(s, ["S1"], use=False)
    s.make("set.received", "A", set="S1")
    s.make("set.used", "B", set="S1", patient="P9")
    s.make("wash.loaded", "A", sets=["S1"], load="W-9")
    s.make("set.used", "B", set="S1", patient="P8")  # typed in later still
    fold = fold_of(s.events)
    assert recall_lot(fold, first["steri"])["patients"] == ["P8", "P9"]
    by_set = recall_set(fold, "S1")
    assert by_set["patients"] == ["P8", "P9"]
    (steri,) = [x for x in by_set["loads"] if x["load"] == first["steri"]]
    assert [u["patient"] for u in steri["uses"]] == ["P9", "P8"]
    (used,) = recall_patient(fold, "P9")["sets"]
    assert used["load"] == first["steri"]
    assert used["reprocessed_since"] is True  # received in between: not vouched for
    assert used["safe"] is False


def test_a_set_listed_twice_in_one_load_is_followed_to_its_patients() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("set.received", set="S1")
    s.make("steri.loaded", sets=["S1"], load="X-1")
    s.make("steri.loaded", "B", sets=["S1", "S2"], load="X-1")  # the same load, named twice
    s.make("steri.cycle")
    s.make("load.released", load="X-1")
    s.make("set.used", set="S1", patient="P1")
    fold = fold_of(s.events)
    assert recall_lot(fold, "X-1")["patients"] == ["P1"]
    by_set = recall_set(fold, "S1")
    assert [x["load"] for x in by_set["loads"]] == ["X-1"]
    assert by_set["patients"] == ["P1"]


def test_a_set_in_two_open_loads_is_recalled_with_both() -> None:
    """Loaded into X-1, then into X-2 before X-1's cycle: it went through one of them."""
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", sets=["S1"], load="X-1")
    s.make("steri.loaded", sets=["S1"], load="X-2", machine="AUTO-3")
    s.make("steri.cycle", load="X-1")
    s.make("steri.cycle", load="X-2", machine="AUTO-3")
    s.make("set.used", set="S1", patient="P1")
    s.make("steri.loaded", sets=["S1"], load="X-3")  # after both cycles: a new loop
    s.make("steri.cycle", load="X-3")
    s.make("set.used", set="S1", patient="P2")
    fold = fold_of(s.events)
    assert recall_lot(fold, "X-1")["patients"] == ["P1"]
    assert recall_lot(fold, "X-2")["patients"] == ["P1"]
    assert recall_lot(fold, "X-3")["patients"] == ["P2"]


def test_a_load_that_never_had_a_cycle_does_not_claim_every_later_use() -> None:
    """X-1 was abandoned (no cycle), its set went through X-2, then X-3: X-1 is recalled
    with X-2's use (the set may have gone through either), not with X-3's."""
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", sets=["S1"], load="X-1")
    s.make("steri.loaded", sets=["S1"], load="X-2")
    s.make("steri.cycle", load="X-2")
    s.make("set.used", set="S1", patient="P1")
    s.make("steri.loaded", sets=["S1"], load="X-3")
    s.make("steri.cycle", load="X-3")
    s.make("set.used", set="S1", patient="P2")
    fold = fold_of(s.events)
    assert recall_lot(fold, "X-1")["patients"] == ["P1"]
    assert recall_lot(fold, "X-3")["patients"] == ["P2"]


def test_a_use_before_any_load_is_listed_without_one() -> None:
    s = Stamper()
    s.make("set.used", set="S1", patient="P1")  # stock sterilized before the outage
    answer = recall_set(fold_of(s.events), "S1")
    assert [(x["load"], [u["patient"] for u in x["uses"]]) for x in answer["loads"]] == [
        (None, ["P1"])
    ]
    assert answer["patients"] == ["P1"]


def test_recall_of_a_patient_names_sets_loads_and_endoscopes() -> None:
    s, first, _ = two_loops()
    s.make("endo.aer_cycle", "C", endoscope="GIF-1", machine="LDE-1", cycle_no=7, result="pass")
    s.make("endo.used", "B", endoscope="GIF-1", patient="P1")
    answer = recall_patient(fold_of(s.events), "P1")
    (used,) = answer["sets"]
    assert (used["set"], used["load"], used["machine"], used["safe"]) == (
        "S1",
        first["steri"],
        "AUTO-2",
        True,
    )
    (endo,) = answer["endoscopes"]
    assert endo["endoscope"] == "GIF-1"
    assert endo["reprocessing"] is not None
    assert endo["reprocessing"]["cycle_no"] == "7"
    assert recall_patient(fold_of(s.events), "P9") == {
        "patient": "P9",
        "sets": [],
        "endoscopes": [],
    }


def test_recall_of_a_patient_finds_the_reprocessing_scanned_under_the_other_code() -> None:
    s = Stamper()
    s.make(
        "endo.aer_cycle",
        "C",
        endoscope="GIF-H190-2101234",
        machine="LDE-1",
        cycle_no=9,
        result="pass",
    )
    s.make("endo.used", "B", endoscope="2101234", patient="P7")
    (endo,) = recall_patient(fold_of(s.events, reference=small_reference()), "P7")["endoscopes"]
    assert endo["endoscope"] == "2101234"
    assert endo["reprocessing"] is not None
    assert endo["reprocessing"]["cycle_no"] == "9"


def test_recall_of_a_sterilizer_since_its_last_passed_biological_indicator() -> None:
    s = Stamper()
    bowie_dick(s)
    old = process(s, ["S1"], patient="P1")
    process(s, ["S2"], patient="P2")
    s.make("steri.test", kind="bi", result="pass", lot=old["steri"])
    s.make("steri.test", kind="bi", result="fail")
    fold = fold_of(s.events)
    answer = recall_machine(fold, "AUTO-2")
    assert answer["last_passed_bi"]["lot"] == old["steri"]
    assert [x["load"]["sets"] for x in answer["loads"]] == [["S2"]]
    assert answer["patients"] == ["P2"]
    nothing = Stamper()
    bowie_dick(nothing)
    process(nothing, ["S1"], patient="P1")
    process(nothing, ["S2"], patient="P2")
    answer = recall_machine(fold_of(nothing.events), "AUTO-2")
    assert answer["last_passed_bi"] is None
    assert answer["patients"] == ["P1", "P2"]


def test_a_passed_indicator_without_lot_vouches_for_no_load() -> None:
    """Its result is read a day or two after the load it rode in, which it does not name:
    the loads in between are not vouched for."""
    s = Stamper()
    bowie_dick(s)
    process(s, ["S0"], patient="P0")
    first = process(s, ["S1"], patient="P1")
    s.make("steri.test", kind="bi", result="pass", lot=first["steri"])
    process(s, ["S2"], patient="P2")
    s.make("steri.test", kind="bi", result="pass")  # rode in S2's load, or S3's? not said
    process(s, ["S3"], patient="P3")
    assert recall_machine(fold_of(s.events), "AUTO-2")["patients"] == ["P2", "P3"]
    twice = Stamper()  # two passes in a row without lot: neither vouches for any load
    bowie_dick(twice)
    process(twice, ["S1"], patient="P1")
    twice.make("steri.test", kind="bi", result="pass")
    process(twice, ["S2"], patient="P2")
    twice.make("steri.test", kind="bi", result="pass")
    assert recall_machine(fold_of(twice.events), "AUTO-2")["patients"] == ["P1", "P2"]
    alone = Stamper()
    bowie_dick(alone)
    process(alone, ["S1"], patient="P1")
    alone.make("steri.test", kind="bi", result="pass")
    process(alone, ["S2"], patient="P2")
    assert recall_machine(fold_of(alone.events), "AUTO-2")["patients"] == ["P1", "P2"]


def test_an_indicator_that_failed_earlier_but_was_read_later_widens_the_recall() -> None:
    s = Stamper()
    bowie_dick(s)
    first = process(s, ["S1"], patient="P1")
    second = process(s, ["S2"], patient="P2")
    third = process(s, ["S3"], patient="P3")
    s.make("steri.test", kind="bi", result="pass", lot=third["steri"])
    s.make("steri.test", kind="bi", result="fail", lot=second["steri"])  # read after
    answer = recall_machine(fold_of(s.events), "AUTO-2")
    assert [x["load"]["load"] for x in answer["loads"]] == [
        first["steri"],
        second["steri"],
        third["steri"],
    ]
    s.make("steri.test", kind="bi", result="pass", lot=first["steri"])
    s.make("steri.test", kind="bi", result="pass", lot=third["steri"])
    answer = recall_machine(fold_of(s.events), "AUTO-2")
    assert answer["patients"] == []  # a later pass after the failure: the machine is vouched for


def test_a_load_recorded_twice_is_recalled_once() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("steri.loaded", sets=["S1"], load="X-1")
    s.make("steri.loaded", "B", sets=["S2"], load="X-1")
    s.make("steri.cycle")
    s.make("set.used", set="S1", patient="P1")
    answer = recall_machine(fold_of(s.events), "AUTO-2")
    assert [x["load"]["load"] for x in answer["loads"]] == ["X-1"]
    assert answer["patients"] == ["P1"]


def test_recall_of_an_endoscope_and_of_its_washer_disinfector() -> None:
    """A bad cycle of LDE-1: every patient scoped after it is found, by endoscope or by the
    machine; a use without any reprocessing before it says so."""
    s = Stamper()
    s.make("endo.used", "B", endoscope="GIF-1", patient="P0")  # before any reprocessing
    s.make("endo.aer_cycle", "C", endoscope="GIF-1", machine="LDE-1", cycle_no=7, result="pass")
    s.make("endo.used", "B", endoscope="GIF-1", patient="P1")
    s.make("endo.aer_cycle", "C", endoscope="GIF-2", machine="LDE-1", cycle_no=8, result="pass")
    s.make("endo.used", "B", endoscope="GIF-2", patient="P2")
    s.make("endo.aer_cycle", "C", endoscope="GIF-1", machine="LDE-2", cycle_no=3, result="pass")
    s.make("endo.used", "B", endoscope="GIF-1", patient="P3")
    fold = fold_of(s.events)
    answer = recall_endoscope(fold, "GIF-1")
    assert [(u["patient"], (u["reprocessing"] or {}).get("machine")) for u in answer["uses"]] == [
        ("P0", None),
        ("P1", "LDE-1"),
        ("P3", "LDE-2"),
    ]
    assert answer["patients"] == ["P0", "P1", "P3"]
    by_machine = recall_machine(fold, "LDE-1")
    assert [(u["endoscope"], u["patient"]) for u in by_machine["endoscope_uses"]] == [
        ("GIF-1", "P1"),
        ("GIF-2", "P2"),
    ]
    assert by_machine["patients"] == ["P1", "P2"]
    assert by_machine["loads"] == []
    json.dumps(by_machine)

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


def test_a_passed_indicator_without_lot_counts_from_its_record() -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, ["S1"], patient="P1")
    s.make("steri.test", kind="bi", result="pass")
    process(s, ["S2"], patient="P2")
    assert recall_machine(fold_of(s.events), "AUTO-2")["patients"] == ["P2"]

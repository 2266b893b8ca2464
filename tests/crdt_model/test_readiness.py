"""Readiness of a day's planning, the safety checks, the station's warnings, label data."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.crdt_model.fold_helpers import (
    START_MS,
    Fold,
    FoldError,
    Reference,
    Stamper,
    bowie_dick,
    check_label,
    check_release,
    check_use,
    fold_of,
    label_data,
    process,
    readiness,
    small_reference,
    small_tables,
    warnings_for,
)

DAY = "2026-11-30"


def stock() -> Fold:
    """#111 and #112 sterile, #113 sterile but expired on DAY, JDIGELAP01 dispatched."""
    s = Stamper()
    bowie_dick(s)
    for code, expires in (
        ("JDIGGRBA#111", "2027-05-27"),
        ("JDIGGRBA#112", "2027-01-01"),
        ("JDIGGRBA#113", "2026-11-29"),
    ):
        process(s, [code], use=False, expires_on=expires)
    process(s, ["JDIGELAP01"], use=False)
    fold = fold_of(s.events, reference=small_reference())
    for code in ("JDIGGRBA#111", "JDIGGRBA#112", "JDIGGRBA#113"):
        fold.add(s.make("event.voided", target=_dispatch_of(fold, code), reason="resté en stock"))
    return fold


def _dispatch_of(fold: Fold, code: str) -> str:
    return next(e for e in fold.set_status(code).events if fold.record(e).type == "set.dispatched")  # type: ignore[union-attr]


def test_each_operation_gets_its_sets_earliest_first_and_soonest_to_expire_first() -> None:
    answer = readiness(stock(), DAY)
    ops = answer["operations"]
    assert [(o["room"], o["start"], o["status"]) for o in ops] == [
        ("J Salle 2", "07:30", "ok"),
        ("J Salle 1", "08:00", "ok"),
        ("J Salle 1", "11:00", "short"),
        ("J Salle 1", "14:00", "ok"),
        ("J Salle 2", "15:00", "no_profile"),
    ]
    assert ops[0]["sets"] == [
        {
            "type_code": "JDIGGRBA",
            "name": "JOL-GRANDE BASE DIGESTIVE",
            "qty": 1,
            "assigned": ["JDIGGRBA#112"],
            "used": [],
            "missing": 0,
        }
    ]
    assert ops[1]["sets"][0]["assigned"] == ["JDIGGRBA#111"]
    assert ops[2]["sets"][0] == {**ops[2]["sets"][0], "assigned": [], "missing": 1}
    assert ops[3]["sets"][0]["assigned"] == ["JDIGELAP01"]  # dispatched counts as available
    assert ops[0]["instruments"] == [{"ref": "BB084R", "qty": 1}]
    assert ops[0]["patient_code"] == "000000002"
    assert answer["rooms"] == [
        {"room": "J Salle 1", "total": 3, "ok": 2, "short": 1, "no_profile": 0},
        {"room": "J Salle 2", "total": 2, "ok": 1, "short": 0, "no_profile": 1},
    ]
    assert answer["summary"] == {"total": 5, "ok": 3, "short": 1, "no_profile": 1}
    assert answer["reference"] == "TEST-1"
    json.dumps(answer)


def test_a_day_without_planning_or_reference() -> None:
    assert readiness(stock(), "2026-12-25")["operations"] == []
    assert readiness(Fold(), DAY)["operations"] == []


def test_endoscopy_readiness_counts_turnaround_and_leaves_out_repairs() -> None:
    fold = stock()
    endoscopy = readiness(fold, DAY)["endoscopy"]
    assert [(p["start"], p["status"], p["endoscope"]) for p in endoscopy["procedures"]] == [
        ("08:00", "ok", "2101234"),
        ("08:30", "short", None),
        ("09:30", "ok", "2101234"),
    ]
    assert endoscopy["summary"] == {"total": 3, "ok": 2, "short": 1, "no_profile": 0}
    s = Stamper()
    s.make("endo.aer_cycle", "C", endoscope="GIF-H190-2101235", result="pass")
    fold.add_many(s.events)  # back from repair, reprocessed
    endoscopy = readiness(fold, DAY)["endoscopy"]
    assert [p["status"] for p in endoscopy["procedures"]] == ["ok", "ok", "ok"]


@pytest.mark.parametrize(
    ("kind", "extra"), [("endo.leak_test", {}), ("endo.aer_cycle", {"cycle_no": "812"})]
)
def test_an_endoscope_whose_last_step_failed_is_given_to_no_procedure(
    kind: str, extra: dict[str, str]
) -> None:
    fold = stock()
    s = Stamper()
    s.make(kind, "C", endoscope="2101234", result="fail", **extra)  # perforated, or a bad cycle
    fold.add_many(s.events)
    endoscopy = readiness(fold, DAY)["endoscopy"]
    assert [p["endoscope"] for p in endoscopy["procedures"]] == [None, None, None]
    assert endoscopy["summary"]["short"] == 3


def test_readiness_at_hospital_scale(tmp_path: Path) -> None:
    """The answer at hospital scale (its time is measured by bench/fold, not here)."""
    from node._bundle import read_bundle
    from node._sample import write_sample

    bundle = read_bundle(write_sample(tmp_path / "b", scale="hospital", start=date(2026, 12, 1)))
    ref = Reference(bundle.tables, export_id=bundle.export_id)
    s = Stamper()
    bowie_dick(s)
    codes = sorted(ref.instance_type)[:600]
    for start in range(0, len(codes), 20):
        process(s, codes[start : start + 20], use=False)
    fold = fold_of(s.events, reference=ref)
    answer = readiness(fold, "2026-12-01")
    assert answer["summary"]["total"] > 30
    assert answer["summary"]["ok"] > 0


def test_check_release() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    fold = fold_of(s.events)
    assert check_release(fold, "A-9") == "unknown load A-9"
    assert check_release(fold, "A-1") == "load A-1 has no cycle recorded"
    assert check_release(fold, "A-1", decision="rejected") is None
    fold.add(s.make("steri.cycle", cycle_no=815, result="fail"))
    assert check_release(fold, "A-1") == "the cycle 815 of load A-1 failed"
    s2 = Stamper()
    s2.make("steri.loaded", sets=["S1"], load="B-1")
    s2.make("steri.cycle")
    fold = fold_of(s2.events)
    assert check_release(fold, "B-1") is None
    fold.add(s2.make("load.released", load="B-1"))
    assert check_release(fold, "B-1") == "load B-1 is already released"
    fold.add(s2.make("load.released", load="B-1", decision="rejected"))
    assert check_release(fold, "B-1") == "load B-1 was rejected"
    s3 = Stamper()
    s3.make("wash.loaded", sets=["S1"], load="C-1")
    s3.make("wash.cycle")
    fold = fold_of(s3.events)
    assert check_release(fold, "C-1") == (
        "load C-1 is a washer load: only sterilizer loads are released"
    )


def test_check_label() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    s.make("steri.cycle")
    fold = fold_of(s.events)
    assert check_label(fold, "S1", "A-1") == "set S1, load A-1: the load is not released yet"
    assert check_label(fold, "S1", "A-9") == "unknown load A-9"
    fold.add(s.make("load.released", load="A-1"))
    assert check_label(fold, "S1", "A-1") is None
    assert check_label(fold, "S2", "A-1") == "set S2, load A-1: this is not the set's latest load"
    fold.add(s.make("set.received", set="S1"))
    assert check_label(fold, "S1", "A-1") == "set S1, load A-1: this is not the set's latest load"


def test_check_use() -> None:
    fold = stock()
    assert check_use(fold, "JDIGGRBA#111", DAY) is None
    assert check_use(fold, "JDIGELAP01", DAY) is None
    assert check_use(fold, "JDIGGRBA#113", DAY) == "set JDIGGRBA#113 expired on 2026-11-29"
    refused = check_use(fold, "JDIGGRBA#999", DAY)
    assert refused is not None
    assert refused.code == "set_no_record"
    assert refused.startswith("set JDIGGRBA#999 is not sterile (status: unknown)")
    fold.add(Stamper(start_ms=1_796_000_000_000).make("set.received", set="JDIGGRBA#111"))
    assert check_use(fold, "JDIGGRBA#111", DAY) == "set JDIGGRBA#111 is not sterile (status: dirty)"


def test_warnings_for_facts_that_break_a_rule() -> None:
    s = Stamper()
    s.make("steri.loaded", sets=["S1"], load="A-1")
    s.make("set.received", set="S2")
    fold = fold_of(s.events)
    today = "2026-11-28"
    loaded = {
        "type": "steri.loaded",
        "machine": "AUTO-2",
        "program": "P",
        "sets": ["S1", "S2", "S3"],
    }
    assert warnings_for(fold, loaded, today) == [
        "set S1 is still in open load A-1",
        "steri.loaded of set S2 is out of the usual order (status: dirty)",
        "sterilizer AUTO-2 has no passed Bowie-Dick test on 2026-11-28",
    ]
    assert warnings_for(fold, {"type": "set.inspected", "set": "S2", "result": "ok"}, today) == [
        "set.inspected of set S2 is out of the usual order (status: dirty)"
    ]
    assert warnings_for(fold, {"type": "set.dispatched", "set": "S1", "to": "Bloc"}, today) == [
        "set S1: no cycle is recorded"
    ]
    assert warnings_for(fold, {"type": "note", "text": "x"}, today) == []


def test_a_set_code_the_reference_does_not_list_is_warned_of() -> None:
    fold = Fold(reference=small_reference())
    loaded = {"type": "wash.loaded", "machine": "LAV-1", "sets": ["JDIGGRBA#111", "JDIGGRBA#11"]}
    assert warnings_for(fold, loaded, DAY) == [
        "set JDIGGRBA#11 is not in the reference data: check the code"
    ]
    assert warnings_for(fold, {"type": "set.received", "set": "NOPE#1"}, DAY) == [
        "set NOPE#1 is not in the reference data: check the code"
    ]
    assert warnings_for(fold, {"type": "set.received", "set": "JDIGELAP01"}, DAY) == []
    # before any reference is imported, every code would be unknown: nothing is said
    assert warnings_for(Fold(), {"type": "set.received", "set": "NOPE#1"}, DAY) == []


def test_the_normal_flow_gets_no_warning() -> None:
    s = Stamper()
    bowie_dick(s)
    fold = Fold()
    for event in s.events:
        fold.add(event)
    ids = process(s, ["S1"])
    fold = Fold()
    for event in s.events:
        body = {k: v for k, v in event.items() if k not in ("id", "hlc", "at", "node", "user")}
        assert warnings_for(fold, body, "2026-11-28") == [], event["type"]
        fold.add(event)
    assert ids


def test_label_data_and_reprint() -> None:
    s = Stamper()
    bowie_dick(s)
    s.make("set.inspected", set="JDIGGRBA#111", packer="Marie Dupont")
    s.make("steri.loaded", sets=["JDIGGRBA#111"], load="A-1")
    s.make("steri.cycle", cycle_no="00815", ended="2026-11-28T23:40:00+01:00")
    s.make("load.released", load="A-1")
    fold = fold_of(s.events, reference=small_reference())
    data = label_data(fold, None, "JDIGGRBA#111", "A-1", {})
    assert data == {
        "set": "JDIGGRBA#111",
        "set_type": "JDIGGRBA",
        "set_name": "JOL-GRANDE BASE DIGESTIVE",
        "load": "A-1",
        "lot": "A-1",
        "sterilized_on": "2026-11-28",
        "expires_on": "2027-05-27",
        "shelf_life_days": 180,
        "packaging": "ONE STEP 121 X121",
        "sterilizer": "AUTO-2",
        "program": "NORMAL 134°",
        "cycle_no": "00815",
        "packer": "Marie Dupont",
        "reprint": False,
        "previous_label": None,
    }
    override = label_data(
        fold, None, "JDIGGRBA#111", "A-1", {"shelf_life_by_packaging": {"ONE STEP 121 X121": 90}}
    )
    assert override["expires_on"] == "2027-02-26"
    fold.add(
        s.make(
            "label.printed",
            set="JDIGGRBA#111",
            load="A-1",
            lot="A-1",
            expires_on="2027-05-27",
            label_id="L-1",
        )
    )
    fold.settings = {"shelf_life_by_packaging": {"ONE STEP 121 X121": 90}}
    again = label_data(fold, small_reference(), "JDIGGRBA#111", "A-1", fold.settings)
    assert (again["reprint"], again["lot"], again["expires_on"], again["previous_label"]) == (
        True,
        "A-1",
        "2027-05-27",
        "L-1",
    )
    with pytest.raises(FoldError):
        label_data(fold, None, "JDIGGRBA#111", "A-9", {})


def test_an_endoscope_recorded_under_two_codes_is_judged_by_its_whole_history() -> None:
    """Steps scanned under serial and model-serial are walked as one endoscope's."""
    fold = stock()
    s = Stamper()
    s.make("endo.aer_cycle", "C", endoscope="2101234", result="pass", cycle_no="811")
    s.make("endo.leak_test", "C", endoscope="GIF-H190-2101234", result="fail")
    fold.add_many(s.events)
    endoscopy = readiness(fold, DAY)["endoscopy"]
    assert [p["endoscope"] for p in endoscopy["procedures"]] == [None, None, None]
    s.make("endo.aer_cycle", "C", endoscope="2101234", result="pass", cycle_no="812")
    fold.add_many(s.events[-1:])  # a cycle alone after a leak: not ready
    endoscopy = readiness(fold, DAY)["endoscopy"]
    assert [p["endoscope"] for p in endoscopy["procedures"]] == [None, None, None]
    s.make("endo.leak_test", "C", endoscope="2101234", result="pass")
    s.make("endo.cleaned", "C", endoscope="GIF-H190-2101234")
    s.make("endo.aer_cycle", "C", endoscope="2101234", result="pass", cycle_no="812")
    fold.add_many(s.events[-3:])  # repaired and reprocessed, under both codes
    endoscopy = readiness(fold, DAY)["endoscopy"]
    assert [p["endoscope"] for p in endoscopy["procedures"]] == ["2101234", None, "2101234"]
    # passed under model-serial, failed under the serial, then stored under model-serial
    s.make("endo.aer_cycle", "C", endoscope="GIF-H190-2101234", result="pass", cycle_no="813")
    s.make("endo.aer_cycle", "C", endoscope="2101234", result="fail", cycle_no="814")
    s.make("endo.stored", "C", endoscope="GIF-H190-2101234")
    fold.add_many(s.events[-3:])
    endoscopy = readiness(fold, DAY)["endoscopy"]
    assert [p["endoscope"] for p in endoscopy["procedures"]] == [None, None, None]


def test_a_model_serial_scan_names_the_reference_serial() -> None:
    ref = small_reference()
    assert ref.endoscope_serial("GIF-H190-2101234") == "2101234"
    assert ref.endoscope_serial("2101234") == "2101234"
    assert ref.endoscope_serial("UNKNOWN-1") == "UNKNOWN-1"


def test_a_sterile_set_the_export_does_not_list_yet_counts_for_its_type() -> None:
    """JDIGGRBA#114 was made after the platform's export: sterile, it is available like the
    listed ones (the 11:00 operation was short without it)."""
    fold = stock()
    ref = fold.reference
    assert ref is not None
    assert "JDIGGRBA#114" not in ref.instance_type
    s = Stamper(start_ms=START_MS + 86_400_000)  # the day after the stock's events
    bowie_dick(s)
    process(s, ["JDIGGRBA#114"], use=False, expires_on="2027-03-01")
    dispatched = next(e for e in s.events if e["type"] == "set.dispatched")
    s.make("event.voided", target=dispatched["id"], reason="resté en stock")
    fold.add_many(s.events)
    ops = readiness(fold, DAY)["operations"]
    assert ops[2]["status"] == "ok"
    assigned = [code for op in ops for entry in op["sets"] for code in entry["assigned"]]
    assert "JDIGGRBA#114" in assigned


def _ops(fold: Fold) -> list[tuple[str, str, list[str]]]:
    """(start, status, sets given) of each planned operation of DAY."""
    return [
        (o["start"], o["status"], [c for need in o["sets"] for c in need["assigned"]])
        for o in readiness(fold, DAY)["operations"]
    ]


def test_a_surgeons_own_profile_lines_replace_the_lines_for_no_one() -> None:
    fold = stock()
    own = {
        "profile_code": "PDIG001",
        "procedure": "Colectomie",
        "surgeon": "DR X",  # as the planning writes it, case aside
        "item_kind": "set",
        "item_code": "JDIGELAP",
        "qty": 1,
    }
    fold.reference = small_reference(more_profiles=[own])
    assert _ops(fold) == [
        ("07:30", "ok", ["JDIGGRBA#112"]),  # Dr Y: the lines for no one
        ("08:00", "ok", ["JDIGELAP01"]),  # Dr X: his own line only
        ("11:00", "short", []),
        ("14:00", "short", []),
        ("15:00", "no_profile", []),
    ]


def test_a_row_without_profile_takes_the_one_profile_of_its_procedure() -> None:
    fold = stock()
    rows = small_tables()["or_planning"]
    rows[0] = {**rows[0], "profile_code": ""}  # 08:00 Colectomie, Dr X
    fold.reference = small_reference(or_planning=rows)
    ops = readiness(fold, DAY)["operations"]
    assert [(o["start"], o["profile_code"], o["status"]) for o in ops][:2] == [
        ("07:30", "PDIG001", "ok"),
        ("08:00", "PDIG001", "ok"),
    ]
    assert ops[-1]["status"] == "no_profile"  # "Autre": no profile names it


def test_sets_used_on_the_patient_that_day_count_for_the_operation() -> None:
    """The 07:30 operation took #112 at 07:20: it is done with it, and the 08:00 one gets
    #111 (not #111 for 07:30 again and nothing for 08:00)."""
    fold = stock()
    s = Stamper(start_ms=1_796_000_000_000)  # the planned day
    assert s.day() == DAY
    fold.add(s.make("set.used", "B", set="JDIGGRBA#112", patient="000000002"))
    ops = readiness(fold, DAY)["operations"]
    assert ops[0]["sets"][0]["assigned"] == ["JDIGGRBA#112"]
    assert ops[0]["sets"][0]["used"] == ["JDIGGRBA#112"]
    assert _ops(fold)[1] == ("08:00", "ok", ["JDIGGRBA#111"])


def test_a_set_dispatched_to_the_room_goes_to_an_operation_of_that_room() -> None:
    fold = stock()
    assert _ops(fold)[:2] == [("07:30", "ok", ["JDIGGRBA#112"]), ("08:00", "ok", ["JDIGGRBA#111"])]
    s = Stamper(start_ms=1_795_900_000_000)
    fold.add(s.make("set.dispatched", set="JDIGGRBA#112", to="J Salle 1"))
    assert _ops(fold)[:2] == [
        ("07:30", "ok", ["JDIGGRBA#111"]),  # Salle 2: not the set sent to Salle 1
        ("08:00", "ok", ["JDIGGRBA#112"]),
    ]
    fold.add(s.make("set.dispatched", set="JDIGGRBA#111", to="J Salle 1"))
    assert _ops(fold)[0] == ("07:30", "ok", ["JDIGGRBA#112"])  # none there: any


def test_tomorrows_readiness_counts_no_set_today_takes() -> None:
    """Two sets, today's two operations take both: tomorrow's are short, not ok with
    the same sets (they are used today and sterilized again only later)."""
    from tests.crdt_model.fold_helpers import given_sets, readiness_from

    fold = stock()
    tomorrow = "2026-12-01"
    rows = small_tables()["or_planning"]
    later = [{**row, "date": tomorrow} for row in rows]
    fold.reference = small_reference(or_planning=[*rows, *later])
    today_sets = given_sets(readiness(fold, DAY))
    assert today_sets == {"JDIGGRBA#111", "JDIGGRBA#112", "JDIGELAP01"}
    alone = readiness(fold, tomorrow)
    assert alone["summary"]["ok"] == 3  # as if today took nothing
    seen_today = readiness_from(fold, tomorrow, DAY)
    assert seen_today["summary"]["ok"] == 0
    assert readiness_from(fold, DAY, DAY) == readiness(fold, DAY)

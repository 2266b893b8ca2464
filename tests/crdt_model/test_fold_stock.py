"""Stock sterilized before the outage: its platform label (set.stocked) vouches for it.

On the first day of an outage every set on the shelves was sterilized under the platform:
no event of the cluster names it. Recording its label's lot and expiry makes it sterile
stock: dispatched, used and counted by readiness like a set of a released load of ours, until
it is reprocessed; and a recall of that platform lot reaches its patients.
"""

from __future__ import annotations

from tests.crdt_model.fold_helpers import (
    DAY,
    Fold,
    Stamper,
    bowie_dick,
    check_label,
    check_stock,
    check_use,
    fold_of,
    process,
    readiness,
    recall_lot,
    recall_patient,
    recall_set,
    rules,
    small_reference,
    warnings_for,
)

SET = "JDIGGRBA#111"
LOT = "L260914-0042"
PLANNED = "2026-11-30"
PATIENT = "000501492"


def _stock(s: Stamper, code: str = SET, expires_on: str = "2027-03-13", lot: str = LOT) -> str:
    return str(s.make("set.stocked", set=code, lot=lot, expires_on=expires_on)["id"])


def _stock_submission(**fields: str) -> dict[str, str]:
    return {"type": "set.stocked", "set": SET, "lot": LOT, "expires_on": "2027-03-13", **fields}


def _fold(s: Stamper) -> Fold:
    return fold_of(s.events, reference=small_reference())


def test_a_set_with_no_record_is_refused_for_use_until_its_label_is_recorded() -> None:
    s = Stamper()
    fold = _fold(s)
    refused = check_use(fold, SET, DAY)
    assert refused is not None
    assert refused.code == "set_no_record"
    assert fold.set_status(SET, DAY).status == "unknown"

    stocked = _stock(s)
    fold = _fold(s)
    view = fold.set_status(SET, DAY)
    assert (view.status, view.expires_on, view.labelled) == ("sterile", "2027-03-13", True)
    assert view.stock is not None
    assert (view.stock.lot, view.stock.event) == (LOT, stocked)
    assert view.label is None  # no label of ours
    assert check_use(fold, SET, DAY) is None


def test_stock_is_dispatched_and_used_without_anomaly_and_counted_by_readiness() -> None:
    s = Stamper()
    _stock(s)
    fold = _fold(s)
    assert list(readiness(fold, PLANNED)["operations"][0]["sets"][0]["assigned"]) == [SET]
    dispatch = {"type": "set.dispatched", "set": SET, "to": "Bloc J"}
    assert warnings_for(fold, dispatch, DAY) == []
    s.make("set.dispatched", set=SET, to="Bloc J")
    assert check_use(_fold(s), SET, DAY) is None
    s.make("set.used", set=SET, patient=PATIENT)
    fold = _fold(s)
    assert fold.set_status(SET, DAY).status == "used"
    assert fold.anomalies() == []


def test_expired_stock_is_refused_and_a_use_recorded_elsewhere_is_an_anomaly() -> None:
    s = Stamper()
    _stock(s, expires_on="2026-11-27")  # the day before DAY
    fold = _fold(s)
    view = fold.set_status(SET, DAY)
    assert (view.status, view.expired) == ("expired", True)
    refused = check_use(fold, SET, DAY)
    assert refused is not None
    assert refused.code == "set_expired"
    assert readiness(fold, PLANNED)["operations"][0]["sets"][0]["assigned"] == []
    s.make("set.used", "B", set=SET, patient=PATIENT)  # a node that had not heard of it
    assert rules(_fold(s)) == ["use_after_expiry"]


def test_a_use_with_no_record_at_all_is_an_anomaly_when_it_arrives() -> None:
    s = Stamper()
    s.make("set.used", "B", set=SET, patient=PATIENT)
    assert rules(_fold(s)) == ["use_without_valid_label"]


def test_reprocessing_ends_the_stock_and_its_label() -> None:
    s = Stamper()
    _stock(s)
    s.make("set.received", set=SET)
    fold = _fold(s)
    view = fold.set_status(SET, DAY)
    assert (view.status, view.stock, view.labelled, view.expires_on) == (
        "dirty",
        None,
        False,
        None,
    )
    refused = check_use(fold, SET, DAY)
    assert refused is not None
    assert refused.code == "set_not_sterile"


def test_an_opened_stock_set_is_vouched_for_no_more() -> None:
    s = Stamper()
    _stock(s)
    s.make("set.inspected", set=SET, result="ok")  # opened at the sterile store: out of order
    s.make("set.dispatched", set=SET, to="Bloc J")
    fold = _fold(s)
    assert fold.set_status(SET, DAY).stock is None
    assert rules(fold) == ["out_of_order", "dispatch_not_released"]


def test_stock_goes_through_the_loop_of_ours_once_used() -> None:
    s = Stamper()
    _stock(s)
    s.make("set.used", set=SET, patient=PATIENT)
    bowie_dick(s)
    process(s, [SET], patient="000000009")
    fold = _fold(s)
    assert fold.set_status(SET, DAY).stock is None
    assert fold.anomalies() == []


def test_stocking_a_set_the_cluster_follows_changes_nothing_but_twice_is_harmless() -> None:
    s = Stamper()
    _stock(s)
    _stock(s)  # the same label scanned again at the inventory, on another shelf
    assert _fold(s).anomalies() == []
    assert check_stock(_fold(s), _stock_submission()) is None
    assert warnings_for(_fold(s), _stock_submission(), DAY) == []
    s.make("set.received", set=SET)
    fold = _fold(s)
    assert [w.code for w in warnings_for(fold, _stock_submission(), DAY)] == ["out_of_order"]
    refused = check_stock(fold, _stock_submission())
    assert refused is not None
    assert (refused.code, refused.params["status"]) == ("set_has_record", "dirty")
    _stock(s)  # recorded by a node that had not heard of the reception
    fold = _fold(s)
    assert rules(fold) == ["out_of_order"]
    assert fold.set_status(SET, DAY).status == "dirty"  # an old label vouches for nothing


def test_a_quarantined_or_used_set_stays_so_whatever_label_is_recorded() -> None:
    s = Stamper()
    bowie_dick(s)
    process(s, [SET], steri_result="fail", decision="rejected")
    _stock(s)
    fold = _fold(s)
    assert fold.set_status(SET, DAY).status == "quarantined"
    assert check_use(fold, SET, DAY) is not None
    assert readiness(fold, PLANNED)["operations"][0]["sets"][0]["assigned"] == []
    assert "out_of_order" in rules(fold)

    s = Stamper()
    _stock(s, code="JDIGGRBA#112")
    s.make("set.used", set="JDIGGRBA#112", patient=PATIENT)
    _stock(s, code="JDIGGRBA#112")  # the label from the patient's file, read again
    fold = _fold(s)
    assert fold.set_status("JDIGGRBA#112", DAY).status == "used"
    assert check_use(fold, "JDIGGRBA#112", DAY) is not None
    assert rules(fold) == ["out_of_order"]


def test_another_label_on_stock_is_a_conflict_and_the_first_label_stays() -> None:
    s = Stamper()
    _stock(s, expires_on="2026-11-27")
    other = _stock_submission(lot="L999", expires_on="2027-06-01")
    refused = check_stock(_fold(s), other)
    assert refused is not None
    assert refused.code == "set_has_record"
    s.make("set.stocked", "B", set=SET, lot="L999", expires_on="2027-06-01")  # a node apart
    fold = _fold(s)
    assert rules(fold) == ["out_of_order"]
    view = fold.set_status(SET, DAY)
    assert view.stock is not None
    assert (view.stock.lot, view.expires_on, view.status) == (LOT, "2026-11-27", "expired")
    s.make("set.used", "B", set=SET, patient=PATIENT)
    fold = _fold(s)
    assert (recall_lot(fold, LOT)["patients"], recall_lot(fold, "L999")["patients"]) == (
        [PATIENT],
        [PATIENT],
    )
    assert [e["load"] for e in recall_set(fold, SET)["loads"] if e["uses"]] == [LOT, "L999"]


def test_a_label_whose_expiry_comes_before_its_sterilization_is_refused() -> None:
    refused = check_stock(
        _fold(Stamper()), _stock_submission(expires_on="2026-01-01", sterilized_on="2026-02-01")
    )
    assert refused is not None
    assert refused.code == "stock_dates"
    assert check_stock(_fold(Stamper()), _stock_submission(sterilized_on="2026-09-14")) is None


def test_a_voided_stock_record_vouches_for_nothing() -> None:
    s = Stamper()
    stocked = _stock(s)
    s.make("event.voided", target=stocked, reason="wrong set")
    fold = _fold(s)
    assert fold.set_status(SET, DAY).status == "unknown"
    refused = check_use(fold, SET, DAY)
    assert refused is not None
    assert refused.code == "set_no_record"
    s.make("set.used", "B", set=SET, patient=PATIENT)
    assert rules(_fold(s)) == ["use_without_valid_label"]


def test_no_label_of_ours_for_stock() -> None:
    s = Stamper()
    _stock(s)
    fold = _fold(s)
    refused = check_label(fold, SET, LOT)
    assert refused is not None
    s.make("label.printed", "B", set=SET, load=LOT, lot=LOT, expires_on="2027-03-13")
    assert rules(_fold(s)) == ["label_not_released"]


def test_recall_of_a_platform_lot_reaches_the_patients_of_its_stock() -> None:
    s = Stamper()
    _stock(s)
    _stock(s, code="JDIGGRBA#112")
    _stock(s, code="JDIGGRBA#113", lot="L260914-0043")
    s.make("set.dispatched", set=SET, to="Bloc J")
    use = s.make("set.used", set=SET, patient=PATIENT, room="J Salle 3")
    s.make("set.used", set="JDIGGRBA#113", patient="000000007")
    process(s, [SET], patient="000000009")  # later uses come from a load of ours
    fold = _fold(s)

    found = recall_lot(fold, LOT)
    assert (found["load"]["load"], found["load"]["kind"]) == (LOT, "platform")
    assert found["load"]["sets"] == [SET, "JDIGGRBA#112"]
    assert found["patients"] == [PATIENT]
    first = found["sets"][0]
    assert [u["event"] for u in first["uses"]] == [use["id"]]
    assert [d["to"] for d in first["dispatches"]] == ["Bloc J"]
    assert found["sets"][1]["uses"] == []

    by_patient = recall_patient(fold, PATIENT)["sets"]
    assert [(u["set"], u["load"], u["kind"], u["safe"]) for u in by_patient] == [
        (SET, LOT, "platform", True)
    ]
    entries = recall_set(fold, SET)["loads"]
    assert entries[0]["load"] == LOT
    assert entries[0]["kind"] == "platform"
    assert [u["patient"] for u in entries[0]["uses"]] == [PATIENT]
    assert [u["patient"] for u in entries[-1]["uses"]] == ["000000009"]


def test_recall_of_a_platform_lot_follows_its_sets_until_sterilized_again() -> None:
    """A use typed in late, after the set was received and washed, still came from the lot
    (as recall by set and by patient say); a lot typed with other case and separators is
    the same lot."""
    s = Stamper()
    _stock(s)
    s.make("set.dispatched", set=SET, to="Bloc J")
    s.make("set.received", set=SET)
    s.make("wash.loaded", sets=[SET], load="A-1")
    s.make("set.used", "B", set=SET, patient=PATIENT)  # from the paper backlog
    fold = _fold(s)
    assert recall_lot(fold, LOT)["patients"] == [PATIENT]
    assert recall_lot(fold, "l260914 0042")["patients"] == [PATIENT]
    assert recall_set(fold, SET)["patients"] == [PATIENT]
    (use,) = recall_patient(fold, PATIENT)["sets"]
    assert (use["load"], use["safe"], use["reprocessed_since"]) == (LOT, False, True)
    s.make("set.inspected", set=SET)
    s.make("steri.loaded", sets=[SET], load="A-2")
    s.make("set.used", "B", set=SET, patient="000000009")
    assert recall_lot(_fold(s), LOT)["patients"] == [PATIENT]

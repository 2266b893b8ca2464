"""A dispatch moves a set; it never makes an unsafe set usable (status, use, readiness, label)."""

from __future__ import annotations

from crdt_model._fold import Fold
from tests.crdt_model.fold_helpers import (
    Stamper,
    bowie_dick,
    check_label,
    check_use,
    fold_of,
    readiness,
    small_reference,
    warnings_for,
)

SET = "JDIGGRBA#111"
DAY = "2026-11-28"
PLANNED = "2026-11-30"


def _to_sterilizer(s: Stamper) -> None:
    bowie_dick(s)
    s.make("set.received", set=SET)
    s.make("wash.loaded", sets=[SET], load="A-1")
    s.make("wash.cycle")
    s.make("set.inspected", set=SET)
    s.make("steri.loaded", sets=[SET], load="A-2")


def _sterile(s: Stamper) -> None:
    _to_sterilizer(s)
    s.make("steri.cycle")
    s.make("load.released", load="A-2")
    s.make("label.printed", set=SET, load="A-2", lot="A-2", expires_on="2027-05-27")


def _assigned(s: Stamper) -> list[str]:
    fold = fold_of(s.events, reference=small_reference())
    return list(readiness(fold, PLANNED)["operations"][0]["sets"][0]["assigned"])


def _dispatch_warnings(s: Stamper) -> list[str]:
    fold = fold_of(s.events, reference=small_reference())
    submission = {"type": "set.dispatched", "set": SET, "to": "Bloc J"}
    return [w.code for w in warnings_for(fold, submission, DAY)]


def _dispatched_stays_quarantined(s: Stamper, reason: str) -> Fold:
    """Dispatch the set: it stays quarantined for `reason`, unusable and counted nowhere."""
    s.make("set.dispatched", set=SET, to="Bloc J")
    fold = fold_of(s.events, reference=small_reference())
    view = fold.set_status(SET, DAY)
    assert (view.status, view.reason) == ("quarantined", reason)
    assert check_use(fold, SET, DAY) is not None
    assert _assigned(s) == []
    return fold


def test_a_sterile_set_dispatched_is_usable_and_counted() -> None:
    s = Stamper()
    _sterile(s)
    assert _dispatch_warnings(s) == []
    s.make("set.dispatched", set=SET, to="Bloc J")
    fold = fold_of(s.events, reference=small_reference())
    assert fold.set_status(SET, DAY).status == "dispatched"
    assert check_use(fold, SET, DAY) is None
    assert _assigned(s) == [SET]
    assert fold.anomalies() == []


def test_a_used_set_dispatched_again_stays_used() -> None:
    s = Stamper()
    _sterile(s)
    s.make("set.dispatched", set=SET, to="Bloc J")
    s.make("set.used", set=SET, patient="000501492")
    assert _dispatch_warnings(s) == ["out_of_order"]
    s.make("set.dispatched", set=SET, to="Bloc J Salle 4")  # a wrong scan: recorded anyway
    fold = fold_of(s.events, reference=small_reference())
    assert fold.set_status(SET, DAY).status == "used"
    refused = check_use(fold, SET, DAY)
    assert refused is not None
    assert refused.code == "set_not_sterile"
    assert _assigned(s) == []
    assert [a.rule for a in fold.anomalies()] == ["out_of_order"]


def test_a_quarantined_set_dispatched_stays_quarantined() -> None:
    s = Stamper()
    _to_sterilizer(s)
    s.make("steri.cycle", result="fail")
    assert _dispatch_warnings(s) == ["set_not_safe"]
    fold = _dispatched_stays_quarantined(s, "cycle_failed")
    assert "dispatch_not_released" in [a.rule for a in fold.anomalies()]


def test_a_set_of_a_load_not_released_cannot_be_used_once_dispatched() -> None:
    s = Stamper()
    _to_sterilizer(s)
    s.make("steri.cycle")
    s.make("set.dispatched", set=SET, to="Bloc J")
    fold = fold_of(s.events, reference=small_reference())
    refused = check_use(fold, SET, DAY)
    assert refused is not None
    assert refused.code == "set_not_safe"
    assert refused.params["why"] == "not_released"
    assert check_label(fold, SET, "A-2") is not None
    assert _assigned(s) == []


def test_a_release_voided_after_the_dispatch_makes_the_set_unusable() -> None:
    s = Stamper()
    _to_sterilizer(s)
    s.make("steri.cycle")
    release = s.make("load.released", load="A-2")
    s.make("label.printed", set=SET, load="A-2", lot="A-2", expires_on="2027-05-27")
    s.make("set.dispatched", set=SET, to="Bloc J")
    s.make("event.voided", target=release["id"], reason="libérée par erreur")
    fold = fold_of(s.events, reference=small_reference())
    assert check_use(fold, SET, DAY) is not None
    assert _assigned(s) == []


def test_a_torn_wrap_after_release_refuses_label_use_and_counts_nowhere() -> None:
    s = Stamper()
    _sterile(s)
    s.make("set.inspected", set=SET, result="nok")  # a torn wrap seen at dispatch
    fold = fold_of(s.events, reference=small_reference())
    label = check_label(fold, SET, "A-2")
    assert label is not None
    assert label.params["why"] == "quarantined"
    assert _dispatch_warnings(s) == ["out_of_order"]
    _dispatched_stays_quarantined(s, "inspection_failed")


def test_a_failed_biological_indicator_takes_its_load_back() -> None:
    """Read a day or two after the load: its sets are quarantined from then on (not used,
    labelled, dispatched or counted), whatever was recorded before stays as it was."""
    s = Stamper()
    _sterile(s)
    s.make("set.dispatched", set=SET, to="Bloc J")
    before = fold_of(s.events, reference=small_reference()).anomalies()
    bi = s.make("steri.test", machine="AUTO-2", kind="bi", result="fail", lot="A-2")
    fold = fold_of(s.events, reference=small_reference())
    view = fold.set_status(SET, DAY)
    assert (view.status, view.reason) == ("quarantined", "bi_failed")
    refused = check_use(fold, SET, DAY)
    assert refused is not None
    assert refused.code == "set_not_sterile"
    refused = check_label(fold, SET, "A-2")
    assert refused is not None
    assert refused.params["why"] == "bi_failed"
    assert _assigned(s) == []
    assert _dispatch_warnings(s) == ["set_not_safe"]
    assert fold.anomalies() == before  # nothing recorded before is judged again
    s.make("event.voided", target=bi["id"], reason="mauvais lot")
    fold = fold_of(s.events, reference=small_reference())
    assert fold.set_status(SET, DAY).status == "dispatched"
    assert check_use(fold, SET, DAY) is None


def test_a_load_whose_indicator_failed_is_not_released_and_recalls_as_unsafe() -> None:
    from tests.crdt_model.fold_helpers import check_release, recall_set

    s = Stamper()
    _to_sterilizer(s)
    s.make("steri.cycle")
    s.make("steri.test", machine="AUTO-2", kind="bi", result="fail", lot="A-2")
    fold = fold_of(s.events, reference=small_reference())
    refused = check_release(fold, "A-2")
    assert refused is not None
    assert refused.code == "indicator_failed"
    (entry,) = [e for e in recall_set(fold, SET)["loads"] if e["load"] == "A-2"]
    assert entry["safe"] is False

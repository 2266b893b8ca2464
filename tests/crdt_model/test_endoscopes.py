"""An endoscope is ready once reprocessed in full: a passed leak test and a cleaning, then a
passed AER cycle. A failure stays until then; a use makes it not ready; readiness follows."""

from __future__ import annotations

from tests.crdt_model.fold_helpers import (
    Fold,
    Stamper,
    fold_of,
    readiness,
    small_reference,
)

SERIAL = "2101234"
PLANNED = "2026-11-30"  # small_reference's endoscopy planning: 08:00, 08:30, 09:30


def _fold(s: Stamper) -> Fold:
    return fold_of(s.events, reference=small_reference())


def _reprocess(s: Stamper, *, leak: bool = True, clean: bool = True) -> None:
    if leak:
        s.make("endo.leak_test", "C", endoscope=SERIAL, result="pass")
    if clean:
        s.make("endo.cleaned", "C", endoscope=SERIAL)
    s.make("endo.aer_cycle", "C", endoscope=SERIAL, machine="LDE-1", cycle_no="7", result="pass")


def _given(fold: Fold) -> list[str | None]:
    return [p["endoscope"] for p in readiness(fold, PLANNED)["endoscopy"]["procedures"]]


def _whys(fold: Fold) -> list[str]:
    return [dict(a.params).get("why", "") for a in fold.anomalies()]


def test_a_cycle_without_leak_test_and_cleaning_leaves_it_not_ready() -> None:
    for leak, clean in ((False, False), (True, False), (False, True)):
        s = Stamper()
        s.advance(2 * 86_400_000)  # on the planned day
        s.make("endo.used", "B", endoscope=SERIAL, patient="P1")
        _reprocess(s, leak=leak, clean=clean)
        fold = _fold(s)
        assert fold.endoscope(SERIAL).ready is False
        assert _given(fold) == [None, None, None]
        s.make("endo.used", "B", endoscope=SERIAL, patient="P2")
        assert _whys(_fold(s)) == ["incomplete_reprocessing"]
    s = Stamper()
    s.make("endo.used", "B", endoscope=SERIAL, patient="P1")
    _reprocess(s)
    fold = _fold(s)
    assert fold.endoscope(SERIAL).ready is True
    assert _given(fold) == [SERIAL, None, SERIAL]  # an hour's turnaround after 08:00


def test_a_failed_leak_test_is_not_wiped_out_by_a_use_or_a_cycle() -> None:
    s = Stamper()
    _reprocess(s)
    s.make("endo.leak_test", "C", endoscope=SERIAL, result="fail")
    s.make("endo.used", "B", endoscope=SERIAL, patient="P1")  # used all the same
    fold = _fold(s)
    assert _whys(fold) == ["failed_step"]
    assert _given(fold) == [None, None, None]
    s.make("endo.aer_cycle", "C", endoscope=SERIAL, cycle_no="8", result="pass")
    assert _given(_fold(s)) == [None, None, None]  # a cycle alone: still to repair
    _reprocess(s)  # repaired: tested, cleaned and reprocessed
    assert _given(_fold(s)) == [SERIAL, None, SERIAL]


def test_a_failed_cycle_run_again_after_the_same_leak_test_and_cleaning_makes_it_ready() -> None:
    s = Stamper()
    s.make("endo.leak_test", "C", endoscope=SERIAL, result="pass")
    s.make("endo.cleaned", "C", endoscope=SERIAL)
    s.make("endo.aer_cycle", "C", endoscope=SERIAL, cycle_no="9", result="fail")
    assert _given(_fold(s)) == [None, None, None]
    s.make("endo.aer_cycle", "C", endoscope=SERIAL, cycle_no="10", result="pass")
    assert _fold(s).endoscope(SERIAL).ready is True


def test_a_scope_used_on_the_day_is_not_offered_again_that_day_until_reprocessed() -> None:
    s = Stamper()
    _reprocess(s)
    s.advance(2 * 86_400_000)  # the planned day, 06:00
    s.make("endo.used", "B", endoscope=SERIAL, patient="P1")
    assert _given(_fold(s)) == [None, None, None]
    _reprocess(s)
    assert _given(_fold(s)) == [SERIAL, None, SERIAL]
    earlier = Stamper()  # used the day before: reprocessed overnight, as planned
    _reprocess(earlier)
    earlier.advance(86_400_000)
    earlier.make("endo.used", "B", endoscope=SERIAL, patient="P1")
    assert _given(_fold(earlier)) == [SERIAL, None, SERIAL]


def test_export_states_are_read_whatever_their_case_and_accents() -> None:
    for state in ("EN REPARATION", "En réparation", "Hors service", "  en  RÉPARATION "):
        ref = small_reference()
        ref.endoscopes[SERIAL] = {**ref.endoscopes[SERIAL], "state": state}
        assert _given(Fold(reference=ref)) == [None, None, None], state
    assert _given(Fold(reference=small_reference())) == [SERIAL, None, SERIAL]

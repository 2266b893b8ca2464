"""The rules of DESIGN.md and the walks that apply them to each set and endoscope.

Anomalies have a deterministic id (rule, subject, events), a severity, the events involved and
a message in French and English (with its parameters, to say it in other languages). A set
walks its own records only; what its loads add (cycle, release, rejection) is read "as of"
each step from the load, so that cycles and decisions cost nothing per set and a set replays
alone.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._views import KIND_OF, EndoscopeView, Record, anomaly_ids, record_id

if TYPE_CHECKING:
    from ._fold import Fold

SET_IN_TWO_LOADS: Final = "set_in_two_loads"
LABEL_NOT_RELEASED: Final = "label_not_released"
DISPATCH_NOT_RELEASED: Final = "dispatch_not_released"
RELEASE_WITHOUT_PASSED_CYCLE: Final = "release_without_passed_cycle"
USE_AFTER_EXPIRY: Final = "use_after_expiry"
USE_WITHOUT_VALID_LABEL: Final = "use_without_valid_label"
ENDOSCOPE_NOT_REPROCESSED: Final = "endoscope_not_reprocessed"
NO_BOWIE_DICK: Final = "no_bowie_dick"
OUT_OF_ORDER: Final = "out_of_order"
CLOCK_SKEW: Final = "clock_skew"

CRITICAL: Final = "critical"
MAJOR: Final = "major"
MINOR: Final = "minor"

SKEW_LIMIT_MS: Final = 5 * 60 * 1000
"""An event whose wall clock is further than this from its HLC raises clock_skew."""

SEVERITY: Final[dict[str, str]] = {
    SET_IN_TWO_LOADS: MAJOR,
    LABEL_NOT_RELEASED: MAJOR,
    DISPATCH_NOT_RELEASED: MAJOR,
    RELEASE_WITHOUT_PASSED_CYCLE: CRITICAL,
    USE_AFTER_EXPIRY: CRITICAL,
    USE_WITHOUT_VALID_LABEL: CRITICAL,
    ENDOSCOPE_NOT_REPROCESSED: CRITICAL,
    NO_BOWIE_DICK: MAJOR,
    OUT_OF_ORDER: MINOR,
    CLOCK_SKEW: MINOR,
}
RULES: Final = tuple(SEVERITY)

# Messages never quote a patient code: anomalies are shown on every screen.
_MESSAGES: Final[dict[str, tuple[str, str]]] = {
    SET_IN_TWO_LOADS: (
        "Le set {set} est chargé dans {load} alors qu'il est encore dans la charge ouverte {other}.",
        "Set {set} loaded into {load} while still in open load {other}.",
    ),
    LABEL_NOT_RELEASED: (
        "Étiquette imprimée pour le set {set} (charge {load}) alors que {why_fr}.",
        "Label printed for set {set} (load {load}) although {why_en}.",
    ),
    DISPATCH_NOT_RELEASED: (
        "Set {set} distribué alors que {why_fr} (charge {load}).",
        "Set {set} dispatched although {why_en} (load {load}).",
    ),
    RELEASE_WITHOUT_PASSED_CYCLE: (
        "Charge {load} libérée avec un cycle {why_fr}.",
        "Load {load} released with a {why_en} cycle.",
    ),
    USE_AFTER_EXPIRY: (
        "Set {set} utilisé le {day} après sa péremption du {expires_on}.",
        "Set {set} used on {day} after its expiry on {expires_on}.",
    ),
    USE_WITHOUT_VALID_LABEL: (
        "Set {set} utilisé sans étiquette valide : {why_fr}.",
        "Set {set} used without a valid label: {why_en}.",
    ),
    ENDOSCOPE_NOT_REPROCESSED: (
        "Endoscope {endoscope} utilisé sans cycle de désinfection réussi depuis {why_fr}.",
        "Endoscope {endoscope} used without a passed reprocessing cycle since {why_en}.",
    ),
    NO_BOWIE_DICK: (
        "Stérilisateur {machine} chargé le {day} sans test de Bowie-Dick réussi ({load}).",
        "Sterilizer {machine} loaded on {day} without a passed Bowie-Dick test ({load}).",
    ),
    OUT_OF_ORDER: (
        "Étape {step} du set {set} hors de l'ordre habituel (état précédent : {status}).",
        "Step {step} of set {set} out of the usual order (previous status: {status}).",
    ),
    CLOCK_SKEW: (
        "Horloge du nœud {node} décalée de {minutes} min par rapport à l'HLC.",
        "Clock of node {node} is {minutes} min away from its HLC.",
    ),
}

# Reasons, in French and English, used in messages and in the check functions.
WHY: Final[dict[str, tuple[str, str]]] = {
    "unknown_load": ("la charge est inconnue", "the load is unknown"),
    "no_load": (
        "le set n'est dans aucune charge de stérilisation",
        "the set is in no sterilizer load",
    ),
    "not_in_load": (
        "ce n'est pas la dernière charge du set",
        "this is not the set's latest load",
    ),
    "no_cycle": ("aucun cycle n'est enregistré", "no cycle is recorded"),
    "cycle_failed": ("le cycle a échoué", "the cycle failed"),
    "rejected": ("la charge a été refusée", "the load was rejected"),
    "not_released": ("la charge n'est pas encore libérée", "the load is not released yet"),
    "no_label": (
        "aucune étiquette n'a été imprimée pour sa charge",
        "no label was printed for its load",
    ),
    "wash_load": (
        "sa dernière charge est une charge de lavage",
        "its last load is a washer load",
    ),
    "quarantined": ("le set est en quarantaine", "the set is quarantined"),
    "missing": ("absent", "missing"),
    "failed": ("en échec", "failed"),
    "last_use": ("sa dernière utilisation", "its last use"),
    "failed_step": ("une étape en échec", "a failed step"),
    "bi_failed": (
        "l'indicateur biologique de sa charge a échoué",
        "the biological indicator of its load failed",
    ),
    "incomplete_reprocessing": (
        "un cycle de désinfection sans test d'étanchéité ni nettoyage avant",
        "a disinfection cycle without a leak test and a cleaning before it",
    ),
}


@dataclass(frozen=True, slots=True)
class Resolution:
    """A person's decision on an anomaly (an anomaly.resolved event)."""

    event: str
    decision: str
    comment: str | None
    user: str | None
    day: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "event": self.event,
            "decision": self.decision,
            "comment": self.comment,
            "user": self.user,
            "day": self.day,
        }


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One breach of a rule, found by the fold; its id depends on the rule and events only."""

    id: str
    rule: str
    severity: str
    events: tuple[str, ...]
    subject: tuple[tuple[str, str], ...]
    day: str
    message_fr: str
    message_en: str
    resolution: Resolution | None = None
    params: tuple[tuple[str, str], ...] = ()
    """The messages' parameters (`why` as its code in WHY), to say them in other languages."""
    former_id: str | None = None
    """The id an earlier version gave it (an endoscope's named its code): decisions recorded
    under it still count."""

    @property
    def trigger(self) -> str:
        """The latest event involved: the one that revealed the anomaly."""
        return self.events[-1]

    @property
    def open(self) -> bool:
        """True while no decision is recorded."""
        return self.resolution is None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "events": list(self.events),
            "subject": dict(self.subject),
            "day": self.day,
            "message": {"fr": self.message_fr, "en": self.message_en},
            "status": "open" if self.resolution is None else "resolved",
            "resolution": None if self.resolution is None else self.resolution.as_dict(),
        }


def anomaly_id(rule: str, events: Iterable[str], subject: Iterable[tuple[str, str]] = ()) -> str:
    """The deterministic id of an anomaly: its rule, its subject and the sorted ids of its events."""
    about = "".join(f"{k}={v}\n" for k, v in sorted(subject))
    text = rule + "\n" + about + "\n".join(sorted(events))
    return "an-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def make_anomaly(
    rule: str,
    events: Iterable[str | None],
    day: str,
    why: str | None = None,
    **subject: str,
) -> Anomaly:
    """Build an anomaly of `rule` about `subject` (set, load, machine, endoscope...)."""
    ids = tuple(sorted({e for e in events if e is not None}))
    said: dict[str, str] = {"day": day, **subject}
    params = dict(said)
    if why is not None:
        said["why"] = why
        params["why_fr"], params["why_en"] = WHY[why]
    fr, en = _MESSAGES[rule]
    kept = {k: v for k, v in subject.items() if k not in ("status", "step", "minutes", "other")}
    if why is not None:
        kept["reason"] = why
    about = tuple(sorted(kept.items()))
    # an endoscope's code follows the reference (model-serial, then serial): its events
    # name it for good, so a resolution stays with its anomaly whatever the export says
    key = tuple(item for item in about if item[0] != "endoscope")
    return Anomaly(
        id=anomaly_id(rule, ids, key),
        former_id=None if key == about else anomaly_id(rule, ids, about),
        rule=rule,
        severity=SEVERITY[rule],
        events=ids,
        subject=about,
        day=day,
        message_fr=fr.format_map(params),
        message_en=en.format_map(params),
        params=tuple(sorted(said.items())),
    )


# -- the usual order of a set's steps -------------------------------------------------

# Quarantine reasons (SetView.reason).
WASH_FAILED: Final = "wash_failed"
CYCLE_FAILED: Final = "cycle_failed"
LOAD_REJECTED: Final = "load_rejected"
RELEASED_WITHOUT_CYCLE: Final = "released_without_cycle"
BI_FAILED: Final = "bi_failed"
"""A biological indicator that rode in the set's load (or its platform lot) failed: read
when answering (status, use, labels, readiness), never by the walk, so results that come
days later change nothing already recorded."""
INSPECTION_FAILED: Final = "inspection_failed"

_AFTER_STERILIZATION: Final = frozenset({CYCLE_FAILED, LOAD_REJECTED, RELEASED_WITHOUT_CYCLE})
_USUAL_BEFORE: Final[dict[str, frozenset[str]]] = {
    "set.received": frozenset({"unknown", "dirty", "dispatched", "used", "sterile", "quarantined"}),
    "wash.loaded": frozenset({"unknown", "dirty", "washed", "quarantined"}),
    "set.inspected": frozenset({"unknown", "washed", "packed", "quarantined"}),
    "steri.loaded": frozenset({"unknown", "packed", "sterile", "quarantined"}),
    "set.dispatched": frozenset({"sterile", "dispatched"}),
    "set.stocked": frozenset({"unknown"}),
}


def out_of_order(step: str, status: str, reason: str | None) -> bool:
    """True when `step` does not usually follow a set in `status` (quarantined for `reason`)."""
    if step == "set.used":
        return status == "used"  # used twice without going through reprocessing
    usual = _USUAL_BEFORE.get(step)
    if usual is None or status not in usual:
        return usual is not None
    if status != "quarantined":
        return False
    if step == "set.inspected":
        return reason != INSPECTION_FAILED
    if step == "steri.loaded":
        return reason not in _AFTER_STERILIZATION
    return False


# -- the walk of a set ---------------------------------------------------------------------


class Finding:
    """An anomaly of a set as its walk finds it, made into an `Anomaly` (its id hashed, its
    messages said) when first read: a heal or a refold finds thousands that nobody reads
    before the next replay finds them again."""

    __slots__ = ("_made", "events", "rec", "rule", "subject")

    def __init__(
        self, rule: str, events: list[str | None], rec: Record, subject: dict[str, str]
    ) -> None:
        self.rule = rule
        self.events = events
        self.rec = rec
        """The record that found it (the latest of its events)."""
        self.subject = subject
        self._made: Anomaly | None = None

    @property
    def trigger(self) -> str:
        """The id of the record that found it."""
        return self.rec.id

    def anomaly(self) -> Anomaly:
        """The anomaly, made once."""
        if self._made is None:
            self._made = make_anomaly(self.rule, self.events, self.rec.day, **self.subject)
        return self._made


class SetState:
    """A set's state after its own records (its load's cycle and decision are read lazily)."""

    __slots__ = (
        "code",
        "found",
        "items",
        "kind",
        "label",
        "last",
        "load",
        "loaded",
        "location",
        "packaging",
        "packer",
        "phase",
        "reason",
        "since",
        "since_day",
        "status",
        "stock",
    )

    def __init__(self, code: str) -> None:
        self.code = code
        self.items: list[Record] = []  # its own records, voided included, in id order
        self.found: list[Finding] = []
        self.last = ""
        self.clear("unknown", None)

    def clear(self, status: str, rec: Record | None) -> None:
        """Forget the set's process state: it starts again from `status`."""
        self.status = status
        self.since: str | None = None if rec is None else rec.id
        self.since_day: str | None = None if rec is None else rec.day
        self.load: str | None = None
        self.kind: str | None = None
        self.loaded = ""
        self.phase = False  # True while its load's cycle and decision set its status
        self.label: Record | None = None
        self.packaging: str | None = None
        self.packer: str | None = None
        self.location: str | None = None
        self.reason: str | None = None
        self.stock: Record | None = None
        """Its set.stocked record while it is stock sterilized before the outage (the
        platform's label vouches for it, as a released load and our label would)."""

    def move(self, status: str, rec: Record, reason: str | None = None) -> None:
        """A new status, set by `rec`."""
        self.status = status
        self.since = rec.id
        self.since_day = rec.day
        self.reason = reason

    def flag(self, rule: str, events: list[str | None], rec: Record, **params: str) -> None:
        """Record an anomaly found at `rec` (made when read: see `Finding`)."""
        self.found.append(Finding(rule, [*events, rec.id], rec, {"set": self.code, **params}))

    @property
    def anomalies(self) -> list[Anomaly]:
        """The anomalies its walk found, in the order found."""
        return [finding.anomaly() for finding in self.found]


def effective(fold: Fold, st: SetState, at: str) -> tuple[str, str | None, Record | None]:
    """The set's (status, reason, record that set it) as of `at`, its load's facts included.

    While the load's phase lasts, the load's last cycle, first release and first rejection
    since the set entered it give the status; after the set moved on, a failed cycle or a
    rejection recorded later still quarantines it (unless it was used).
    """
    load = None if st.load is None else fold.load_state(st.load)
    if load is None:
        return st.status, st.reason, None
    if st.phase:
        cycle, released, rejected = load.state_between(st.loaded, at)
        if rejected is not None:
            return "quarantined", LOAD_REJECTED, rejected
        if cycle is not None and cycle.result != "pass":
            return "quarantined", WASH_FAILED if st.kind == "wash" else CYCLE_FAILED, cycle
        if st.kind == "wash":
            return ("washed", None, cycle) if cycle is not None else (st.status, None, None)
        if cycle is not None:
            if released is None:
                return "sterilized", None, cycle
            return "sterile", None, released if released.id > cycle.id else cycle
        if released is not None:
            return "quarantined", RELEASED_WITHOUT_CYCLE, released
        return st.status, None, None
    if st.status != "used" and st.since is not None:
        bad = load.first_failure(st.since, at)
        if bad is not None:
            failed = LOAD_REJECTED if bad.type == "load.released" else CYCLE_FAILED
            return "quarantined", WASH_FAILED if st.kind == "wash" else failed, bad
    return st.status, st.reason, None


def catch_up(fold: Fold, st: SetState, at: str) -> None:
    """Bring the set's status up to `at` with its load's facts, before its own step at `at`."""
    if st.load is None:
        return
    status, reason, by = effective(fold, st, at)
    if by is not None and (status != st.status or reason != st.reason or by.id != st.since):
        st.move(status, by, reason)


def step_set(fold: Fold, st: SetState, rec: Record) -> None:
    """Apply one of the set's own records (its events, and the loads it enters)."""
    kind = rec.type
    if kind in _SET_STEPS:
        catch_up(fold, st, rec.id)
        if kind == "set.received":
            _received(st, rec)
        elif kind == "set.inspected":
            _inspected(st, rec)
        elif kind == "label.printed":
            _label(fold, st, rec)
        elif kind == "set.dispatched":
            _dispatched(fold, st, rec)
        elif kind == "set.used":
            _used(fold, st, rec)
        elif kind == "set.stocked":
            _stocked(st, rec)
        else:
            _loaded(fold, st, rec)
    st.last = rec.id


def replay_set(fold: Fold, st: SetState, since: str) -> None:
    """Recompute a set from its last reception before `since` (from scratch if none)."""
    voided = fold.voided
    items = st.items
    i = bisect.bisect_left(items, since, key=record_id) - 1
    while i >= 0 and (items[i].type != "set.received" or items[i].id in voided):
        i -= 1
    if i < 0:
        st.found = []
        st.clear("unknown", None)
        st.last = ""
    else:
        restart = items[i]
        st.found = [f for f in st.found if f.trigger <= restart.id]
        st.clear("dirty", restart)
        st.last = restart.id
    for rec in items[i + 1 :]:
        if rec.id not in voided:
            step_set(fold, st, rec)


def load_problem(
    fold: Fold, st: SetState, load: str | None, at: str
) -> tuple[str | None, list[str | None]]:
    """Why the set's load `load` is not released and safe as of `at` (None when it is)."""
    if load is None:
        return (None, []) if st.stock is not None else ("no_load", [])
    if load != st.load:
        return "not_in_load", []
    if st.kind != "steri":
        return "wash_load", [st.loaded]
    state = fold.load_state(load)
    if state is None:
        return "unknown_load", []
    cycle, released, rejected = state.state_between(st.loaded, at)
    if rejected is not None:
        return "rejected", [st.loaded, rejected.id]
    if cycle is None:
        return "no_cycle", [st.loaded]
    if cycle.result != "pass":
        return "cycle_failed", [st.loaded, cycle.id]
    if released is None:
        return "not_released", [st.loaded, cycle.id]
    return None, []


def _received(st: SetState, rec: Record) -> None:
    if out_of_order(rec.type, st.status, st.reason):
        st.flag(OUT_OF_ORDER, [st.since], rec, step=rec.type, status=st.status)
    st.clear("dirty", rec)


def _loaded(fold: Fold, st: SetState, rec: Record) -> None:
    load = rec.load
    if load == st.load:
        return  # the same load named twice
    # the set's load is its current one only until a step takes it out (e.g. its inspection)
    current = None if st.load is None or not st.phase else fold.load_state(st.load)
    if current is not None and current.open_at(st.loaded, rec.id):
        st.flag(SET_IN_TWO_LOADS, [st.loaded], rec, load=load or "", other=st.load or "")
    elif out_of_order(rec.type, st.status, st.reason):
        st.flag(OUT_OF_ORDER, [st.since], rec, step=rec.type, status=st.status)
    kind = KIND_OF[rec.type]
    packaging, packer = st.packaging, st.packer
    st.clear("washing" if kind == "wash" else "in_sterilizer", rec)
    if kind == "steri":
        st.packaging, st.packer = packaging, packer
    st.load, st.kind, st.loaded, st.phase = load, kind, rec.id, True


def stock_read_again(st: SetState, status: str, lot: Any, expires_on: Any) -> bool:
    """True when a set in `status` is stock of this very label (lot and expiry): the same
    label read again (an inventory scanned twice), which changes nothing."""
    stock = st.stock
    return (
        status in ("sterile", "dispatched")
        and stock is not None
        and (stock.get("lot"), stock.get("expires_on")) == (lot, expires_on)
    )


def _stocked(st: SetState, rec: Record) -> None:
    """Stock from before the outage: only a set nothing says anything of becomes stock.

    A set the cluster follows (dirty, quarantined, used...) keeps its status: a label
    from before the outage vouches for nothing the set went through since. The same
    label read again (an inventory scanned twice) changes nothing; another label on stock
    is a conflict, flagged, and the first one stays.
    """
    if st.status == "unknown":
        st.clear("sterile", rec)
        st.stock = rec
        st.location = rec.get("location")
    elif not stock_read_again(st, st.status, rec.get("lot"), rec.get("expires_on")):
        st.flag(OUT_OF_ORDER, [st.since], rec, step=rec.type, status=st.status)


def _inspected(st: SetState, rec: Record) -> None:
    if out_of_order(rec.type, st.status, st.reason):
        st.flag(OUT_OF_ORDER, [st.since], rec, step=rec.type, status=st.status)
    st.stock = None  # opened: its old label vouches no more
    if rec.result == "ok":
        st.move("packed", rec)
    else:
        st.move("quarantined", rec, INSPECTION_FAILED)
    st.phase = False
    st.packaging = rec.get("packaging") or st.packaging
    st.packer = rec.get("packer") or st.packer


def _label(fold: Fold, st: SetState, rec: Record) -> None:
    why, related = load_problem(fold, st, rec.load, rec.id)
    if why is not None:
        st.flag(LABEL_NOT_RELEASED, related, rec, load=rec.load or "-", why=why)
    if rec.load is not None and rec.load == st.load:
        st.label = rec


def _dispatched(fold: Fold, st: SetState, rec: Record) -> None:
    why, related = load_problem(fold, st, st.load, rec.id)
    if why is not None:
        st.flag(DISPATCH_NOT_RELEASED, related, rec, load=st.load or "-", why=why)
    elif out_of_order(rec.type, st.status, st.reason):
        st.flag(OUT_OF_ORDER, [st.since], rec, step=rec.type, status=st.status)
    if st.status not in ("quarantined", "used"):  # moving a set does not make it safe again
        st.move("dispatched", rec)
    st.phase = False
    st.location = rec.get("to")


def _used(fold: Fold, st: SetState, rec: Record) -> None:
    label = st.label or st.stock
    why, related = load_problem(fold, st, st.load, rec.id)
    if why is None and label is None:
        why = "no_label"
    if why is not None:
        label_id = None if label is None else label.id
        st.flag(USE_WITHOUT_VALID_LABEL, [*related, label_id], rec, why=why)
    elif label is not None:
        expires = label.get("expires_on")
        if isinstance(expires, str) and rec.day > expires:
            st.flag(USE_AFTER_EXPIRY, [label.id], rec, expires_on=expires)
    if out_of_order(rec.type, st.status, st.reason):
        st.flag(OUT_OF_ORDER, [st.since], rec, step=rec.type, status=st.status)
    st.move("used", rec)
    st.phase = False
    st.location = rec.get("room") or st.location


_SET_STEPS: Final = frozenset(
    {
        "set.received",
        "set.stocked",
        "wash.loaded",
        "steri.loaded",
        "set.inspected",
        "label.printed",
        "set.dispatched",
        "set.used",
    }
)
"""The records that step a set (step_set calls one function per type)."""


# -- the walk of an endoscope ---------------------------------------------------------------


class EndoState:
    """An endoscope's walk: ready once reprocessed (a passed leak test and a cleaning, then
    a passed AER cycle), not ready once used or failed; a failure stays until then."""

    __slots__ = (
        "anomalies",
        "blocker",
        "cleaned",
        "code",
        "failure",
        "items",
        "last",
        "last_aer",
        "last_use",
        "leak_ok",
        "ready",
        "since",
        "status",
    )

    def __init__(self, code: str) -> None:
        self.code = code
        self.items: list[Record] = []
        self.reset()

    def reset(self) -> None:
        """Back to knowing nothing."""
        self.anomalies: list[Anomaly] = []
        self.status = "unknown"
        self.ready: bool | None = None
        self.blocker: Record | None = None
        """Why it is not ready: its last use, a failed step, or a cycle run without the
        steps before it."""
        self.failure: Record | None = None
        """A failed leak test or AER cycle no full reprocessing has answered yet (a use or a
        cleaning since does not: to repair or redo)."""
        self.leak_ok = False  # a passed leak test since the last use or failed leak test
        self.cleaned = False  # a cleaning since the last use or failed leak test
        self.since: str | None = None
        self.last_use: str | None = None
        self.last_aer: str | None = None
        self.last = ""

    def view(self, voided: set[str]) -> EndoscopeView:
        """The view of this endoscope."""
        return EndoscopeView(
            self.code,
            self.status,
            self.ready,
            self.since,
            self.last_use,
            self.last_aer,
            tuple(r.id for r in self.items if r.id not in voided),
            anomaly_ids(self.anomalies),
        )


_ENDO_STATUS: Final = {
    "endo.leak_test": ("leak_tested", "leak_test_failed"),
    "endo.aer_cycle": ("reprocessed", "reprocessing_failed"),
    "endo.cleaned": ("cleaned", "cleaned"),
    "endo.stored": ("stored", "stored"),
    "endo.used": ("used", "used"),
}


def step_endo(st: EndoState, rec: Record) -> None:
    """Apply one endo.* record."""
    kind = rec.type
    failed = rec.result == "fail"
    if kind == "endo.used":
        blocker = st.failure or st.blocker
        if st.ready is False and blocker is not None:
            why = (
                "failed_step"
                if blocker.result == "fail"
                else "last_use"
                if blocker.type == "endo.used"
                else "incomplete_reprocessing"
            )
            st.anomalies.append(
                make_anomaly(
                    ENDOSCOPE_NOT_REPROCESSED,
                    [blocker.id, rec.id],
                    rec.day,
                    why=why,
                    endoscope=st.code,
                )
            )
        st.ready, st.blocker, st.last_use = False, rec, rec.id
        st.leak_ok = st.cleaned = False
    elif failed and kind in ("endo.aer_cycle", "endo.leak_test"):
        st.ready, st.blocker, st.failure = False, rec, rec
        if kind == "endo.leak_test":  # a leak: to repair, then tested and cleaned again
            st.leak_ok = st.cleaned = False
    elif kind == "endo.leak_test":
        st.leak_ok = True
    elif kind == "endo.cleaned":
        st.cleaned = True
    elif kind == "endo.aer_cycle":
        st.last_aer = rec.id
        if st.leak_ok and st.cleaned:
            st.ready, st.blocker, st.failure = True, None, None
        else:  # a cycle alone does not make it safe: leak test and cleaning come first
            st.ready, st.blocker = False, rec
    st.status = _ENDO_STATUS[kind][rec.result == "fail"]
    st.since = st.last = rec.id


def replay_endo(fold: Fold, st: EndoState) -> None:
    """Recompute an endoscope from all its records."""
    st.reset()
    voided = fold.voided
    for rec in st.items:
        if rec.id not in voided:
            step_endo(st, rec)

"""A received event judged on its bytes: True only where the full check passes it too."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crdt_model as cm
from crdt_model._events import _COMMON, _NODE_SET, check_params
from tests.crdt_model.fold_helpers import Stamper, random_history
from tests.helpers import changed_bytes

DAY_NAME = "events/2026-11-28"


def passes(blob: bytes, key: str, name: str = DAY_NAME) -> bool:
    """Sync's full check of one received event (sync/_validate.py: `_check_event`)."""
    try:
        decoded = cm.decode_map(blob)
        event = cm.validate_event(decoded, len(blob))
    except (cm.CodecError, cm.EventError):
        return False
    return (
        event["id"] == key
        and cm.events_doc_name(cm.Timestamp(int(event["hlc"][:13]))) == name
        and cm.encode(event) == blob
    )


def shown(blob: bytes, key: str, name: str = DAY_NAME) -> bool:
    verdict = cm.shown_valid(blob, key, *cm.events_day_ms(name))
    if verdict:
        assert passes(blob, key, name)  # never more than the full check lets through
    return verdict


def history(seed: int) -> list[dict[str, Any]]:
    events = random_history(random.Random(seed), n_sets=6, rounds=3)
    for event in events[::3]:
        event["station"] = "Poste lavage 2"
    return events


def _name(event: dict[str, Any]) -> str:
    return cm.events_doc_name(cm.Timestamp.parse(event["hlc"]))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_the_events_a_node_records_are_shown_valid_on_their_bytes(seed: int) -> None:
    for event in history(seed):
        assert shown(cm.encode(event), event["id"], _name(event)), event["type"]


def test_every_type_with_all_its_fields_is_judged_on_its_bytes() -> None:
    s = Stamper()
    rich = {
        "set.received": {"set": "JORTHO#12", "from": "Bloc J", "missing": ["pince", "écarteur"]},
        "wash.cycle": {
            "machine": "LAV-1",
            "cycle_no": "4512",
            "load": "A-261128-001",
            "program": "P1",
            "started": "2026-11-28T07:00:00+01:00",
            "ended": "2026-11-28T08:00:00+01:00",
            "a0": 3000,
            "raw": "T=93\r\n  fin\n",
            "flags": ["truncated", "power cut"],
        },
        "steri.cycle": {
            "machine": "AUTO-2",
            "cycle_no": 12,
            "hold_s": 180,
            "t_min": 134,
            "t_max": 137,
        },
        "steri.test": {"machine": "AUTO-2", "kind": "bi", "lot": "BI-22", "raw": "ok"},
        "label.printed": {
            "set": "S1",
            "load": "L1",
            "lot": "L1",
            "expires_on": "2027-02-26",
            "label_id": "LB1",
            "printer": "Zebra salle 2",
            "reprint": True,
        },
        "set.stocked": {
            "set": "S1",
            "lot": "L1",
            "expires_on": "2027-02-26",
            "sterilized_on": "2026-11-20",
            "location": "Arsenal B",
        },
        "set.used": {"set": "S1", "patient": "000501492", "procedure": "PTH", "room": "J3"},
        "endo.aer_cycle": {"endoscope": "GIF-H190 #2", "result": "pass", "cycle_no": "77"},
        "event.voided": {"target": "1795867200000-00000-A", "reason": "saisi deux fois"},
        "anomaly.resolved": {"anomaly": "RELEASED_WITHOUT_CYCLE:x", "decision": "accepted"},
        "note": {"text": "  retour prévu 14h\n", "ref": "b-1"},
    }
    for kind, fields in rich.items():
        event = s.make(kind, **fields)
        assert shown(cm.encode(event), event["id"], _name(event)), kind
    # what it leaves to the full check, which passes them
    for kind, fields in (
        ("load.released", {"load": "L1", "decision": "released", "checks": {"visual": True}}),
        ("steri.cycle", {"machine": "AUTO-2", "result": "pass", "t_min": 134.2}),
        ("steri.cycle", {"machine": "AUTO-2", "result": "pass", "phases": [{"name": "plateau"}]}),
        ("set.received", {"set": "ÉCOLE#1"}),  # a letter outside ASCII in a code
    ):
        event = s.make(kind, **fields)
        blob = cm.encode(event)
        assert not shown(blob, event["id"], _name(event))
        assert passes(blob, event["id"], _name(event))


def _note(**changes: Any) -> dict[str, Any]:
    event = Stamper().make("note", text="retour prévu 14h", ref="b-1")
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


NOTE = _note()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"user": " mdupont"}, "a space first (kept stripped)"),
        ({"ref": "b-1 "}, "a space last"),
        ({"ref": "b\x85c"}, "a control character of two bytes (C2 85)"),
        ({"ref": "b\tc"}, "a tab in one line"),
        ({"ref": "\u00a0b"}, "a no-break space first"),
        ({"ref": "é" * 129}, "129 characters where 128 fit"),
        ({"user": ""}, "empty"),
        ({"zone": "cuisine"}, "no zone of the department"),
        ({"node": "AB1"}, "no node code"),
        ({"hlc": "1795867200000-0000"}, "no clock"),
        ({"at": "2026-11-28T07:00:00"}, "no UTC offset"),
        ({"at": "2026-02-30T07:00:00+01:00"}, "no such day"),
        ({"ref": None}, "null"),
        ({"ref": 5}, "a number for a text"),
        ({"mystery": "x"}, "a field of no event type"),
        ({"machine": "LAV-1"}, "a field of another type"),
        ({"text": ...}, "a required field missing"),
        ({"type": "note.v2"}, "no event type"),
    ],
)
def test_what_the_full_check_refuses_is_not_shown_valid(change: dict[str, Any], why: str) -> None:
    event = _note(**change)
    blob = cm.encode(event)
    assert not cm.shown_valid(blob, NOTE["id"], *cm.events_day_ms(DAY_NAME)), why
    assert not passes(blob, NOTE["id"]), why


def test_the_key_the_clock_the_day_and_the_size_are_judged() -> None:
    blob = cm.encode(NOTE)
    assert shown(blob, NOTE["id"])
    assert not shown(blob, NOTE["id"].replace("-A", "-B"))  # stored under another id
    assert not shown(blob, NOTE["id"], "events/2026-11-29")  # in another day's document
    assert not shown(blob, NOTE["id"], "events/2026-02-30")  # a day that is none
    other_node = _note(node="B")  # its id names node A
    assert not shown(cm.encode(other_node), NOTE["id"])
    big = _note(text="x" * 4000, ref="y" * 128)
    assert shown(cm.encode(big), NOTE["id"])
    raw = "€" * 50_000  # 50,000 characters where 65,536 fit, but 150,000 bytes
    huge = {**Stamper().make("wash.cycle", raw="T=93"), "raw": raw}
    assert len(cm.encode(huge)) > cm.MAX_EVENT_BYTES
    assert not shown(cm.encode(huge), huge["id"], _name(huge))


def test_lists_keep_their_bounds() -> None:
    s = Stamper()
    event = s.make("wash.loaded", sets=["S1", "S2"])
    for sets, ok in ((["S1"], True), ([], False), (["S1", "S1"], False), (["S1", "S 2 "], False)):
        changed = {**event, "sets": sets}
        assert shown(cm.encode(changed), event["id"], _name(event)) is ok, sets
    flags = s.make("steri.test", machine="M", kind="leak", result="pass", flags=["a"])
    many = {**flags, "flags": [f"f{n}" for n in range(33)]}
    assert not shown(cm.encode(many), flags["id"], _name(flags))


def test_heads_longer_than_needed_and_keys_out_of_order_are_not_shown_valid() -> None:
    blob = cm.encode(NOTE)
    assert shown(blob, NOTE["id"])
    longer_map = bytes([0xB8, blob[0] & 31]) + blob[1:]
    i = blob.index(b"dnode")  # a key's head one byte longer
    longer_key = blob[:i] + b"\x78\x04" + blob[i + 1 :]
    j = blob.index(b"Poste") if b"Poste" in blob else blob.index(b"mdupont") - 1
    longer_value = blob[:j] + bytes([0x78, blob[j] & 31]) + blob[j + 1 :]
    swapped = cm.encode({"zone": NOTE["zone"]})[1:]  # "zone" moved first
    out_of_order = bytes([blob[0]]) + swapped + blob[1:].replace(swapped, b"", 1)
    for other in (longer_map, longer_key, longer_value, out_of_order):
        assert cm.decode_map(other) == NOTE  # the same event, not its canonical bytes
        assert not shown(other, NOTE["id"])
    assert not shown(blob + b"\x00", NOTE["id"])
    assert not shown(blob[:-1], NOTE["id"])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_bytes_changed_anywhere_are_never_shown_valid_where_the_full_check_refuses(
    data: st.DataObject,
) -> None:
    events = history(data.draw(st.integers(0, 3)))
    event = data.draw(st.sampled_from(events))
    blob = changed_bytes(data, cm.encode(event), 3)
    shown(blob, event["id"], _name(event))  # asserts the full check agrees


_TEXTS = st.sampled_from(
    [
        "JDIGGRBA#101",
        "A-261128-001",
        "Bloc J",
        "retour prévu 14h",
        "x",
        "é" * 64,
        "é" * 65,
        " lead",
        "trail ",
        "in side",
        "a\x85b",
        "a\x7fb",
        "tab\tin",
        "\u2003em",
        "ÉCOLE",
        "pass",
        "fail",
        "ok",
        "released",
        "sterile",
        "bi",
        "000501492",
        "2026-11-28",
        "2026-11-28T07:00:00+01:00",
        "1795867200000-00000-A",
        "AB",
        "",
        "\n",
        "_",
        "a/b:c+d.e#f",
        "Z" * 257,
        "line\nline",
    ]
)
_VALUES = st.one_of(
    _TEXTS,
    st.lists(_TEXTS, max_size=4),
    st.integers(-5, 2**33),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.dictionaries(_TEXTS, st.one_of(_TEXTS, st.integers(0, 9)), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(cm.EVENT_TYPES)), st.data())
def test_events_of_any_field_values_are_shown_valid_only_where_the_full_check_passes(
    kind: str, data: st.DataObject
) -> None:
    event_type = cm.EVENT_TYPES[kind]
    base = Stamper().make("note", text="n")
    event: dict[str, Any] = {k: base[k] for k in _NODE_SET}
    event["type"] = kind
    for name, check in {**event_type.required, **event_type.optional, **_COMMON}.items():
        if name in event_type.required or data.draw(st.booleans()):
            if check_params(check)[0] in ("text", "code", "one_of", "patient_code"):
                event[name] = data.draw(st.one_of(_TEXTS, _VALUES))
            else:
                event[name] = data.draw(_VALUES)
    if data.draw(st.booleans()):
        event[data.draw(st.sampled_from(["id", "hlc", "node", "at", "user"]))] = data.draw(_VALUES)
    try:
        blob = cm.encode(event)
    except cm.CodecError:
        return
    shown(blob, base["id"])  # asserts the full check agrees


@pytest.mark.parametrize(
    ("kind", "field", "fields", "values"),
    [
        ("set.used", "patient", {"set": "S1"}, ["A" * 32, "A" * 33, "a-1", "a_1", "١٢"]),
        ("wash.cycle", "cycle_no", {}, ["1" * 32, "1" * 33, "A-12", "12 "]),
        (
            "note",
            "at",
            {"text": "t"},
            [
                "2026-11-28T07:00:00.1234+01:00:00.123456",  # 40 characters
                "2026-11-28T07:00:00.12345+01:00:00.123456",  # 41
                "2026-11-28T07:00:00Z",
                "2026-11-28 07:00:00+01:00",
            ],
        ),
        (
            "event.voided",
            "target",
            {"reason": "r", "target": "1795867200000-00000-B"},
            [f"1795867200000-00000-{code}" for code in ("A", "ABC", "ABCD", "a", "")],
        ),
    ],
)
def test_the_limits_of_each_named_check_are_its_own(
    kind: str, field: str, fields: dict[str, Any], values: list[str]
) -> None:
    base = Stamper().make(kind, **fields)
    verdicts = []
    for value in values:
        blob = cm.encode({**base, field: value})
        verdict = shown(blob, base["id"], _name(base))
        assert verdict == passes(blob, base["id"], _name(base)), value
        verdicts.append(verdict)
    assert sorted(set(verdicts)) == [False, True]  # both sides of each limit were tried


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["event", "ack", "other id", "cut short", "other day"]), max_size=9),
    st.data(),
)
def test_a_batch_is_judged_up_to_the_first_entry_not_shown_valid(
    kinds: list[str], data: st.DataObject
) -> None:
    """`first_unshown` stops where judging the entries one by one would first not show one
    valid (an ack, or an event its bytes do not show valid), from any start."""
    key, blob = NOTE["id"], cm.encode(NOTE)
    later = _note(hlc=f"{int(NOTE['hlc'][:13]) + 86_400_000}{NOTE['hlc'][13:]}")
    later["id"] = f"{later['hlc']}-{later['node']}"
    made = {
        "event": ("events", key, blob),
        "ack": ("acks", f"{key}/B", cm.encode({"by": "B"})),
        "other id": ("events", key[:-1] + "Z", blob),
        "cut short": ("events", key, blob[:-1]),
        "other day": ("events", later["id"], cm.encode(later)),
    }
    entries = [made[kind] for kind in kinds]
    start = data.draw(st.integers(0, len(entries)))
    first_ms, end_ms = cm.events_day_ms(_name(NOTE))
    stops = [n for n, kind in enumerate(kinds) if n >= start and kind != "event"]
    assert cm.first_unshown(entries, start, first_ms, end_ms) == (stops[0] if stops else -1)

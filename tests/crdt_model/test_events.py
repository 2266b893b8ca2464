from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crdt_model as cm
from tests.helpers import SUBMISSIONS, submission


def stamped(body: dict[str, Any], node: str = "A", wall: int = 1_795_869_091_234) -> dict[str, Any]:
    ts = cm.HybridClock().now(wall)
    return {
        **cm.validate_submission(body),
        "id": cm.make_event_id(ts, node),
        "hlc": str(ts),
        "at": "2026-11-28T14:11:31.234+01:00",
        "node": node,
        "user": "mdupont",
        "zone": "sale",
    }


def test_every_v1_type_has_a_sample() -> None:
    assert set(SUBMISSIONS) == set(cm.EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(cm.EVENT_TYPES))
def test_cbor_round_trip_of_every_event_type(event_type: str) -> None:
    event = cm.validate_event(stamped(submission(event_type)))
    data = cm.encode(event)
    back = cm.decode_map(data)
    assert back == event
    assert cm.encode(back) == data  # canonical: same bytes again
    assert cm.validate_event(back) == event


@pytest.mark.parametrize("event_type", sorted(cm.EVENT_TYPES))
def test_every_required_field_is_required(event_type: str) -> None:
    for field in cm.EVENT_TYPES[event_type].required:
        body = submission(event_type)
        body.pop(field, None)
        with pytest.raises(cm.EventError) as info:
            cm.validate_submission(body)
        assert [e.field for e in info.value.errors] == [field]
        assert info.value.errors[0].message == "is required"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"type": "nope"}, "type", "unknown event type"),
        (submission("set.received", set=12), "set", "must be a string"),
        (submission("set.received", set=""), "set", "must not be empty"),
        (submission("set.received", set="A" * 65), "set", "at most 64"),
        (submission("set.received", set="JDIG\x00"), "set", "may hold only"),
        (submission("set.received", zone="cuisine"), "zone", "must be one of"),
        (submission("wash.cycle", result="ok"), "result", "pass, fail"),
        (submission("wash.cycle", a0=-1), "a0", "at least 0"),
        (submission("wash.cycle", a0=True), "a0", "must be a number"),
        (submission("wash.loaded", sets=[]), "sets", "at least one"),
        (submission("wash.loaded", sets=["X", "X"]), "sets", "must not repeat"),
        (submission("wash.loaded", sets=["ok"] * 501), "sets", "at most 500"),
        (submission("steri.test", kind="vapour"), "kind", "bowie_dick"),
        (submission("load.released", decision="maybe"), "decision", "released, rejected"),
        (submission("label.printed", expires_on="27-05-2027"), "expires_on", "YYYY-MM-DD"),
        (submission("wash.cycle", started="2026-11-28T07:10:00"), "started", "UTC offset"),
        (submission("set.used", patient="Jean Dupont"), "patient", "patient code"),
        (submission("event.voided", target="nonsense"), "target", "event id"),
        (submission("note", text="x" * 4001), "text", "at most 4000"),
        (submission("set.received", colour="blue"), "colour", "not a field"),
        (submission("set.received", id="1795869091234-00000-A"), "id", "set by the node"),
        (submission("set.received", user="boss"), "user", "set by the node"),
    ],
)
def test_bad_fields_get_one_clear_error(body: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(cm.EventError) as info:
        cm.validate_submission(body)
    errors = {e.field: e.message for e in info.value.errors}
    assert field in errors
    assert fragment in errors[field]


def test_patient_value_is_never_echoed() -> None:
    with pytest.raises(cm.EventError) as info:
        cm.validate_submission(submission("set.used", patient="DUPONT Jean 12/03/1950"))
    assert "DUPONT" not in str(info.value)


def test_all_errors_are_reported_together() -> None:
    with pytest.raises(cm.EventError) as info:
        cm.validate_submission({"type": "steri.cycle", "machine": 3, "result": "??"})
    assert {e.field for e in info.value.errors} == {"machine", "result", "cycle_no"}


def test_non_object_body_is_refused() -> None:
    with pytest.raises(cm.EventError):
        cm.validate_submission(["set.received"])


def test_stored_event_must_match_its_id() -> None:
    event = stamped(submission("note"))
    event["node"] = "B"
    with pytest.raises(cm.EventError) as info:
        cm.validate_event(event)
    assert info.value.errors[0].field == "id"


def test_oversized_event_is_refused() -> None:
    event = stamped(submission("steri.cycle"))
    event["phases"] = [
        {"name": f"p{i}", **{f"k{j}": "x" * 256 for j in range(15)}} for i in range(40)
    ]
    event["raw"] = "y" * 64 * 1024
    with pytest.raises(cm.EventError) as info:
        cm.validate_event(event)
    assert "larger than" in str(info.value)


def test_cycle_number_given_as_int_is_kept_as_text() -> None:
    assert cm.validate_submission(submission("wash.cycle", cycle_no=42))["cycle_no"] == "42"


printable = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=200
)


@given(text=printable.filter(lambda t: t.strip()), n=st.integers(0, 10**9), x=st.floats(-1e6, 1e6))
def test_cbor_round_trip_keeps_types(text: str, n: int, x: float) -> None:
    body = submission("steri.cycle", program=text, cycle_no=n, t_min=x, hold_s=abs(x))
    event = cm.validate_event(stamped(body))
    back = cm.decode_map(cm.encode(event))
    assert back == event
    assert type(back["t_min"]) is type(event["t_min"])

"""Every field error carries a stable code and parameters that rebuild its English message."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import crdt_model as cm
from crdt_model._events import FieldMessage
from tests.helpers import submission

STAMP = {
    "id": "1795869091234-00000-A",
    "hlc": "1795869091234-00000",
    "at": "2026-11-28T14:11:31.234+01:00",
    "node": "A",
    "user": "mdupont",
}

# bad submissions, each with the codes its errors carry
BAD_SUBMISSIONS: list[tuple[Any, set[str]]] = [
    ([], {"not_object"}),
    ({"set": "A"}, {"required"}),
    ({"type": "nope"}, {"unknown_type"}),
    (
        submission("set.received", set=12, zone="cuisine", color="red"),
        {"not_string", "one_of", "unknown_field"},
    ),
    (submission("set.received", set=" ", id="x"), {"empty", "set_by_node"}),
    (submission("set.received", set="A" * 65, station="x\x01"), {"too_long", "control_characters"}),
    (submission("set.received", set="JDIG%"), {"code_characters"}),
    (submission("wash.cycle", cycle_no=True, a0=-1), {"not_cycle_number", "too_small"}),
    (submission("wash.cycle", cycle_no=-3, a0="x"), {"negative", "not_number"}),
    (submission("steri.cycle", t_min=float("inf")), {"not_finite"}),
    (
        submission("label.printed", reprint="yes", expires_on="31/12/2026"),
        {"not_boolean", "not_date"},
    ),
    (
        submission("wash.cycle", started="hier", ended="2026-11-28T14:11:31"),
        {"not_datetime", "no_offset"},
    ),
    (submission("set.used", patient="Jean Dupont"), {"not_patient_code"}),
    (submission("event.voided", target="x"), {"not_event_id"}),
    (submission("wash.loaded", sets="A"), {"not_list"}),
    (submission("wash.loaded", sets=["A"] * 501), {"too_many_items"}),
    (submission("wash.loaded", sets=["A", "A"]), {"repeated_item"}),
    (submission("wash.loaded", sets=[]), {"no_item"}),
    (submission("wash.loaded", sets=["A", "B%"]), {"item"}),
    (submission("wash.cycle", params={str(i): i for i in range(65)}), {"too_many_entries"}),
    (submission("wash.cycle", params={"k" * 65: 1}), {"bad_keys"}),
    (submission("wash.cycle", params={"note": "x" * 300}), {"entry_too_long"}),
    (submission("wash.cycle", params={"list": [1]}), {"entry_type"}),
    (submission("wash.cycle", params={"t": float("nan")}), {"entry_not_finite"}),
    (submission("steri.cycle", phases=[{"name": "vide"}, {"result": "ok"}]), {"item"}),
]
BAD_EVENTS: list[tuple[Any, set[str]]] = [
    ("x", {"not_map"}),
    (
        {**submission("note"), **STAMP, "node": "a"},
        {"not_node_code"},
    ),
    ({**submission("note"), **STAMP, "hlc": "later"}, {"not_clock"}),
    ({**submission("note"), **STAMP, "id": "1795869091234-00001-A"}, {"id_mismatch"}),
    ({**submission("note", text="x" * 3000), **STAMP, "raw": None}, {"unknown_field"}),
]


def english(code: str, params: dict[str, str]) -> str:
    """The English text of a code, rebuilt from its parameters alone."""
    values = dict(params)
    if code == "item":
        values["problem"] = english(params["problem"], params)
    return cm.FIELD_MESSAGES[code].format_map(values)


def errors_of(call: Any, body: Any) -> list[cm.FieldError]:
    with pytest.raises(cm.EventError) as info:
        call(body)
    return info.value.errors


@pytest.mark.parametrize(("body", "codes"), BAD_SUBMISSIONS)
def test_submission_errors_carry_codes_that_rebuild_their_message(
    body: Any, codes: set[str]
) -> None:
    errors = errors_of(cm.validate_submission, body)
    assert {e.code for e in errors} == codes
    for error in errors:
        assert error.message == english(error.code, dict(error.params))
        assert error.as_dict() == {"field": error.field, "message": error.message}


@pytest.mark.parametrize(("event", "codes"), BAD_EVENTS)
def test_stored_event_errors_carry_codes_too(event: Any, codes: set[str]) -> None:
    errors = errors_of(cm.validate_event, event)
    assert {e.code for e in errors} == codes
    for error in errors:
        assert error.message == english(error.code, dict(error.params))


def test_an_oversized_event_says_its_limit() -> None:
    phases = [{"name": f"p{i}", **{f"m{j}": "y" * 250 for j in range(10)}} for i in range(64)]
    big = {**submission("steri.cycle", raw="x" * 60_000, phases=phases), **STAMP}
    [error] = errors_of(cm.validate_event, big)
    assert (error.field, error.code, dict(error.params)) == (
        "event",
        "too_large",
        {"max": str(cm.MAX_EVENT_BYTES)},
    )
    assert error.message == f"is larger than {cm.MAX_EVENT_BYTES} bytes"


def test_every_code_is_reached() -> None:
    reached = {"too_large"}
    for call, samples in (
        (cm.validate_submission, BAD_SUBMISSIONS),
        (cm.validate_event, BAD_EVENTS),
    ):
        for body, _ in samples:
            for error in errors_of(call, body):
                reached |= {error.code, dict(error.params).get("problem", error.code)}
    assert reached == set(cm.FIELD_MESSAGES)


def test_a_list_item_keeps_the_item_number_and_its_own_fault() -> None:
    [error] = errors_of(cm.validate_submission, submission("wash.loaded", sets=["A", "B" * 70]))
    assert error.message == "item 2 must be at most 64 characters"
    assert dict(error.params) == {"item": "2", "problem": "too_long", "max": "64"}


def test_a_field_message_is_the_english_text_and_survives_pickling() -> None:
    message = FieldMessage("item", item=3, problem=FieldMessage("one_of", choices="a, b"))
    assert message == "item 3 must be one of a, b"
    back = pickle.loads(pickle.dumps(message))
    assert (back, back.code, back.params) == (message, "item", message.params)

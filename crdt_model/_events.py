"""Traceability event types (v1): their fields, validation and identifiers."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ._codec import encode
from ._coded import CodedText
from ._hlc import ClockError, Timestamp

ZONES = ("sale", "propre", "sterile", "office")
NODE_FIELDS = ("id", "hlc", "at", "node", "user")
"""Fields the node sets; a client may not send them."""

MAX_EVENT_BYTES = 128 * 1024
MAX_TEXT = 256
MAX_LONG_TEXT = 4000
MAX_RAW = 64 * 1024
MAX_LIST = 500

_CODE_RE = re.compile(r"^[\w#./:+-][\w#./:+ -]*\Z")
MAX_NODE_CODE = 3
MAX_PATIENT = 32
MAX_CYCLE_NUMBER = 32
MAX_DATETIME = 40
_NODE_CODE_RE = re.compile(rf"^[A-Z]{{1,{MAX_NODE_CODE}}}\Z")
_PATIENT_RE = re.compile(rf"^[A-Za-z0-9-]{{1,{MAX_PATIENT}}}\Z")
_ID_RE = re.compile(rf"^([0-9]{{13}}-[0-9]{{5}})-([A-Z]{{1,{MAX_NODE_CODE}}})\Z")


FIELD_MESSAGES: dict[str, str] = {
    "required": "is required",
    "unknown_field": "is not a field of this event type",
    "unknown_type": "unknown event type {type}",
    "set_by_node": "is set by the node",
    "not_object": "must be a JSON object",
    "not_map": "must be a map",
    "id_mismatch": "does not match hlc and node",
    "too_large": "is larger than {max} bytes",
    "not_string": "must be a string",
    "empty": "must not be empty",
    "too_long": "must be at most {max} characters",
    "control_characters": "must not contain control characters",
    "code_characters": "may hold only letters, digits, spaces and # . / : + -",
    "not_cycle_number": "must be a string or a whole number",
    "negative": "must not be negative",
    "one_of": "must be one of {choices}",
    "not_number": "must be a number",
    "not_finite": "must be finite",
    "too_small": "must be at least {min}",
    "not_boolean": "must be true or false",
    "not_date": "must be a date YYYY-MM-DD",
    "not_datetime": "must be an ISO 8601 date and time with offset",
    "no_offset": "must carry a UTC offset, e.g. +01:00",
    "not_patient_code": "must be a patient code (letters, digits, '-', at most 32)",
    "not_event_id": "must be an event id",
    "not_node_code": "must be a node short code (1-3 capital letters)",
    "not_clock": "must be a clock timestamp",
    "not_list": "must be a list",
    "too_many_items": "must hold at most {max} items",
    "repeated_item": "must not repeat an item",
    "no_item": "must hold at least one item",
    "item": "item {item} {problem}",
    "too_many_entries": "must be a map of at most {max} entries",
    "bad_keys": "keys must be strings of at most 64 characters",
    "entry_too_long": "{key}: text must be at most {max} characters",
    "entry_type": "{key}: must be a number, text or boolean",
    "entry_not_finite": "{key}: must be finite",
    "no_name": "must have a name",
}
"""English text of each field-error code, with its parameters.

The `problem` parameter of `item` is the code of the item's own fault, whose parameters
sit beside it (e.g. item 3 of a list of codes: {item: 3, problem: code_characters}).
"""


class FieldMessage(CodedText):
    """What is wrong with a value: its English text, with a stable `code` and its `params`."""

    MESSAGES = FIELD_MESSAGES

    @classmethod
    def kept(cls, values: dict[str, str], given: Mapping[str, object]) -> dict[str, str]:
        """A fault of one item of a list keeps the item's own fault beside its code."""
        inner = given.get("problem")
        if isinstance(inner, FieldMessage):
            return {**inner.params, **values, "problem": inner.code}
        return values


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an event is refused, tied to its field.

    `message` is the English text (what the API answers); `code` (a key of FIELD_MESSAGES)
    and `params` let a page say it in another language.
    """

    field: str
    message: str
    code: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, field: str, fault: FieldMessage) -> FieldError:
        """The error of `field` for `fault`."""
        return cls(field, str(fault), fault.code, tuple(sorted(fault.params.items())))

    def as_dict(self) -> dict[str, str]:
        """The API's error entry."""
        return {"field": self.field, "message": self.message}


class EventError(ValueError):
    """An event refused, with one FieldError per faulty field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


Check = Callable[[Any], "tuple[Any, FieldMessage | None]"]


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
"""Unicode's control characters (category Cc), all of them."""


def _clean(value: str) -> bool:
    return _CONTROL_RE.search(value) is None


def text(max_len: int = MAX_TEXT, *, multiline: bool = False) -> Check:
    """A non-empty string of at most max_len characters."""

    def check(value: Any) -> tuple[Any, FieldMessage | None]:
        if not isinstance(value, str):
            return value, FieldMessage("not_string")
        stripped = value.strip()
        if not stripped:
            return value, FieldMessage("empty")
        if len(value) > max_len:
            return value, FieldMessage("too_long", max=max_len)
        if not multiline and not _clean(value):
            return value, FieldMessage("control_characters")
        return stripped if not multiline else value, None

    return check


def code(max_len: int = 64) -> Check:
    """An identifier as printed on a barcode: letters, digits and #./:+- ."""

    def check(value: Any) -> tuple[Any, FieldMessage | None]:
        if not isinstance(value, str):
            return value, FieldMessage("not_string")
        value = value.strip()
        if not value:
            return value, FieldMessage("empty")
        if len(value) > max_len:
            return value, FieldMessage("too_long", max=max_len)
        if not _CODE_RE.match(value):
            return value, FieldMessage("code_characters")
        return value, None

    return check


def cycle_number(value: Any) -> tuple[Any, FieldMessage | None]:
    """A machine's cycle number, given as text or a whole number; kept as text."""
    if isinstance(value, bool):
        return value, FieldMessage("not_cycle_number")
    if isinstance(value, int):
        return (str(value), None) if value >= 0 else (value, FieldMessage("negative"))
    return code(MAX_CYCLE_NUMBER)(value)


def one_of(*choices: str) -> Check:
    """One of a fixed set of words."""

    def check(value: Any) -> tuple[Any, FieldMessage | None]:
        if value not in choices:
            return value, FieldMessage("one_of", choices=", ".join(choices))
        return value, None

    return check


def number(minimum: float | None = None) -> Check:
    """A finite number (not a boolean)."""

    def check(value: Any) -> tuple[Any, FieldMessage | None]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, FieldMessage("not_number")
        if isinstance(value, float) and not math.isfinite(value):
            return value, FieldMessage("not_finite")
        if minimum is not None and value < minimum:
            return value, FieldMessage("too_small", min=f"{minimum:g}")
        return value, None

    return check


def boolean(value: Any) -> tuple[Any, FieldMessage | None]:
    """true or false."""
    return value, None if isinstance(value, bool) else FieldMessage("not_boolean")


def iso_date(value: Any) -> tuple[Any, FieldMessage | None]:
    """A calendar date YYYY-MM-DD."""
    if not isinstance(value, str):
        return value, FieldMessage("not_date")
    try:
        return date.fromisoformat(value).isoformat(), None
    except ValueError:
        return value, FieldMessage("not_date")


def iso_datetime(value: Any) -> tuple[Any, FieldMessage | None]:
    """An ISO 8601 date and time with its UTC offset."""
    if not isinstance(value, str) or len(value) > MAX_DATETIME:
        return value, FieldMessage("not_datetime")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value, FieldMessage("not_datetime")
    if parsed.tzinfo is None:
        return value, FieldMessage("no_offset")
    return value, None


def patient_code(value: Any) -> tuple[Any, FieldMessage | None]:
    """A patient code from the planning: letters, digits and '-', no names."""
    if not isinstance(value, str) or not _PATIENT_RE.match(value):
        return None, FieldMessage("not_patient_code")
    return value, None


def event_id(value: Any) -> tuple[Any, FieldMessage | None]:
    """An event id as issued by a node."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return value, FieldMessage("not_event_id")
    return value, None


def list_of(item: Check, *, max_items: int = MAX_LIST, unique: bool = False) -> Check:
    """A list of values each passing `item`."""

    def check(value: Any) -> tuple[Any, FieldMessage | None]:
        if not isinstance(value, list):
            return value, FieldMessage("not_list")
        if len(value) > max_items:
            return value, FieldMessage("too_many_items", max=max_items)
        out = []
        for i, element in enumerate(value):
            cleaned, problem = item(element)
            if problem:
                return value, FieldMessage("item", item=i + 1, problem=problem)
            out.append(cleaned)
        if unique and len(set(out)) != len(out):
            return value, FieldMessage("repeated_item")
        return out, None

    return check


def non_empty(check: Check) -> Check:
    """Like `check`, for a list that must hold at least one item."""

    def wrapped(value: Any) -> tuple[Any, FieldMessage | None]:
        if isinstance(value, list) and not value:
            return value, FieldMessage("no_item")
        return check(value)

    return wrapped


def plain_map(max_items: int = 64) -> Check:
    """A small map of text keys to numbers, text or booleans."""

    def check(value: Any) -> tuple[Any, FieldMessage | None]:
        if not isinstance(value, dict) or len(value) > max_items:
            return value, FieldMessage("too_many_entries", max=max_items)
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > 64:
                return value, FieldMessage("bad_keys")
            if isinstance(item, str) and len(item) > MAX_TEXT:
                return value, FieldMessage("entry_too_long", key=key[:20], max=MAX_TEXT)
            if item is not None and not isinstance(item, str | int | float | bool):
                return value, FieldMessage("entry_type", key=key[:20])
            if isinstance(item, float) and not math.isfinite(item):
                return value, FieldMessage("entry_not_finite", key=key[:20])
        return value, None

    return check


def phase(value: Any) -> tuple[Any, FieldMessage | None]:
    """One phase of a cycle: a name, a result and optional measures."""
    checked, problem = plain_map(16)(value)
    if problem:
        return checked, problem
    if not isinstance(value.get("name"), str) or not value["name"].strip():
        return value, FieldMessage("no_name")
    return value, None


def check_params(check: Check) -> tuple[str, dict[str, Any]]:
    """What made a field check: the name of its function (e.g. "text", "cycle_number") and
    the arguments it was made with (e.g. {"max_len": 256, "multiline": False}), read from its
    closure; the feed's JSON Schemas and the check of stored bytes are written from these."""
    name = check.__qualname__.split(".<locals>", 1)[0]
    cells = check.__closure__ or ()
    return name, {
        v: c.cell_contents for v, c in zip(check.__code__.co_freevars, cells, strict=True)
    }


@dataclass(frozen=True, slots=True)
class EventType:
    """The fields an event type requires and allows."""

    name: str
    required: Mapping[str, Check]
    optional: Mapping[str, Check]

    @property
    def is_load(self) -> bool:
        """True for the types that open a machine load (and get a load number)."""
        return self.name.endswith(".loaded")


_SET = code(64)
_MACHINE = code(64)
_PROGRAM = text(128)
_RESULT = one_of("pass", "fail")

_FLAGS = list_of(code(64), max_items=32, unique=True)
"""What a cycle capture noticed (truncated, garbled, power cut...)."""

_ENDO_OPTIONAL: dict[str, Check] = {
    "result": _RESULT,
    "machine": _MACHINE,
    "cycle_no": cycle_number,
}

EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType(
            "set.received",
            {"set": _SET},
            {"from": text(), "missing": list_of(text(), max_items=200)},
        ),
        EventType(
            "wash.loaded",
            {
                "machine": _MACHINE,
                "program": _PROGRAM,
                "sets": non_empty(list_of(_SET, unique=True)),
            },
            {"load": code(64)},
        ),
        EventType(
            "wash.cycle",
            {"machine": _MACHINE, "cycle_no": cycle_number, "result": _RESULT},
            {
                "load": code(64),
                "program": _PROGRAM,
                "started": iso_datetime,
                "ended": iso_datetime,
                "a0": number(0),
                "params": plain_map(),
                "raw": text(MAX_RAW, multiline=True),
                "flags": _FLAGS,
            },
        ),
        EventType(
            "set.inspected",
            {"set": _SET, "result": one_of("ok", "nok")},
            {
                "missing": list_of(text(), max_items=200),
                "packaging": text(128),
                "packer": text(128),
            },
        ),
        EventType(
            "steri.loaded",
            {
                "machine": _MACHINE,
                "program": _PROGRAM,
                "sets": non_empty(list_of(_SET, unique=True)),
            },
            {"load": code(64)},
        ),
        EventType(
            "steri.cycle",
            {"machine": _MACHINE, "cycle_no": cycle_number, "result": _RESULT},
            {
                "load": code(64),
                "program": _PROGRAM,
                "started": iso_datetime,
                "ended": iso_datetime,
                "phases": list_of(phase, max_items=64),
                "t_min": number(),
                "t_max": number(),
                "p_max": number(),
                "hold_s": number(0),
                "raw": text(MAX_RAW, multiline=True),
                "flags": _FLAGS,
            },
        ),
        EventType(
            "steri.test",
            {
                "machine": _MACHINE,
                "kind": one_of("bowie_dick", "leak", "bi"),
                "result": _RESULT,
            },
            {"lot": code(64), "raw": text(MAX_RAW, multiline=True), "flags": _FLAGS},
        ),
        EventType(
            "load.released",
            {"load": code(64), "decision": one_of("released", "rejected")},
            {"checks": plain_map(), "reason": text(MAX_LONG_TEXT)},
        ),
        EventType(
            "label.printed",
            {"set": _SET, "load": code(64), "lot": code(64), "expires_on": iso_date},
            {"label_id": code(64), "printer": text(128), "reprint": boolean},
        ),
        EventType(
            "set.stocked",
            {"set": _SET, "lot": code(64), "expires_on": iso_date},
            {"sterilized_on": iso_date, "location": text(64)},
        ),
        EventType("set.dispatched", {"set": _SET, "to": text()}, {}),
        EventType(
            "set.used",
            {"set": _SET, "patient": patient_code},
            {"procedure": text(), "planning_ref": text(128), "room": text(64)},
        ),
        *(
            EventType(name, {"endoscope": code(64)}, _ENDO_OPTIONAL)
            for name in ("endo.leak_test", "endo.cleaned", "endo.aer_cycle", "endo.stored")
        ),
        EventType(
            "endo.used",
            {"endoscope": code(64), "patient": patient_code},
            {"procedure": text(), "room": text(64)},
        ),
        EventType("event.voided", {"target": event_id, "reason": text(MAX_LONG_TEXT)}, {}),
        EventType(
            "anomaly.resolved",
            {"anomaly": code(96), "decision": text(64)},
            {"comment": text(MAX_LONG_TEXT)},
        ),
        EventType("note", {"text": text(MAX_LONG_TEXT, multiline=True)}, {"ref": text(128)}),
    )
}

_COMMON: dict[str, Check] = {"zone": one_of(*ZONES), "station": text(64)}


def _node_code(value: Any) -> tuple[Any, FieldMessage | None]:
    if not isinstance(value, str) or not _NODE_CODE_RE.match(value):
        return value, FieldMessage("not_node_code")
    return value, None


def _hlc(value: Any) -> tuple[Any, FieldMessage | None]:
    if not isinstance(value, str):
        return value, FieldMessage("not_clock")
    try:
        Timestamp.parse(value)
    except ClockError:
        return value, FieldMessage("not_clock")
    return value, None


_NODE_SET: dict[str, Check] = {
    "id": event_id,
    "hlc": _hlc,
    "at": iso_datetime,
    "node": _node_code,
    "user": text(128),
}


def _validate_fields(
    body: Mapping[str, Any], allowed: Mapping[str, Check], required: AbstractSet[str]
) -> tuple[dict[str, Any], list[FieldError]]:
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    for name in sorted(required - body.keys()):
        errors.append(FieldError.of(name, FieldMessage("required")))
    for name, value in body.items():
        check = allowed.get(name)
        if check is None:
            errors.append(FieldError.of(str(name)[:40], FieldMessage("unknown_field")))
            continue
        if value is None and name not in required:
            continue
        cleaned, problem = check(value)
        if problem:
            errors.append(FieldError.of(name, problem))
        else:
            out[name] = cleaned
    return out, errors


def _event_type(body: Mapping[str, Any]) -> EventType:
    kind = body.get("type")
    if not isinstance(kind, str):
        raise EventError([FieldError.of("type", FieldMessage("required"))])
    event_type = EVENT_TYPES.get(kind)
    if event_type is None:
        raise EventError(
            [FieldError.of("type", FieldMessage("unknown_type", type=repr(kind[:40])))]
        )
    return event_type


def validate_submission(body: Any) -> dict[str, Any]:
    """Check an event as a client submits it (without the node's fields); normalised copy."""
    if not isinstance(body, Mapping):
        raise EventError([FieldError.of("body", FieldMessage("not_object"))])
    event_type = _event_type(body)
    errors = [FieldError.of(f, FieldMessage("set_by_node")) for f in NODE_FIELDS if f in body]
    fields = {k: v for k, v in body.items() if k != "type" and k not in NODE_FIELDS}
    allowed = {**event_type.required, **event_type.optional, **_COMMON}
    out, more = _validate_fields(fields, allowed, set(event_type.required))
    errors.extend(more)
    if errors:
        raise EventError(errors)
    return {"type": event_type.name, **out}


def _stored_fields(event_type: EventType) -> dict[str, Check]:
    return _stored_spec(event_type.name)[0]


def _stored_required(event_type: EventType) -> frozenset[str]:
    return _stored_spec(event_type.name)[1]


@functools.cache
def _stored_spec(name: str) -> tuple[dict[str, Check], frozenset[str]]:
    """The fields a stored event of a type may hold, and those it must (worked out once)."""
    event_type = EVENT_TYPES[name]
    allowed = {**event_type.required, **event_type.optional, **_COMMON, **_NODE_SET}
    return allowed, frozenset(event_type.required) | frozenset(_NODE_SET)


def validate_event(event: Any, encoded_size: int | None = None) -> dict[str, Any]:
    """Check a complete stored event (node fields included), e.g. one received from a peer.

    `encoded_size`: the length of the CBOR the event was decoded from, when known (spares
    encoding it again to check its size).
    """
    if not isinstance(event, Mapping):
        raise EventError([FieldError.of("event", FieldMessage("not_map"))])
    event_type = _event_type(event)
    fields = {k: v for k, v in event.items() if k != "type"}
    allowed = _stored_fields(event_type)
    out, errors = _validate_fields(fields, allowed, _stored_required(event_type))
    # hlc passed its fixed-width check: it is the text form of its timestamp
    if not errors and out["id"] != f"{out['hlc']}-{out['node']}":
        errors.append(FieldError.of("id", FieldMessage("id_mismatch")))
    if encoded_size is None and not errors:
        encoded_size = len(encode(event))
    if not errors and encoded_size is not None and encoded_size > MAX_EVENT_BYTES:
        errors.append(FieldError.of("event", FieldMessage("too_large", max=MAX_EVENT_BYTES)))
    if errors:
        raise EventError(errors)
    return {"type": event_type.name, **out}


def check_event_size(event: Mapping[str, Any]) -> None:
    """EventError when an event's CBOR form is over MAX_EVENT_BYTES."""
    if len(encode(event)) > MAX_EVENT_BYTES:
        raise EventError([FieldError.of("event", FieldMessage("too_large", max=MAX_EVENT_BYTES))])


def make_event_id(ts: Timestamp, node: str) -> str:
    """An event id: unique without coordination, sorting by clock then node."""
    return f"{ts}-{node}"


def split_event_id(value: str) -> tuple[Timestamp, str]:
    """The timestamp and node short code of an event id."""
    match = _ID_RE.match(value)
    if match is None:
        raise ClockError(f"not an event id: {value[:40]!r}")
    return Timestamp.parse(match.group(1)), match.group(2)


def is_node_code(value: str) -> bool:
    """True for a valid node short code."""
    return bool(_NODE_CODE_RE.match(value))

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
from ._hlc import ClockError, Timestamp

ZONES = ("sale", "propre", "sterile", "office")
NODE_FIELDS = ("id", "hlc", "at", "node", "user")
"""Fields the node sets; a client may not send them."""

MAX_EVENT_BYTES = 128 * 1024
MAX_TEXT = 256
MAX_LONG_TEXT = 4000
MAX_RAW = 64 * 1024
MAX_LIST = 500

_CODE_RE = re.compile(r"^[\w#./:+-][\w#./:+ -]*$")
_NODE_CODE_RE = re.compile(r"^[A-Z]{1,3}$")
_PATIENT_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_ID_RE = re.compile(r"^(\d{13}-\d{5})-([A-Z]{1,3})$")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an event is refused, tied to its field."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The API's error entry."""
        return {"field": self.field, "message": self.message}


class EventError(ValueError):
    """An event refused, with one FieldError per faulty field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


Check = Callable[[Any], "tuple[Any, str | None]"]


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
"""Unicode's control characters (category Cc), all of them."""


def _clean(value: str) -> bool:
    return _CONTROL_RE.search(value) is None


def text(max_len: int = MAX_TEXT, *, multiline: bool = False) -> Check:
    """A non-empty string of at most max_len characters."""

    def check(value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, str):
            return value, "must be a string"
        stripped = value.strip()
        if not stripped:
            return value, "must not be empty"
        if len(value) > max_len:
            return value, f"must be at most {max_len} characters"
        if not multiline and not _clean(value):
            return value, "must not contain control characters"
        return stripped if not multiline else value, None

    return check


def code(max_len: int = 64) -> Check:
    """An identifier as printed on a barcode: letters, digits and #./:+- ."""

    def check(value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, str):
            return value, "must be a string"
        value = value.strip()
        if not value:
            return value, "must not be empty"
        if len(value) > max_len:
            return value, f"must be at most {max_len} characters"
        if not _CODE_RE.match(value):
            return value, "may hold only letters, digits, spaces and # . / : + -"
        return value, None

    return check


def cycle_number(value: Any) -> tuple[Any, str | None]:
    """A machine's cycle number, given as text or a whole number; kept as text."""
    if isinstance(value, bool):
        return value, "must be a string or a whole number"
    if isinstance(value, int):
        return (str(value), None) if value >= 0 else (value, "must not be negative")
    return code(32)(value)


def one_of(*choices: str) -> Check:
    """One of a fixed set of words."""

    def check(value: Any) -> tuple[Any, str | None]:
        if value not in choices:
            return value, "must be one of " + ", ".join(choices)
        return value, None

    return check


def number(minimum: float | None = None) -> Check:
    """A finite number (not a boolean)."""

    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, "must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return value, "must be finite"
        if minimum is not None and value < minimum:
            return value, f"must be at least {minimum:g}"
        return value, None

    return check


def boolean(value: Any) -> tuple[Any, str | None]:
    """true or false."""
    return value, None if isinstance(value, bool) else "must be true or false"


def iso_date(value: Any) -> tuple[Any, str | None]:
    """A calendar date YYYY-MM-DD."""
    if not isinstance(value, str):
        return value, "must be a date YYYY-MM-DD"
    try:
        return date.fromisoformat(value).isoformat(), None
    except ValueError:
        return value, "must be a date YYYY-MM-DD"


def iso_datetime(value: Any) -> tuple[Any, str | None]:
    """An ISO 8601 date and time with its UTC offset."""
    if not isinstance(value, str) or len(value) > 40:
        return value, "must be an ISO 8601 date and time with offset"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value, "must be an ISO 8601 date and time with offset"
    if parsed.tzinfo is None:
        return value, "must carry a UTC offset, e.g. +01:00"
    return value, None


def patient_code(value: Any) -> tuple[Any, str | None]:
    """A patient code from the planning: letters, digits and '-', no names."""
    if not isinstance(value, str) or not _PATIENT_RE.match(value):
        return None, "must be a patient code (letters, digits, '-', at most 32)"
    return value, None


def event_id(value: Any) -> tuple[Any, str | None]:
    """An event id as issued by a node."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return value, "must be an event id"
    return value, None


def list_of(item: Check, *, max_items: int = MAX_LIST, unique: bool = False) -> Check:
    """A list of values each passing `item`."""

    def check(value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, list):
            return value, "must be a list"
        if len(value) > max_items:
            return value, f"must hold at most {max_items} items"
        out = []
        for i, element in enumerate(value):
            cleaned, problem = item(element)
            if problem:
                return value, f"item {i + 1} {problem}"
            out.append(cleaned)
        if unique and len(set(out)) != len(out):
            return value, "must not repeat an item"
        return out, None

    return check


def non_empty(check: Check) -> Check:
    """Like `check`, for a list that must hold at least one item."""

    def wrapped(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, list) and not value:
            return value, "must hold at least one item"
        return check(value)

    return wrapped


def plain_map(max_items: int = 64) -> Check:
    """A small map of text keys to numbers, text or booleans."""

    def check(value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, dict) or len(value) > max_items:
            return value, f"must be a map of at most {max_items} entries"
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > 64:
                return value, "keys must be strings of at most 64 characters"
            if isinstance(item, str) and len(item) > MAX_TEXT:
                return value, f"{key[:20]}: text must be at most {MAX_TEXT} characters"
            if item is not None and not isinstance(item, str | int | float | bool):
                return value, f"{key[:20]}: must be a number, text or boolean"
            if isinstance(item, float) and not math.isfinite(item):
                return value, f"{key[:20]}: must be finite"
        return value, None

    return check


def phase(value: Any) -> tuple[Any, str | None]:
    """One phase of a cycle: a name, a result and optional measures."""
    checked, problem = plain_map(16)(value)
    if problem:
        return checked, problem
    if not isinstance(value.get("name"), str) or not value["name"].strip():
        return value, "must have a name"
    return value, None


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


def _node_code(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not _NODE_CODE_RE.match(value):
        return value, "must be a node short code (1-3 capital letters)"
    return value, None


def _hlc(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return value, "must be a clock timestamp"
    try:
        Timestamp.parse(value)
    except ClockError:
        return value, "must be a clock timestamp"
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
        errors.append(FieldError(name, "is required"))
    for name, value in body.items():
        check = allowed.get(name)
        if check is None:
            errors.append(FieldError(str(name)[:40], "is not a field of this event type"))
            continue
        if value is None and name not in required:
            continue
        cleaned, problem = check(value)
        if problem:
            errors.append(FieldError(name, problem))
        else:
            out[name] = cleaned
    return out, errors


def _event_type(body: Mapping[str, Any]) -> EventType:
    kind = body.get("type")
    if not isinstance(kind, str):
        raise EventError([FieldError("type", "is required")])
    event_type = EVENT_TYPES.get(kind)
    if event_type is None:
        raise EventError([FieldError("type", f"unknown event type {kind[:40]!r}")])
    return event_type


def validate_submission(body: Any) -> dict[str, Any]:
    """Check an event as a client submits it (without the node's fields); normalised copy."""
    if not isinstance(body, Mapping):
        raise EventError([FieldError("body", "must be a JSON object")])
    event_type = _event_type(body)
    errors = [FieldError(f, "is set by the node") for f in NODE_FIELDS if f in body]
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
        raise EventError([FieldError("event", "must be a map")])
    event_type = _event_type(event)
    fields = {k: v for k, v in event.items() if k != "type"}
    allowed = _stored_fields(event_type)
    out, errors = _validate_fields(fields, allowed, _stored_required(event_type))
    # hlc passed its fixed-width check: it is the text form of its timestamp
    if not errors and out["id"] != f"{out['hlc']}-{out['node']}":
        errors.append(FieldError("id", "does not match hlc and node"))
    if encoded_size is None and not errors:
        encoded_size = len(encode(event))
    if not errors and encoded_size is not None and encoded_size > MAX_EVENT_BYTES:
        errors.append(FieldError("event", f"is larger than {MAX_EVENT_BYTES} bytes"))
    if errors:
        raise EventError(errors)
    return {"type": event_type.name, **out}


def check_event_size(event: Mapping[str, Any]) -> None:
    """EventError when an event's CBOR form is over MAX_EVENT_BYTES."""
    if len(encode(event)) > MAX_EVENT_BYTES:
        raise EventError([FieldError("event", f"is larger than {MAX_EVENT_BYTES} bytes")])


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

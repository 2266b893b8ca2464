"""A received event checked on its bytes: shown valid and canonical without decoding it.

Sync keeps a peer's event only if it decodes, passes `validate_event` unchanged (what the
node would have stored), sits under its own id, belongs to its document's day and is in its
canonical encoding (crdt_model/_decode.py: `canonical_form`). `shown_valid` judges all of
that on the event's bytes, for the common shape of an event: each key one of the event's
type in canonical order, each value a text, a list of texts, a whole number or a boolean,
each texts' rules checked in place (codes and clocks byte by byte, free text for control
characters and surrounding spaces). It answers True only when the bytes show that the full
check would pass; False when they do not show it: anything it does not judge (a float, a
nested map, null, a code with a letter outside ASCII, an 8-byte number...) and anything
wrong. Sync then runs the full check, which decides and says what is wrong. So this never
refuses and never lets through what the full check would refuse (tests/crdt_model/
test_verify.py compares them on random events and on bytes changed anywhere).

The rules come from the checks of crdt_model/_events.py themselves (`check_params`): a type
or field added there is judged here as its check says, or left to the full check when its
check is of a kind this does not know. Compiled with the fold; interpreted, sync skips it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from ._decode import (
    _HLC,
    _ID,
    _NODE,
    _TYPE,
    FIELDS,
    _after,
    _argument,
    _key_slot,
    _shortest,
    _text_at,
)
from ._events import (
    _COMMON,
    _NODE_SET,
    EVENT_TYPES,
    MAX_CYCLE_NUMBER,
    MAX_DATETIME,
    MAX_EVENT_BYTES,
    MAX_NODE_CODE,
    MAX_PATIENT,
    Check,
    check_params,
)

_UNJUDGED: Final = 0
_TEXT: Final = 1
_LINES: Final = 2
_CODE: Final = 3
_CHOICE: Final = 4
_NUMBER: Final = 5
_BOOLEAN: Final = 6
_DATE: Final = 7
_DATETIME: Final = 8
_PATIENT: Final = 9
_EVENT_ID: Final = 10
_NODE_CODE: Final = 11
_CLOCK: Final = 12
_LIST: Final = 13

_NAMED: Final = {
    "boolean": _BOOLEAN,
    "iso_date": _DATE,
    "iso_datetime": _DATETIME,
    "patient_code": _PATIENT,
    "event_id": _EVENT_ID,
    "_node_code": _NODE_CODE,
    "_hlc": _CLOCK,
}

_CLOCK_BYTES: Final = 19
"""A clock's text: 13 digits of milliseconds, '-', 5 of its counter (crdt_model/_hlc.py)."""
_PATIENT_BYTE: Final = 1
_CAPITAL: Final = 2
_DIGIT: Final = 3


class _Field:
    """How one field's value is judged (a kind, and the arguments of its check)."""

    def __init__(self, check: Check) -> None:
        name, params = check_params(check)
        self.kind = _UNJUDGED
        self.max_len = 0
        self.minimum: int | float | None = None
        self.choices: tuple[str, ...] = ()
        self.item: _Field | None = None
        self.max_items = 0
        self.unique = False
        self.at_least = 0
        if name == "text":
            self.kind = _LINES if params["multiline"] else _TEXT
            self.max_len = params["max_len"]
        elif name == "code":
            self.kind = _CODE
            self.max_len = params["max_len"]
        elif name == "cycle_number":  # stored as text (a number given is kept as its text)
            self.kind = _CODE
            self.max_len = MAX_CYCLE_NUMBER
        elif name == "one_of":
            self.kind = _CHOICE
            self.choices = tuple(params["choices"])
        elif name == "number":
            self.kind = _NUMBER
            self.minimum = params["minimum"]
        elif name in ("list_of", "non_empty"):
            inner = params["check"] if name == "non_empty" else check
            inner_name, inner_params = check_params(inner)
            item = _Field(inner_params["item"]) if inner_name == "list_of" else None
            if item is not None and item.kind in (_TEXT, _LINES, _CODE):
                self.kind = _LIST
                self.item = item
                self.max_items = inner_params["max_items"]
                self.unique = inner_params["unique"]
                self.at_least = 1 if name == "non_empty" else 0
        else:
            self.kind = _NAMED.get(name, _UNJUDGED)


class _Type:
    """The fields of one event type by slot of FIELDS (None: not a field of it)."""

    def __init__(self, name: str) -> None:
        kind = EVENT_TYPES[name]
        self.fields: list[_Field | None] = [None] * len(FIELDS)
        self.required = 0
        """The slots of its required fields, one bit each."""
        for checks in (kind.required, kind.optional, _COMMON, _NODE_SET):
            for field, check in checks.items():
                self.fields[FIELDS.index(field)] = _Field(check)
        for field in (*kind.required, *_NODE_SET):
            self.required |= 1 << FIELDS.index(field)


_TYPES: Final = {name: _Type(name) for name in EVENT_TYPES}

assert len(FIELDS) <= 62, "a field's slot is a bit of a machine word (`_Type.required`)"


def shown_valid(blob: bytes, key: str, first_ms: int, end_ms: int) -> bool:
    """True when the bytes show the event valid and canonical, stored under its id `key`,
    its clock in [first_ms, end_ms) (its document's day); False when they do not show it."""
    if len(blob) > MAX_EVENT_BYTES:
        return False
    try:
        return _judge(blob, key, first_ms, end_ms)
    except (IndexError, ValueError):  # cut short, bad UTF-8, a date that is none
        return False


def first_unshown(
    entries: list[tuple[str, str, bytes]], start: int, first_ms: int, end_ms: int
) -> int:
    """The index of the first of `entries` (root, key, value) from `start` that is not an
    event `shown_valid` in [first_ms, end_ms): an ack, or an event its bytes do not show
    valid (for the full check to decide); -1 when there is none. A catch-up's thousands of
    events are judged in one call."""
    for n in range(start, len(entries)):
        root, key, value = entries[n]
        if root != "events" or not shown_valid(value, key, first_ms, end_ms):
            return n
    return -1


def _judge(blob: bytes, key: str, first_ms: int, end_ms: int) -> bool:
    head = blob[0]
    if head >> 5 != 5:
        return False
    count, i = _argument(blob, head & 31, 1)
    if count < 0 or count > len(FIELDS) or not _shortest(head & 31, count):
        return False
    slots: list[int] = []
    starts: list[int] = []
    present = 0  # one bit per slot
    at_type = at_id = at_hlc = at_node = -1
    last_start = last_size = -1
    for _ in range(count):
        size, i, shortest = _text_at(blob, i)
        if size < 0 or not shortest or not _after(blob, last_start, last_size, i, size):
            return False  # keys in canonical order are each there once
        slot = _key_slot(blob, i, size)
        if slot < 0:
            return False
        last_start, last_size = i, size
        i += size
        slots.append(slot)
        starts.append(i)
        present |= 1 << slot
        if slot == _TYPE:
            at_type = i
        elif slot == _ID:
            at_id = i
        elif slot == _HLC:
            at_hlc = i
        elif slot == _NODE:
            at_node = i
        i = _skip(blob, i)
        if i < 0:
            return False
    if i != len(blob):
        return False
    if at_type < 0:
        return False
    kind = _TYPES.get(_text(blob, at_type))
    if kind is None or present & kind.required != kind.required:
        return False
    for n in range(len(slots)):
        slot = slots[n]
        if slot == _TYPE:
            continue
        field = kind.fields[slot]
        if field is None or not _judged(blob, starts[n], field):
            return False
    event_id = _text(blob, at_id)  # required: there
    hlc = _text(blob, at_hlc)
    if event_id != key or event_id != hlc + "-" + _text(blob, at_node):
        return False
    physical = int(hlc[:13])  # a clock: ASCII digits, checked
    return first_ms <= physical < end_ms


def _skip(blob: bytes, i: int) -> int:
    """Where the value at `i` ends, each head the shortest; -1 for a value not judged."""
    head = blob[i]
    major = head >> 5
    if major in (0, 1):
        value, j = _argument(blob, head & 31, i + 1)
        return j if value >= 0 and _shortest(head & 31, value) else -1
    if major == 3:
        size, j, shortest = _text_at(blob, i)
        return j + size if size >= 0 and shortest and j + size <= len(blob) else -1
    if major == 4:
        size, j = _argument(blob, head & 31, i + 1)
        if size < 0 or not _shortest(head & 31, size):
            return -1
        for _ in range(size):
            length, j, shortest = _text_at(blob, j)
            if length < 0 or not shortest or j + length > len(blob):
                return -1
            j += length
        return j
    if head in (0xF4, 0xF5):
        return i + 1
    return -1


def _text(blob: bytes, i: int) -> str:
    """The text whose head is at `i` (ValueError when there is none, or bad UTF-8)."""
    size, j, _ = _text_at(blob, i)
    if size < 0:
        raise ValueError("not a text")
    return blob[j : j + size].decode()


def _judged(blob: bytes, i: int, field: _Field) -> bool:
    """True when the value at `i` passes `field`'s check unchanged. (Its heads and lengths
    were checked by `_skip` as the map was walked: read here without bounds checks.)"""
    kind = field.kind
    head = blob[i]
    if kind == _BOOLEAN:
        return head in (0xF4, 0xF5)
    if kind == _NUMBER:
        major = head >> 5
        if major not in (0, 1):
            return False
        value, _ = _argument(blob, head & 31, i + 1)
        number = value if major == 0 else -1 - value
        minimum = field.minimum
        return minimum is None or number >= minimum
    if kind == _LIST:
        item = field.item
        if head >> 5 != 4 or item is None:
            return False
        count, j = _argument(blob, head & 31, i + 1)
        if count < field.at_least or count > field.max_items:
            return False
        seen: set[str] = set()
        for _ in range(count):
            if not _judged(blob, j, item):
                return False
            size, j, _ = _text_at(blob, j)
            if field.unique:
                text = blob[j : j + size].decode()
                if text in seen:
                    return False
                seen.add(text)
            j += size
        return True
    size, j, _ = _text_at(blob, i)
    if size < 0:
        return False
    end = j + size
    if kind == _CODE:
        return 0 < size <= field.max_len and _code_bytes(blob, j, end)
    if kind == _PATIENT:
        return 0 < size <= MAX_PATIENT and _all_bytes(blob, j, end, _PATIENT_BYTE)
    if kind == _NODE_CODE:
        return 0 < size <= MAX_NODE_CODE and _all_bytes(blob, j, end, _CAPITAL)
    if kind == _CLOCK:
        return size == _CLOCK_BYTES and _clock_bytes(blob, j)
    if kind == _EVENT_ID:
        return (  # a clock (19 bytes), '-', a node code
            _CLOCK_BYTES + 2 <= size <= _CLOCK_BYTES + 1 + MAX_NODE_CODE
            and _clock_bytes(blob, j)
            and blob[j + _CLOCK_BYTES] == 0x2D
            and _all_bytes(blob, j + _CLOCK_BYTES + 1, end, _CAPITAL)
        )
    text = blob[j:end].decode()
    if kind == _TEXT:
        return (
            0 < len(text) <= field.max_len
            and not text[0].isspace()
            and not text[-1].isspace()
            and _no_control(blob, j, end)
        )
    if kind == _LINES:
        return 0 < len(text) <= field.max_len and (not text[0].isspace() or bool(text.strip()))
    if kind == _CHOICE:
        return text in field.choices
    if kind == _DATE:
        return date.fromisoformat(text).isoformat() == text
    if kind == _DATETIME:
        return len(text) <= MAX_DATETIME and datetime.fromisoformat(text).tzinfo is not None
    return False


def _all_bytes(blob: bytes, start: int, end: int, kind: int) -> bool:
    """True when every byte of blob[start:end] is of `kind` (ASCII only)."""
    for j in range(start, end):
        b = blob[j]
        if kind == _CAPITAL:
            ok = 0x41 <= b <= 0x5A
        elif kind == _DIGIT:
            ok = 0x30 <= b <= 0x39
        else:  # a patient code: letters, digits and '-'
            ok = 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or b == 0x2D
        if not ok:
            return False
    return True


def _clock_bytes(blob: bytes, j: int) -> bool:
    """True when blob[j:j + 19] is a clock: 13 digits, '-', 5 digits."""
    return (
        _all_bytes(blob, j, j + 13, _DIGIT)
        and blob[j + 13] == 0x2D
        and _all_bytes(blob, j + 14, j + 19, _DIGIT)
    )


def _code_bytes(blob: bytes, start: int, end: int) -> bool:
    """True for a code as `code` keeps it: ASCII word characters and #./:+-, spaces inside
    (not first, not last: the check strips the text, so a kept code has none there)."""
    if blob[start] == 0x20 or blob[end - 1] == 0x20:
        return False
    for j in range(start, end):
        b = blob[j]
        if (
            not (
                0x61 <= b <= 0x7A  # a-z
                or 0x41 <= b <= 0x5A  # A-Z
                or 0x2B <= b <= 0x3A  # + , - . / 0-9 :
                or b in (0x20, 0x23, 0x5F)  # space # _
            )
            or b == 0x2C
        ):  # not a comma
            return False  # a letter outside ASCII: left to the full check
    return True


def _no_control(blob: bytes, start: int, end: int) -> bool:
    """True when the UTF-8 text blob[start:end] holds no control character (U+0000-U+001F,
    U+007F-U+009F; the last are C2 80-C2 9F in UTF-8)."""
    for j in range(start, end):
        b = blob[j]
        if b < 0x20 or b == 0x7F or (b == 0xC2 and j + 1 < end and 0x80 <= blob[j + 1] <= 0x9F):
            return False
    return True

"""The fold's records read straight from stored events, without decoding them into maps.

A node folds every stored event when it starts (a month is some 600,000). Each is a small
canonical CBOR map of text keys and mostly short text values, many of which repeat (types,
node codes, zones, set codes, machines, load numbers). `RecordReader.read` reads that
common shape itself, from the bytes: each key is recognised in place, each repeated value is
made once and then found again by its bytes (`_Texts`), and only what the record keeps is
made at all (no map, no key strings, no copy of the bytes to look them up). Anything else (a
key no event type has, a key twice, a nested map, null, a number other than a small whole
one, a tag, bad UTF-8, trailing bytes...) gives None, and the fold decodes that event whole
(`decode_map`) and makes its record as for any decoded event (`record_of`): either way the
same record. Compiled with the fold (crdt_model/_compiled.py); interpreted, reading bytes
one by one in Python is slower than cbor2, and the fold then decodes every event whole.
"""

from __future__ import annotations

from typing import Any, Final

from ._events import EVENT_TYPES, NODE_FIELDS
from ._views import Record, extras, spec_of

FIELDS: Final = sorted(
    {"type", *NODE_FIELDS, "zone", "station"}
    | {name for t in EVENT_TYPES.values() for name in (*t.required, *t.optional)}
)
"""Every key an event may have (the types of crdt_model/_events.py), each a slot."""
_NEW: Final = frozenset(
    {"id", "hlc", "at", "text", "raw", "started", "ended", "patient", "comment", "reason"}
    | {"label_id", "planning_ref", "target", "anomaly"}
)
"""Keys whose values seldom repeat, or are long: made new each time."""
_FRESH: Final = [name in _NEW for name in FIELDS]
_ID: Final = FIELDS.index("id")
_HLC: Final = FIELDS.index("hlc")
_AT: Final = FIELDS.index("at")
_TYPE: Final = FIELDS.index("type")
_NODE: Final = FIELDS.index("node")
_ZONE: Final = FIELDS.index("zone")
_LOAD: Final = FIELDS.index("load")
_MACHINE: Final = FIELDS.index("machine")
_SETS: Final = FIELDS.index("sets")
_SHARED_MAX: Final = 64
"""Longer texts are made new each time."""
_TABLE_BITS: Final = 17
"""The texts table: 2**17 places, emptied when half full (a month of events holds some
20,000 distinct repeated texts: codes, load numbers, dates)."""


class RecordReader:
    """Reads records from stored events; `at` and `hlc` of the last one read stay beside it
    (the fold checks the clock with them)."""

    def __init__(self, intern: dict[Any, Any]) -> None:
        self._intern = intern
        """The fold's: codes, days and tuples of extras kept once."""
        self._texts = _Texts(intern, _TABLE_BITS)
        self._plans: dict[str, _Plan] = {}
        self._values: list[Any] = [None] * len(FIELDS)
        self._filled: list[int] = [0] * len(FIELDS)
        self.at = ""
        self.hlc = ""

    def read(self, blob: bytes) -> Record | None:
        """The record of one stored event; None when it is not of the common shape."""
        values = self._values
        filled = self._filled
        count = -1
        try:
            count = self._fill(blob)
            return None if count < 0 else self._record(values)
        except (IndexError, ValueError, TypeError):  # cut short, bad UTF-8, odd values
            return None
        finally:  # the slots filled back to None (all of them, when cut short)
            if count < 0:
                for n in range(len(values)):
                    values[n] = None
            else:
                for n in range(count):
                    values[filled[n]] = None

    def _fill(self, blob: bytes) -> int:
        """Put each value in its key's slot; the number of keys, or -1 for another shape."""
        values = self._values
        filled = self._filled
        texts = self._texts
        first = blob[0]
        if first >> 5 != 5:
            return -1
        count, i = _argument(blob, first & 31, 1)
        if count < 0 or count > len(FIELDS):  # more keys than fields: some twice
            return -1
        for n in range(count):
            size, i, _ = _text_at(blob, i)
            slot = _key_slot(blob, i, size)
            if slot < 0 or values[slot] is not None:  # a key of no event type, or twice
                return -1
            filled[n] = slot
            i += size
            head = blob[i]
            major = head >> 5
            if major == 3:
                size, i = _argument(blob, head & 31, i + 1)
                if size < 0 or i + size > len(blob):
                    return -1
                if _FRESH[slot] or size > _SHARED_MAX:
                    values[slot] = blob[i : i + size].decode()
                else:
                    values[slot] = texts.get(blob, i, size)
                i += size
            elif major == 4:
                size, i = _argument(blob, head & 31, i + 1)
                if size < 0:
                    return -1
                items: list[str] = []
                for _ in range(size):
                    length, i, _ = _text_at(blob, i)
                    if length < 0 or length > _SHARED_MAX or i + length > len(blob):
                        return -1
                    items.append(texts.get(blob, i, length))
                    i += length
                values[slot] = items
            elif major == 0:
                number, i = _argument(blob, head & 31, i + 1)
                if number < 0:
                    return -1
                values[slot] = number
            elif head in (0xF4, 0xF5):
                values[slot] = head == 0xF5
                i += 1
            else:
                return -1
        return count if i == len(blob) else -1

    def _record(self, values: list[Any]) -> Record | None:
        event_id = values[_ID]
        kind = values[_TYPE]
        at = values[_AT]
        hlc = values[_HLC]
        node = values[_NODE]
        if not (
            isinstance(event_id, str)
            and isinstance(kind, str)
            and isinstance(at, str)
            and isinstance(hlc, str)
            and isinstance(node, str)
        ):
            return None  # decoded whole: the map's own errors
        plan = self._plans.get(kind)
        if plan is None:
            plan = self._plans[kind] = _Plan(kind)
        key = None if plan.key < 0 else values[plan.key]
        result = None if plan.result < 0 else values[plan.result]
        zone = values[_ZONE]
        load = values[_LOAD]
        machine = values[_MACHINE]
        if not (
            _text_or_none(key)
            and _text_or_none(result)
            and _text_or_none(zone)
            and _text_or_none(load)
            and _text_or_none(machine)
        ):
            return None  # decoded whole, as such an event always was
        sets = values[_SETS]
        if not (sets is None or isinstance(sets, list)):
            return None  # decoded whole: refused there
        found = [None if slot < 0 else values[slot] for slot in plan.fields]
        data = extras(found, plan.spec, self._intern)
        day = at[:10]
        self.at = at
        self.hlc = hlc
        return Record(
            event_id,
            plan.spec,
            day=self._intern.setdefault(day, day),
            node=node,
            zone=zone,
            key=key,
            load=load,
            machine=machine,
            result=result,
            sets=() if sets is None else tuple(sets),
            data=data,
        )


class _Texts:
    """Texts read from bytes, each made once: a table keyed by the bytes themselves, so a
    text seen before is found without copying its bytes out (open addressing)."""

    def __init__(self, intern: dict[Any, Any], bits: int) -> None:
        self._intern = intern
        self._mask = (1 << bits) - 1
        self._raw: list[bytes] = [b""] * (1 << bits)
        self._text: list[str | None] = [None] * (1 << bits)
        self._count = 0

    def get(self, blob: bytes, start: int, size: int) -> str:
        """The text of blob[start:start + size] (valid UTF-8, else UnicodeDecodeError)."""
        text: str | None
        h = size
        for j in range(start, start + size):
            h = (h * 31 + blob[j]) & 0xFFFFFF  # small: native arithmetic when compiled
        place = h & self._mask
        while True:
            text = self._text[place]
            if text is None:
                break
            raw = self._raw[place]
            if len(raw) == size and _same(raw, blob, start):
                return text
            place = (place + 1) & self._mask
        raw = blob[start : start + size]
        made = raw.decode()
        text = self._intern.setdefault(made, made)
        if self._count * 2 > self._mask:  # half full: start again
            self._raw = [b""] * (self._mask + 1)
            self._text = [None] * (self._mask + 1)
            self._count = 0
            return text
        self._raw[place] = raw
        self._text[place] = text
        self._count += 1
        return text


def _same(raw: bytes, blob: bytes, start: int) -> bool:
    for j in range(len(raw)):  # noqa: SIM110 (compiled, a loop makes no generator)
        if raw[j] != blob[start + j]:
            return False
    return True


class _Plan:
    """Where the values a type's record keeps sit among the slots of FIELDS (-1: none)."""

    def __init__(self, kind: str) -> None:
        self.spec = spec_of(kind)
        self.key = _slot(self.spec.key)
        self.result = _slot(self.spec.result)
        self.fields = [_slot(name) for name in self.spec.fields]


def _slot(name: str) -> int:
    return FIELDS.index(name) if name in FIELDS else -1


_KEY_RAW: Final = [name.encode() for name in FIELDS]
_KEY_PLACES: Final = 256
assert len(FIELDS) * 2 < _KEY_PLACES  # a quarter full at most: short probes, always a gap
_KEY_TABLE: Final[list[int]] = [-1] * _KEY_PLACES
"""Slot of each key, placed by its length and first and last bytes (open addressing)."""


def _key_place(size: int, first: int, last: int) -> int:
    return (size * 31 + first * 7 + last) % _KEY_PLACES


def _key_slot(blob: bytes, i: int, size: int) -> int:
    """The slot of the key blob[i:i + size] (-1: no event type has it)."""
    if size <= 0 or i + size > len(blob):
        return -1
    place = _key_place(size, blob[i], blob[i + size - 1])
    while True:
        slot = _KEY_TABLE[place]
        if slot < 0:
            return -1
        raw = _KEY_RAW[slot]
        if len(raw) == size and _same(raw, blob, i):
            return slot
        place = (place + 1) % _KEY_PLACES


for _i, _raw in enumerate(_KEY_RAW):
    _place = _key_place(len(_raw), _raw[0], _raw[-1])
    while _KEY_TABLE[_place] >= 0:
        _place = (_place + 1) % _KEY_PLACES
    _KEY_TABLE[_place] = _i


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _argument(blob: bytes, info: int, i: int) -> tuple[int, int]:
    """The argument of a head whose low bits are `info`, and the position after it; -1 for
    what this reader leaves to cbor2 (8-byte and indefinite lengths, reserved values)."""
    if info < 24:
        return info, i
    if info == 24:
        return blob[i], i + 1
    if info == 25:
        return (blob[i] << 8) | blob[i + 1], i + 2
    if info == 26:
        return (blob[i] << 24) | (blob[i + 1] << 16) | (blob[i + 2] << 8) | blob[i + 3], i + 4
    return -1, i


def canonical_form(blob: bytes) -> bool | None:
    """Whether `blob`, a map decoded already, is in canonical CBOR (as `encode` writes it:
    each length and number in its shortest head, keys by length then bytes, each once);
    None when it is not of the common shape (text keys; values that are texts, lists of
    texts, whole numbers from 0, true, false or null), which this does not judge."""
    try:
        return _canonical(blob)
    except IndexError:  # cut short
        return None


def _canonical(blob: bytes) -> bool | None:
    head = blob[0]
    if head >> 5 != 5:
        return None
    count, i = _argument(blob, head & 31, 1)
    if count < 0:
        return None
    canonical = _shortest(head & 31, count)
    last_start = last_size = -1
    for _ in range(count):
        size, i, shortest = _text_at(blob, i)
        if size < 0:
            return None
        if not shortest or not _after(blob, last_start, last_size, i, size):
            canonical = False
        last_start, last_size = i, size
        i += size
        head = blob[i]
        major = head >> 5
        if major in (0, 3, 4):  # a number, a text, a list of texts: one head first
            size, i = _argument(blob, head & 31, i + 1)
            if size < 0:
                return None
            canonical = canonical and _shortest(head & 31, size)
            if major == 3:
                i += size
            elif major == 4:
                for _ in range(size):
                    length, i, shortest = _text_at(blob, i)
                    if length < 0:
                        return None
                    canonical = canonical and shortest
                    i += length
        elif head in (0xF4, 0xF5, 0xF6):
            i += 1
        else:
            return None
    if i != len(blob):
        return None
    return canonical


def _text_at(blob: bytes, i: int) -> tuple[int, int, bool]:
    """The length of the text whose head is at `i`, where its bytes start, and whether that
    head is the shortest; length -1 when no text starts there (or one left to cbor2)."""
    head = blob[i]
    if head >> 5 != 3:
        return -1, i, False
    size, j = _argument(blob, head & 31, i + 1)
    return size, j, size >= 0 and _shortest(head & 31, size)


def _shortest(info: int, value: int) -> bool:
    """True when a head with low bits `info` is the shortest for `value`."""
    if info < 24:
        return True
    if info == 24:
        return value >= 24
    if info == 25:
        return value >= 0x100
    return value >= 0x10000


def _after(blob: bytes, last_start: int, last_size: int, start: int, size: int) -> bool:
    """True when the key at `start` sorts after the one at `last_start` (length, then bytes)."""
    if last_start < 0 or size > last_size:
        return True
    if size < last_size:
        return False
    for j in range(size):
        a = blob[last_start + j]
        b = blob[start + j]
        if a != b:
            return b > a
    return False  # the same key twice


def reads_bytes() -> bool:
    """True when this reader is the compiled one (interpreted, cbor2 reads faster)."""
    return not __file__.endswith(".py")

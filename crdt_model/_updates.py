"""The new entries of an events update, read from its bytes (Yjs update format v1).

A peer's update of an events document normally holds nothing but new map entries: each an
item of one client, next after what this node holds of that client, written under a root
map (`events` or `acks`) with a key and one binary value, with no item to its left or right
(a key set for the first time) and no deletion. Such an update integrates whole wherever
its clocks follow on, and changes no entry held. `new_entries` reads that shape and gives
the entries; anything else (an item placed after another, i.e. a key written again; a key
written twice in the update; other content; a deletion; a client whose clock does not
follow on; a skip or GC struct; bytes cut or left over) gives None, and sync then checks
the update on a shadow document (sync/_validate.py), which decides. Compiled with the fold
(crdt_model/_compiled.py).
"""

from __future__ import annotations

from typing import Final

_ENTRY_INFO: Final = 0x28
"""An item's info byte: a parent sub-key (0x20), content `Any` (8), no left or right origin."""
_BUFFER: Final = 0x74
"""lib0's tag of a binary value inside `Any` content."""
_ROOTS: Final = ("events", "acks")
_MAX_CLIENT: Final = (1 << 53) - 1
"""yrs keeps the low 53 bits of a client id: a larger one names another client than it says."""
_MAX_FIELD: Final = (1 << 32) - 1
"""yrs reads counts, clocks and lengths as 32-bit numbers."""


def new_entries(update: bytes, state: dict[int, int]) -> list[tuple[str, str, bytes]] | None:
    """(root, key, value) of each new entry of an events update, in its order, when the update
    is nothing but new entries whose clocks follow on from `state` (client -> clock held);
    None for any other update (which this does not judge)."""
    try:
        return _read(update, state)
    except (IndexError, ValueError):  # cut short, bad UTF-8, a number too long
        return None


def _read(update: bytes, state: dict[int, int]) -> list[tuple[str, str, bytes]] | None:
    entries: list[tuple[str, str, bytes]] = []
    seen: set[int] = set()
    keys: dict[str, set[str]] = {root: set() for root in _ROOTS}
    clients, i = _varuint(update, 0)
    for _ in range(clients):
        structs, i = _varuint(update, i)
        client, i = _varuint(update, i, _MAX_CLIENT)
        clock, i = _varuint(update, i)
        if client in seen or clock != state.get(client, 0) or structs == 0:
            return None  # twice, or not next after what is held (known, or a gap)
        seen.add(client)
        for _ in range(structs):
            if update[i] != _ENTRY_INFO:
                return None
            parent, i = _varuint(update, i + 1)
            if parent != 1:  # not a root type named by its name
                return None
            root, i = _text(update, i)
            if root not in _ROOTS:
                return None
            key, i = _text(update, i)
            written = keys[root]
            if key in written:  # a key written twice: the second replaces the first
                return None
            written.add(key)
            count, i = _varuint(update, i)
            if count != 1 or update[i] != _BUFFER:
                return None
            size, i = _varuint(update, i + 1)
            if i + size > len(update):
                return None
            entries.append((root, key, update[i : i + size]))
            i += size
    if i != len(update) - 1 or update[i] != 0:  # the delete set: none
        return None
    return entries


def _varuint(data: bytes, i: int, largest: int = _MAX_FIELD) -> tuple[int, int]:
    """The unsigned LEB128 number at `i` and the position after it: ValueError unless it is
    written in as few bytes as it needs (as yrs writes it) and at most `largest`."""
    value, end = _number(data, i)
    if (data[end - 1] == 0 and end - 1 > i) or value > largest:
        raise ValueError("number not as yrs writes it")
    return value, end


def _text(data: bytes, i: int) -> tuple[str, int]:
    size, i = _varuint(data, i)
    if i + size > len(data):
        raise ValueError("text cut short")
    return data[i : i + size].decode(), i + size


_MAX_DEPTH: Final = 32
"""Values nested deeper are not read (none of this project's documents nests at all)."""


def lists_a_client_twice(update: bytes) -> bool:
    """True when a Yjs v1 update names one client in two runs of structs (client ids as yrs
    reads them: their low 53 bits), or cannot be read as an update of the contents these
    documents hold. yrs would make two items of one id of the first, which crashes whoever
    then reads the document: sync refuses both before pycrdt sees the update."""
    return clients_named(update) is None


def clients_named(update: bytes) -> set[int] | None:
    """The client ids (as yrs reads them) whose structs a Yjs v1 update holds; None for one
    that names a client twice or cannot be read (see `lists_a_client_twice`)."""
    seen: set[int] = set()
    try:
        return None if _twice(update, seen) else seen
    except (IndexError, ValueError, RecursionError):
        return None


def _twice(update: bytes, seen: set[int] | None = None) -> bool:
    seen = set() if seen is None else seen
    clients, i = _number(update, 0)
    for _ in range(clients):
        structs, i = _number(update, i)
        client, i = _number(update, i)
        _, i = _number(update, i)  # its first clock
        client &= _MAX_CLIENT  # as yrs reads it
        if client in seen:
            return True
        seen.add(client)
        for _ in range(structs):
            i = _skip_struct(update, i)
    deleting, i = _number(update, i)  # the delete set: per client, ranges (clock, length)
    for _ in range(deleting):
        _, i = _number(update, i)
        ranges, i = _number(update, i)
        for _ in range(2 * ranges):
            _, i = _number(update, i)
    if i != len(update):
        raise ValueError("bytes after the update")
    return False


def _number(data: bytes, i: int) -> tuple[int, int]:
    """An unsigned LEB128 number of at most 10 bytes, however written."""
    value = 0
    shift = 0
    for j in range(i, i + 10):
        byte = data[j]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, j + 1
        shift += 7
    raise ValueError("number too long")


def _skip_bytes(data: bytes, i: int) -> int:
    """Past a length-prefixed string or buffer."""
    size, i = _number(data, i)
    if i + size > len(data):
        raise ValueError("cut short")
    return i + size


def _skip_struct(data: bytes, i: int) -> int:
    info = data[i]
    i += 1
    ref = info & 0x1F
    if ref in (0, 10):  # GC, skip: a length
        return _number(data, i)[1]
    if info & 0x80:  # left origin
        i = _number(data, _number(data, i)[1])[1]
    if info & 0x40:  # right origin
        i = _number(data, _number(data, i)[1])[1]
    if not info & 0xC0:  # no origin: the parent (a root's name, or an item's id) and key
        named, i = _number(data, i)
        i = _skip_bytes(data, i) if named == 1 else _number(data, _number(data, i)[1])[1]
        if info & 0x20:
            i = _skip_bytes(data, i)
    if ref == 1:  # deleted: a length
        return _number(data, i)[1]
    if ref == 2:  # JSON: strings
        count, i = _number(data, i)
        for _ in range(count):
            i = _skip_bytes(data, i)
        return i
    if ref in (3, 4, 5):  # binary, string, embed
        return _skip_bytes(data, i)
    if ref == 6:  # format: a key and a value
        return _skip_bytes(data, _skip_bytes(data, i))
    if ref == 7:  # a type: XML elements and hooks carry a name
        kind, i = _number(data, i)
        return _skip_bytes(data, i) if kind in (3, 5) else i
    if ref == 8:  # any: values
        count, i = _number(data, i)
        for _ in range(count):
            i = _skip_any(data, i, 0)
        return i
    if ref == 9:  # a document: its guid and options
        return _skip_any(data, _skip_bytes(data, i), 0)
    raise ValueError("content of a kind these documents never hold")


def _skip_any(data: bytes, i: int, depth: int) -> int:
    """Past one value of lib0's `Any` encoding."""
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deep")
    tag = data[i]
    i += 1
    if tag in (127, 126, 121, 120):  # undefined, null, false, true
        return i
    if tag == 125:  # a signed varint
        while data[i] >= 0x80:
            i += 1
        return i + 1
    if tag == 124:  # float32
        return i + 4
    if tag in (123, 122):  # float64, bigint
        return i + 8
    if tag in (119, 116):  # string, binary
        return _skip_bytes(data, i)
    if tag == 118:  # an object: keys and values
        count, i = _number(data, i)
        for _ in range(count):
            i = _skip_any(data, _skip_bytes(data, i), depth + 1)
        return i
    if tag == 117:  # an array
        count, i = _number(data, i)
        for _ in range(count):
            i = _skip_any(data, i, depth + 1)
        return i
    raise ValueError("a value of an unknown kind")

"""The new entries of an events update, read from its bytes (Yjs update format v1).

A peer's update of an events document normally holds nothing but new map entries: each an
item of one client, next after what this node holds of that client, written under a root
map (`events` or `acks`) with a key and one binary value, with no item to its left or right
(a key set for the first time) and no deletion. Such an update integrates whole wherever
its clocks follow on, and changes no entry held. `new_entries` reads that shape and gives
the entries; anything else (an item placed after another, i.e. a key written again; other
content; a deletion; a client whose clock does not follow on; a skip or GC struct; bytes
cut or left over) gives None, and sync then checks the update on a shadow document
(sync/_validate.py), which decides. Compiled with the fold (crdt_model/_compiled.py).
"""

from __future__ import annotations

from typing import Final

_ENTRY_INFO: Final = 0x28
"""An item's info byte: a parent sub-key (0x20), content `Any` (8), no left or right origin."""
_BUFFER: Final = 0x74
"""lib0's tag of a binary value inside `Any` content."""
_ROOTS: Final = ("events", "acks")
_MAX_CLIENT: Final = (1 << 53) - 1
"""yrs keeps 53 bits of a client id: a larger one would name another client than it says."""
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
    value = 0
    shift = 0
    for j in range(i, i + 8):
        byte = data[j]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if (byte == 0 and j > i) or value > largest:
                raise ValueError("number not as yrs writes it")
            return value, j + 1
        shift += 7
    raise ValueError("number too long")


def _text(data: bytes, i: int) -> tuple[str, int]:
    size, i = _varuint(data, i)
    if i + size > len(data):
        raise ValueError("text cut short")
    return data[i : i + size].decode(), i + size

"""Pure helpers on Yjs v1 encodings: state vectors and the delete set of an update."""

from __future__ import annotations

from collections.abc import Mapping

import pycrdt

EMPTY_STATE = b"\x00"
"""The state vector of an empty document."""
EMPTY_UPDATE = b"\x00\x00"
"""An update that changes nothing."""

_MAX_VARUINT_BYTES = 10


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned LEB128 number at `pos` and the position after it; ValueError if cut."""
    value = shift = 0
    for i in range(_MAX_VARUINT_BYTES):
        if pos + i >= len(data):
            raise ValueError("varuint cut short")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError("varuint too long")


def write_varuint(value: int) -> bytes:
    """The unsigned LEB128 encoding of `value`."""
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def parse_state_vector(state: bytes) -> dict[int, int]:
    """Client id -> clock of an encoded state vector; ValueError if malformed."""
    count, pos = read_varuint(state, 0)
    if count > len(state):
        raise ValueError("state vector announces more entries than it holds")
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_varuint(state, pos)
        clock, pos = read_varuint(state, pos)
        if client in clocks:
            raise ValueError("state vector repeats a client")
        clocks[client] = clock
    if pos != len(state):
        raise ValueError("state vector has trailing bytes")
    return clocks


def encode_state_vector(clocks: Mapping[int, int]) -> bytes:
    """The encoding of a client id -> clock mapping (entries with clock 0 left out)."""
    entries = [(c, k) for c, k in sorted(clocks.items()) if k > 0]
    return write_varuint(len(entries)) + b"".join(
        write_varuint(c) + write_varuint(k) for c, k in entries
    )


def covers(have: Mapping[int, int], want: Mapping[int, int]) -> bool:
    """True when a holder of `have` holds everything described by `want`."""
    return all(have.get(client, 0) >= clock for client, clock in want.items())


def missing_clock(have: Mapping[int, int], want: Mapping[int, int]) -> int:
    """Clock units (about one per map write) in `want` and not in `have`."""
    return sum(max(0, clock - have.get(client, 0)) for client, clock in want.items())


def merge_vectors(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    """The per-client maximum of two state vectors."""
    merged = dict(a)
    for client, clock in b.items():
        merged[client] = max(merged.get(client, 0), clock)
    return merged


def is_integrated(update: bytes, state_after: bytes) -> bool:
    """True when a document whose state is `state_after` took all of `update` in.

    Yjs holds back, silently, the structs of an update whose dependencies are
    missing, and deletions of items it has not seen. Either shows here: a struct
    of the update beyond the state, or a deleted range beyond it.
    """
    rest = pycrdt.get_update(update, state_after)
    clients, pos = read_varuint(rest, 0)
    if clients:
        return False
    clocks = parse_state_vector(state_after)
    count, pos = read_varuint(rest, pos)
    for _ in range(count):
        client, pos = read_varuint(rest, pos)
        ranges, pos = read_varuint(rest, pos)
        held = clocks.get(client, 0)
        for _ in range(ranges):
            clock, pos = read_varuint(rest, pos)
            length, pos = read_varuint(rest, pos)
            if clock + length > held:
                return False
    return True

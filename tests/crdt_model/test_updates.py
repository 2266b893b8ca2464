"""The new entries of an events update, read from its bytes (crdt_model/_updates.py)."""

from __future__ import annotations

from typing import Any

import pycrdt
from pycrdt import Array, Doc, Map, Text

import crdt_model as cm
from sync._vectors import write_varuint


def _doc(client_id: int, **entries: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc(client_id=client_id)
    with doc.transaction():
        for key, value in entries.items():
            cm.events_map(doc)[key] = value
    return doc


def test_new_entries_of_both_maps_are_read_in_their_order() -> None:
    doc = _doc(7, a=b"\xa1aa\x01", b=b"\xa0")
    with doc.transaction():
        cm.acks_map(doc)["a/B"] = b"\xa0"
    entries = cm.new_entries(doc.get_update(), {})
    assert entries == [
        ("events", "a", b"\xa1aa\x01"),
        ("events", "b", b"\xa0"),
        ("acks", "a/B", b"\xa0"),
    ]
    assert cm.new_entries(b"\x00\x00", {}) == []


def test_what_does_not_follow_on_from_the_state_is_not_read() -> None:
    update = _doc(7, a=b"\xa0").get_update()
    assert cm.new_entries(update, {7: 0, 9: 4}) is not None
    assert cm.new_entries(update, {7: 1}) is None  # held already
    later = _doc(7, a=b"\xa0", b=b"\xa0")
    assert cm.new_entries(later.get_update(b"\x01\x07\x01"), {}) is None  # a gap before it


def test_other_shapes_are_not_read() -> None:
    doc = _doc(7, a=b"\xa0")
    first = doc.get_state()
    with doc.transaction():
        cm.events_map(doc)["a"] = b"\xa1"  # written again: placed after the first
    assert cm.new_entries(doc.get_update(first), {7: 1}) is None
    with doc.transaction():
        del cm.events_map(doc)["a"]
    assert cm.new_entries(doc.get_update(doc.get_state()), {7: 2}) is None  # a deletion
    text = _doc(8, a="a text")  # type: ignore[arg-type]
    assert cm.new_entries(text.get_update(), {}) is None  # not a binary value
    listed: Doc[Any] = Doc(client_id=9)
    listed.get("events", type=Array).append(b"\xa0")
    assert cm.new_entries(listed.get_update(), {}) is None  # not a map entry
    nested: Doc[Any] = Doc(client_id=10)
    cm.events_map(nested)["m"] = Map({"x": b"\xa0"})
    assert cm.new_entries(nested.get_update(), {}) is None
    other_root: Doc[Any] = Doc(client_id=11)
    other_root.get("other", type=Map)["k"] = b"\xa0"
    assert cm.new_entries(other_root.get_update(), {}) is None
    good = _doc(12, a=b"\xa0").get_update()
    for bad in (good + b"\x00", good[:-1], good[:-3] + good[-2:], b"", b"\x01"):
        assert cm.new_entries(bad, {}) is None
    merged = pycrdt.merge_updates(good, _doc(13, b=b"\xa0").get_update())
    assert sorted(key for _, key, _ in cm.new_entries(merged, {}) or []) == ["a", "b"]


def _text(raw: bytes) -> bytes:
    return write_varuint(len(raw)) + raw


def _entry(key: str, value: bytes = b"\xa0") -> bytes:
    return b"\x28\x01" + _text(b"events") + _text(key.encode()) + b"\x01\x74" + _text(value)


def _update(*runs: tuple[bytes, int, list[bytes]]) -> bytes:
    """An update of runs (client as written, first clock, structs), no deletion."""
    out = write_varuint(len(runs))
    for client, clock, structs in runs:
        out += write_varuint(len(structs)) + client + write_varuint(clock) + b"".join(structs)
    return out + b"\x00"


def test_client_ids_and_numbers_are_read_only_as_yrs_reads_them() -> None:
    one = _update((write_varuint(5), 0, [_entry("a")]))
    assert cm.new_entries(one, {}) == [("events", "a", b"\xa0")]  # as pycrdt writes it
    # yrs keeps 53 bits of a client id: 2**53 + 5 is client 5 again (twice in one update
    # makes two items of one id, which crashes the reader), 2**53 + 1 a client held
    aliased = _update(
        (write_varuint(5), 0, [_entry("a")]), (write_varuint(2**53 + 5), 0, [_entry("b")])
    )
    assert cm.new_entries(aliased, {}) is None
    assert cm.new_entries(_update((write_varuint(2**53 + 1), 0, [_entry("c")])), {1: 1}) is None
    assert cm.new_entries(_update((write_varuint(2**53 - 1), 0, [_entry("c")])), {}) is not None
    twice = _update((write_varuint(5), 0, [_entry("a")]), (write_varuint(5), 1, [_entry("b")]))
    assert cm.new_entries(twice, {}) is None
    longer = _update((b"\x85\x00", 0, [_entry("a")]))  # 5 in two bytes
    assert cm.new_entries(longer, {}) is None
    wide = _update((write_varuint(5), 2**32, [_entry("a")]))  # a clock yrs reads in 32 bits
    assert cm.new_entries(wide, {5: 2**32}) is None


def test_updates_of_every_kind_of_content_name_each_client_once() -> None:
    docs = [Doc(client_id=n) for n in (1, 2, 2**40)]
    for n, doc in enumerate(docs):
        settings = cm.cluster_map(doc, "settings")
        settings["a"] = b"\xa0"
        settings["a"] = b"\xa1"  # written again: an item after another, the first deleted
        settings.pop("a")
        settings["n"] = Map({"k": 1.5, "l": [1, "x", None, True, b"y", {"d": [2]}]})
        doc.get("list", type=Array).append(n)
        text = doc.get("text", type=Text)
        text += "du texte"
    for doc in docs[1:]:
        docs[0].apply_update(doc.get_update())
    updates = [d.get_update() for d in docs]
    updates += [pycrdt.merge_updates(*updates), docs[0].get_update(docs[1].get_state())]
    for update in updates:
        assert not cm.lists_a_client_twice(update)


def test_a_client_twice_or_what_cannot_be_read_is_told() -> None:
    one = _update((write_varuint(5), 0, [_entry("a")]))
    assert not cm.lists_a_client_twice(one)
    for twice in (
        _update((write_varuint(5), 0, [_entry("a")]), (write_varuint(5), 1, [_entry("b")])),
        _update((write_varuint(5), 0, [_entry("a")]), (write_varuint(2**53 + 5), 0, [_entry("b")])),
    ):
        assert cm.lists_a_client_twice(twice)
    unknown = _update((write_varuint(5), 0, [b"\x0b" + _entry("a")[1:]]))  # content 11
    for bad in (one[:-1], one + b"\x00", unknown, b"", b"\x01\x01\x05"):
        assert cm.lists_a_client_twice(bad)

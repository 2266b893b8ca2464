"""Records read straight from stored bytes are the records of the decoded events."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt_model import CodecError, decode_map, encode
from crdt_model import _fold as fold_module
from crdt_model._decode import RecordReader, _Texts, canonical_form
from crdt_model._fold import Fold
from crdt_model._views import Record, record_of
from tests.crdt_model.fold_helpers import Stamper, random_history, small_reference

SLOTS = ("id", "type", "day", "node", "zone", "key", "load", "machine", "result", "sets", "data")


@pytest.fixture(autouse=True)
def reader_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interpreted, the fold decodes stored values whole (cbor2 is faster there): here it
    reads them too, so both runs of the suite check the reader's fold (compiled, the fold
    calls the reader anyway and this changes nothing)."""
    monkeypatch.setattr(fold_module, "reads_bytes", lambda: True)


def slots(rec: Record) -> tuple[Any, ...]:
    return tuple(getattr(rec, name) for name in SLOTS)


def history(seed: int) -> list[dict[str, Any]]:
    events = random_history(random.Random(seed), n_sets=6, rounds=3)
    for event in events[::3]:  # a few with what stations add, one without its zone
        event["station"] = "Poste lavage 2"
    events[0].pop("zone")
    return events


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_every_stored_event_reads_as_its_decoded_record(seed: int) -> None:
    reader = RecordReader({})
    for event in history(seed):
        rec = reader.read(encode(event))
        assert rec is not None, event["type"]  # the common shape is read, not handed on
        assert slots(rec) == slots(record_of(event, {}))
        assert (reader.at, reader.hlc) == (event["at"], event["hlc"])


def _event() -> dict[str, Any]:
    return Stamper().make(
        "label.printed",
        "B",
        set="JDIGGRBA#101",
        load="B-261128-001",
        lot="B-261128-001",
        expires_on="2027-02-26",
        label_id="LB2611280001",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"checks": {"visual": True}},  # a nested map
        {"reprint": None},  # null
        {"mystery": "x"},  # a key of no event type
        {"a0": 1.5},  # a float
        {"a0": -3},  # a negative number
        {"when": cbor2.CBORTag(1, 0)},  # a tag
        {"printer": "Z" * 300},  # a long text (made new, not shared)
        {"flags": ["a", "b" * 70]},  # a list with a long item
        {"reprint": True, "a0": 2**40},  # a number of 8 bytes
    ],
)
def test_other_shapes_give_the_same_record_through_the_decoded_map(
    change: dict[str, Any],
) -> None:
    event = _event() | change
    blob = cbor2.dumps(event, canonical=True)
    rec = RecordReader({}).read(blob)
    if rec is not None:  # read here only when the shape is the common one
        assert slots(rec) == slots(record_of(decode_map(blob), {}))
    fold, decoded = Fold(), Fold()
    fold.add_encoded([blob])
    decoded.add_many([decode_map(blob)])
    assert fold.snapshot("2026-12-01") == decoded.snapshot("2026-12-01")


def test_sets_that_are_not_a_list_are_refused_however_they_are_read() -> None:
    event = _event() | {"type": "wash.loaded", "sets": "AB", "machine": "LAV-1"}
    blob = encode(event)
    assert RecordReader({}).read(blob) is None
    fold = Fold()
    with pytest.raises(TypeError, match="sets"):
        fold.add_encoded([blob])
    with pytest.raises(TypeError, match="sets"):
        fold.add_many([event])
    assert len(fold) == 0


def test_cut_short_trailing_bytes_a_key_twice_and_bad_text_are_not_read() -> None:
    blob = encode(_event())
    reader = RecordReader({})
    assert reader.read(blob[:-1]) is None
    assert reader.read(blob + b"\x00") is None
    assert reader.read(b"") is None
    assert reader.read(encode(["not", "a", "map"])) is None
    twice = b"\xa2" + encode("id")[:] + encode("x") + encode("id") + encode("y")
    assert reader.read(twice) is None
    bad = blob.replace(b"JDIGGRBA", b"JDIGGRB\xff")
    assert reader.read(bad) is None
    assert slots(reader.read(blob) or _never()) == slots(record_of(_event(), {}))


def _never() -> Record:
    raise AssertionError("the common shape was not read")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_bytes_changed_anywhere_never_give_a_wrong_record(data: st.DataObject) -> None:
    """Whatever the bytes, the reader gives None or exactly the decoded event's record."""
    blob = bytearray(encode(_event()))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(blob)))
    raw = bytes(blob[:cut])
    rec = RecordReader({}).read(raw)
    if rec is None:
        return
    try:
        event = decode_map(raw)
        want = record_of(event, {})
    except (CodecError, KeyError, TypeError, AttributeError):
        pytest.fail("read bytes that do not decode to an event")
    assert slots(rec) == slots(want)


def test_a_fold_of_stored_bytes_is_the_fold_of_the_decoded_events() -> None:
    events = history(11)
    blobs = [encode(e) for e in events]
    random.Random(3).shuffle(blobs)
    ref = small_reference()
    stored, decoded = Fold(reference=ref), Fold(reference=ref)
    half = len(blobs) // 2
    fresh = stored.add_encoded(blobs[:half]) + stored.add_encoded(blobs[half - 5 :])
    decoded.add_many(decode_map(b) for b in blobs)
    assert sorted(r.id for r in fresh) == sorted(e["id"] for e in events)  # each once
    assert stored.snapshot("2026-12-01") == decoded.snapshot("2026-12-01")
    assert [a.id for a in stored.anomalies()] == [a.id for a in decoded.anomalies()]


def test_a_batch_with_an_undecodable_value_changes_nothing() -> None:
    events = history(4)
    fold = Fold()
    fold.add_encoded(encode(e) for e in events[:10])
    before = fold.snapshot("2026-12-01")
    with pytest.raises(CodecError):
        fold.add_encoded([encode(events[10]), b"\xff\x00", encode(events[11])])
    assert len(fold) == 10
    assert fold.snapshot("2026-12-01") == before


def test_the_table_of_texts_starts_again_when_half_full() -> None:
    intern: dict[Any, Any] = {}
    texts = _Texts(intern, 4)  # 16 places: emptied after 8 texts
    words = [f"code-{n}".encode() for n in range(40)]
    for _ in range(2):
        for word in words:
            blob = b"xx" + word + b"yy"
            text = texts.get(blob, 2, len(word))
            assert text == word.decode()
            assert intern[text] is text  # one string per text, shared with the fold


def test_texts_in_the_same_place_of_the_table_stay_apart() -> None:
    texts = _Texts({}, 4)
    # "Aa" and "Qa": the same length and last byte, first bytes 16 apart: the same place
    assert [texts.get(b"Aa", 0, 2), texts.get(b"Qa", 0, 2)] == ["Aa", "Qa"]
    assert [texts.get(b"Qa", 0, 2), texts.get(b"Aa", 0, 2)] == ["Qa", "Aa"]


# -- the canonical form judged on the bytes (sync's check of a received event) ----------

texts = st.text(max_size=30)
values = st.one_of(
    texts,
    st.text(min_size=24, max_size=300),
    st.lists(texts, max_size=30),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.none(),
)
maps = st.dictionaries(st.text(min_size=1, max_size=30), values, max_size=30)


@settings(max_examples=300, deadline=None)
@given(maps)
def test_what_encode_writes_is_judged_canonical(value: dict[str, Any]) -> None:
    assert canonical_form(encode(value)) is True


def _head(major: int, value: int, size: int) -> bytes:
    """A head of `size` argument bytes (0: in the first byte), however long it need be."""
    if size == 0:
        return bytes([major << 5 | value])
    info = {1: 24, 2: 25, 4: 26}[size]
    return bytes([major << 5 | info]) + value.to_bytes(size, "big")


def test_longer_heads_and_keys_out_of_order_are_not_canonical() -> None:
    event = encode({"id": "1", "type": "note"})
    assert canonical_form(event) is True
    longer_text = b"\xa2" + _head(3, 2, 1) + b"id" + b"a1" + b"dtypednote"
    assert canonical_form(longer_text) is False
    longer_count = _head(5, 2, 2) + event[1:]
    assert canonical_form(longer_count) is False
    swapped = b"\xa2" + b"dtypednote" + b"bida1"
    assert canonical_form(swapped) is False
    twice = b"\xa2" + b"bida1" + b"bida2"
    assert canonical_form(twice) is False
    number = b"\xa1" + b"ba0" + _head(0, 5, 1)
    assert canonical_form(number) is False
    items = b"\xa1" + b"dsets" + _head(4, 1, 1) + b"aA"
    assert canonical_form(items) is False
    for other in (b"\xa1ba0\xf9\x3c\x00", b"\xa1ba0\x21", b"\xa1bxx\xa0", encode([1]), b""):
        assert canonical_form(other) is None  # a float, a negative, a nested map, no map
    assert canonical_form(event + b"\x00") is None
    assert canonical_form(event[:-1]) is None


@settings(max_examples=300, deadline=None)
@given(maps, st.data())
def test_bytes_judged_canonical_are_what_encode_writes(
    value: dict[str, Any], data: st.DataObject
) -> None:
    blob = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    raw = bytes(blob)
    if canonical_form(raw) is not True:
        return
    try:
        decoded = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, UnicodeDecodeError):
        return  # sync decodes before it asks (bad UTF-8 stops there)
    assert encode(decoded) == raw

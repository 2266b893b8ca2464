"""Pure pieces: state vectors, the ledger of one peer, sanitizing, the public API."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc

import crdt_model as cm
import sync
from sync import MemoryReplica, sanitize
from sync._ledger import Ledger
from sync._vectors import (
    covers,
    encode_state_vector,
    is_integrated,
    missing_clock,
    parse_state_vector,
    read_varuint,
)

from .sync_helpers import doc_of, event, record


@given(st.dictionaries(st.integers(0, 2**53), st.integers(1, 2**53), max_size=20))
def test_state_vectors_round_trip(clocks: dict[int, int]) -> None:
    assert parse_state_vector(encode_state_vector(clocks)) == clocks


def test_state_vectors_match_pycrdt() -> None:
    doc: Doc[Any] = Doc(client_id=12345)
    cm.add_event(doc, event(1))
    cm.add_event(doc, event(2))
    assert parse_state_vector(doc.get_state()) == {12345: 2}
    assert encode_state_vector({12345: 2}) == doc.get_state()


@pytest.mark.parametrize(
    "data", [b"", b"\x01", b"\x01\x05", b"\x02\x01\x01\x01\x02", b"\x00\x00", b"\x80" * 11]
)
def test_malformed_state_vectors_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_state_vector(data)


def test_vector_comparisons() -> None:
    assert covers({1: 5, 2: 3}, {1: 5})
    assert not covers({1: 4}, {1: 5})
    assert missing_clock({1: 2}, {1: 5, 2: 1}) == 4
    assert read_varuint(b"\xac\x02", 0) == (300, 2)


def test_integration_is_judged_from_the_state_after() -> None:
    source: Doc[Any] = Doc(client_id=1)
    cm.add_event(source, event(1))
    first = source.get_update()
    state = source.get_state()
    cm.add_event(source, event(2))
    second = source.get_update(state)
    lonely: Doc[Any] = Doc()
    lonely.apply_update(second)
    assert not is_integrated(second, lonely.get_state())
    whole: Doc[Any] = Doc()
    whole.apply_update(first)
    whole.apply_update(second)
    assert is_integrated(second, whole.get_state())


def test_the_ledger_queues_what_the_peer_lacks_and_tracks_acks() -> None:
    replica = MemoryReplica()
    record(replica, event(1))
    day = doc_of(event(1))
    ledger = Ledger()
    assert ledger.live(day, 10, 100) == "skip"  # before the peer's manifest
    ledger.on_manifest({}, replica)
    assert list(ledger.push_queue) == [day]
    assert ledger.live(day, 10, 100) == "skip"  # the queued diff will carry it
    name, sv = ledger.next_push() or ("", b"")
    assert (name, sv) == (day, b"\x00")
    ours = parse_state_vector(replica.state_vector(day))
    ack = ledger.sent(day, 50, 0.0, ours)
    assert ledger.in_flight(day)
    assert ledger.unconfirmed() == (1, 50)
    ledger.on_manifest({}, replica)
    assert not ledger.push_queue  # not twice while the first is unconfirmed
    assert ledger.behind(replica) == (1, 1)
    assert ledger.on_ack(ack) is not None
    assert ledger.on_ack(ack) is None
    assert ledger.behind(replica) == (0, 0)
    assert ledger.synced(replica)
    live = ledger.sent(day, 10, 1.0, None)
    assert ledger.live(day, 1000, 100) == "diff"
    ledger.on_step1(day, b"\x00")  # the peer could not take the live update in
    assert live not in ledger.inflight
    assert ledger.push_queue[day] == b"\x00"
    ledger.sent(day, 10, 2.0, None)
    ledger.expire(2.5, 1.0)
    assert ledger.unconfirmed() == (1, 10)
    ledger.expire(3.5, 1.0)
    assert ledger.unconfirmed() == (0, 0)
    assert ledger.should_ask(day, 0.0, 1.0)
    assert not ledger.should_ask(day, 0.5, 1.0)
    ledger.answered(day)
    assert ledger.should_ask(day, 0.6, 1.0)


def test_the_cluster_document_is_pushed_on_every_manifest() -> None:
    replica = MemoryReplica()
    replica.write(cm.CLUSTER_DOC, lambda d: cm.cluster_put(d, "settings", "k", {"v": 1}))
    ledger = Ledger()
    ledger.on_manifest({cm.CLUSTER_DOC: replica.state_vector(cm.CLUSTER_DOC)}, replica)
    assert cm.CLUSTER_DOC in ledger.push_queue  # its deletions do not show in state vectors


def test_sanitize_strips_controls_and_cuts() -> None:
    assert sanitize("a\x1b[31mb\x00c\u202e") == "a[31mbc"
    assert sanitize("line\nbreak") == "line break"
    assert len(sanitize("x" * 1000)) == 200
    assert sanitize(b"\x01") == "b'\\x01'"


def test_public_api() -> None:
    assert set(sync.__all__) == {
        "MAX_DOC_NAME", "MAX_FRAME_BYTES", "MAX_LIVE_UPDATE_BYTES", "MAX_MANIFEST_DOCS",
        "MAX_UPDATE_BYTES", "PROTOCOL_VERSION", "Ack", "Bye", "Channel", "ChannelClosed",
        "Checked", "Entry", "FrameDecoder", "FrameTooLarge", "Hello", "Listener",
        "LocalProtocolError", "Manifest",
        "MemoryChannel", "MemoryReplica", "Message", "NodeIdentity", "PeerRejected",
        "PeerSession", "PeerState", "PeerStatus", "Ping", "Pong", "ProtocolError", "Refused",
        "RemoteProtocolError", "Replica", "Step1", "Step2", "SyncError", "SyncManager",
        "Timing", "Update", "UpdateChecker", "UpdateIncomplete", "UpdateRefused", "check_update",
        "decode_message", "encode_frame", "encode_message", "memory_channel_pair", "parse_state_vector", "sanitize",
    }  # fmt: skip
    for name in sync.__all__:
        assert getattr(sync, name) is not None
    errors = ["ChannelClosed", "FrameTooLarge", "LocalProtocolError", "PeerRejected"]
    errors += ["ProtocolError", "RemoteProtocolError", "UpdateIncomplete", "UpdateRefused"]
    assert all(issubclass(getattr(sync, e), sync.SyncError) for e in errors)
    assert issubclass(sync.ChannelClosed, ConnectionError)
    assert issubclass(sync.FrameTooLarge, sync.RemoteProtocolError)


def test_a_live_update_on_its_way_counts_from_what_it_was_made_on() -> None:
    """The peer holds all but our last write, which is on its way: in sync. It lacks more
    than that write was made on: not in sync, however many writes are on their way."""
    from tests.sync.sync_helpers import event, record

    replica = MemoryReplica()
    for n in range(3):
        record(replica, event(n, "A"))
    name = next(iter(replica.docs))
    before = sync.parse_state_vector(replica.state_vector(name))
    record(replica, event(3, "A"))
    after = sync.parse_state_vector(replica.state_vector(name))
    ledger = Ledger()
    ledger.peer_svs = {name: dict(before)}
    ledger.sent(name, 100, 0.0, None, reach=after, base=before)
    assert ledger.synced(replica)
    behind = Ledger()
    behind.peer_svs = {name: {}}  # it holds none of the first three
    behind.sent(name, 100, 0.0, None, reach=after, base=before)
    assert not behind.synced(replica)
    unknown = Ledger()  # a write whose state before it this session never saw
    unknown.peer_svs = {name: dict(before)}
    unknown.sent(name, 100, 0.0, None, reach=after, base=None)
    assert not unknown.synced(replica)


def test_a_manifest_older_than_an_ack_does_not_bring_a_document_back() -> None:
    """A new peer holds nothing; our catch-up of a document is acked; its manifest, made
    before it applied that, arrives after: the document is not sent again."""
    from tests.sync.sync_helpers import doc_of, event, record

    replica = MemoryReplica()
    for n in range(100):
        record(replica, event(n, "A"))
    name = doc_of(event(0, "A"))
    ledger = Ledger()
    ledger.on_manifest({}, replica, 0.0)
    assert ledger.next_push() is not None
    ours = sync.parse_state_vector(replica.state_vector(name))
    ledger.on_ack(ledger.sent(name, 50_000, 0.0, ours))
    ledger.on_manifest({}, replica, 1.0)
    assert name not in ledger.push_queue

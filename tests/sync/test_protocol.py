from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import (
    MAX_LIVE_UPDATE_BYTES,
    MAX_MANIFEST_DOCS,
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Hello,
    LocalProtocolError,
    Manifest,
    Message,
    Ping,
    Pong,
    Refused,
    RemoteProtocolError,
    Step1,
    Step2,
    Update,
    decode_message,
    encode_message,
)

SV = bytes.fromhex("0201050a07")  # two writers: client 1 at 5, client 10 at 7
UPDATE = bytes.fromhex("010101002801066576656e747301610174013100")

SAMPLES: list[Message] = [
    Hello(PROTOCOL_VERSION, "c0ffee", "node-A", "A", "Poste lavage 1"),
    Manifest({"cluster": b"\x00", "events/2026-11-28": SV, "ref/EXP-1": SV}),
    Manifest({}),
    Step1("events/2026-11-28", SV),
    Step2("ref/EXP-1", UPDATE, 7),
    Update("cluster", UPDATE, 2**63 - 1),
    Ack(0),
    Refused(12, "events/2026-11-28: events '1' would be rewritten"),
    Ping(99),
    Pong(99),
    Bye(""),
]


def raw(**fields: object) -> bytes:
    return cbor2.dumps(fields, canonical=True)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: Message) -> None:
    payload = encode_message(msg)
    assert decode_message(payload) == msg
    assert payload == cbor2.dumps(cbor2.loads(payload), canonical=True)


@settings(max_examples=100)
@given(
    ack=st.integers(min_value=0, max_value=2**63 - 1),
    reason=st.text(max_size=200),
    name=st.text(min_size=1, max_size=64),
)
def test_fields_round_trip(ack: int, reason: str, name: str) -> None:
    for msg in (
        Refused(ack, reason),
        Bye(reason),
        Ping(ack),
        Hello(1, "c", "n", "ABC", name),
        Step2("cluster", UPDATE, ack),
    ):
        assert decode_message(encode_message(msg)) == msg


BAD = {
    "not cbor": b"\xff",
    "empty": b"",
    "not a map": cbor2.dumps(["ack", 1]),
    "unknown type": raw(t="sneak", ack=1),
    "no type": raw(ack=1),
    "missing field": raw(t="refused", ack=1),
    "extra field": raw(t="ack", ack=1, more=2),
    "bool as number": raw(t="ack", ack=True),
    "negative ack": raw(t="ack", ack=-1),
    "huge ack": raw(t="ack", ack=2**64),
    "float ack": raw(t="ack", ack=1.0),
    "text as bytes": raw(t="step1", doc="cluster", sv="00"),
    "bad doc name": raw(t="step1", doc="events/today", sv=b"\x00"),
    "path doc name": raw(t="update", doc="ref/../x", update=UPDATE, ack=1),
    "bad state vector": raw(t="step1", doc="cluster", sv=b"\x05\x01"),
    "sv trailing bytes": raw(t="step1", doc="cluster", sv=b"\x00\x00"),
    "empty update": raw(t="update", doc="cluster", update=b"", ack=1),
    "oversize live update": raw(
        t="update", doc="cluster", update=b"\x00" * (MAX_LIVE_UPDATE_BYTES + 1), ack=1
    ),
    "bad hello code": raw(t="hello", version=1, cluster="c", node="n", code="abc", name="x"),
    "empty hello name": raw(t="hello", version=1, cluster="c", node="n", code="A", name=""),
    "hello node with spaces": raw(
        t="hello", version=1, cluster="c", node="n 1", code="A", name="x"
    ),
    "long reason": raw(t="bye", reason="x" * 1001),
    "manifest not a map": raw(t="manifest", docs=[["cluster", b"\x00"]]),
    "manifest bad name": raw(t="manifest", docs={"nope": b"\x00"}),
    "manifest bad sv": raw(t="manifest", docs={"cluster": b"\x01"}),
    "trailing bytes": raw(t="ack", ack=1) + b"\x00",
    "duplicate keys": bytes.fromhex("a361746361636b6361636b016361636b02"),
    "indefinite map": bytes.fromhex("bf61746361636b6361636b01ff"),
    "deep nesting": raw(t="manifest", docs={"cluster": [[b"\x00"]]}),
    "tagged value": raw(t="bye", reason=cbor2.CBORTag(1, 0)),
}


@pytest.mark.parametrize("payload", list(BAD.values()), ids=list(BAD))
def test_malformed_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_message(payload)


def test_a_manifest_is_bounded() -> None:
    docs = {f"ref/E{i}": b"\x00" for i in range(MAX_MANIFEST_DOCS)}
    assert decode_message(encode_message(Manifest(docs))) == Manifest(docs)
    docs["ref/one-more"] = b"\x00"
    with pytest.raises(RemoteProtocolError):
        decode_message(raw(t="manifest", docs=docs))
    with pytest.raises(LocalProtocolError):
        encode_message(Manifest(docs))


def test_a_catch_up_may_be_larger_than_a_live_update() -> None:
    big = b"\x00" * (MAX_LIVE_UPDATE_BYTES + 1)
    assert decode_message(encode_message(Step2("cluster", big, 1))) == Step2("cluster", big, 1)
    with pytest.raises(LocalProtocolError):
        encode_message(Update("cluster", big, 1))


@pytest.mark.parametrize(
    "msg",
    [
        Step1("not-a-doc", b"\x00"),
        Ack(-1),
        Hello(1, "c", "n", "A", ""),
        Refused(1, "x" * 1001),
    ],
)
def test_we_never_send_what_we_would_refuse(msg: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(msg)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_message(data)


@settings(max_examples=300)
@given(st.data())
def test_mutated_messages_only_ever_raise_remote_protocol_error(data: st.DataObject) -> None:
    payload = bytearray(encode_message(data.draw(st.sampled_from(SAMPLES))))
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(RemoteProtocolError):
        decode_message(bytes(payload))

"""Sync protocol messages and their strict CBOR encoding (sans-I/O).

Each message is one canonical CBOR map: `t` names the type, the other keys
are exactly the fields of that type. Decoding refuses anything else:
unknown type, missing, extra or mistyped field, bad document name or state
vector, oversize value, trailing bytes. What a peer sent raises
RemoteProtocolError; what we were about to send, LocalProtocolError.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import cbor2

import crdt_model as cm

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._text import sanitize
from ._vectors import parse_state_vector

PROTOCOL_VERSION = 2
"""2: a person's fields are cluster entries of their own (node/_user_records.py); a node of
1 would not read them (a person disabled there could still log in on it). Nodes of another
version refuse each other at HELLO and work apart until every node is upgraded."""
MAX_UPDATE_BYTES = 64 * 1024 * 1024
"""Largest update in a STEP2 (catch-up)."""
MAX_LIVE_UPDATE_BYTES = 1024 * 1024
"""Largest update in a live UPDATE; a larger local change goes as STEP2."""
MAX_DOC_NAME = 160
MAX_MANIFEST_DOCS = 10_000
MAX_STATE_VECTOR_BYTES = 256 * 1024
"""About 20,000 writers (node incarnations) in one document."""
MAX_ID = 64
MAX_NAME = 64
MAX_REASON = 1000
MAX_COUNTER = 2**63 - 1

_ID_RE = re.compile(r"^[A-Za-z0-9._-]+\Z")

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True, slots=True)
class Hello:
    """First message each way: who we are."""

    KIND: ClassVar[str] = "hello"
    version: int
    cluster: str
    node: str
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """Every document we hold and its state vector; also the anti-entropy beat."""

    KIND: ClassVar[str] = "manifest"
    docs: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Step1:
    """Our state vector of one document: send what we lack."""

    KIND: ClassVar[str] = "step1"
    doc: str
    sv: bytes


@dataclass(frozen=True, slots=True)
class Step2:
    """What the peer lacks of one document (catch-up), to be acknowledged."""

    KIND: ClassVar[str] = "step2"
    doc: str
    update: bytes
    ack: int


@dataclass(frozen=True, slots=True)
class Update:
    """A live durable change of one document, to be acknowledged."""

    KIND: ClassVar[str] = "update"
    doc: str
    update: bytes
    ack: int


@dataclass(frozen=True, slots=True)
class Ack:
    """The update sent under this ack id is durably stored here."""

    KIND: ClassVar[str] = "ack"
    ack: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The update sent under this ack id is refused whole; the session ends."""

    KIND: ClassVar[str] = "refused"
    ack: int
    reason: str


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat; answered by PONG with the same nonce."""

    KIND: ClassVar[str] = "ping"
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to PING."""

    KIND: ClassVar[str] = "pong"
    nonce: int


@dataclass(frozen=True, slots=True)
class Bye:
    """The sender closes the session, and says why."""

    KIND: ClassVar[str] = "bye"
    reason: str


Message = Hello | Manifest | Step1 | Step2 | Update | Ack | Refused | Ping | Pong | Bye
UPDATE_MESSAGES = (Step2, Update)


def encode_message(msg: Message) -> bytes:
    """The canonical CBOR payload of a message; LocalProtocolError if it breaks a rule."""
    checks = _SPECS[msg.KIND][1]
    fields = {name: getattr(msg, name) for name in checks}
    _check_fields(msg.KIND, checks, fields, LocalProtocolError)
    return cbor2.dumps({"t": msg.KIND, **fields}, canonical=True)


def decode_message(payload: bytes) -> Message:
    """The message in a frame payload; RemoteProtocolError for anything not exactly one."""
    fp = io.BytesIO(payload)
    try:
        value = cbor2.CBORDecoder(
            fp,
            max_depth=2,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        ).decode()
    except Exception as err:  # cbor2 raises several types for bad input
        raise RemoteProtocolError(f"undecodable message: {sanitize(err, 80)}") from None
    if fp.tell() != len(payload):
        raise RemoteProtocolError("trailing bytes after the message")
    if not isinstance(value, dict):
        raise RemoteProtocolError("a message is a map")
    kind = value.pop("t", None)
    if not isinstance(kind, str) or kind not in _SPECS:
        raise RemoteProtocolError(f"unknown message type {sanitize(kind, 40)!r}")
    cls, checks = _SPECS[kind]
    if value.keys() != checks.keys():
        missing = sorted(checks.keys() - value.keys())
        extra = sorted(sanitize(k, 40) for k in value.keys() - checks.keys())
        raise RemoteProtocolError(f"{kind}: missing fields {missing}, unknown fields {extra}")
    _check_fields(kind, checks, value, RemoteProtocolError)
    msg: Message = cls(**value)
    return msg


def _check_fields(
    kind: str, checks: dict[str, Check], fields: dict[str, Any], error: type[ProtocolError]
) -> None:
    for name, check in checks.items():
        problem = check(fields[name])
        if problem is not None:
            raise error(f"{kind}.{name}: {problem}")


def _counter(value: Any) -> str | None:
    if type(value) is not int or not 0 <= value <= MAX_COUNTER:
        return "must be a whole number from 0 to 2**63-1"
    return None


def _text(max_len: int, *, empty: bool = True) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be text"
        if len(value) > max_len or (not empty and not value):
            return f"must have {0 if empty else 1} to {max_len} characters"
        return None

    return check


def _identifier(value: Any) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not _ID_RE.match(value):
        return f"must be 1 to {MAX_ID} letters, digits, '.', '_' or '-'"
    return None


def _node_code(value: Any) -> str | None:
    if not isinstance(value, str) or not cm.is_node_code(value):
        return "must be a node short code"
    return None


def _doc_name(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > MAX_DOC_NAME or not cm.is_doc_name(value):
        return "must be a document name of the layout"
    return None


def _state_vector(value: Any) -> str | None:
    if not isinstance(value, bytes) or len(value) > MAX_STATE_VECTOR_BYTES:
        return f"must be bytes of at most {MAX_STATE_VECTOR_BYTES}"
    try:
        parse_state_vector(value)
    except ValueError:
        return "must be a Yjs state vector"
    return None


def _update(max_bytes: int) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, bytes) or not 2 <= len(value) <= max_bytes:
            return f"must be an update of 2 to {max_bytes} bytes"
        return None

    return check


def _docs(value: Any) -> str | None:
    if not isinstance(value, dict) or len(value) > MAX_MANIFEST_DOCS:
        return f"must map at most {MAX_MANIFEST_DOCS} documents to state vectors"
    for name, sv in value.items():
        problem = _doc_name(name) or _state_vector(sv)
        if problem is not None:
            return f"{sanitize(name, 40)!r} {problem}"
    return None


_SPECS: dict[str, tuple[type[Any], dict[str, Check]]] = {
    Hello.KIND: (
        Hello,
        {
            "version": _counter,
            "cluster": _identifier,
            "node": _identifier,
            "code": _node_code,
            "name": _text(MAX_NAME, empty=False),
        },
    ),
    Manifest.KIND: (Manifest, {"docs": _docs}),
    Step1.KIND: (Step1, {"doc": _doc_name, "sv": _state_vector}),
    Step2.KIND: (
        Step2,
        {"doc": _doc_name, "update": _update(MAX_UPDATE_BYTES), "ack": _counter},
    ),
    Update.KIND: (
        Update,
        {"doc": _doc_name, "update": _update(MAX_LIVE_UPDATE_BYTES), "ack": _counter},
    ),
    Ack.KIND: (Ack, {"ack": _counter}),
    Refused.KIND: (Refused, {"ack": _counter, "reason": _text(MAX_REASON)}),
    Ping.KIND: (Ping, {"nonce": _counter}),
    Pong.KIND: (Pong, {"nonce": _counter}),
    Bye.KIND: (Bye, {"reason": _text(MAX_REASON)}),
}

"""Canonical CBOR for every value stored in a document."""

from __future__ import annotations

from typing import Any

import cbor2


class CodecError(ValueError):
    """Bytes that are not one well-formed CBOR value of the expected shape."""


def encode(value: Any) -> bytes:
    """Canonical CBOR: the same value always gives the same bytes."""
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one CBOR value; CodecError for anything else."""
    try:
        return cbor2.loads(bytes(data))
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as err:
        raise CodecError(f"undecodable value: {err}") from None


_TEXT = {str}


def decode_map(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode a CBOR map with text keys; CodecError for any other shape."""
    value = decode(data)
    if not isinstance(value, dict) or not set(map(type, value)) <= _TEXT:
        raise CodecError("value is not a map with text keys")
    return value

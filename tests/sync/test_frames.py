from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import FrameDecoder, FrameTooLarge, LocalProtocolError, RemoteProtocolError, encode_frame

PAYLOADS = [b"", b"x", b"hello world", bytes(range(256)) * 40]


def test_frames_round_trip_in_one_feed() -> None:
    stream = b"".join(encode_frame(p) for p in PAYLOADS)
    assert FrameDecoder().feed(stream) == PAYLOADS


def test_frames_fed_one_byte_at_a_time() -> None:
    stream = b"".join(encode_frame(p) for p in PAYLOADS)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == PAYLOADS
    assert decoder.buffered == 0


@settings(max_examples=200)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
)
def test_frames_survive_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    decoder = FrameDecoder()
    out: list[bytes] = []
    for start, end in zip(points, points[1:], strict=False):
        out.extend(decoder.feed(stream[start:end]))
    assert out == payloads
    assert decoder.buffered == 0


def test_an_oversize_frame_is_refused_from_its_header() -> None:
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(encode_frame(b"0123456789")) == [b"0123456789"]
    header = (11).to_bytes(4, "big")
    assert decoder.feed(header[:3]) == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(header[3:])
    with pytest.raises(RemoteProtocolError):  # broken for good
        decoder.feed(b"")


def test_the_default_limit_allows_a_full_catch_up_update() -> None:
    decoder = FrameDecoder()
    assert decoder.feed((64 * 1024 * 1024 + 1024).to_bytes(4, "big")) == []
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed((2**32 - 1).to_bytes(4, "big"))


def test_encoding_an_oversize_frame_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(b"x" * 11, max_frame=10)

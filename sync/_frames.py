"""Length-prefixed frames over a byte stream (sans-I/O).

A frame is a 4-byte big-endian length followed by that many payload bytes. The
node's WebSocket carries the stream in binary messages of at most 256 KiB, so a
large frame arrives in pieces: the decoder accepts the stream cut anywhere.
"""

from __future__ import annotations

import struct

from ._errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError

MAX_FRAME_BYTES = 64 * 1024 * 1024 + 64 * 1024
"""Largest frame payload: a catch-up update of 64 MiB plus its message envelope."""

_HEADER = struct.Struct(">I")


def encode_frame(payload: bytes, *, max_frame: int = MAX_FRAME_BYTES) -> bytes:
    """The frame carrying `payload`."""
    if len(payload) > max_frame:
        raise LocalProtocolError(f"frame of {len(payload)} bytes exceeds {max_frame}")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Cuts a byte stream into frame payloads; refuses a frame over `max_frame` bytes."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._need: int | None = None
        self._broken: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Take more bytes of the stream; every frame they complete, in order."""
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        frames: list[bytes] = []
        buffer = self._buffer
        pos = 0
        while True:
            if self._need is None:
                if len(buffer) - pos < _HEADER.size:
                    break
                (length,) = _HEADER.unpack_from(buffer, pos)
                if length > self.max_frame:
                    self._broken = FrameTooLarge(
                        f"frame of {length} bytes announced, limit {self.max_frame}"
                    )
                    self._buffer = bytearray()
                    raise self._broken
                pos += _HEADER.size
                self._need = length
            if len(buffer) - pos < self._need:
                break
            frames.append(bytes(buffer[pos : pos + self._need]))
            pos += self._need
            self._need = None
        if pos:
            del buffer[:pos]
        return frames

"""The transport under a session, and an in-memory pair of channels."""

from __future__ import annotations

import asyncio
from typing import Protocol

from ._errors import ChannelClosed


class Channel(Protocol):
    """A bidirectional stream of binary messages (a WebSocket, or memory in tests)."""

    async def send(self, data: bytes) -> None:
        """Send one binary message; ChannelClosed once closed."""
        ...

    async def recv(self) -> bytes:
        """The next binary message; ChannelClosed once closed."""
        ...

    def close(self) -> None:
        """Close the channel; pending and later calls raise ChannelClosed."""
        ...


class MemoryChannel:
    """One end of an in-memory channel pair."""

    def __init__(self) -> None:
        self.peer: MemoryChannel | None = None
        self.closed = False
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        """Deliver one message to the other end."""
        if self.closed or self.peer is None or self.peer.closed:
            raise ChannelClosed("channel closed")
        self.peer.deliver(bytes(data))

    async def recv(self) -> bytes:
        """The next message from the other end."""
        if self.closed:
            raise ChannelClosed("channel closed")
        data = await self._inbox.get()
        if data is None:
            self._inbox.put_nowait(None)
            raise ChannelClosed("channel closed")
        return data

    def close(self) -> None:
        """Close both ends."""
        if not self.closed:
            self.closed = True
            self._inbox.put_nowait(None)
            if self.peer is not None:
                self.peer.close()

    def deliver(self, data: bytes) -> None:
        """Put a message in this end's inbox (dropped once closed)."""
        if not self.closed:
            self._inbox.put_nowait(data)


def memory_channel_pair() -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channel ends."""
    a, b = MemoryChannel(), MemoryChannel()
    a.peer, b.peer = b, a
    return a, b

"""The sync channel over a real WebSocket on loopback: large frames cross in pieces."""

from __future__ import annotations

import asyncio
import contextlib
import os

import aiohttp
import pytest
from aiohttp import web

import sync
from node._replication import WS_CHUNK_BYTES, WS_MAX_MESSAGE, WebSocketChannel


async def test_a_large_frame_crosses_in_bounded_messages_and_is_read_back_whole() -> None:
    payload = os.urandom(3 * WS_CHUNK_BYTES + 1234)
    small = b"ping"
    messages: list[int] = []
    frames: list[bytes] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=WS_MAX_MESSAGE)
        await ws.prepare(request)
        channel = WebSocketChannel(ws)
        decoder = sync.FrameDecoder()
        while len(frames) < 2:
            data = await channel.recv()
            messages.append(len(data))
            frames.extend(decoder.feed(data))
        done.set()
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/sync", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}/sync", max_msg_size=WS_MAX_MESSAGE)
            channel = WebSocketChannel(ws)
            await channel.send(sync.encode_frame(payload))
            await channel.send(sync.encode_frame(small))
            await asyncio.wait_for(done.wait(), 10)
            await ws.close()
    finally:
        await runner.cleanup()
    assert frames == [payload, small]
    assert max(messages) <= WS_CHUNK_BYTES
    assert len(messages) >= 5  # the large frame came as four pieces, the small one as one


async def test_nothing_is_sent_after_a_frame_cut_off_midway() -> None:
    """A session ending mid-frame must not append its goodbye to half a frame."""

    class SlowSocket:
        closed = False

        def __init__(self) -> None:
            self.sent: list[bytes] = []
            self.stall = asyncio.Event()

        async def send_bytes(self, data: bytes) -> None:
            self.sent.append(bytes(data))
            if len(self.sent) == 2:
                await self.stall.wait()  # the link stalls on the second piece

    ws = SlowSocket()
    channel = WebSocketChannel(ws)  # type: ignore[arg-type]
    task = asyncio.create_task(channel.send(sync.encode_frame(os.urandom(3 * WS_CHUNK_BYTES))))
    while len(ws.sent) < 2:
        await asyncio.sleep(0)
    task.cancel()  # the session ends while the frame is half sent
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with pytest.raises(sync.ChannelClosed):
        await channel.send(sync.encode_frame(b"bye"))
    assert len(ws.sent) == 2  # nothing followed the cut-off frame

"""The sync listener takes anyone's connection (joining PCs have no certificate): each must
finish its TLS handshake and send its request in time, or it is closed."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import node._server as server_module
from node._pki import create_ca, make_csr, new_key, sign_node
from node._server import SyncSite

IDLE = 0.5


@pytest.fixture
async def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setattr(server_module, "SYNC_IDLE_S", IDLE)
    ca_key, ca_cert = create_ca("c" * 32)
    key, key_pem = new_key()
    (tmp_path / "cert.pem").write_bytes(
        sign_node(ca_key, ca_cert, make_csr(key, "n" * 32), "n" * 32)
    )
    (tmp_path / "key.pem").write_bytes(key_pem)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def join_ca(_request: web.Request) -> web.Response:
        return web.Response(text="ca")

    app = web.Application()
    app.router.add_get("/join/ca", join_ca)
    runner = web.AppRunner(app, keepalive_timeout=IDLE)
    await runner.setup()
    site = SyncSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, limit: float) -> float:
    started = time.monotonic()
    await asyncio.wait_for(reader.read(), limit)  # b"" once the server closes
    return time.monotonic() - started


async def test_a_client_that_never_starts_tls_is_closed(listener: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener)
    try:
        await _closed_within(reader, 20 * IDLE)  # asyncio's own limit is 60 s
    finally:
        writer.close()


async def test_a_client_that_sends_no_request_is_closed(listener: int) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", listener, ssl=client)
    try:
        await _closed_within(reader, 20 * IDLE)  # aiohttp's own limit is an hour
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener, ssl=client)
    writer.write(b"GET /join/ca HTTP/1.1\r\nHost: x\r\n\r\n")  # a client that asks is served
    assert b"200 OK" in await asyncio.wait_for(reader.readline(), 5)
    writer.close()

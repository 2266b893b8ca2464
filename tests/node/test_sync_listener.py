"""The sync listener takes anyone's connection (joining PCs have no certificate): each must
finish its TLS handshake and send its request in time, or it is closed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import node._server as server_module
from node._pki import create_ca, make_csr, new_key, sign_node
from node._server import SyncSite

IDLE = 0.5


async def _serve(tmp_path: Path, idle: float) -> web.AppRunner:
    """A sync site with a certificate of a fresh cluster CA, answering /join/ca."""
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
    runner = web.AppRunner(app, keepalive_timeout=idle)
    await runner.setup()
    await SyncSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    return runner


@pytest.fixture
async def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setattr(server_module, "SYNC_IDLE_S", IDLE)
    runner = await _serve(tmp_path, IDLE)
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _any_server() -> ssl.SSLContext:
    """A TLS client that asks for no certificate check (as a joining PC's first contact)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    return client


async def _served(port: int) -> None:
    """A well-behaved client is served: TLS, then GET /join/ca answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_any_server())
    writer.write(b"GET /join/ca HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in await asyncio.wait_for(reader.readline(), 5)
    writer.close()


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
    client = _any_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener, ssl=client)
    try:
        await _closed_within(reader, 20 * IDLE)  # aiohttp's own limit is an hour
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener, ssl=client)
    writer.write(b"GET /join/ca HTTP/1.1\r\nHost: x\r\n\r\n")  # a client that asks is served
    assert b"200 OK" in await asyncio.wait_for(reader.readline(), 5)
    writer.close()


async def test_a_join_body_trickled_byte_by_byte_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import node._peering as peering
    from node._peering import make_sync_app, server_ssl
    from node._replication import Replication
    from tests.node.nodes import new_data_dir, open_node

    monkeypatch.setattr(peering, "JOIN_BODY_S", IDLE)
    node = await open_node(new_data_dir(tmp_path))
    replication = Replication(node, static_peers=[], mdns=False, mdns_interfaces=None, sync_port=0)
    runner = web.AppRunner(make_sync_app(node, replication), keepalive_timeout=IDLE)
    await runner.setup()
    site = SyncSite(runner, "127.0.0.1", 0, ssl_context=server_ssl(node))
    await site.start()
    client = _any_server()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", runner.addresses[0][1], ssl=client
        )
        writer.write(b"POST /join HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        answer = asyncio.ensure_future(reader.readline())
        for _ in range(40):  # a byte every tenth of a second: 4 s for the body
            if answer.done():
                break
            writer.write(b" ")
            await asyncio.sleep(0.1)
        assert answer.done()  # answered long before the body could end
        assert b"408" in answer.result()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    finally:
        await runner.cleanup()
        await node.async_close()


async def test_one_address_holds_a_bounded_number_of_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the limit a connection is closed as it is made; the others, and the
    connections freed later, are served."""
    monkeypatch.setattr(server_module, "SYNC_PER_ADDRESS", 3)
    runner = await _serve(tmp_path, 60.0)
    port = runner.addresses[0][1]
    client = _any_server()
    ask = b"GET /join/ca HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        opened = [await asyncio.open_connection("127.0.0.1", port, ssl=client) for _ in range(3)]
        with pytest.raises((ConnectionError, ssl.SSLError)):  # closed before any TLS work
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=client), 5)
        first_reader, first_writer = opened[0]
        first_writer.write(ask)  # those within the limit are served
        assert b"200 OK" in await asyncio.wait_for(first_reader.readline(), 5)
        for _, w in opened:
            w.close()
        await asyncio.sleep(0.2)  # the server sees them go
        await _served(port)
    finally:
        await runner.cleanup()


async def test_handshakes_under_way_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections that never finish their TLS handshake hold a bounded share of the
    listener: beyond the limit the next is closed at once; as they go, others are served."""
    monkeypatch.setattr(server_module, "SYNC_HANDSHAKES", 3)
    runner = await _serve(tmp_path, 60.0)
    port = runner.addresses[0][1]
    client = _any_server()
    try:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)  # accepted, each waiting for a ClientHello
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=client), 5)
        _, first = silent.pop(0)
        first.close()  # one handshake slot frees as its connection goes
        await asyncio.sleep(0.2)
        await _served(port)
        for _, w in silent:
            w.close()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
    ],
)
def test_an_ipv6_host_counts_as_its_whole_64(address: str, group: str) -> None:
    """One host may hold a whole /64: its addresses share one per-address limit."""
    assert server_module.address_group(address) == group


async def test_handshakes_that_fail_give_their_place_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reset mid-handshake, too slow, garbage, or a plain close: none keeps a place, and a
    well-behaved peer from the same address is served after as many as the limit."""
    monkeypatch.setattr(server_module, "SYNC_IDLE_S", IDLE)
    monkeypatch.setattr(server_module, "SYNC_PER_ADDRESS", 2)
    runner = await _serve(tmp_path, IDLE)
    port = runner.addresses[0][1]
    try:
        for _ in range(2):  # reset while the server waits for the ClientHello
            sock = socket.create_connection(("127.0.0.1", port))
            await asyncio.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        for _ in range(2):  # silent until the handshake limit
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(3 * IDLE)
            writer.close()
        for _ in range(2):  # not TLS at all
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            await asyncio.sleep(0.2)
            writer.close()
        await asyncio.sleep(0.3)
        await _served(port)
    finally:
        await runner.cleanup()


async def test_one_address_cannot_take_every_handshake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "SYNC_HANDSHAKES_PER_ADDRESS", 2)
    runner = await _serve(tmp_path, 60.0)
    port = runner.addresses[0][1]
    try:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed as it was made
        writer.close()
        for _, w in silent:
            w.close()
    finally:
        await runner.cleanup()

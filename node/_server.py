"""Running a node: HTTP listener, local control socket, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

from aiohttp import web

from ._api import make_app
from ._backup import ScheduledBackups
from ._devices import CycleCapture, Scanners
from ._layout import DataDir
from ._node import Node
from ._peering import make_sync_app, server_ssl
from ._printing import Printing
from ._replication import Replication

_LOGGER = logging.getLogger(__name__)


def parse_hostport(value: str, *, default_port: int) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) -> (host, port); ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(default_port)
    host = host.strip("[]")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {value[:60]!r}")
    return host, int(port)


HTTP_IDLE_S = 75.0
"""An idle keep-alive connection to the API and pages is closed after this (aiohttp would keep
it an hour); a browser simply opens another."""
SYNC_IDLE_S = 10.0
"""On the sync listener, anyone may connect (a joining PC has no certificate yet): a TLS
handshake and each request must come within this, or the connection is closed."""


SYNC_PER_ADDRESS = 32
"""Connections one address may hold open on the sync listener (a peer needs one or two)."""
SYNC_TOTAL = 512
"""Connections the sync listener holds open in all."""


class SyncSite(web.TCPSite):
    """The sync listener's site: TLS handshakes bounded by SYNC_IDLE_S (asyncio's default
    is 60 s: idle connections that never finish one would hold file descriptors), and at
    most SYNC_PER_ADDRESS connections from one address, SYNC_TOTAL in all (more are closed
    as they are made)."""

    async def start(self) -> None:
        """Listen (as TCPSite does, with the handshake bounded and connections counted)."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        gate = _Gate(SYNC_PER_ADDRESS, SYNC_TOTAL)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gated(server(), gate),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=SYNC_IDLE_S,
        )


class _Gate:
    """Open connections per address and in all."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address, self.total = per_address, total
        self.open: dict[str, int] = {}
        self._said_at = float("-inf")
        self._refused = 0

    def admit(self, address: str) -> bool:
        if self.open.get(address, 0) >= self.per_address or sum(self.open.values()) >= self.total:
            self._refused += 1
            now = time.monotonic()
            if now - self._said_at >= 60:  # a flood is said once a minute, not line by line
                _LOGGER.warning(
                    "sync listener: too many connections (%d closed since the last report, the"
                    " latest from %s)",
                    self._refused,
                    address,
                )
                self._said_at, self._refused = now, 0
            return False
        self.open[address] = self.open.get(address, 0) + 1
        return True

    def release(self, address: str) -> None:
        left = self.open.get(address, 1) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)


class _Gated(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the gate (everything else passed on)."""

    def __init__(self, inner: asyncio.Protocol, gate: _Gate) -> None:
        self._inner, self._gate = inner, gate
        self._address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._gate.admit(address):
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
            return
        self._address = address
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None:
            self._gate.release(self._address)
            self._address = None
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class NodeServer:
    """A node with its HTTP site and control socket, started and stopped together."""

    def __init__(
        self,
        data: DataDir,
        *,
        listen: tuple[str, int],
        sync_listen: tuple[str, int] | None = None,
        peers: list[str] | None = None,
        mdns: bool = False,
        mdns_interfaces: list[str] | None = None,
    ) -> None:
        self.data = data
        self.listen = listen
        self.sync_listen = sync_listen
        self.peers = peers or []
        self.mdns = mdns
        self.mdns_interfaces = mdns_interfaces
        self.replication: Replication | None = None
        self.capture: CycleCapture | None = None
        self.printing: Printing | None = None
        self.scanners: Scanners | None = None
        self.backups: ScheduledBackups | None = None
        self.node = Node(data)
        self._runners: list[web.AppRunner] = []

    async def async_start(self) -> None:
        """Open the node and start serving."""
        await self.node.async_open()
        try:
            config = self.data.read_config()
            self.backups = ScheduledBackups(self.node, config)  # its settings checked first
            self.printing = Printing(self.node, config)
            self.printing.start()
            self.scanners = Scanners(self.node, config)
            self.scanners.start()
            if self.sync_listen is not None:
                self.replication = Replication(
                    self.node,
                    static_peers=self.peers,
                    mdns=self.mdns,
                    mdns_interfaces=self.mdns_interfaces,
                    sync_port=self.sync_listen[1],
                )
            runner = await self._runner(self._app(control=False), keepalive_timeout=HTTP_IDLE_S)
            await web.TCPSite(runner, self.listen[0], self.listen[1]).start()
            if self.sync_listen is not None and self.replication is not None:
                sync_runner = await self._runner(
                    make_sync_app(self.node, self.replication), keepalive_timeout=SYNC_IDLE_S
                )
                site = SyncSite(
                    sync_runner,
                    self.sync_listen[0],
                    self.sync_listen[1],
                    ssl_context=server_ssl(self.node),
                )
                await site.start()
                if self.sync_listen[1] == 0:  # port chosen by the system: announce the real one
                    server = site._server
                    sockets = getattr(server, "sockets", None) or []
                    if sockets:
                        self.sync_listen = (self.sync_listen[0], sockets[0].getsockname()[1])
                        self.replication.sync_port = self.sync_listen[1]
                await self.replication.async_start()
            self.capture = CycleCapture(self.node, config)
            self.capture.start()
            self.backups.start()
            control = await self._runner(self._app(control=True))
            with contextlib.suppress(FileNotFoundError):
                self.data.socket.unlink()  # left by a node that died; we hold the lock
            old_umask = os.umask(0o077)
            try:
                await web.UnixSite(control, str(self.data.socket)).start()
            finally:
                os.umask(old_umask)
        except BaseException:
            await self.async_stop()
            raise
        _LOGGER.info("node %s serving http://%s:%d", self.node.code, *self.listen)

    def _app(self, *, control: bool) -> web.Application:
        """The API and web UI with this node's services; `control` for the local socket."""
        return make_app(
            self.node,
            control=control,
            replication=self.replication,
            printing=self.printing,
            scanners=self.scanners,
        )

    async def _runner(self, app: web.Application, **kwargs: Any) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, **kwargs)
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def async_stop(self) -> None:
        """Stop serving, finish pending writes, release the data directory."""
        services = (self.backups, self.capture, self.printing, self.scanners, self.replication)
        self.backups = self.capture = self.printing = self.scanners = self.replication = None
        for service in services:
            if service is not None:
                await service.async_stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        with contextlib.suppress(FileNotFoundError):
            self.data.socket.unlink()
        await self.node.async_close()


async def async_run(
    data: DataDir,
    *,
    listen: tuple[str, int],
    sync_listen: tuple[str, int] | None = None,
    peers: list[str] | None = None,
    mdns: bool = False,
    mdns_interfaces: list[str] | None = None,
    ready: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; prints `ready` once listening, if given."""
    server = NodeServer(
        data,
        listen=listen,
        sync_listen=sync_listen,
        peers=peers,
        mdns=mdns,
        mdns_interfaces=mdns_interfaces,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # before start: a stop while starting is clean
    await server.async_start()
    if ready:
        print(ready, flush=True)  # noqa: T201
    try:
        await stop.wait()
    finally:
        _LOGGER.info("stopping node %s", server.node.code)
        await server.async_stop()

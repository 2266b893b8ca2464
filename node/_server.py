"""Running a node: HTTP listener, local control socket, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import time
from typing import Any

from aiohttp import web

from ._api import make_app
from ._backup import ScheduledBackups
from ._devices import CycleCapture, Scanners
from ._layout import DataDir, address_group
from ._node import Node
from ._peering import make_sync_app, server_ssl
from ._printing import Printing
from ._replication import Replication
from ._web import IDLE_MINUTES, idle_seconds

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
"""Connections one address may hold open on the sync listener (a peer needs one or two); an
IPv6 address counts with the rest of its /64 (one host can take a whole /64)."""
SYNC_TOTAL = 512
"""Connections the sync listener holds open in all."""
SYNC_HANDSHAKES = 64
"""TLS handshakes the sync listener has under way at once (each costs a key exchange and is
held up to SYNC_IDLE_S); a connection beyond them is closed as it is made."""
SYNC_HANDSHAKES_PER_ADDRESS = 4
"""Handshakes one address (group) may have under way: a peer or a joining PC needs one, and a
few silent connections from one host cannot take every handshake slot."""


class SyncSite(web.TCPSite):
    """The sync listener's site: every connection counted from the moment it is accepted,
    at most SYNC_PER_ADDRESS from one address, SYNC_TOTAL in all, SYNC_HANDSHAKES still in
    their TLS handshake (more are closed as they are made, before any TLS work); each
    handshake bounded by SYNC_IDLE_S (asyncio's default is 60 s: connections that never
    finish one would hold file descriptors)."""

    async def start(self) -> None:
        """Listen (as TCPSite does, with TLS started behind the gate)."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        assert self._ssl_context is not None, "the sync listener speaks TLS only"
        gate = _Gate(SYNC_PER_ADDRESS, SYNC_TOTAL, SYNC_HANDSHAKES, SYNC_HANDSHAKES_PER_ADDRESS)
        tls = self._ssl_context
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gated(server(), gate, tls),
            self._host,
            self._port,
            backlog=self._backlog,
        )


class _Gate:
    """Open connections per address group and in all, and handshakes under way."""

    def __init__(self, per_address: int, total: int, handshakes: int, shaking_each: int) -> None:
        self.per_address, self.total, self.handshakes = per_address, total, handshakes
        self.shaking_each = shaking_each
        self.open: dict[str, int] = {}
        self.shaking: dict[str, int] = {}
        self._said_at = float("-inf")
        self._refused = 0

    def admit(self, group: str) -> bool:
        if (
            self.open.get(group, 0) >= self.per_address
            or sum(self.open.values()) >= self.total
            or sum(self.shaking.values()) >= self.handshakes
            or self.shaking.get(group, 0) >= self.shaking_each
        ):
            self._refused += 1
            now = time.monotonic()
            if now - self._said_at >= 60:  # a flood is said once a minute, not line by line
                _LOGGER.warning(
                    "sync listener: too many connections (%d closed since the last report, the"
                    " latest from %s)",
                    self._refused,
                    group,
                )
                self._said_at, self._refused = now, 0
            return False
        self.open[group] = self.open.get(group, 0) + 1
        self.shaking[group] = self.shaking.get(group, 0) + 1
        return True

    def shaken(self, group: str) -> None:
        """A handshake of `group` is over (done or failed)."""
        _count_down(self.shaking, group)

    def release(self, group: str) -> None:
        """A connection of `group` is closed."""
        _count_down(self.open, group)


def _count_down(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class _Gated(asyncio.Protocol):
    """One accepted connection: counted by the gate, taken through TLS, then handed to
    aiohttp's protocol (everything passed on); the count is released when it closes."""

    def __init__(self, inner: asyncio.Protocol, gate: _Gate, tls: ssl.SSLContext) -> None:
        self._inner, self._gate, self._tls = inner, gate, tls
        self._group: str | None = None
        self._handed = False
        self._early: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        group = address_group(str(peer[0])) if isinstance(peer, tuple) and peer else "?"
        if not self._gate.admit(group):
            transport.abort()
            return
        self._group = group
        transport.pause_reading()  # no byte reaches this protocol: TLS reads them
        self._task = asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        group = self._group
        assert group is not None
        transport = None
        try:
            if not raw.is_closing():
                transport = await loop.start_tls(
                    raw, self, self._tls, server_side=True, ssl_handshake_timeout=SYNC_IDLE_S
                )
        except OSError:  # refused, reset, too slow: asyncio closes it
            raw.abort()
        finally:
            self._gate.shaken(group)
        if transport is None or self._group is None:
            # failed or gone: asyncio does not always tell this protocol the connection is
            # lost once TLS owns it, so its count goes now (connection_lost then does nothing)
            self._release()
            return
        self._handed = True
        self._inner.connection_made(transport)
        early, self._early = self._early, []
        for data in early:  # what came with the handshake's last bytes
            self._inner.data_received(data)

    def _release(self) -> None:
        if self._group is not None:
            self._gate.release(self._group)
            self._group = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._group is not None:
            self._release()
            if self._handed:
                self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._handed:
            self._inner.data_received(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._handed else None

    def pause_writing(self) -> None:
        if self._handed:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._handed:
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
        self.idle_s: float = IDLE_MINUTES * 60
        self._runners: list[web.AppRunner] = []

    async def async_start(self) -> None:
        """Open the node and start serving."""
        await self.node.async_open()
        try:
            config = self.data.read_config()
            self.idle_s = idle_seconds(config)  # the settings checked before anything starts
            self.backups = ScheduledBackups(self.node, config)
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
            idle_s=self.idle_s,
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

"""`sterimesh demo`: a cluster of nodes on loopback with sample data and simulated devices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

from devices.simulators import SterilizerSimulator, VirtualSerial, ZplPrinterSimulator

from ._bundle import read_bundle
from ._cluster import async_invite, async_join
from ._layout import DataDir, DataDirError
from ._node import Node, init_node
from ._sample import write_sample
from ._server import NodeServer

_LOGGER = logging.getLogger(__name__)

MARKER = "demo.marker"
ZONES = ("sale", "propre", "sterile", "office", "office", "office")
NAMES = (
    "Poste lavage",
    "Poste conditionnement",
    "Poste stérile",
    "Bureau cadre",
    "Poste 5",
    "Poste 6",
)
USERS = (
    ("operateur", "operator"),
    ("liberateur", "releaser"),
    ("cadre", "head"),
    ("admin", "admin"),
)
CYCLE_EVERY_S = 120


def _fresh(base: Path) -> None:
    if base.exists():
        if not (base / MARKER).exists():
            raise DataDirError(f"{base} exists and is not a demo folder; choose another --dir")
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / MARKER).write_text("made by sterimesh demo; removed by the next demo\n")


async def _prepare_first(data: DataDir, bundle_dir: Path, password: str) -> dict[str, str]:
    init_node(data, name=NAMES[0], zone=ZONES[0])
    bundle = read_bundle(bundle_dir)
    node = Node(data)
    await node.async_open()
    try:
        await node.async_import(bundle)
        tokens = {
            "admin": await node.async_create_token("demo-admin", "admin", "demo"),
            "operator": await node.async_create_token("demo-operator", "operator", "demo"),
        }
        for login, role in USERS:
            await node.async_add_user(login, role, password, "demo")
    finally:
        await node.async_close()
    return tokens


async def async_demo(
    base: Path,
    *,
    nodes: int = 3,
    host: str = "127.0.0.1",
    first_port: int = 8700,
    scale: str = "hospital",
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[NodeServer]], None] | None = None,
    echo: Callable[[str], None] = click.echo,
) -> None:
    """Build and serve the demo cluster until `stop` is set (or SIGINT/SIGTERM)."""
    if not 1 <= nodes <= len(NAMES):
        raise DataDirError(f"the demo runs 1 to {len(NAMES)} nodes")
    _fresh(base)
    echo(f"writing {scale} sample data...")
    bundle_dir = write_sample(base / "bundle", scale=scale, seed=1)
    datas = [DataDir(base / f"node-{chr(ord('a') + i)}") for i in range(nodes)]
    echo("creating the cluster and importing the reference data on node A...")
    password = secrets.token_urlsafe(9)  # a fresh one each demo: no password lives in the code
    tokens = await _prepare_first(datas[0], bundle_dir, password)
    listen = [(host, first_port + 2 * i) for i in range(nodes)]
    sync = [(host, first_port + 2 * i + 1) for i in range(nodes)]
    sync_addr = [f"{h}:{p}" for h, p in sync]
    port = VirtualSerial()
    printer = ZplPrinterSimulator(out_dir=base / "printed").start()
    datas[0].config.write_text(
        f'[[cycle_tap]]\nport = "{port.path}"\nmachine = "AUTO-1"\nformat = "dac"\n'
        f'[[printer]]\nname = "zebra-demo"\nkind = "tcp"\naddress = "{printer.address}"\n'
    )
    servers: list[NodeServer] = []
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        first = NodeServer(datas[0], listen=listen[0], sync_listen=sync[0], mdns=False)
        await first.async_start()
        servers.append(first)
        for i in range(1, nodes):
            token = await async_invite(first.node, "demo")
            await async_join(datas[i], name=NAMES[i], zone=ZONES[i], token=token, peer=sync_addr[0])
            server = NodeServer(
                datas[i], listen=listen[i], sync_listen=sync[i], peers=sync_addr[:i], mdns=False
            )
            await server.async_start()
            servers.append(server)
            echo(f"node {server.node.code} joined")
        echo("replicating the reference data to every node...")
        while not all(s.node.current_reference() for s in servers):
            if stop.is_set():
                return
            await asyncio.sleep(0.2)
        for server, (h, p) in zip(servers, listen, strict=True):
            echo(f"node {server.node.code} ({server.node.name}): http://{h}:{p}/")
        echo(f"admin token:    {tokens['admin']}")
        echo(f"operator token: {tokens['operator']}")
        echo(f"web users: {', '.join(u for u, _ in USERS)} (password {password})")
        echo(
            f"simulated devices: sterilizer AUTO-1 prints a cycle on {port.path} every "
            f"{CYCLE_EVERY_S} s (node A); ZPL printer 'zebra-demo' at {printer.address}"
        )
        echo("Ctrl-C stops the demo.")
        if on_ready is not None:
            on_ready(servers)
        sterilizer = SterilizerSimulator(port, serial="AUTO-1")
        cycle = 1000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CYCLE_EVERY_S)
            if not stop.is_set():
                cycle += 1
                await asyncio.to_thread(sterilizer.run_cycle, cycle, datetime.now())
    finally:
        for server in reversed(servers):
            await server.async_stop()
        printer.stop()
        port.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

"""`sterimesh demo`: the cluster builds, replicates the reference, and syncs events."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from node import NodeServer
from node._cluster_demo import async_demo
from tests.node.nodes import OPERATOR
from tests.procs import free_port

pytestmark = pytest.mark.slow


def _six_free_ports() -> int:
    """A first port such that it and the five after it are free (two ports a node)."""
    while True:
        first = free_port()
        try:
            for port in range(first, first + 6):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


async def test_demo_cluster_replicates_reference_and_events(tmp_path: Path) -> None:
    ready: asyncio.Future[list[NodeServer]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    lines: list[str] = []
    task = asyncio.create_task(
        async_demo(
            tmp_path / "demo",
            nodes=3,
            first_port=_six_free_ports(),
            scale="small",
            stop=stop,
            on_ready=ready.set_result,
            echo=lines.append,
        )
    )
    try:
        servers = await asyncio.wait_for(ready, 120)
        assert [s.node.code for s in servers] == ["A", "B", "C"]
        refs = {(s.node.current_reference() or {}).get("export_id") for s in servers}
        assert len(refs) == 1
        assert None not in refs
        assert any(line.startswith("admin token:") for line in lines)
        event = await servers[2].node.async_record({"type": "note", "text": "vu en démo"}, OPERATOR)
        for _ in range(200):
            if all(s.node.get_event(event["id"]) for s in servers):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the demo's nodes did not replicate an event")
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert not (tmp_path / "demo" / "node-a" / "node.sock").exists()

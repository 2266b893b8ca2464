"""`run_demo`: a small demo cluster in this process, its reference data and events replicating."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node import DataDir
from node._demo import MARKER, Demo, DemoError, demo_ports, run_demo

pytestmark = pytest.mark.slow

WAIT_S = 60.0


def _free_block(nodes: int) -> int:
    """A first port such that the demo's 2 * nodes ports were all free a moment ago."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + 2 * nodes > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for web, sync in demo_ports(nodes, first):
                for port in (web, sync):
                    sock = socket.socket()
                    held.append(sock)
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return first
    pytest.fail("no block of free ports found")


async def _until(what: str, probe: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        answer = await probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {WAIT_S:g} s")
        await asyncio.sleep(0.2)


async def test_demo_cluster_replicates_reference_and_events_then_stops_cleanly(
    tmp_path: Path,
) -> None:
    base = tmp_path / "demo"
    first_port = _free_block(3)
    lines: list[str] = []
    ready: asyncio.Future[Demo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_demo(
            base,
            3,
            "127.0.0.1",
            first_port,
            scale="small",
            echo=lines.append,
            on_ready=ready.set_result,
        )
    )
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=WAIT_S, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # raises what stopped it
        assert ready in done, f"the demo was not ready after {WAIT_S:g} s: {lines}"
        demo = ready.result()
        urls = [n.url for n in demo.nodes]
        assert urls == [f"http://127.0.0.1:{web}" for web, _ in demo_ports(3, first_port)]
        output = "\n".join(lines)
        for url in urls:
            assert url in output
        assert demo.admin_token in output
        assert demo.operator_token in output
        assert "reference data replicating: 3/3" in output
        assert "simulated devices" in output
        assert (base / MARKER).is_file()

        admin = {"Authorization": f"Bearer {demo.admin_token}"}
        operator = {"Authorization": f"Bearer {demo.operator_token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            # every node reports the reference export over its own API
            for url in urls:
                async with session.get(url + "/api/status", headers=admin) as resp:
                    assert resp.status == 200
                    status = await resp.json()
                assert status["reference"]["export_id"] == demo.export_id

            async with session.post(
                urls[0] + "/api/events",
                json={"type": "note", "text": "démo: écrit sur A"},
                headers=operator,
            ) as resp:
                assert resp.status == 201, await resp.text()
                event_id = (await resp.json())["id"]

            async def on_all_others() -> bool:
                for url in urls[1:]:
                    async with session.get(url + f"/api/events/{event_id}", headers=admin) as r:
                        if r.status != 200:
                            return False
                return True

            await _until("the event of A on B and C", on_all_others)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # stopped cleanly: no data directory held, every port free again
    for code in "abc":
        assert not DataDir(base / f"node-{code}").is_served()
    assert _free_block_at(first_port, 3)


def _free_block_at(first: int, nodes: int) -> bool:
    for web, sync in demo_ports(nodes, first):
        for port in (web, sync):
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    return False
    return True


async def test_a_port_in_use_is_one_clear_error_and_nothing_is_built(tmp_path: Path) -> None:
    first_port = _free_block(2)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", first_port + 3))
        busy.listen()
        with pytest.raises(DemoError, match=rf"port {first_port + 3} on 127.0.0.1 is in use"):
            await run_demo(tmp_path / "demo", 2, "127.0.0.1", first_port, scale="small")
    assert not (tmp_path / "demo").exists()


async def test_a_folder_that_is_not_a_demo_is_never_removed(tmp_path: Path) -> None:
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("do not delete")
    with pytest.raises(DemoError, match="not a demo folder"):
        await run_demo(keep, 2, "127.0.0.1", _free_block(2), scale="small")
    assert (keep / "notes.txt").read_text() == "do not delete"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(DemoError, match="1 to"):
        Demo(Path("x"), 0)
    with pytest.raises(DemoError, match="not all valid"):
        Demo(Path("x"), 3, first_port=65534)
    with pytest.raises(DemoError, match="unknown scale"):
        Demo(Path("x"), 3, scale="huge")

"""A serial scanner on the node feeds the station page (session-authenticated long poll)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import devices
from devices.simulators import ScannerSimulator, VirtualSerial
from node import Node, make_app
from node._devices import Scanners
from tests.devices.devices_helpers import label as label_data
from tests.node.nodes import StepClock, new_data_dir, open_node
from tests.web.test_web import PASSWORD, login


@pytest.fixture
async def station(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[tuple[Any, VirtualSerial]]:
    node: Node = await open_node(new_data_dir(tmp_path), clock=StepClock(step=1000))
    await node.async_add_user("op", "operator", PASSWORD, "test")
    with VirtualSerial() as port:
        scanners = Scanners(node, {"scanner": [{"port": port.path, "station": "sale-1"}]})
        scanners.start()
        try:
            yield await aiohttp_client(make_app(node, scanners=scanners)), port
        finally:
            await scanners.async_stop()
            await node.async_close()


async def test_the_station_page_follows_the_node_scanner(
    station: tuple[Any, VirtualSerial],
) -> None:
    client, port = station
    status, _ = await login(client, "op")
    assert status == 200
    page = await (await client.get("/station?zone=sale")).text()
    assert 'data-scanner-station="sale-1"' in page
    first = await (await client.get("/station/scans?station=sale-1")).json()
    ScannerSimulator(port).scan("JDIGGRBA#111")
    resp = await client.get(f"/station/scans?station=sale-1&after={first['last']}&wait=10")
    answer = await resp.json()
    assert resp.status == 200
    assert [s["set"] for s in answer["scans"]] == ["JDIGGRBA#111"]
    assert answer["boot"] == first["boot"]  # one run of the node: one numbering of scans
    label = label_data()  # a label this cluster printed names its set too
    ScannerSimulator(port).scan(devices.label_payload(label).element_string(), aim="]d2")
    resp = await client.get(f"/station/scans?station=sale-1&after={answer['last']}&wait=10")
    [scan] = (await resp.json())["scans"]
    assert (scan["set"], scan["label"]) == (label.instance, label.label_id)
    assert (await client.get("/station/scans?station=other")).status == 404


async def test_scans_need_a_session(station: tuple[Any, VirtualSerial]) -> None:
    client, _ = station
    resp = await client.get("/station/scans?station=sale-1", allow_redirects=False)
    assert resp.status == 303

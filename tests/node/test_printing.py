"""Labels sent to a printer through the node's print queue: a ZPL printer on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devices.simulators import PrinterMode, ZplPrinterSimulator
from node import make_app
from node._bundle import Bundle
from node._printing import Printing
from tests.node.nodes import StepClock, new_data_dir, open_node
from tests.node.test_trace_api import ROLES, Trace, bundle  # noqa: F401 (fixture)


@pytest.fixture
async def printed(
    tmp_path: Path,
    aiohttp_client: Any,
    bundle: Bundle,  # noqa: F811
) -> AsyncIterator[tuple[Trace, ZplPrinterSimulator, Printing]]:
    sim = ZplPrinterSimulator().start()
    data = new_data_dir(tmp_path)
    data.config.write_text(
        f'[[printer]]\nname = "zebra-1"\nkind = "tcp"\naddress = "{sim.address}"\n'
    )
    clock = StepClock(step=1000)
    node = await open_node(data, clock=clock)
    await node.async_import(bundle)
    tokens = {role: await node.async_create_token(f"t-{role}", role, "test") for role in ROLES}
    printing = Printing(node, data.read_config())
    printing.queue.retry_delays = (0.05, 0.05, 0.1)
    printing.start()
    trace = Trace(await aiohttp_client(make_app(node, printing=printing)), node, tokens, clock)
    try:
        yield trace, sim, printing
    finally:
        await trace.client.close()
        await printing.async_stop()
        await node.async_close()
        sim.stop()


async def _wait(predicate: Any, what: str) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


async def test_a_label_goes_to_the_printer_and_a_paper_out_is_shown_then_healed(
    printed: tuple[Trace, ZplPrinterSimulator, Printing],
) -> None:
    trace, sim, printing = printed
    code = trace.instance(trace.kind())
    load = await trace.make_sterile([code])
    status, label = await trace.call(
        "POST", "/api/labels", json={"set": code, "load": load, "printer": "zebra-1"}
    )
    assert status == 201, label
    assert label["job"]["state"] in {"queued", "printing", "done"}
    assert await asyncio.to_thread(sim.wait_printed, 1)
    assert label["label_id"].encode() in sim.printed[0]
    # the printer runs out of paper: the next label waits, its error is visible
    sim.set_mode(PrinterMode.PAPER_OUT)
    status, reprint = await trace.call(
        "POST", "/api/labels", json={"set": code, "load": load, "printer": "zebra-1"}
    )
    assert status == 201
    assert reprint["reprint"] is True
    assert reprint["lot"] == label["lot"]
    await _wait(
        lambda: any(j.get("last_error") for j in printing.status()["jobs"]), "the paper-out error"
    )
    status, shown = await trace.call("GET", "/api/printers")
    assert status == 200
    [job] = shown["jobs"]
    assert "paper" in job["last_error"].lower()
    assert job["reprint"] is True
    # paper back: the waiting job prints, once
    sim.set_mode(PrinterMode.READY)
    if job["state"] == "error":
        status, body = await trace.call("POST", f"/api/print-jobs/{job['id']}/retry")
        # 409 when the queue's own next attempt came first: the job is no longer in error
        assert status == 200 or "only errors are retried" in body["error"], body
    assert await asyncio.to_thread(sim.wait_printed, 2, 10.0)
    await _wait(lambda: not printing.status()["jobs"], "the queue to empty")
    assert len(sim.printed) == 2


async def test_an_unknown_printer_is_refused_before_anything_is_recorded(
    printed: tuple[Trace, ZplPrinterSimulator, Printing],
) -> None:
    trace, _, _ = printed
    code = trace.instance(trace.kind())
    load = await trace.make_sterile([code])
    before = trace.count
    for printer in ("nowhere", ["zebra-1"], {"name": "zebra-1"}):
        status, body = await trace.call(
            "POST", "/api/labels", json={"set": code, "load": load, "printer": printer}
        )
        assert status == 422, body
    assert trace.count == before


async def test_the_label_layout_comes_from_the_cluster_settings(
    printed: tuple[Trace, ZplPrinterSimulator, Printing],
) -> None:
    import crdt_model as cm

    trace, _, _ = printed
    code = trace.instance(trace.kind())
    load = await trace.make_sterile([code])
    _, label = await trace.call("POST", "/api/labels", json={"set": code, "load": load})
    await trace.node.commit_cluster(
        lambda doc: cm.cluster_put(doc, "settings", "label", {"width_mm": 60, "height_mm": 40})
    )
    resp = await trace.client.get(
        f"/api/labels/{label['label_id']}.pdf", headers=trace.headers("operator")
    )
    pdf = await resp.read()
    # 60 x 40 mm = 170.08 x 113.39 points
    assert b"/MediaBox [ 0 0 170.0787 113.3858 ]" in pdf or b"170.0787" in pdf, pdf[:400]
    resp = await trace.client.get(
        f"/api/labels/{label['label_id']}.zpl", headers=trace.headers("operator")
    )
    zpl = await resp.read()
    assert b"^PW480" in zpl  # 60 mm at 203 dpi

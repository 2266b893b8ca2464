"""Labels sent to a printer through the node's print queue: a ZPL printer on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import devices
from devices import CupsPrinter
from devices.simulators import PrinterMode, ZplPrinterSimulator
from node import make_app
from node._bundle import Bundle
from node._printing import Printing, _printer
from tests.devices.test_devices_printers import _fake_lp
from tests.node.nodes import StepClock, new_data_dir, open_node
from tests.node.test_trace_api import ROLES, Trace, bundle  # noqa: F401 (fixture)
from tests.web.helpers import csrf_of


class OfficePrinter:
    """A printer on raw TCP 9100 that is no Zebra: it takes bytes and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = "{}:{}".format(*self.server.getsockname())
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            with conn:
                job = b""
                while chunk := conn.recv(65536):
                    job += chunk
                self.received.append(job)

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.server.close()
        self.thread.join(5)


@pytest.fixture
async def office() -> AsyncIterator[OfficePrinter]:
    printer = OfficePrinter()
    yield printer
    printer.close()


@pytest.fixture
async def printed(
    tmp_path: Path,
    aiohttp_client: Any,
    bundle: Bundle,  # noqa: F811
    office: OfficePrinter,
) -> AsyncIterator[tuple[Trace, ZplPrinterSimulator, Printing]]:
    sim = ZplPrinterSimulator().start()
    data = new_data_dir(tmp_path)
    data.config.write_text(
        f'[[printer]]\nname = "zebra-1"\nkind = "tcp"\naddress = "{sim.address}"\n'
        f'[[printer]]\nname = "laser"\nkind = "tcp"\naddress = "{office.address}"\n'
        'format = "pdf"\n'
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


def _offered(page: str) -> str | None:
    """The printer a label form of `page` offers first (None: PDF only)."""
    found = re.search(r'<option value="([^"]+)" selected>', page)
    return None if found is None else found[1]


async def test_a_station_offers_first_the_printer_it_printed_with_last(
    printed: tuple[Trace, ZplPrinterSimulator, Printing],
) -> None:
    trace, sim, _ = printed
    kind = trace.kind()
    code, other = trace.instance(kind, 0), trace.instance(kind, 1)
    load = await trace.make_sterile([code, other])
    await trace.node.async_add_user("op", "operator", "correct horse battery", "test")
    client = trace.client
    login = await client.get("/login")
    form = {"csrf": csrf_of(await login.text()), "login": "op"}
    await client.post("/login", data={**form, "password": "correct horse battery"})
    page = f"/loads/{load}"
    station = f"/station?zone=sterile&code={quote(other)}"  # its next step: the label
    assert _offered(await (await client.get(page)).text()) is None  # two printers: none first
    for printer, offered in (("laser", "laser"), ("", None), ("zebra-1", "zebra-1")):
        token = csrf_of(await (await client.get(page)).text())
        resp = await client.post(
            f"{page}/label", data={"csrf": token, "set": code, "printer": printer}
        )
        assert resp.status == 200
        assert _offered(await (await client.get(page)).text()) == offered
        assert _offered(await (await client.get(station)).text()) == offered  # same browser
    assert await asyncio.to_thread(sim.wait_printed, 1)


async def test_the_only_printer_of_a_node_is_offered_first(
    tmp_path: Path,
    aiohttp_client: Any,
    bundle: Bundle,  # noqa: F811
) -> None:
    sim = ZplPrinterSimulator().start()
    data = new_data_dir(tmp_path)
    data.config.write_text(
        f'[[printer]]\nname = "zebra-1"\nkind = "tcp"\naddress = "{sim.address}"\n'
    )
    node = await open_node(data, clock=StepClock(step=1000))
    printing = Printing(node, data.read_config())
    try:
        await node.async_import(bundle)
        tokens = {role: await node.async_create_token(f"t-{role}", role, "test") for role in ROLES}
        trace = Trace(
            await aiohttp_client(make_app(node, printing=printing)), node, tokens, StepClock()
        )
        code = trace.instance(trace.kind())
        load = await trace.make_sterile([code])
        await node.async_add_user("op", "operator", "correct horse battery", "test")
        login = await trace.client.get("/login")
        form = {"csrf": csrf_of(await login.text()), "login": "op"}
        await trace.client.post("/login", data={**form, "password": "correct horse battery"})
        page = f"/loads/{load}"
        assert _offered(await (await trace.client.get(page)).text()) == "zebra-1"
        token = csrf_of(await (await trace.client.get(page)).text())
        await trace.client.post(f"{page}/label", data={"csrf": token, "set": code, "printer": ""})
        assert _offered(await (await trace.client.get(page)).text()) == "zebra-1"  # a PDF once
    finally:
        await printing.async_stop()
        await node.async_close()
        sim.stop()


async def test_a_pdf_label_goes_to_a_tcp_printer_that_is_no_zebra(
    printed: tuple[Trace, ZplPrinterSimulator, Printing], office: OfficePrinter
) -> None:
    trace, _, printing = printed
    code = trace.instance(trace.kind())
    load = await trace.make_sterile([code])
    status, label = await trace.call(
        "POST", "/api/labels", json={"set": code, "load": load, "printer": "laser"}
    )
    assert status == 201, label
    await _wait(lambda: not printing.status()["jobs"], "the job to be printed")
    [job] = office.received
    assert job.startswith(b"%PDF")  # the PDF alone: no ~HS a laser would print as text
    assert f"Etiquette {label['label_id']}".encode() in job


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


async def test_a_sterilizer_clock_far_off_does_not_date_the_label(
    printed: tuple[Trace, ZplPrinterSimulator, Printing],
) -> None:
    trace, _, _ = printed  # the node's clock reads 2026-11-28, 12:11 in Paris
    machine = "AUTO-1"
    await trace.record("steri.test", machine=machine, kind="bowie_dick", result="pass")
    labels = []
    for n, ended in enumerate(["2027-11-28T07:46:00+01:00", "2026-11-27T23:50:00+01:00"]):
        code = trace.instance(trace.kind(), n)
        await trace.receive_wash_pack([code])
        loaded = await trace.record("steri.loaded", machine=machine, program="P", sets=[code])
        load = str(loaded["load"])
        await trace.record(
            "steri.cycle",
            machine=machine,
            load=load,
            cycle_no=trace.cycle_no(),
            result="pass",
            ended=ended,
        )
        await trace.record("load.released", "releaser", load=load, decision="released")
        status, label = await trace.call("POST", "/api/labels", json={"set": code, "load": load})
        assert status == 201, label
        labels.append(label)
    wrong_clock, right_clock = labels
    # a year ahead: the day the cycle was recorded, not the machine's date
    assert wrong_clock["sterilized_on"] == "2026-11-28"
    shelf = timedelta(days=wrong_clock["shelf_life_days"])
    assert wrong_clock["expires_on"] == (date(2026, 11, 28) + shelf).isoformat()
    # a cycle that ended before midnight and was recorded the next morning keeps its day
    assert right_clock["sterilized_on"] == "2026-11-27"


async def test_print_jobs_finished_days_ago_are_purged_at_start_up(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    folder = data.root / "print-queue"
    week_ago = time.time() - 8 * 86_400
    earlier = devices.PrintQueue(
        folder, {"office": devices.FolderPrinter(tmp_path / "out")}, clock=lambda: week_ago
    )
    old = earlier.submit(b"%PDF-1.4", label_id="L-1", printer="office", fmt="pdf")
    earlier.process_once()
    today = devices.PrintQueue(folder, {"office": devices.FolderPrinter(tmp_path / "out")})
    recent = today.submit(b"%PDF-1.4", label_id="L-2", printer="office", fmt="pdf")
    today.process_once()
    node = await open_node(data)
    printing = Printing(node, {})
    printing.start()
    try:
        await _wait(lambda: not (folder / f"{old.id}.job.json").exists(), "the old job purged")
        assert [j.label_id for j in printing.queue.jobs()] == ["L-2"]
        assert (folder / f"{recent.id}.job.json").exists()
    finally:
        await printing.async_stop()
        await node.async_close()


def test_a_pdf_label_on_a_cups_queue_goes_through_its_filters(tmp_path: Path) -> None:
    """Raw, a PDF reaches a ZPL or PCL printer as bytes it cannot print (lp still says yes)."""
    lp = _fake_lp(tmp_path, 0)
    for fmt, raw in (("pdf", False), ("zpl", True)):
        printer = _printer({"kind": "cups", "destination": "bureau", "format": fmt})
        assert isinstance(printer, CupsPrinter)
        printer.lp = str(lp)
        printer.send(b"%PDF-1.4 ...", name="job-1")
        assert ("raw" in (tmp_path / "lp-out.args").read_text().split()) is raw

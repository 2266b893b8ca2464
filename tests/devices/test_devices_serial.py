"""Serial scanners on real ptys: scans, errors, unplug and plug again, async iteration."""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path

import pytest

from devices import BarcodeError, Scan, ScanKind, ScannerReader, SerialStream
from devices.simulators import ScannerSimulator, VirtualSerial
from tests.devices.devices_helpers import wait_for

GTIN = "03453120000011"
DELAY = 0.05


def test_scans_arrive_parsed(tmp_path: Path) -> None:
    scans: queue.Queue[Scan] = queue.Queue()
    errors: queue.Queue[tuple[BarcodeError, bytes]] = queue.Queue()
    with VirtualSerial(tmp_path / "scanner") as port:
        device = ScannerSimulator(port, terminator=b"\r\n")
        with ScannerReader(
            port.path,
            terminator=b"\r\n",
            on_scan=scans.put,
            on_error=lambda err, raw: errors.put((err, raw)),
            reconnect_delay=DELAY,
        ) as reader:
            assert reader.stream.wait_connected(5)
            device.scan("JDIGGRBA#111")
            device.scan(f"01{GTIN}10L1\x1d21S1", aim="]d2")
            device.scan(b"BAD\x07CODE")
            device.scan("B-261128-007")
            first, second, third = (scans.get(timeout=5) for _ in range(3))
            err, raw = errors.get(timeout=5)
    assert first == Scan(ScanKind.INSTANCE, "JDIGGRBA#111")
    assert second.kind is ScanKind.GS1
    assert second.symbology == "]d2"
    assert second.gs1 is not None
    assert second.gs1.serial == "S1"
    assert third == Scan(ScanKind.CODE128, "B-261128-007")
    assert raw == b"BAD\x07CODE"
    assert "unsupported characters" in str(err)


def test_reader_reconnects_after_unplug(tmp_path: Path) -> None:
    scans: queue.Queue[Scan] = queue.Queue()
    errors: queue.Queue[tuple[BarcodeError, bytes]] = queue.Queue()
    port = VirtualSerial(tmp_path / "scanner")
    try:
        device = ScannerSimulator(port)
        reader = ScannerReader(
            port.path,
            on_scan=scans.put,
            on_error=lambda e, r: errors.put((e, r)),
            reconnect_delay=DELAY,
        )
        with reader:
            assert reader.stream.wait_connected(5)
            device.scan("JDIGELAP01")
            assert scans.get(timeout=5).text == "JDIGELAP01"
            port.write(b"JDIGE")  # half a scan, then the cable is pulled
            assert wait_for(lambda: reader.stream.bytes_read == len(b"JDIGELAP01\r") + 5)
            port.unplug()
            assert wait_for(lambda: not reader.connected)
            err, raw = errors.get(timeout=5)
            assert raw == b"JDIGE"
            assert "cut off" in str(err)
            assert reader.stream.last_error is not None
            port.plug()
            assert wait_for(lambda: reader.stream.connects == 2)
            assert reader.stream.wait_connected(5)
            device.scan("JDIGELAP02")
            assert scans.get(timeout=5).text == "JDIGELAP02"
        assert not reader.connected
    finally:
        port.close()


def test_reader_waits_for_a_device_that_is_not_there_yet(tmp_path: Path) -> None:
    scans: queue.Queue[Scan] = queue.Queue()
    link = tmp_path / "ttyUSB0"
    with ScannerReader(str(link), on_scan=scans.put, reconnect_delay=DELAY) as reader:
        assert wait_for(lambda: reader.stream.last_error is not None)
        with VirtualSerial(link) as port:
            assert reader.stream.wait_connected(5)
            ScannerSimulator(port).scan("JDIGELAP03")
            assert scans.get(timeout=5).text == "JDIGELAP03"


async def test_async_iteration() -> None:
    with VirtualSerial() as port:
        reader = ScannerReader(port.path, reconnect_delay=DELAY)
        with reader:
            assert await asyncio.to_thread(reader.stream.wait_connected, 5)
            device = ScannerSimulator(port)
            received: list[str] = []

            async def consume() -> None:
                async for scan in reader.async_scans():
                    received.append(scan.text)
                    if len(received) == 2:
                        return

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.05)
            device.scan("JDIGELAP01")
            device.scan("JDIGELAP02")
            await asyncio.wait_for(task, 5)
    assert received == ["JDIGELAP01", "JDIGELAP02"]


def test_loop_url_and_a_failing_handler() -> None:
    calls: list[bytes] = []

    def handler(chunk: bytes) -> None:
        calls.append(chunk)
        raise RuntimeError("handler bug")

    stream = SerialStream("loop://", handler, reconnect_delay=DELAY)
    stream.start()
    try:
        assert stream.wait_connected(5)
        assert stream.connected
    finally:
        stream.stop()
    assert not stream.connected


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\t", b"\x03"])
def test_configurable_terminator(terminator: bytes) -> None:
    scans: queue.Queue[Scan] = queue.Queue()
    with (
        VirtualSerial() as port,
        ScannerReader(
            port.path, terminator=terminator, on_scan=scans.put, reconnect_delay=DELAY
        ) as reader,
    ):
        assert reader.stream.wait_connected(5)
        ScannerSimulator(port, terminator=terminator).scan("JDIGELAP09")
        assert scans.get(timeout=5).text == "JDIGELAP09"

"""Machine cycles captured by a running node: a real pty and a real drop folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import devices
from devices.simulators import (
    SterilizerSimulator,
    VirtualSerial,
    WasherSimulator,
    dac_cycle_text,
)
from node import Node, NodeServer
from node._devices import CycleCapture, DeviceConfigError
from tests.helpers import submission
from tests.node.nodes import OPERATOR, StepClock, hold_store_writes, new_data_dir, open_node


async def _wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _events(server: NodeServer, kind: str) -> list[dict[str, Any]]:
    return list(server.node.iter_events(event_type=kind))


@pytest.fixture
async def capture(tmp_path: Path) -> AsyncIterator[CycleCapture]:
    """A node's cycle capture with no port or folder: records are handed to it directly."""
    node = await open_node(new_data_dir(tmp_path))
    cap = CycleCapture(node, {})
    cap.start()
    try:
        yield cap
    finally:
        await cap.async_stop()
        await node.async_close()


def _printout(text: str | bytes, machine: str = "AUTO-2") -> devices.CycleRecord:
    data = text.encode("latin-1") if isinstance(text, str) else text
    [record] = devices.parse_cycle_bytes(data, machine=machine, fmt="dac")
    return record


def _cycles(node: Node) -> list[tuple[str, str]]:
    return [(e["cycle_no"], e["result"]) for e in node.iter_events(event_type="steri.cycle")]


async def test_cycle_numbers_that_repeat_or_cannot_be_read_lose_no_cycle(
    capture: CycleCapture,
) -> None:
    node = capture.node
    # a machine that numbers its cycles per day (or was reset): cycle 3 again, failed
    yesterday = _printout(dac_cycle_text(3, datetime(2026, 11, 27, 7, 0)))
    today = _printout(dac_cycle_text(3, datetime(2026, 11, 28, 7, 0), fail=True))
    assert await capture.async_record(yesterday) is not None
    assert await capture.async_record(today) is not None
    # two printouts whose CYCLE NO line came through garbled: two cycles, both kept
    for hour in (9, 10):
        text = dac_cycle_text(8, datetime(2026, 11, 28, hour, 0))
        garbled = text.replace("CYCLE NO      : 00008", "CYC\xff NO : 0\x0008")
        assert await capture.async_record(_printout(garbled)) is not None
    assert _cycles(node) == [
        ("00003", "pass"),
        ("00003", "fail"),
        ("unknown", "fail"),
        ("unknown", "fail"),
    ]
    # the same printout again, even after a restart, is not a new cycle
    assert await capture.async_record(today) is None
    again = CycleCapture(node, {})
    again.start()
    try:
        reprinted = _printout(dac_cycle_text(3, datetime(2026, 11, 28, 7, 0), fail=True))
        assert await again.async_record(reprinted) is None
    finally:
        await again.async_stop()
    assert len(_cycles(node)) == 4


async def test_one_printout_handed_out_twice_at_once_is_recorded_once(
    capture: CycleCapture,
) -> None:
    # two files of one cycle in one poll of a drop folder: both records race to the store
    record = _printout(dac_cycle_text(77, datetime(2026, 11, 28, 11, 0)))
    first, second = await asyncio.gather(capture.async_record(record), capture.async_record(record))
    assert [first is None, second is None].count(True) == 1
    assert _cycles(capture.node) == [("00077", "pass")]


async def test_stray_text_at_start_up_does_not_take_the_open_load(
    capture: CycleCapture,
) -> None:
    node = capture.node
    loaded = await node.async_record(submission("steri.loaded", machine="AUTO-2"), OPERATOR)
    # line noise as the tap is plugged in: no cycle start, no cycle number
    junk = _printout(b"\x00\xfe 134.4 C  3.06 BAR\r\n")
    kept = await capture.async_record(junk)
    assert kept is not None
    assert kept["type"] == "note"
    assert "134.4 C" in kept["text"]
    assert [p.read_bytes() for p in capture.unreadable.iterdir()] == [junk.raw.encode()]
    # the real cycle that follows is the cycle of the open load
    await capture.async_record(_printout(dac_cycle_text(9, datetime(2026, 11, 28, 10, 0))))
    view = node.trace.fold.load(loaded["load"])
    assert view is not None
    assert view.as_dict()["status"] == "passed"
    assert view.as_dict()["cycle"]["cycle_no"] == "00009"
    assert _cycles(node) == [("00009", "pass")]
    # the capture restarts and the same stray text comes again: kept once
    await capture.async_stop()
    again = CycleCapture(node, {})
    again.start()
    try:
        assert await again.async_record(_printout(b"\x00\xfe 134.4 C  3.06 BAR\r\n")) is None
    finally:
        await again.async_stop()
    assert len(list(node.iter_events(event_type="note"))) == 1


async def test_sterilizer_printout_on_a_pty_becomes_the_cycle_of_its_open_load(
    tmp_path: Path,
) -> None:
    data = new_data_dir(tmp_path)
    with VirtualSerial() as port:
        data.config.write_text(
            f'[[cycle_tap]]\nport = "{port.path}"\nmachine = "AUTO-2"\nformat = "dac"\n'
        )
        server = NodeServer(data, listen=("127.0.0.1", 0))
        await server.async_start()
        try:
            node = server.node
            loaded = await node.async_record(submission("steri.loaded", machine="AUTO-2"), OPERATOR)
            sim = SterilizerSimulator(port, serial="AUTO-2")
            await asyncio.to_thread(sim.run_cycle, 815, datetime(2026, 11, 28, 9, 0), chunk=7)
            await _wait_for(lambda: _events(server, "steri.cycle"), "the cycle event")
            [cycle] = _events(server, "steri.cycle")
            assert cycle["machine"] == "AUTO-2"
            assert int(cycle["cycle_no"]) == 815
            assert cycle["result"] == "pass"
            assert cycle["user"] == "device:AUTO-2"
            assert "815" in cycle["raw"]
            view = node.trace.fold.load(loaded["load"])
            assert view is not None
            assert view.as_dict()["status"] == "passed"
            # a power cut in the middle of the next record: kept, flagged, never dropped
            await asyncio.to_thread(
                sim.run_cycle, 816, datetime(2026, 11, 28, 11, 0), cut_after=300
            )
            await asyncio.sleep(0.3)
        finally:
            await server.async_stop()  # the open record is handed out, flagged truncated
        server = NodeServer(data, listen=("127.0.0.1", 0))
        await server.async_start()
        try:
            kept = [
                e
                for e in server.node.iter_events()
                if e["type"] in {"steri.cycle", "note"}
                and "816" in (e.get("raw") or e.get("text") or "")
            ]
        finally:
            await server.async_stop()
    assert len(kept) == 1, kept
    assert kept[0]["type"] == "note" or "truncated" in kept[0]["flags"]
    if kept[0]["type"] == "steri.cycle":
        assert kept[0]["result"] == "fail"


async def test_washer_drop_folder_files_become_events_once(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    folder = tmp_path / "lavage"
    folder.mkdir()
    data.config.write_text(
        f'[[cycle_folder]]\npath = "{folder}"\nmachine = "LD-02"\nkind = "washer"\n'
        "settle = 0\n"  # the simulator writes each file whole
    )
    import devices._cycles._capture as capture

    old, capture.POLL_INTERVAL = capture.POLL_INTERVAL, 0.05
    server = NodeServer(data, listen=("127.0.0.1", 0))
    await server.async_start()
    try:
        await server.node.async_record(submission("wash.loaded", machine="LD-02"), OPERATOR)
        washer = WasherSimulator(folder, machine="LD-02")
        washer.drop_cycle(42, datetime(2026, 11, 28, 7, 30))
        await _wait_for(lambda: _events(server, "wash.cycle"), "the wash cycle event")
        # the same cycle dropped again (at-least-once delivery) is not recorded twice
        washer.drop_cycle(42, datetime(2026, 11, 28, 7, 30))
        await _wait_for(
            lambda: not list(folder.glob("*.txt")) and not list(folder.glob("*.csv")),
            "the folder to be processed",
            timeout=10,
        )
        capture_now = server.capture
        assert capture_now is not None
        await _wait_for(lambda: not capture_now._tasks, "the capture to record what it read")
        cycles = _events(server, "wash.cycle")
        assert len(cycles) == 1
        assert int(cycles[0]["cycle_no"]) == 42
    finally:
        capture.POLL_INTERVAL = old
        await server.async_stop()


async def test_a_dropped_file_leaves_the_folder_only_once_its_cycle_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the move and the write would lose the cycle: the file waits."""
    import devices._cycles._capture as capture
    import node._devices as node_devices

    data = new_data_dir(tmp_path)
    folder = tmp_path / "lavage"
    folder.mkdir()
    data.config.write_text(
        f'[[cycle_folder]]\npath = "{folder}"\nmachine = "LD-02"\nkind = "washer"\nsettle = 0\n'
    )
    monkeypatch.setattr(capture, "POLL_INTERVAL", 0.05)
    monkeypatch.setattr(node_devices, "FOLDER_WAIT_S", 0.3)
    server = NodeServer(data, listen=("127.0.0.1", 0))
    await server.async_start()
    try:
        entered, release = hold_store_writes(server.node)  # the disk stalls
        WasherSimulator(folder, machine="LD-02").drop_cycle(43, datetime(2026, 11, 28, 8, 0))
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.sleep(1.0)  # several polls, each delivering it again, and waits go by
        assert [p.name for p in folder.iterdir() if p.is_file()]  # still there
        assert not _events(server, "wash.cycle")
        release.set()
        await _wait_for(
            lambda: not [p for p in folder.iterdir() if p.is_file()], "the file to be moved"
        )
        assert [int(c["cycle_no"]) for c in _events(server, "wash.cycle")] == [43]
    finally:
        await server.async_stop()


async def test_a_serial_scanner_feeds_its_station_and_survives_an_unplug(tmp_path: Path) -> None:
    import aiohttp

    from devices.simulators import ScannerSimulator

    data = new_data_dir(tmp_path)
    # a stable link, as udev's /dev/serial/by-id: the re-plugged pty may get another number
    with VirtualSerial(tmp_path / "scanner") as port:
        data.config.write_text(f'[[scanner]]\nport = "{port.path}"\nstation = "sale-1"\n')
        server = NodeServer(data, listen=("127.0.0.1", 0))
        await server.async_start()
        connector = aiohttp.UnixConnector(path=str(data.socket))
        try:
            async with aiohttp.ClientSession(connector=connector) as session:

                async def scans(after: int, wait: float = 10) -> dict[str, Any]:
                    url = f"http://node/api/scans?station=sale-1&after={after}&wait={wait}"
                    async with session.get(url) as resp:
                        assert resp.status == 200, await resp.text()
                        answer: dict[str, Any] = await resp.json()
                        return answer

                scanner = ScannerSimulator(port)
                waiting = asyncio.ensure_future(scans(0))
                await asyncio.sleep(0.2)
                scanner.scan("JDIGGRBA#111")
                first = await waiting
                assert [s["set"] for s in first["scans"]] == ["JDIGGRBA#111"]
                assert server.scanners is not None
                [reader] = server.scanners._readers
                port.unplug()
                await _wait_for(lambda: not reader.connected, "the reader to see the unplug")
                port.plug()
                await _wait_for(lambda: reader.connected, "the reader to reopen the port by itself")
                scanner.scan("\x1d0103453120000011215ABC123", aim="]d2")
                second = await scans(first["last"])
                [gs1] = second["scans"]
                assert gs1["kind"] == "gs1"
                assert gs1["gtin"] == "03453120000011"
                assert gs1["serial"] == "5ABC123"
                async with session.get("http://node/api/scans?station=nowhere") as resp:
                    assert resp.status == 404
        finally:
            await server.async_stop()


@pytest.mark.parametrize("section", ["cycle_tap", "cycle_folder"])
async def test_an_unknown_cycle_format_is_refused_at_start(tmp_path: Path, section: str) -> None:
    """A folder of an unknown format would fail on every file, and stop at the first."""
    node = await open_node(new_data_dir(tmp_path))
    entry = {"port": "/dev/null", "machine": "M", "path": str(tmp_path), "format": "ims"}
    try:
        with pytest.raises(DeviceConfigError, match="ims_csv"):
            CycleCapture(node, {section: [entry]}).start()
    finally:
        await node.async_close()


async def test_a_folder_says_how_long_an_unfinished_cycle_is_waited_for(tmp_path: Path) -> None:
    node = await open_node(new_data_dir(tmp_path))
    entry = {"path": str(tmp_path), "machine": "LD-02", "settle_unfinished": 1800}
    try:
        with pytest.raises(DeviceConfigError, match="settle_unfinished"):
            CycleCapture(node, {"cycle_folder": [{**entry, "settle_unfinished": -5}]}).start()
        capture = CycleCapture(node, {"cycle_folder": [entry]})
        capture.start()
        try:
            (watcher,) = capture._folders
            assert (watcher.settle, watcher.unfinished_settle) == (120, 1800)
        finally:
            await capture.async_stop()
    finally:
        await node.async_close()


async def test_a_cycle_read_after_the_next_load_goes_to_the_load_it_ran(
    tmp_path: Path,
) -> None:
    """L1 is loaded, its cycle runs and fails; L2 is loaded before L1's printout is read
    (a drop folder waits for the file to settle, a backlog after an outage): the failed
    cycle is L1's, not the latest load's. A cycle that started after L2 was loaded is L2's."""
    clock = StepClock(step=1)
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    cap = CycleCapture(node, {})
    cap.start()
    op = OPERATOR
    try:
        t0 = datetime(2026, 11, 28, 7, 0, tzinfo=node.timezone)
        clock.now = int(t0.timestamp() * 1000)
        first, _ = await node.async_submit(
            {"type": "steri.loaded", "machine": "AUTO-2", "program": "P", "sets": ["S#1"]}, op
        )
        clock.now += 65 * 60_000
        second, _ = await node.async_submit(
            {"type": "steri.loaded", "machine": "AUTO-2", "program": "P", "sets": ["S#2"]}, op
        )
        failed = _printout(dac_cycle_text(5, datetime(2026, 11, 28, 7, 5), fail=True))
        event = await cap.async_record(failed)
        assert event is not None
        assert event["load"] == first["load"]
        fold = node.trace.fold
        assert fold.load(first["load"]).status == "failed"  # type: ignore[union-attr]
        assert fold.load(second["load"]).status == "open"  # type: ignore[union-attr]
        passed = _printout(dac_cycle_text(6, datetime(2026, 11, 28, 8, 10)))
        event = await cap.async_record(passed)
        assert event is not None
        assert "load" not in event  # the latest open load's, as the fold attributes it
        assert fold.load(second["load"]).status == "passed"  # type: ignore[union-attr]
    finally:
        await cap.async_stop()
        await node.async_close()


async def test_a_tap_record_the_node_cannot_store_is_kept_as_text(
    capture: CycleCapture, caplog: pytest.LogCaptureFixture
) -> None:
    """A tap hands a record out once: when the node cannot store it (its disk failed), its
    text goes to a file and the log says where, rather than nowhere."""
    capture.node.failed = "storage failed, restart the node: [Errno 28] No space left"
    records = [
        _printout(dac_cycle_text(n, datetime(2026, 11, 28, 9, n), fail=True)) for n in (21, 22, 23)
    ]
    for record in records:  # three at once: one file each
        capture._schedule(record)
    while capture._tasks:
        await asyncio.gather(*list(capture._tasks), return_exceptions=True)
    await asyncio.sleep(0)
    kept = sorted(capture.unreadable.glob("*-not-recorded.txt"))
    assert sorted(k.read_bytes().decode("utf-8") for k in kept) == sorted(r.raw for r in records)
    assert "could not be recorded" in caplog.text
    assert all(str(k) in caplog.text for k in kept)


async def test_a_load_left_open_or_a_slow_machine_clock_draws_no_cycle_away(
    tmp_path: Path,
) -> None:
    """A load left open yesterday (its cycle never came), a load in the machine now, and a
    machine clock an hour slow: the cycle is the current load's, as the fold says."""
    clock = StepClock(step=1)
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    cap = CycleCapture(node, {})
    cap.start()
    try:
        clock.now = int(datetime(2026, 11, 27, 15, 0, tzinfo=node.timezone).timestamp() * 1000)
        stale, _ = await node.async_submit(
            {"type": "steri.loaded", "machine": "AUTO-2", "program": "P", "sets": ["S#1"]},
            OPERATOR,
        )
        clock.now = int(datetime(2026, 11, 28, 10, 0, tzinfo=node.timezone).timestamp() * 1000)
        current, _ = await node.async_submit(
            {"type": "steri.loaded", "machine": "AUTO-2", "program": "P", "sets": ["S#2"]},
            OPERATOR,
        )
        slow = _printout(dac_cycle_text(7, datetime(2026, 11, 28, 9, 5)))  # ran at 10:05
        event = await cap.async_record(slow)
        assert event is not None
        assert "load" not in event
        fold = node.trace.fold
        assert fold.load(current["load"]).status == "passed"  # type: ignore[union-attr]
        assert fold.load(stale["load"]).status == "open"  # type: ignore[union-attr]
    finally:
        await cap.async_stop()
        await node.async_close()

"""Machine cycles: three formats fed byte by byte, flagged records, events, capture."""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import (
    CycleFlag,
    CycleFormatError,
    CycleKind,
    CycleRecord,
    DacParser,
    DropFolderWatcher,
    GenericParser,
    ImsCsvParser,
    SerialCycleCapture,
    TestKind,
    cycle_formats,
    cycle_parser,
    parse_cycle_bytes,
    sniff_cycle_format,
)
from devices.simulators import (
    BOWIE_DICK,
    SterilizerSimulator,
    VirtualSerial,
    WasherSimulator,
    dac_cycle_text,
    generic_cycle_text,
    ims_cycle_csv,
)
from tests.devices.devices_helpers import wait_for

START = datetime(2026, 11, 28, 8, 15, 2)


def _bytewise(parser: DacParser | ImsCsvParser | GenericParser, data: bytes) -> list[CycleRecord]:
    records: list[CycleRecord] = []
    for byte in data:
        records += parser.feed(bytes([byte]))
    return records + parser.flush()


def test_dac_record_fed_one_byte_at_a_time() -> None:
    text = dac_cycle_text(1234, START)
    (record,) = _bytewise(DacParser("STE-01"), text.encode("cp1252"))
    assert record.complete
    assert record.verdict == "pass"
    assert (record.machine, record.serial, record.cycle_no) == ("STE-01", "STE-4711", "01234")
    assert record.program == "134C PRION 18MIN"
    assert record.kind is CycleKind.STERILIZER
    assert record.started == START
    assert record.ended == START + timedelta(minutes=13 + 18 + 15)
    assert [p.name for p in record.phases][:2] == ["PRE-VACUUM 1", "PRE-VACUUM 2"]
    assert all(p.ok for p in record.phases)
    assert len(record.hold_samples) == 19
    assert record.t_min is not None
    assert record.t_max is not None
    assert 134.2 <= record.t_min <= record.t_max <= 135.1
    assert record.t_min == min(s.temp_c for s in record.hold_samples)  # type: ignore[type-var]
    assert record.p_max == max(s.pressure_bar for s in record.hold_samples)  # type: ignore[type-var]
    assert record.hold_s == 1080
    assert record.raw == text


def test_dac_cycle_event() -> None:
    (record,) = parse_cycle_bytes(dac_cycle_text(7, START).encode(), machine="STE-01")
    event = record.to_event(timezone(timedelta(hours=1)))
    assert event["type"] == "steri.cycle"
    assert {"machine", "cycle_no", "result"} <= set(event)
    assert set(event) <= {
        "type",
        "machine",
        "cycle_no",
        "result",
        "load",
        "program",
        "started",
        "ended",
        "phases",
        "t_min",
        "t_max",
        "p_max",
        "hold_s",
        "raw",
    }
    assert event["result"] == "pass"
    assert event["started"] == "2026-11-28T08:15:02+01:00"
    assert event["phases"][0] == {
        "name": "PRE-VACUUM 1",
        "at": "2026-11-28T08:15:02+01:00",
        "ok": True,
    }
    assert "started" not in record.to_event()  # no offset known: left out, not guessed
    assert event["raw"] == record.raw


def test_dac_failed_cycle() -> None:
    (record,) = parse_cycle_bytes(dac_cycle_text(8, START, fail=True).encode(), fmt="dac")
    assert record.result == "fail"
    assert record.verdict == "fail"
    assert record.t_min == 132.8
    assert not record.flags
    assert record.to_event()["result"] == "fail"


def test_dac_bowie_dick_is_a_test_event() -> None:
    (record,) = parse_cycle_bytes(dac_cycle_text(9, START, program=BOWIE_DICK).encode())
    assert record.kind is CycleKind.TEST
    assert record.test_kind is TestKind.BOWIE_DICK
    event = record.to_event()
    assert event == {
        "type": "steri.test",
        "machine": "STE-4711",
        "kind": "bowie_dick",
        "result": "pass",
        "raw": record.raw,
    }


def test_power_cut_record_is_kept_raw_and_flagged() -> None:
    first = dac_cycle_text(10, START)
    cut = first[: len(first) // 2]
    second = dac_cycle_text(11, START + timedelta(hours=1))
    parser = DacParser("STE-01")
    records = parser.feed((cut + second).encode())
    assert len(records) == 2
    broken, good = records
    assert broken.raw == cut
    assert CycleFlag.TRUNCATED in broken.flags
    assert broken.cycle_no == "00010"
    assert broken.result is None
    assert broken.verdict == "fail"
    assert broken.to_event()["result"] == "fail"
    assert good.complete
    assert good.cycle_no == "00011"
    # End of stream in the middle of a record: flushed, flagged, never dropped.
    assert parser.feed(cut.encode()) == []
    (tail,) = parser.flush()
    assert tail.raw == cut
    assert CycleFlag.TRUNCATED in tail.flags


def test_garbled_and_unframed_text_is_kept() -> None:
    text = dac_cycle_text(12, START)
    lines = text.split("\r\n")
    lines[9] = "HO\x00LD 08:\xff9:00 ###"
    garbled = "\r\n".join(lines).encode("latin-1")
    noise = b"...3.07 BAR\r\nPHASE 07:59:00 DRYING OK\r\n*** CYCLE END ***\r\n"
    records = parse_cycle_bytes(noise + b"\x00\x13 line noise\r\n" + garbled, fmt="dac")
    fragment, stray, damaged = records
    assert CycleFlag.UNFRAMED in fragment.flags
    assert CycleFlag.TRUNCATED not in fragment.flags
    assert fragment.raw == noise.decode()
    assert CycleFlag.UNFRAMED in stray.flags
    assert CycleFlag.TRUNCATED in stray.flags
    assert CycleFlag.GARBLED in damaged.flags
    assert damaged.result == "pass"
    assert damaged.verdict == "fail"
    assert any("not understood" in p for p in damaged.problems)
    assert damaged.raw == garbled.decode("cp1252", "replace")


def test_inconsistent_pass_with_failed_phase() -> None:
    text = dac_cycle_text(13, START).replace("HOLD END           OK", "HOLD END           FAIL")
    (record,) = parse_cycle_bytes(text.encode())
    assert CycleFlag.INCONSISTENT in record.flags
    assert record.verdict == "fail"


@pytest.mark.parametrize("status", ["NOT OK", "NON CONFORME", "PAS OK"])
def test_a_phase_status_of_two_words_is_read_whole(status: str) -> None:
    """ "HOLD END NOT OK" is a failed phase, not a phase named "HOLD END NOT" that is OK."""
    text = dac_cycle_text(13, START).replace("HOLD END           OK", f"HOLD END    {status}")
    (record,) = parse_cycle_bytes(text.encode())
    hold_end = next(p for p in record.phases if p.name == "HOLD END")
    assert hold_end.ok is False
    assert CycleFlag.INCONSISTENT in record.flags
    assert record.verdict == "fail"


def test_ims_csv_fed_one_byte_at_a_time() -> None:
    text = ims_cycle_csv(812, START)
    (record,) = _bytewise(ImsCsvParser(), text.encode("cp1252"))
    assert record.complete
    assert record.verdict == "pass"
    assert (record.machine, record.cycle_no, record.kind) == ("LD-02", "000812", CycleKind.WASHER)
    assert record.started == START
    assert record.t_min is not None
    assert record.t_min >= 90
    assert record.hold_s == 300
    assert record.a0 is not None
    assert record.a0 > 3000
    assert [p.name for p in record.phases] == [
        "Prelavage",
        "Lavage",
        "Rincage",
        "Desinfection",
        "Sechage",
    ]
    event = record.to_event()
    assert event["type"] == "wash.cycle"
    assert event["a0"] == record.a0
    assert event["params"]["t_min"] == record.t_min
    assert set(event) <= {
        "type",
        "machine",
        "cycle_no",
        "result",
        "load",
        "program",
        "started",
        "ended",
        "a0",
        "params",
        "raw",
    }


def test_ims_computes_a0_when_the_logger_does_not() -> None:
    text = "\r\n".join(
        ["IMS-LOG,1", "Cycle,5", "Start,2026-11-28 10:00:00", "Time,Phase,Temp,P (bar)"]
        + [f"10:0{i}:00,Disinfection,{t},1.0" for i, t in enumerate([80, 90, 90, 90])]
        + ["10:04:00,Drying,110,1.0", "Result,OK", ""]
    )
    (record,) = parse_cycle_bytes(text.encode(), machine="LD-09")
    assert record.machine == "LD-09"
    assert record.a0 == pytest.approx(60 * 1 + 3 * 60 * 10)
    assert record.hold_s == 240


def test_ims_failed_and_truncated() -> None:
    (failed,) = parse_cycle_bytes(ims_cycle_csv(813, START, fail=True).encode())
    assert failed.verdict == "fail"
    assert failed.result == "fail"
    text = ims_cycle_csv(814, START)
    (cut,) = parse_cycle_bytes(text[:300].encode())
    assert CycleFlag.TRUNCATED in cut.flags
    assert cut.raw == text[:300]
    assert cut.to_event()["result"] == "fail"
    assert cut.to_event()["params"]["flags"] == "truncated"


def test_generic_format_fed_one_byte_at_a_time() -> None:
    text = generic_cycle_text(55, START, machine="STE-02")
    (record,) = _bytewise(GenericParser(tz=UTC), text.encode())
    assert record.complete, record.problems
    assert (record.machine, record.cycle_no, record.program) == ("STE-02", "55", "NORMAL 134°")
    assert record.started == START.replace(tzinfo=UTC)
    assert record.hold_s == 180
    assert record.t_max == pytest.approx(134.6)
    assert record.to_event()["started"] == "2026-11-28T08:15:02+00:00"


def test_generic_test_and_washer_and_errors() -> None:
    text = (
        "# leak test\nBEGIN CYCLE\nkind: test\ntest: leak\ncycle: 3\nresult: pass\nEND CYCLE\n"
        "BEGIN CYCLE\nkind: washer\ncycle: 4\na0: 3000\nresult: fail\ncolour: blue\nEND CYCLE\n"
        "BEGIN CYCLE\ncycle 5\nphase: ;;;\nresult: maybe\nEND CYCLE\n"
    )
    leak, wash, bad = parse_cycle_bytes(text.encode(), machine="M")
    assert leak.to_event()["kind"] == "leak"
    assert leak.to_event()["type"] == "steri.test"
    assert wash.a0 == 3000
    assert wash.verdict == "fail"
    assert "unknown key colour ignored" in wash.problems
    assert not wash.flags
    assert CycleFlag.GARBLED in bad.flags
    assert len(bad.problems) == 3


def test_registry_and_sniffing() -> None:
    assert {"dac", "ims_csv", "generic"} <= set(cycle_formats())
    assert sniff_cycle_format(dac_cycle_text(1, START).encode()) == "dac"
    assert sniff_cycle_format(b"\xef\xbb\xbf" + ims_cycle_csv(1, START).encode()) == "ims_csv"
    assert sniff_cycle_format(generic_cycle_text(1, START).encode()) == "generic"
    assert sniff_cycle_format(b"hello") is None
    with pytest.raises(CycleFormatError, match="unknown cycle format"):
        cycle_parser("nope")
    (unknown,) = parse_cycle_bytes(b"Zyklus 42 \xe4 OK\r\n", machine="X")
    assert unknown.flags == {CycleFlag.UNKNOWN_FORMAT}
    assert unknown.raw == "Zyklus 42 ä OK\r\n"
    assert parse_cycle_bytes(b"  \r\n") == []


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=97), max_size=12),
    st.sampled_from(["dac", "ims_csv", "generic"]),
)
def test_chunking_never_changes_the_records(cuts: list[int], fmt: str) -> None:
    text = {
        "dac": dac_cycle_text(1, START) + dac_cycle_text(2, START)[:200],
        "ims_csv": ims_cycle_csv(1, START) + ims_cycle_csv(2, START)[:150],
        "generic": generic_cycle_text(1, START) + generic_cycle_text(2, START)[:90],
    }[fmt].encode()
    whole = parse_cycle_bytes(text, fmt=fmt)
    parser = cycle_parser(fmt)
    records: list[CycleRecord] = []
    pos = 0
    for cut in sorted(cuts):
        records += parser.feed(text[pos : pos + cut])
        pos += cut
    records += parser.feed(text[pos:]) + parser.flush()
    assert records == whole
    assert "".join(r.raw for r in records) == text.decode()


def test_serial_capture_on_a_pty_survives_unplug(tmp_path: Path) -> None:
    records: queue.Queue[CycleRecord] = queue.Queue()
    port = VirtualSerial(tmp_path / "ste1")
    try:
        sterilizer = SterilizerSimulator(port)
        capture = SerialCycleCapture(
            port.path, machine="STE-01", on_record=records.put, reconnect_delay=0.05
        )
        with capture:
            assert capture.stream.wait_connected(5)
            first = sterilizer.run_cycle(100, START, chunk=7)
            assert records.get(timeout=5).cycle_no == "00100"
            sent = sterilizer.run_cycle(101, START, cut_after=500)  # power cut, cable pulled
            total = len(first) + len(sent)
            assert wait_for(lambda: capture.stream.bytes_read == total)
            port.unplug()
            port.plug()
            assert wait_for(lambda: capture.stream.connects == 2)
            assert capture.stream.wait_connected(5)
            third = sterilizer.run_cycle(102, START + timedelta(hours=1))
            cut = records.get(timeout=5)
            assert cut.raw == sent
            assert CycleFlag.TRUNCATED in cut.flags
            assert records.get(timeout=5).cycle_no == "00102"
            last = sterilizer.run_cycle(103, START, cut_after=300)
            total += len(third) + len(last)
            assert wait_for(lambda: capture.stream.bytes_read == total)
        left = records.get(timeout=5)  # stop() flushes the open record
        assert left.cycle_no == "00103"
        assert CycleFlag.TRUNCATED in left.flags
    finally:
        port.close()


def _failed_head_and_next_tail() -> tuple[bytes, bytes]:
    """The start of a failed cycle (its failed end never seen), and the end of the next
    cycle without its header (missed too)."""
    failed = dac_cycle_text(1234, START, fail=True).encode().split(b"\r\n")
    passed = dac_cycle_text(1235, START + timedelta(hours=1)).encode().split(b"\r\n")
    return b"\r\n".join(failed[:15]) + b"\r\n", b"\r\n".join(passed[12:])


def _cut_and_stray(cut: CycleRecord, rest: CycleRecord, why: str) -> None:
    """The failed cycle ended there, truncated (saying `why`); the next cycle's lines are
    stray text of no cycle."""
    assert cut.cycle_no == "01234"
    assert CycleFlag.TRUNCATED in cut.flags
    assert cut.verdict == "fail"
    assert any(why in p for p in cut.problems)
    assert rest.cycle_no is None
    assert CycleFlag.UNFRAMED in rest.flags


def test_unplug_during_a_failed_cycle_never_lets_the_next_cycle_complete_it(
    tmp_path: Path,
) -> None:
    head, tail = _failed_head_and_next_tail()
    records: queue.Queue[CycleRecord] = queue.Queue()
    port = VirtualSerial(tmp_path / "ste1")
    try:
        capture = SerialCycleCapture(
            port.path, machine="STE-01", on_record=records.put, reconnect_delay=0.05
        )
        with capture:
            assert capture.stream.wait_connected(5)
            port.write(head)
            assert wait_for(lambda: capture.stream.bytes_read == len(head))
            port.unplug()
            cut = records.get(timeout=5)  # handed out at the unplug, not at the next end
            port.plug()
            assert wait_for(lambda: capture.stream.connects == 2)
            assert capture.stream.wait_connected(5)
            port.write(tail)
            rest = records.get(timeout=5)
    finally:
        port.close()
    assert cut.raw == head.decode()
    _cut_and_stray(cut, rest, "disconnected")
    assert rest.verdict == "fail"
    assert records.empty()


def test_a_cable_pulled_at_the_machine_ends_the_open_record_after_the_silence(
    tmp_path: Path,
) -> None:
    """The adapter stays plugged in, so the port sees nothing: the silence ends the record,
    and the next cycle's lines, once the cable is back, never complete a failed one."""
    head, tail = _failed_head_and_next_tail()
    records: queue.Queue[CycleRecord] = queue.Queue()
    port = VirtualSerial(tmp_path / "ste1")
    try:
        capture = SerialCycleCapture(
            port.path, machine="STE-01", on_record=records.put, silence=0.5
        )
        with capture:
            assert capture.stream.wait_connected(5)
            port.write(head)
            cut = records.get(timeout=5)  # handed out once the machine went silent
            port.write(tail)
            rest = records.get(timeout=5)
    finally:
        port.close()
    _cut_and_stray(cut, rest, "nothing came")
    assert records.empty()


def test_drop_folder(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    washer = WasherSimulator(drop, machine="LD-02")
    seen: list[CycleRecord] = []
    watcher = DropFolderWatcher(drop, machine="LD-02", on_record=seen.append, settle=0)
    washer.drop_cycle(1, START)
    washer.drop_text("broken.txt", b"\x00\x01garbage")
    (drop / ".partial.tmp").write_bytes(b"IMS-LOG;1")
    assert watcher.poll_once() == []  # not yet stable
    records = watcher.poll_once()
    assert [r.cycle_no for r in records] == ["000001", None]
    assert records[1].flags == {CycleFlag.UNKNOWN_FORMAT}
    assert seen == records
    assert sorted(p.name for p in (drop / "processed").iterdir()) == [
        "LD-02_000001.csv",
        "broken.txt",
    ]
    washer.drop_cycle(1, START)  # same name again: kept beside the first
    watcher.poll_once()
    assert len(watcher.poll_once()) == 1
    assert (drop / "processed" / "LD-02_000001.1.csv").exists()
    assert sorted(p.name for p in drop.iterdir()) == [".partial.tmp", "processed"]


def _clocked_watcher(folder: Path) -> tuple[DropFolderWatcher, list[float], list[CycleRecord]]:
    """A drop folder watcher on a clock the test moves (seconds[0]), and what it delivers."""
    seconds = [0.0]
    seen: list[CycleRecord] = []
    watcher = DropFolderWatcher(
        folder, machine="LD-02", on_record=seen.append, clock=lambda: seconds[0]
    )
    return watcher, seconds, seen


def test_drop_folder_waits_for_a_logger_that_writes_during_the_cycle(tmp_path: Path) -> None:
    """Rows every 30 s, then 20 minutes of silence (a long drying phase) before the last
    ones: the file is not taken half written, its last cycle having no end yet."""
    text = ims_cycle_csv(812, START)
    rows = text.splitlines(keepends=True)
    watcher, seconds, seen = _clocked_watcher(tmp_path)
    log = tmp_path / "LD-02_000812.csv"
    written = 8
    log.write_text("".join(rows[:written]))
    while written < len(rows):  # a row every 30 s (20 min before the last two), polled every 2 s
        for _ in range(600 if written == len(rows) - 2 else 15):
            assert watcher.poll_once() == []
            seconds[0] += 2
        with log.open("a") as out:
            out.write(rows[written])
        written += 1
    while not seen:
        assert seconds[0] < 3000, "the finished file was never taken"
        watcher.poll_once()
        seconds[0] += 2
    (record,) = seen
    assert record.complete
    assert record.raw == text
    assert (tmp_path / "processed" / log.name).exists()


def test_drop_folder_takes_a_cycle_left_unfinished_as_it_is_in_the_end(tmp_path: Path) -> None:
    """A file left unfinished for the longer wait (the machine or its PC stopped) is taken
    as it is, truncated (failed)."""
    watcher, seconds, seen = _clocked_watcher(tmp_path)
    cut = tmp_path / "LD-02_000813.csv"
    cut.write_text("".join(ims_cycle_csv(813, START).splitlines(keepends=True)[:-2]))
    while not seen:
        assert seconds[0] < watcher.unfinished_settle + 10, "never taken"
        watcher.poll_once()
        seconds[0] += 2
    assert seconds[0] >= watcher.unfinished_settle
    assert CycleFlag.TRUNCATED in seen[0].flags
    assert (tmp_path / "processed" / cut.name).exists()


def test_drop_folder_keeps_a_file_whose_handler_failed(tmp_path: Path) -> None:
    calls: list[CycleRecord] = []

    def handler(record: CycleRecord) -> None:
        calls.append(record)
        if len(calls) == 1:
            raise RuntimeError("store busy")

    WasherSimulator(tmp_path).drop_cycle(2, START)
    watcher = DropFolderWatcher(
        tmp_path, machine=None, on_record=handler, poll_interval=0.02, settle=0
    )
    with watcher:
        assert wait_for(lambda: len(calls) == 2)
    assert calls[0] == calls[1]  # delivered again, not lost
    assert (tmp_path / "processed" / "LD-02_000002.csv").exists()


def test_events_pass_the_event_model() -> None:
    """Every record, damaged or not, gives an event the node accepts (crdt_model rules)."""
    from crdt_model import validate_submission

    tz = timezone(timedelta(hours=1))
    start = datetime(2026, 11, 28, 8, 0)
    data = [
        dac_cycle_text(1, start).encode(),
        dac_cycle_text(2, start, program=BOWIE_DICK).encode(),
        dac_cycle_text(3, start, fail=True).encode()[:700],
        b"junk \x00\x01 " * 10 + dac_cycle_text(4, start).encode(),
        ims_cycle_csv(5, start).encode(),
        ims_cycle_csv(6, start).encode()[:250],
        generic_cycle_text(7, start).encode(),
        "BEGIN CYCLE\ncycle: N°8 (reprise)\nprogram: \x07x\nEND CYCLE\n".encode(),
        b"\xff unknown format \x00",
    ]
    for blob in data:
        for record in parse_cycle_bytes(blob, machine="STE-01", tz=tz):
            for zone in (tz, None):
                event = record.to_event(zone)
                checked = validate_submission(event)
                assert checked["result"] == record.verdict


def test_huge_records_are_split_to_fit_an_event() -> None:
    hold = "HOLD  08:29:00  134.6 C   3.08 BAR\r\n" * 3000
    text = (
        "*** CYCLE START ***\r\nCYCLE NO : 9\r\n"
        + hold
        + "RESULT : PASSED\r\n*** CYCLE END ***\r\n"
    )
    records = parse_cycle_bytes(text.encode(), fmt="dac")
    assert len(records) == 2
    assert all(len(r.raw) <= 64 * 1024 for r in records)
    assert "".join(r.raw for r in records) == text
    assert CycleFlag.TRUNCATED in records[0].flags
    assert CycleFlag.UNFRAMED in records[1].flags
    big = parse_cycle_bytes(b"x" * 150_000)
    assert [len(r.raw) for r in big] == [60_000, 60_000, 30_000]


IMS_WITH_OFFSET = (
    "IMS-LOG;1\r\nMachine;LD-02\r\nCycle;000812\r\nStart;2026-11-28T07:02:11+01:00\r\n"
    "Time;Phase;T1 (C);T2 (C);P (mbar);A0\r\n07:02:11;Prelavage;22,1;22,0;1013;0\r\n"
    "End;2026-11-28T07:58:40+01:00\r\nResult;OK\r\n"
)


@pytest.mark.parametrize(
    "text",
    [
        generic_cycle_text(812, START.replace(tzinfo=timezone(timedelta(hours=1)))),
        IMS_WITH_OFFSET,
    ],
    ids=["generic", "ims"],
)
def test_a_start_with_a_utc_offset_and_bare_clock_times_read_as_one(text: str) -> None:
    """The start printed with its offset, the phases as clock times: one record, its times
    compared as one (they raised, and the record was lost)."""
    (record,) = parse_cycle_bytes(text.encode("cp1252"))
    assert record.verdict == "pass"
    assert record.started is not None
    assert record.started.utcoffset() == timedelta(hours=1)
    assert record.phases
    assert all(p.at is None or p.at.utcoffset() == timedelta(hours=1) for p in record.phases)


def test_a_line_a_parser_fails_on_keeps_its_text_and_the_next_record_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = DacParser(machine="STE-1")
    first, second = dac_cycle_text(13, START), dac_cycle_text(14, START + timedelta(hours=2))
    real_field = DacParser.field
    failed: list[str] = []

    def failing_field(self: DacParser, draft: Any, body: str) -> None:
        if body.startswith("PROGRAM") and not failed:  # the first record's program line
            failed.append(body)
            raise RuntimeError("an unforeseen form")
        real_field(self, draft, body)

    monkeypatch.setattr(DacParser, "field", failing_field)
    records = parser.feed((first + second).encode()) + parser.flush()
    broken = records[0]
    assert CycleFlag.GARBLED in broken.flags
    assert broken.verdict == "fail"
    assert "PROGRAM" in broken.raw
    assert any(r.cycle_no == "00014" and r.verdict == "pass" for r in records[1:])


def test_a_printout_whose_lines_end_in_a_lone_cr_is_read_line_by_line() -> None:
    text = dac_cycle_text(13, START).replace("\r\n", "\n").replace("\n", "\r")
    (record,) = parse_cycle_bytes(text.encode())
    assert record.complete
    assert record.verdict == "pass"
    assert record.cycle_no == "00013"
    assert record.raw == text
    parser = DacParser(machine="STE-1")  # on a tap: the last CR waits for a possible LF...
    assert parser.feed(text.encode()) == []
    (settled,) = parser.settle()  # ...until the line stays quiet
    assert settled.complete
    assert settled.raw == text


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8"])
def test_a_french_dac_printout_is_recognised_in_a_drop_folder(encoding: str) -> None:
    text = dac_cycle_text(13, START).replace("*** CYCLE START ***", "*** DÉBUT CYCLE ***")
    assert sniff_cycle_format(text.encode(encoding)) == "dac"


def test_a_failure_as_a_record_ends_keeps_the_whole_record_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parser lets go of its record, then fails while finishing it: every line of it is
    kept, each once."""
    text = ims_cycle_csv(812, START)

    def failing_close(self: ImsCsvParser) -> Any:
        self._draft = None
        raise OverflowError("a value out of range")

    monkeypatch.setattr(ImsCsvParser, "_close", failing_close)
    records = parse_cycle_bytes(text.encode("cp1252"), fmt="ims_csv")
    assert "".join(r.raw for r in records) == text
    assert any(CycleFlag.GARBLED in r.flags for r in records)
    assert all(r.verdict == "fail" for r in records)


def test_a_sensor_fault_value_does_not_make_a0_overflow() -> None:
    """A logger without an A0 column: A0 is computed, and a sensor's fault value (9999,9)
    is no heat (10^991 overflowed and lost the record)."""
    rows = [
        "IMS-LOG;1",
        "Machine;LD-02",
        "Cycle;000007",
        "Start;28/11/2026 07:00:00",
        "Time;Phase;T1 (C);T2 (C)",
        "07:00:00;Lavage;55,0;54,8",
        "07:10:00;Desinfection;9999,9;9999,9",
        "07:11:00;Desinfection;93,1;93,0",
        "07:16:00;Sechage;110,0;109,0",
        "End;28/11/2026 07:30:00",
        "Result;OK",
        "",
    ]
    (record,) = parse_cycle_bytes("\r\n".join(rows).encode("cp1252"), fmt="ims_csv")
    assert record.complete
    assert record.a0 is not None
    assert 0 < record.a0 < 10**6

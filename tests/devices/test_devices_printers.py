"""Printer transports against a real loopback ZPL printer, a real pty, a folder, a fake lp."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import devices._printers as printers
from devices import (
    CupsPrinter,
    FolderPrinter,
    PrinterError,
    PrinterStatusError,
    PrinterUnavailableError,
    SerialPrinter,
    TcpPrinter,
    parse_host_status,
    render_zpl,
)
from devices.simulators import PrinterMode, VirtualSerial, ZplPrinterSimulator
from tests.devices.devices_helpers import label


@pytest.fixture
def printer() -> Iterator[ZplPrinterSimulator]:
    with ZplPrinterSimulator() as sim:
        yield sim


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tcp_print_checks_status_then_sends(printer: ZplPrinterSimulator) -> None:
    data = render_zpl(label())
    TcpPrinter(printer.host, printer.port).send(data)
    assert printer.wait_printed(1)
    assert printer.printed == [data.strip()]
    assert printer.status_queries == 1
    (fmt,) = printer.labels()
    assert fmt.field_kind("code128")[0].data == ">:JDIGGRBA#111"


@pytest.mark.parametrize(
    ("mode", "reason"), [(PrinterMode.PAPER_OUT, "out of paper"), (PrinterMode.HEAD_OPEN, "head")]
)
def test_tcp_print_refused_when_printer_reports_a_problem(
    printer: ZplPrinterSimulator, mode: PrinterMode, reason: str
) -> None:
    printer.set_mode(mode)
    with pytest.raises(PrinterStatusError, match=reason):
        TcpPrinter(printer.host, printer.port).send(render_zpl(label()))
    assert printer.printed == []
    assert printer.held == []  # nothing was sent


def test_tcp_print_without_status_check_cannot_see_paper_out(printer: ZplPrinterSimulator) -> None:
    printer.set_mode(PrinterMode.PAPER_OUT)
    TcpPrinter(printer.host, printer.port, check_status=False).send(render_zpl(label()))
    assert printer.wait_printed(0)
    printer.set_mode(PrinterMode.READY)  # paper loaded: the held label comes out
    assert printer.wait_printed(1)


def test_tcp_printer_that_hangs_up_or_is_off(printer: ZplPrinterSimulator) -> None:
    printer.set_mode(PrinterMode.REFUSE)
    with pytest.raises(PrinterUnavailableError, match=r"closed the connection|reset"):
        TcpPrinter(printer.host, printer.port).send(b"^XA^XZ")
    with pytest.raises(PrinterUnavailableError, match="unreachable"):
        TcpPrinter("127.0.0.1", _free_port(), timeout=1).send(b"^XA^XZ")


def test_tcp_printer_that_never_answers_status() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        port = server.getsockname()[1]
        old, printers.STATUS_TIMEOUT = printers.STATUS_TIMEOUT, 0.2
        try:
            with pytest.raises(PrinterUnavailableError, match="timeout"):
                TcpPrinter("127.0.0.1", port).send(b"^XA^XZ")
        finally:
            printers.STATUS_TIMEOUT = old
    finally:
        server.close()


def test_host_status_parsing() -> None:
    ok = parse_host_status(
        b"\x02030,0,0,0240,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,0,2,4,0,00000000,1,000\x03\r\n"
        b"\x021234,0\x03\r\n"
    )
    assert ok.problems == []
    bad = parse_host_status(
        b"\x02030,1,1,0240,002,1,0,0,000,0,0,0\x03\x02001,0,1,1,0,2,4,0,00000000,1,000\x03"
    )
    assert bad.problems == [
        "out of paper",
        "print head open",
        "ribbon out",
        "paused",
        "receive buffer full",
    ]
    assert bad.formats_in_buffer == 2
    with pytest.raises(PrinterError, match="malformed"):
        parse_host_status(b"\x02garbage\x03")


def test_serial_printer_on_a_pty() -> None:
    with VirtualSerial() as port:
        expected = b"^XA^FDhello^FS^XZ"
        SerialPrinter(port.path, 19200).send(expected)
        received = b""
        while len(received) < len(expected):
            chunk = port.read(2.0)
            assert chunk, received
            received += chunk
        assert received == expected


def test_serial_printer_with_status_check_on_a_pty() -> None:
    answer = b"\x02030,1,0,0240,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,0,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"
    with VirtualSerial() as port:

        def printer_side() -> None:
            if port.read(3.0).startswith(b"~HS"):
                port.write(answer)

        thread = threading.Thread(target=printer_side)
        thread.start()
        try:
            with pytest.raises(PrinterStatusError, match="out of paper"):
                SerialPrinter(port.path, check_status=True).send(b"^XA^XZ")
        finally:
            thread.join()


def test_serial_printer_unplugged(tmp_path: Path) -> None:
    with pytest.raises(PrinterUnavailableError):
        SerialPrinter(str(tmp_path / "ttyUSB9")).send(b"^XA^XZ")


def test_folder_printer_writes_atomically(tmp_path: Path) -> None:
    target = tmp_path / "spool"
    FolderPrinter(target).send(b"^XA^XZ", name="0000000001-L/1")
    assert [p.name for p in target.iterdir()] == ["0000000001-L_1.zpl"]
    assert (target / "0000000001-L_1.zpl").read_bytes() == b"^XA^XZ"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(PrinterUnavailableError):
        FolderPrinter(blocked).send(b"x")


def _fake_lp(tmp_path: Path, exit_code: int) -> Path:
    script = tmp_path / "lp"
    out = tmp_path / "lp-out"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > "{out}.args"\n'
        f'cat > "{out}"\n'
        + ("echo 'lp: The printer or class does not exist.' >&2\n" if exit_code else "")
        + f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_cups_printer_hands_the_job_to_lp(tmp_path: Path) -> None:
    lp = _fake_lp(tmp_path, 0)
    CupsPrinter("zebra1", lp=str(lp)).send(b"^XA^XZ", name="job-1")
    assert (tmp_path / "lp-out").read_bytes() == b"^XA^XZ"
    assert (tmp_path / "lp-out.args").read_text().split() == [
        "-d",
        "zebra1",
        "-t",
        "job-1",
        "-o",
        "raw",
    ]


def test_cups_refusal_and_missing_lp(tmp_path: Path) -> None:
    lp = _fake_lp(tmp_path, 1)
    with pytest.raises(PrinterUnavailableError, match="does not exist"):
        CupsPrinter("nope", lp=str(lp)).send(b"x")
    with pytest.raises(PrinterUnavailableError, match="not found"):
        CupsPrinter("zebra1", lp=os.fspath(tmp_path / "no-lp")).send(b"x")

"""The public API, the documented formats, and the one-way dependency rule."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import devices
from devices import TcpPrinter, render_zpl
from tests.devices.devices_helpers import label, wait_for

ROOT = Path(devices.__file__).parent

PUBLIC = [
    "BarcodeError",
    "CupsPrinter",
    "CycleFlag",
    "CycleFormat",
    "CycleFormatError",
    "CycleKind",
    "CycleParser",
    "CycleRecord",
    "DacParser",
    "DeviceError",
    "DropFolderWatcher",
    "DuplicatePrintError",
    "FolderPrinter",
    "GS1Element",
    "GS1Message",
    "GenericParser",
    "ImsCsvParser",
    "JobNotFoundError",
    "JobState",
    "LabelCode",
    "LabelData",
    "LabelError",
    "LabelLayout",
    "LabelPlan",
    "Phase",
    "PrintJob",
    "PrintQueue",
    "PrintQueueError",
    "Printer",
    "PrinterError",
    "PrinterStatus",
    "PrinterStatusError",
    "PrinterUnavailableError",
    "Sample",
    "Scan",
    "ScanFramer",
    "ScanKind",
    "ScannerReader",
    "SerialCycleCapture",
    "SerialPrinter",
    "SerialStream",
    "TcpPrinter",
    "TestKind",
    "cycle_formats",
    "cycle_parser",
    "decode_label_code",
    "escape_internal",
    "gtin_check_digit",
    "label_payload",
    "normalize_gtin",
    "parse_cycle_bytes",
    "parse_element_string",
    "parse_gs1_date",
    "parse_host_status",
    "parse_human",
    "parse_scan",
    "plan_label",
    "register_cycle_format",
    "render_pdf",
    "render_zpl",
    "sanitize",
    "sniff_cycle_format",
    "unescape_internal",
]


def test_public_api_is_pinned() -> None:
    assert sorted(devices.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(devices, name) is not None


def test_errors_share_one_root() -> None:
    errors = [getattr(devices, n) for n in PUBLIC if n.endswith("Error")]
    assert all(issubclass(e, devices.DeviceError) for e in errors)
    assert issubclass(devices.BarcodeError, ValueError)
    assert issubclass(devices.PrinterUnavailableError, ConnectionError)


def test_devices_imports_nothing_of_ours_but_itself() -> None:
    ours = {"node", "crdt_model", "sync", "discovery", "bench", "tests"}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ours, f"{path}: imports {name}"


def test_no_print_outside_the_simulator_cli() -> None:
    for path in ROOT.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        assert not re.search(r"^\s*print\(", path.read_text(), re.M), path


def test_readme_documents_the_generic_format_and_internal_ais() -> None:
    readme = (ROOT / "README.md").read_text()
    for key in (
        "machine",
        "serial",
        "kind",
        "test",
        "cycle",
        "program",
        "started",
        "ended",
        "phase",
        "sample",
        "t_min",
        "t_max",
        "p_min",
        "p_max",
        "hold_s",
        "a0",
        "result",
    ):
        assert re.search(rf"^\| {key}\b|, {key}\b", readme, re.M), key
    for ai in ("91", "92", "93", "94", "95"):
        assert f"| {ai} |" in readme
    source = (ROOT / "_cycles" / "_generic.py").read_text()
    handled = set(re.findall(r'"([a-z_0-9]+)"', source.split("def _field")[1]))
    assert handled - {"cycle_no", "pass"} <= set(re.findall(r"[a-z_0-9]+", readme))


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devices.simulators", *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        cwd=ROOT.parent,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    return proc, first


def _end(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stdin):
            if stream is not None:
                stream.close()


def test_printer_simulator_cli(tmp_path: Path) -> None:
    proc, address = _start("printer", "--port", "0", "--out", str(tmp_path))
    try:
        host, port = address.split(":")
        TcpPrinter(host, int(port)).send(render_zpl(label()))
        assert wait_for(lambda: len(list(tmp_path.glob("*.zpl"))) == 1)
    finally:
        _end(proc)


def test_sterilizer_simulator_cli() -> None:
    proc, path = _start("sterilizer", "--pty", "--interval", "0", "--cycles", "1")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
        try:
            data = b""
            while b"*** CYCLE END ***" not in data:
                chunk = os.read(fd, 4096)
                assert chunk
                data += chunk
        finally:
            os.close(fd)
        (record,) = devices.parse_cycle_bytes(data, machine="STE-01")
        assert record.complete
        assert record.cycle_no == "00001"
    finally:
        _end(proc)

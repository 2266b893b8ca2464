"""Simulated sterilizer, washer and scanner: the texts they produce, and where they send it."""

from __future__ import annotations

import os
import random
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from ._pty import VirtualSerial

BOWIE_DICK = "BOWIE-DICK TEST"


def dac_cycle_text(
    cycle_no: int,
    start: datetime,
    *,
    program: str = "134C PRION 18MIN",
    serial: str = "STE-4711",
    hold_s: int = 1080,
    sample_every_s: int = 60,
    fail: bool = False,
) -> str:
    """Return one DAC-style sterilizer record (CRLF lines); `fail` dips below 134 C in hold."""
    rng = random.Random(cycle_no)  # noqa: S311 - deterministic simulated readings
    if "BOWIE" in program.upper():
        hold_s = min(hold_s, 210)
    lines = [
        "*** CYCLE START ***",
        f"SERIAL NO     : {serial}",
        f"PROGRAM       : {program}",
        f"CYCLE NO      : {cycle_no:05d}",
        f"DATE          : {start:%d.%m.%Y}",
        f"TIME          : {start:%H:%M:%S}",
    ]
    at = start
    for name, minutes in (
        ("PRE-VACUUM 1", 3),
        ("PRE-VACUUM 2", 3),
        ("PRE-VACUUM 3", 3),
        ("HEATING", 4),
    ):
        lines.append(f"PHASE {at:%H:%M:%S} {name:<18} OK")
        at += timedelta(minutes=minutes)
    lines.append(f"PHASE {at:%H:%M:%S} {'HOLD START':<18} OK")
    temps: list[float] = []
    pressures: list[float] = []
    for i in range(hold_s // sample_every_s + 1):
        temp = round(134.2 + rng.random() * 0.9, 1)
        if fail and i == 2:
            temp = 132.8
        pressure = round(3.04 + rng.random() * 0.08, 2)
        temps.append(temp)
        pressures.append(pressure)
        moment = at + timedelta(seconds=i * sample_every_s)
        lines.append(f"HOLD  {moment:%H:%M:%S}  {temp:5.1f} C  {pressure:4.2f} BAR")
    at += timedelta(seconds=hold_s)
    status = "FAIL" if fail else "OK"
    lines.append(f"PHASE {at:%H:%M:%S} {'HOLD END':<18} {status}")
    lines.append(f"PHASE {at:%H:%M:%S} {'DRYING':<18} OK")
    at += timedelta(minutes=15)
    lines.append(f"PHASE {at:%H:%M:%S} {'END':<18} OK")
    lines += [
        f"TEMP MIN/MAX  : {min(temps):.1f} / {max(temps):.1f} C",
        f"PRESS MIN/MAX : {min(pressures):.2f} / {max(pressures):.2f} BAR",
        f"HOLD TIME     : {hold_s // 60:02d}:{hold_s % 60:02d}",
        f"RESULT        : {'FAILED' if fail else 'PASSED'}",
        "*** CYCLE END ***",
        "",
    ]
    return "\r\n".join(lines)


def ims_cycle_csv(
    cycle_no: int,
    start: datetime,
    *,
    machine: str = "LD-02",
    serial: str = "IMS-55501",
    program: str = "INSTRU 93C 3MIN NORMAL",
    fail: bool = False,
) -> str:
    """Return one IMS-style washer CSV log (';' separator, decimal comma)."""
    rng = random.Random(cycle_no)  # noqa: S311 - deterministic simulated readings
    rows = [
        "IMS-LOG;1",
        f"Machine;{machine}",
        f"Serial;{serial}",
        f"Program;{program}",
        f"Cycle;{cycle_no:06d}",
        f"Start;{start:%d/%m/%Y %H:%M:%S}",
        "Time;Phase;T1 (C);T2 (C);P (mbar);A0",
    ]
    at = start
    a0 = 0.0
    plan = [("Prelavage", 4, 25.0), ("Lavage", 8, 55.0), ("Rincage", 3, 45.0)]
    plan += [("Desinfection", 1, 91.0)] + [("Desinfection", 1, 93.2)] * 4
    plan += [("Sechage", 10, 110.0)]
    for phase, minutes, base in plan:
        t1 = round(base + rng.random() * 0.6 - (8 if fail and phase == "Desinfection" else 0), 1)
        t2 = round(t1 - 0.2, 1)
        rows.append(f"{at:%H:%M:%S};{phase};{t1:.1f};{t2:.1f};1013;{a0:.0f}".replace(".", ","))
        if phase == "Desinfection" and min(t1, t2) >= 65:
            a0 += 10 ** ((min(t1, t2) - 80) / 10) * minutes * 60
        at += timedelta(minutes=minutes)
    rows += [f"End;{at:%d/%m/%Y %H:%M:%S}", f"Result;{'NOK' if fail else 'OK'}", ""]
    return "\r\n".join(rows)


def generic_cycle_text(
    cycle_no: int,
    start: datetime,
    *,
    machine: str = "STE-02",
    kind: str = "sterilizer",
    program: str = "NORMAL 134°",
    result: str = "pass",
) -> str:
    """Return one record in the generic key/value format."""
    hold = start + timedelta(minutes=12)
    lines = [
        "BEGIN CYCLE",
        f"machine: {machine}",
        f"kind: {kind}",
        f"cycle: {cycle_no}",
        f"program: {program}",
        f"started: {start.isoformat()}",
        f"phase: PRE-VACUUM; {start:%H:%M:%S}; ok",
        f"phase: HOLD; {hold:%H:%M:%S}; ok",
    ]
    lines += [
        f"sample: {hold + timedelta(minutes=i):%H:%M:%S}; {134.3 + i / 10:.1f}; 3.0{i}"
        for i in range(4)
    ]
    end = hold + timedelta(minutes=20)
    lines += [f"ended: {end.isoformat()}", "hold_s: 180", f"result: {result}", "END CYCLE", ""]
    return "\n".join(lines)


class SterilizerSimulator:
    """A sterilizer printing its cycle records on a (virtual) serial port."""

    def __init__(self, port: VirtualSerial, *, serial: str = "STE-4711") -> None:
        """Print on `port`."""
        self.port = port
        self.serial = serial

    def run_cycle(
        self,
        cycle_no: int,
        start: datetime,
        *,
        program: str = "134C PRION 18MIN",
        fail: bool = False,
        cut_after: int | None = None,
        chunk: int = 256,
        delay: float = 0.0,
    ) -> str:
        """Print one record (cut after `cut_after` bytes: a power cut); return what was sent."""
        text = dac_cycle_text(cycle_no, start, program=program, serial=self.serial, fail=fail)
        data = text.encode("cp1252")[:cut_after]
        for i in range(0, len(data), chunk):
            self.port.write(data[i : i + chunk])
            if delay:
                time.sleep(delay)
        return data.decode("cp1252")


class WasherSimulator:
    """A washer logger dropping one CSV file per cycle into a folder."""

    def __init__(self, folder: str | os.PathLike[str], *, machine: str = "LD-02") -> None:
        """Drop files into `folder`."""
        self.folder = Path(folder)
        self.machine = machine

    def drop_cycle(self, cycle_no: int, start: datetime, *, fail: bool = False) -> Path:
        """Write one cycle file atomically (temporary name, then rename); return its path."""
        text = ims_cycle_csv(cycle_no, start, machine=self.machine, fail=fail)
        return self.drop_text(f"{self.machine}_{cycle_no:06d}.csv", text.encode("cp1252"))

    def drop_text(self, name: str, data: bytes) -> Path:
        """Write `data` as file `name` atomically; return its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        target = self.folder / name
        os.replace(tmp, target)
        return target


class ScannerSimulator:
    """A serial barcode scanner on a virtual port; it can be unplugged and plugged."""

    def __init__(self, port: VirtualSerial, *, terminator: bytes = b"\r") -> None:
        """Send scans on `port`, each followed by `terminator`."""
        self.port = port
        self.terminator = terminator

    def scan(self, text: str | bytes, *, aim: str = "") -> None:
        """Send one scan, with an optional AIM symbology prefix such as "]d2"."""
        data = text.encode("latin-1") if isinstance(text, str) else text
        self.port.write(aim.encode("ascii") + data + self.terminator)

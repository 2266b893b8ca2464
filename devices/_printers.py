"""Printer transports: serial, raw TCP 9100, CUPS lp, folder; Zebra ~HS status."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import serial

from ._errors import PrinterError, PrinterStatusError, PrinterUnavailableError
from ._sanitize import sanitize
from ._zpl import HOST_STATUS_QUERY

_LOGGER = logging.getLogger(__name__)

STATUS_TIMEOUT = 2.0
SEND_TIMEOUT = 10.0
LP_TIMEOUT = 30.0


class Printer(Protocol):
    """Anything that takes one print job; blocking, run it off the event loop."""

    def send(self, data: bytes, *, name: str = "label") -> None:
        """Deliver `data`; PrinterUnavailableError if nothing was sent, PrinterError if unsure."""


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """The flags of a Zebra ~HS host status answer."""

    paper_out: bool
    paused: bool
    head_open: bool
    ribbon_out: bool
    buffer_full: bool
    formats_in_buffer: int

    @property
    def problems(self) -> list[str]:
        """Return the reasons the printer cannot print now, empty when it can."""
        flags = [
            (self.paper_out, "out of paper"),
            (self.head_open, "print head open"),
            (self.ribbon_out, "ribbon out"),
            (self.paused, "paused"),
            (self.buffer_full, "receive buffer full"),
        ]
        return [text for on, text in flags if on]


def parse_host_status(data: bytes) -> PrinterStatus:
    """Parse the three STX...ETX strings of a ~HS answer; raise PrinterError if malformed."""
    strings = [part.strip(b"\r\n\x02") for part in data.split(b"\x03")]
    fields = [s.decode("ascii", "replace").split(",") for s in strings if s]
    if len(fields) < 2 or len(fields[0]) < 6 or len(fields[1]) < 4:
        raise PrinterError(f"malformed ~HS status: {sanitize(data, 60)}")
    one, two = fields[0], fields[1]
    try:
        return PrinterStatus(
            paper_out=one[1] == "1",
            paused=one[2] == "1",
            head_open=two[2] == "1",
            ribbon_out=two[3] == "1",
            buffer_full=one[5] == "1",
            formats_in_buffer=int(one[4]),
        )
    except ValueError as err:
        raise PrinterError(f"malformed ~HS status: {sanitize(data, 60)}") from err


class TcpPrinter:
    """A raw TCP (port 9100) printer; checks ~HS status first so paper-out is not silent."""

    def __init__(
        self,
        host: str,
        port: int = 9100,
        *,
        check_status: bool = True,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        """Print to host:port; without `check_status` a paper-out printer looks fine."""
        self.host = host
        self.port = port
        self.check_status = check_status
        self.timeout = timeout

    def __repr__(self) -> str:
        """Return the printer's address."""
        return f"TcpPrinter({self.host}:{self.port})"

    def send(self, data: bytes, *, name: str = "label") -> None:
        """Connect, check status, send `data`, close."""
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as err:
            raise PrinterUnavailableError(f"printer {where} unreachable: {err}") from err
        with sock:
            if self.check_status:
                try:
                    sock.sendall(HOST_STATUS_QUERY)
                    answer = _read_status(sock.recv, sock.settimeout)
                except OSError as err:
                    raise PrinterUnavailableError(f"printer {where} status: {err}") from err
                _raise_for_status(answer, where)
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError as err:
                raise PrinterError(f"printer {where} failed while sending {name}: {err}") from err
        _LOGGER.debug("sent %s (%d bytes) to %s", name, len(data), where)


class SerialPrinter:
    """A printer on a serial port (pyserial URL or device path)."""

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        check_status: bool = False,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        """Print to `port`; `check_status` asks ~HS first (Zebra printers answer on serial)."""
        self.port = port
        self.baudrate = baudrate
        self.check_status = check_status
        self.timeout = timeout

    def __repr__(self) -> str:
        """Return the printer's port."""
        return f"SerialPrinter({self.port})"

    def send(self, data: bytes, *, name: str = "label") -> None:
        """Open the port, check status if asked, write `data`, close."""
        try:
            port = serial.serial_for_url(
                self.port, baudrate=self.baudrate, timeout=0.2, write_timeout=self.timeout
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise PrinterUnavailableError(f"printer {self.port} unavailable: {err}") from err
        with port:
            if self.check_status:
                try:
                    port.reset_input_buffer()
                    port.write(HOST_STATUS_QUERY)
                    answer = _read_status(port.read, None)
                except (serial.SerialException, OSError) as err:
                    raise PrinterUnavailableError(f"printer {self.port} status: {err}") from err
                _raise_for_status(answer, self.port)
            try:
                port.write(data)
                port.flush()
            except (serial.SerialException, OSError) as err:
                raise PrinterError(
                    f"printer {self.port} failed while sending {name}: {err}"
                ) from err


class CupsPrinter:
    """A CUPS queue, through the `lp` command; ZPL goes raw, PDF through the filters."""

    def __init__(self, destination: str, *, raw: bool = True, lp: str = "lp") -> None:
        """Print with `lp -d destination` (`-o raw` when `raw`)."""
        self.destination = destination
        self.raw = raw
        self.lp = lp

    def __repr__(self) -> str:
        """Return the CUPS destination."""
        return f"CupsPrinter({self.destination})"

    def send(self, data: bytes, *, name: str = "label") -> None:
        """Hand `data` to lp; a refusal by lp means nothing was queued."""
        lp = shutil.which(self.lp)
        if lp is None:
            raise PrinterUnavailableError(f"{self.lp} not found: is CUPS installed?")
        command = [lp, "-d", self.destination, "-t", name]
        if self.raw:
            command += ["-o", "raw"]
        try:
            done = subprocess.run(  # noqa: S603 - fixed program, arguments are not a shell line
                command, input=data, capture_output=True, timeout=LP_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise PrinterError(f"lp timed out for {self.destination}") from err
        except OSError as err:
            raise PrinterUnavailableError(f"lp failed for {self.destination}: {err}") from err
        if done.returncode != 0:
            reason = sanitize(done.stderr.strip() or done.stdout.strip(), 200)
            raise PrinterUnavailableError(f"lp refused the job for {self.destination}: {reason}")


class FolderPrinter:
    """Writes each job as a file into a folder (spooler pick-up, or a printer share)."""

    def __init__(self, folder: str | os.PathLike[str], *, suffix: str = ".zpl") -> None:
        """Write jobs into `folder` with file name suffix `suffix`."""
        self.folder = Path(folder)
        self.suffix = suffix

    def __repr__(self) -> str:
        """Return the target folder."""
        return f"FolderPrinter({self.folder})"

    def send(self, data: bytes, *, name: str = "label") -> None:
        """Write `data` to folder/name+suffix atomically (temporary file, then rename)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "label"
        target = self.folder / f"{safe}{self.suffix}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        except OSError as err:
            raise PrinterUnavailableError(f"folder {self.folder}: {err}") from err
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, target)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            raise PrinterUnavailableError(f"folder {self.folder}: {err}") from err


def _read_status(recv: Callable[[int], bytes], settimeout: Callable[[float], None] | None) -> bytes:
    """Read a ~HS answer (three ETX-terminated strings) within STATUS_TIMEOUT."""
    deadline = time.monotonic() + STATUS_TIMEOUT
    answer = b""
    while answer.count(b"\x03") < 3:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PrinterUnavailableError("no ~HS status answer (timeout)")
        if settimeout is not None:
            settimeout(left)
        try:
            chunk = recv(256)
        except TimeoutError as err:
            raise PrinterUnavailableError("no ~HS status answer (timeout)") from err
        if not chunk and settimeout is not None:
            # A socket read of nothing is the peer closing; a serial read of nothing a timeout.
            raise PrinterUnavailableError("printer closed the connection before its status")
        answer += chunk
    return answer


def _raise_for_status(answer: bytes, where: str) -> None:
    try:
        status = parse_host_status(answer)
    except PrinterError as err:
        raise PrinterUnavailableError(str(err)) from err
    if status.problems:
        raise PrinterStatusError(f"printer {where}: {', '.join(status.problems)}")

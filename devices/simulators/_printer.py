"""A Zebra-like ZPL printer on loopback TCP, and a small ZPL reader to check labels."""

from __future__ import annotations

import contextlib
import logging
import re
import selectors
import socket
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .._gs1 import GS

_LOGGER = logging.getLogger(__name__)

_COMMAND = re.compile(r"[\^~]([A-Z0-9@]{2})")
_FH_HEX = re.compile(r"\\([0-9A-Fa-f]{2})")


class PrinterMode(StrEnum):
    """How the simulated printer behaves."""

    READY = "ready"
    PAPER_OUT = "paper_out"  # answers ~HS with paper out, holds formats until READY again
    HEAD_OPEN = "head_open"  # answers ~HS with head open, holds formats
    REFUSE = "refuse"  # accepts the connection and closes it at once


@dataclass(frozen=True, slots=True)
class ZplField:
    """One ^FO...^FS field of a label."""

    x: int
    y: int
    kind: str  # "text", "datamatrix", "code128"
    params: str  # parameters of the font or barcode command
    data: str  # ^FD data as sent
    text: str  # data after ^FH hex decoding (UTF-8)


@dataclass(frozen=True, slots=True)
class ZplFormat:
    """One ^XA...^XZ label format: its commands and its fields."""

    commands: tuple[tuple[str, str], ...]
    fields: tuple[ZplField, ...]

    def command(self, name: str) -> str | None:
        """Return the parameters of the first command `name`, or None."""
        return next((params for cmd, params in self.commands if cmd == name), None)

    def field_kind(self, kind: str) -> list[ZplField]:
        """Return the fields of one kind, in order."""
        return [f for f in self.fields if f.kind == kind]


def parse_zpl(data: bytes) -> list[ZplFormat]:
    """Split ZPL into formats and fields (the subset our labels use)."""
    text = data.decode("ascii", "replace")
    formats: list[ZplFormat] = []
    for body in re.findall(r"\^XA(.*?)\^XZ", text, flags=re.S):
        formats.append(_parse_format(body))
    return formats


def datamatrix_element_string(field_data: str, escape: str = "_") -> str:
    """Turn ^BX quality 200 field data (FNC1 as _1) into a GS1 element string with GS."""
    out: list[str] = []
    i = 0
    while i < len(field_data):
        char = field_data[i]
        if char == escape and i + 1 < len(field_data):
            nxt = field_data[i + 1]
            out.append(GS if nxt == "1" else nxt if nxt == escape else char + nxt)
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out).lstrip(GS)


class ZplPrinterSimulator:
    """A raw-TCP ZPL printer on 127.0.0.1: stores formats, answers ~HS, can run out of paper."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, out_dir: str | Path | None = None
    ) -> None:
        """Listen on host:port (0 picks a free port); also write labels to `out_dir`."""
        self._server = socket.create_server((host, port))
        self._server.setblocking(False)
        self.host, self.port = self._server.getsockname()[:2]
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.mode = PrinterMode.READY
        self.printed: list[bytes] = []
        self.held: list[bytes] = []
        self.connections = 0
        self.status_queries = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._selector = selectors.DefaultSelector()
        self._buffers: dict[socket.socket, bytearray] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """host:port."""
        return f"{self.host}:{self.port}"

    def set_mode(self, mode: PrinterMode) -> None:
        """Change the mode; back to READY prints the held formats."""
        with self._cond:
            self.mode = mode
            if mode is PrinterMode.READY and self.held:
                for fmt in self.held:
                    self._print(fmt)
                self.held.clear()
                self._cond.notify_all()

    def labels(self) -> list[ZplFormat]:
        """Return the printed formats, parsed."""
        with self._lock:
            return [f for data in self.printed for f in parse_zpl(data)]

    def wait_printed(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until `count` formats are printed."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.printed) >= count, timeout)

    def start(self) -> ZplPrinterSimulator:
        """Serve in a thread."""
        self._selector.register(self._server, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="zpl-printer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for conn in list(self._buffers):
            self._close(conn)
        self._selector.close()
        self._server.close()

    def __enter__(self) -> ZplPrinterSimulator:
        """Start serving."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop serving."""
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server:
                    self._accept()
                else:
                    self._receive(sock)

    def _accept(self) -> None:
        try:
            conn, _ = self._server.accept()
        except BlockingIOError:
            return
        with self._lock:
            self.connections += 1
            refuse = self.mode is PrinterMode.REFUSE
        if refuse:
            conn.close()
            return
        conn.setblocking(False)
        self._buffers[conn] = bytearray()
        self._selector.register(conn, selectors.EVENT_READ)

    def _receive(self, conn: socket.socket) -> None:
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buffer = self._buffers[conn]
        buffer += chunk
        self._consume(conn, buffer)
        if not chunk:
            self._close(conn)

    def _consume(self, conn: socket.socket, buffer: bytearray) -> None:
        while True:
            query = buffer.find(b"~HS")
            start = buffer.find(b"^XA")
            if query >= 0 and (start < 0 or query < start):
                del buffer[: query + 3]
                self._answer_status(conn)
                continue
            end = buffer.find(b"^XZ", start) if start >= 0 else -1
            if start < 0 or end < 0:
                return
            fmt = bytes(buffer[start : end + 3])
            del buffer[: end + 3]
            with self._cond:
                if self.mode is PrinterMode.READY:
                    self._print(fmt)
                    self._cond.notify_all()
                else:
                    self.held.append(fmt)

    def _print(self, fmt: bytes) -> None:
        self.printed.append(fmt)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / f"label-{len(self.printed):06d}.zpl").write_bytes(fmt)

    def _answer_status(self, conn: socket.socket) -> None:
        with self._lock:
            self.status_queries += 1
            paper = "1" if self.mode is PrinterMode.PAPER_OUT else "0"
            head = "1" if self.mode is PrinterMode.HEAD_OPEN else "0"
            waiting = len(self.held)
        answer = (
            f"\x02030,{paper},0,0240,{waiting:03d},0,0,0,000,0,0,0\x03\r\n"
            f"\x02001,0,{head},0,0,2,4,0,00000000,1,000\x03\r\n"
            "\x021234,0\x03\r\n"
        )
        try:
            conn.sendall(answer.encode("ascii"))
        except OSError:
            _LOGGER.debug("status answer not delivered")

    def _close(self, conn: socket.socket) -> None:
        self._buffers.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        conn.close()


def _parse_format(body: str) -> ZplFormat:
    commands: list[tuple[str, str]] = []
    fields: list[ZplField] = []
    x = y = 0
    kind, params, hex_escape = "text", "", False
    pos = 0
    while True:
        match = _COMMAND.search(body, pos)
        if match is None:
            break
        name = match.group(1)
        if name == "FD":
            end = body.find("^FS", match.end())
            end = len(body) if end < 0 else end
            data = body[match.end() : end]
            text = _unhex(data) if hex_escape else data
            fields.append(ZplField(x, y, kind, params, data, text))
            commands.append((name, data))
            kind, params, hex_escape = "text", "", False
            pos = end
            continue
        nxt = _COMMAND.search(body, match.end())
        value = body[match.end() : nxt.start() if nxt else len(body)].strip("\r\n")
        commands.append((name, value))
        if name == "FO":
            x, y = (int(v or 0) for v in ([*value.split(","), "0"])[:2])
        elif name == "A0":
            kind, params = "text", value
        elif name == "BX":
            kind, params = "datamatrix", value
        elif name == "BC":
            kind, params = "code128", value
        elif name == "FH":
            hex_escape = True
        pos = match.end()
    return ZplFormat(tuple(commands), tuple(fields))


def _unhex(data: str) -> str:
    raw = bytearray()
    pos = 0
    for match in _FH_HEX.finditer(data):
        raw += data[pos : match.start()].encode("latin-1")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += data[pos:].encode("latin-1")
    return raw.decode("utf-8", "replace")

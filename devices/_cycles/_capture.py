"""Cycle capture: a serial printer-port tap and a drop folder of per-cycle files."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path

from .._sanitize import sanitize
from .._serial import RECONNECT_DELAY, SerialStream
from ._model import CycleFlag, CycleKind, CycleRecord
from ._registry import cycle_parser, parse_cycle_bytes

_LOGGER = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
SETTLE_TIME = 120.0
UNFINISHED_SETTLE_TIME = 3600.0
"""How long a file whose last cycle has no end yet must stay unchanged before it is taken
as it is (truncated): a logger may write nothing for many minutes within a cycle."""
"""Seconds a dropped file must stay unchanged: loggers append a row every 30 s or so."""
PROCESSED = "processed"
RecordHandler = Callable[[CycleRecord], None]
DISCONNECTED = "the port was disconnected before the cycle end"
SILENT = "nothing came from the machine for too long before the cycle end"
SILENCE_S = 90 * 60.0
"""Seconds without a byte that end an open record (truncated): no cycle phase prints
nothing for that long, a cable pulled between the machine and its adapter does."""


class SerialCycleCapture:
    """Reads a machine's printer port and hands out each finished cycle record.

    An unplugged port ends the open record there, flagged truncated: the lines read after
    the port comes back belong to whatever cycle runs then. So does `silence` seconds
    without a byte while a record is open (the cable pulled between the machine and its
    adapter, which the port does not see): no cycle prints nothing for that long.
    """

    def __init__(
        self,
        port: str,
        *,
        machine: str,
        on_record: RecordHandler,
        fmt: str = "dac",
        baudrate: int = 9600,
        tz: tzinfo | None = None,
        reconnect_delay: float = RECONNECT_DELAY,
        silence: float = SILENCE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Parse `fmt` from `port`; `on_record` runs in the reader thread."""
        self.machine = machine
        self.silence = silence
        self._clock = clock
        self._last_data = clock()
        self._parser = cycle_parser(fmt, machine=machine, tz=tz)
        self._on_record = on_record
        self._lock = threading.Lock()
        self.stream = SerialStream(
            port,
            self._data,
            baudrate=baudrate,
            on_disconnect=self._disconnected,
            on_idle=self._idle,
            reconnect_delay=reconnect_delay,
            name=machine,
        )

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self.stream.connected

    def start(self) -> None:
        """Start reading."""
        self.stream.start()

    def stop(self) -> None:
        """Stop reading; a record still open is handed out flagged truncated."""
        self.stream.stop()
        self._cut(None)

    def __enter__(self) -> SerialCycleCapture:
        """Start reading."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop reading."""
        self.stop()

    def _data(self, chunk: bytes) -> None:
        with self._lock:
            self._last_data = self._clock()
            records = self._parser.feed(chunk)
        self._emit(records)

    def _disconnected(self) -> None:
        # What comes after a reconnect may be another cycle: the open record ends here,
        # truncated (a failed cycle), and is never completed by the next cycle's lines.
        self._cut(DISCONNECTED)

    def _idle(self) -> None:
        with self._lock:
            records = self._parser.settle()  # a last line ended by a lone CR
        self._emit(records)
        if self._clock() - self._last_data > self.silence:
            self._last_data = self._clock()  # said once per silence
            self._cut(SILENT)

    def _cut(self, why: str | None) -> None:
        """Hand out the open record now, truncated (`why` added to its problems)."""
        with self._lock:
            records = self._parser.flush()
        self._emit(
            [
                dataclasses.replace(r, problems=(*r.problems, why))
                if why is not None and CycleFlag.TRUNCATED in r.flags
                else r
                for r in records
            ]
        )

    def _emit(self, records: list[CycleRecord]) -> None:
        for record in records:
            if record.flags:
                _LOGGER.warning(
                    "%s: cycle %s flagged %s",
                    self.machine,
                    sanitize(record.cycle_no or "?", 20),
                    ",".join(sorted(record.flags)),
                )
            self._on_record(record)


class DropFolderWatcher:
    """Parses per-cycle files a machine drops in a folder, then moves them to processed/.

    A file is read once its size and modification time have not changed for `settle`
    seconds (and between two polls): a logger that writes its file row by row during the
    cycle must not have it taken half written. A file whose last cycle has no end yet
    (truncated) is left for up to `unfinished_settle` seconds unchanged: a logger writing
    a long phase may be silent longer than `settle`; past that, the cycle is taken as it
    is, truncated (failed: the machine stopped mid-cycle, or its PC did). Names starting
    with "." or ending in .tmp/.part are skipped. The file is moved only after `on_record`
    returned for all its records, so a crash re-delivers rather than loses.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        machine: str | None,
        on_record: RecordHandler,
        fmt: str | None = None,
        tz: tzinfo | None = None,
        kind: CycleKind = CycleKind.WASHER,
        poll_interval: float | None = None,
        settle: float = SETTLE_TIME,
        unfinished_settle: float = UNFINISHED_SETTLE_TIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Watch `folder`; `fmt` None sniffs each file; `clock` counts the settle seconds."""
        self.folder = Path(folder)
        self.processed = self.folder / PROCESSED
        self.machine = machine
        self.fmt = fmt
        self.tz = tz
        self.kind = kind
        self.poll_interval = POLL_INTERVAL if poll_interval is None else poll_interval
        self.settle = settle
        self.unfinished_settle = unfinished_settle
        self._clock = clock
        self._on_record = on_record
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime, unchanged since
        self._unfinished: dict[str, tuple[int, int]] = {}  # name -> size, mtime when read so
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[CycleRecord]:
        """Handle every file unchanged for `settle` seconds; return their records."""
        out: list[CycleRecord] = []
        try:
            entries = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except OSError as err:
            _LOGGER.warning("drop folder %s: %s", self.folder, err)
            return out
        now = self._clock()
        current: dict[str, tuple[int, int, float]] = {}
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.endswith((".tmp", ".part")) or not entry.is_file():
                continue
            stat = entry.stat()
            known = self._seen.get(name)
            same = known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns)
            since = known[2] if known is not None and same else now
            current[name] = (stat.st_size, stat.st_mtime_ns, since)
            if not same or now - since < self.settle:
                continue
            waiting = now - since < max(self.settle, self.unfinished_settle)
            if waiting and self._unfinished.get(name) == (stat.st_size, stat.st_mtime_ns):
                continue  # read already: its last cycle had no end; nothing was added since
            records = self._handle(Path(entry.path), (stat.st_size, stat.st_mtime_ns), waiting)
            if records is not None:
                out += records
                current.pop(name)
        self._seen = current
        self._unfinished = {k: v for k, v in self._unfinished.items() if k in current}
        return out

    def start(self) -> None:
        """Poll in a daemon thread until stop()."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drop-folder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> DropFolderWatcher:
        """Start polling."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop polling."""
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_once()
            except Exception:
                _LOGGER.exception("drop folder %s: poll failed", self.folder)

    def _handle(
        self, path: Path, version: tuple[int, int], wait_unfinished: bool
    ) -> list[CycleRecord] | None:
        """Deliver a file's records and move it; None when it stays (unreadable, a handler
        failed, or its last cycle is unfinished and `wait_unfinished`)."""
        try:
            data = path.read_bytes()
        except OSError as err:
            _LOGGER.warning("drop folder: cannot read %s: %s", path.name, err)
            return None
        records = parse_cycle_bytes(
            data, machine=self.machine, fmt=self.fmt, tz=self.tz, kind=self.kind
        )
        if wait_unfinished and records and CycleFlag.TRUNCATED in records[-1].flags:
            if path.name not in self._unfinished:
                _LOGGER.info(
                    "drop folder: %s ends in a cycle not finished yet: waiting for the rest"
                    " (taken as it is after %g min unchanged)",
                    path.name,
                    self.unfinished_settle / 60,
                )
            self._unfinished[path.name] = version
            return None
        try:
            for record in records:
                self._on_record(record)
        except Exception:
            _LOGGER.exception("drop folder: handler failed for %s: kept for retry", path.name)
            return None
        self.processed.mkdir(exist_ok=True)
        target = self.processed / path.name
        n = 1
        while target.exists():
            target = self.processed / f"{path.stem}.{n}{path.suffix}"
            n += 1
        os.replace(path, target)
        return records

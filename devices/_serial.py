"""Serial input in a thread, reconnecting when the device is unplugged; the scanner reader."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import date

import serial

from ._errors import BarcodeError
from ._sanitize import sanitize
from ._scan import Scan, ScanFramer, parse_scan

_LOGGER = logging.getLogger(__name__)

RECONNECT_DELAY = 1.0
READ_TIMEOUT = 0.1


class SerialStream:
    """Reads a serial port in a daemon thread and hands every chunk to `on_data`.

    When the port fails (unplugged, not there yet) it is closed and opened again every
    `reconnect_delay` seconds until stop(). `port` is a device path or a pyserial URL.
    """

    def __init__(
        self,
        port: str,
        on_data: Callable[[bytes], None],
        *,
        baudrate: int = 9600,
        on_disconnect: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        reconnect_delay: float = RECONNECT_DELAY,
        name: str = "serial",
    ) -> None:
        """Prepare the reader; nothing is opened before start(). `on_idle` is called in the
        reader thread each time a read of READ_TIMEOUT brings nothing."""
        self.port = port
        self.baudrate = baudrate
        self.reconnect_delay = reconnect_delay
        self.name = name
        self.last_error: str | None = None
        self.connects = 0
        self.bytes_read = 0
        self._on_data = on_data
        self._on_disconnect = on_disconnect
        self._on_idle = on_idle
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the port is open; return False on timeout."""
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Start the reading thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(
                    self.port, baudrate=self.baudrate, timeout=READ_TIMEOUT
                )
            except (serial.SerialException, OSError, ValueError) as err:
                self._failed(err, connected=False)
                continue
            self.connects += 1
            self._connected.set()
            _LOGGER.info("%s: %s open", self.name, sanitize(self.port))
            try:
                with port:
                    self._read(port)
            except (serial.SerialException, OSError) as err:
                self._failed(err, connected=True)
            finally:
                self._connected.clear()

    def _read(self, port: serial.Serial) -> None:
        while not self._stop.is_set():
            chunk = port.read(max(1, port.in_waiting))
            if chunk:
                self.bytes_read += len(chunk)
                try:
                    self._on_data(chunk)
                except Exception:
                    _LOGGER.exception("%s: data handler failed", self.name)
            elif self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:
                    _LOGGER.exception("%s: idle handler failed", self.name)

    def _failed(self, err: BaseException, *, connected: bool) -> None:
        message = sanitize(str(err), 200)
        if message != self.last_error or connected:
            _LOGGER.warning("%s: %s: %s", self.name, sanitize(self.port), message)
        self.last_error = message
        if connected and self._on_disconnect is not None:
            try:
                self._on_disconnect()
            except Exception:
                _LOGGER.exception("%s: disconnect handler failed", self.name)
        self._stop.wait(self.reconnect_delay)


ScanListener = Callable[[Scan], None]


class ScannerReader:
    """A serial barcode scanner: frames, parses and hands out scans; reconnects by itself."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        terminator: bytes = b"\r",
        on_scan: ScanListener | None = None,
        on_error: Callable[[BarcodeError, bytes], None] | None = None,
        reconnect_delay: float = RECONNECT_DELAY,
        today: Callable[[], date] | None = None,
    ) -> None:
        """Read scans ending with `terminator` (CR, LF, CRLF, TAB...) from `port`."""
        self._framer = ScanFramer(terminator)
        self._listeners: list[ScanListener] = [] if on_scan is None else [on_scan]
        self._on_error = on_error
        self._today = today
        self._lock = threading.Lock()
        self.stream = SerialStream(
            port,
            self._data,
            baudrate=baudrate,
            on_disconnect=self._disconnected,
            reconnect_delay=reconnect_delay,
            name="scanner",
        )

    @property
    def connected(self) -> bool:
        """True while the scanner's port is open."""
        return self.stream.connected

    def add_listener(self, listener: ScanListener) -> Callable[[], None]:
        """Call `listener` (in the reader thread) for every scan; return its remover."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    async def async_scans(self) -> AsyncIterator[Scan]:
        """Yield scans on the running event loop until the consumer stops iterating."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Scan] = asyncio.Queue(maxsize=1000)

        def put(scan: Scan) -> None:
            if not queue.full():
                queue.put_nowait(scan)

        def listener(scan: Scan) -> None:
            loop.call_soon_threadsafe(put, scan)

        remove = self.add_listener(listener)
        try:
            while True:
                yield await queue.get()
        finally:
            remove()

    def start(self) -> None:
        """Start reading."""
        self.stream.start()

    def stop(self) -> None:
        """Stop reading and close the port."""
        self.stream.stop()

    def __enter__(self) -> ScannerReader:
        """Start reading."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop reading."""
        self.stop()

    def _data(self, chunk: bytes) -> None:
        for frame in self._framer.feed(chunk):
            self._frame(frame)

    def _disconnected(self) -> None:
        # A scan cut by the unplug is an error: its first half could pass for another code.
        for frame in self._framer.flush():
            err = BarcodeError("scan cut off by a disconnect")
            _LOGGER.info("%s: %s", err, sanitize(frame, 60))
            if self._on_error is not None:
                self._on_error(err, frame)

    def _frame(self, frame: bytes) -> None:
        try:
            scan = parse_scan(frame, self._today() if self._today else None)
        except BarcodeError as err:
            _LOGGER.info("unreadable scan %s: %s", sanitize(frame, 60), err)
            if self._on_error is not None:
                self._on_error(err, frame)
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(scan)
            except Exception:
                _LOGGER.exception("scan listener failed")

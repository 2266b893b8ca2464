"""A virtual serial device on a real pty that can be unplugged and plugged again."""

from __future__ import annotations

import os
import select
import tty
from pathlib import Path


class VirtualSerial:
    """The device end of a pty pair; readers open `path` as a serial port.

    With `link`, `path` is a stable symlink to the current pty (as udev's /dev/serial/by-id
    links are): unplug() removes it and closes the pty, plug() makes a new pty behind it.
    """

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        """Open the pty (plugged)."""
        self.link = None if link is None else Path(link)
        self.device = ""
        self._master = -1
        self._slave = -1
        self.plug()

    @property
    def path(self) -> str:
        """The path a reader opens: the link if any, else the pty device."""
        return str(self.link) if self.link is not None else self.device

    @property
    def plugged(self) -> bool:
        """True while the pty exists."""
        return self._master >= 0

    def plug(self) -> None:
        """Create a new pty (and point the link at it)."""
        if self.plugged:
            return
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.device = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.device)
            tmp.replace(self.link)

    def unplug(self) -> None:
        """Close the pty: a reader gets an I/O error; remove the link."""
        if not self.plugged:
            return
        if self.link is not None:
            self.link.unlink(missing_ok=True)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1

    def write(self, data: bytes) -> None:
        """Send bytes to the reader."""
        view = memoryview(data)
        while view:
            ready = select.select([], [self._master], [], 5.0)[1]
            if not ready:
                raise TimeoutError("pty not writable (is anyone reading?)")
            view = view[os.write(self._master, view) :]

    def read(self, timeout: float = 0.0) -> bytes:
        """Return what the reader sent, waiting up to `timeout` seconds."""
        if not select.select([self._master], [], [], timeout)[0]:
            return b""
        try:
            return os.read(self._master, 4096)
        except OSError:
            return b""

    def close(self) -> None:
        """Unplug for good."""
        self.unplug()

    def __enter__(self) -> VirtualSerial:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()

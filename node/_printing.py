"""Label printers of a node: a persistent print queue in front of each configured printer.

Configured in node.toml:

    [[printer]]
    name = "zebra-sterile"
    kind = "tcp"             # tcp | serial | cups | folder
    address = "10.20.0.50:9100"   # tcp; serial: port = "/dev/ttyUSB1"; cups: destination; folder: path
    format = "zpl"           # zpl | pdf

A job waits in DATA/print-queue/ until its printer takes it: a printer that is
off or out of paper leaves it queued, retried, with its error shown to the
operator (GET /api/printers); nothing is lost across a restart, and a label
already printed goes out again only as a reprint. Done and cancelled jobs are
deleted after KEEP_FINISHED_DAYS days, at start-up and once a day. TCP printers
of format "zpl" are asked Zebra's ~HS status first; a "pdf" one is not (it
would print the question and never answer).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import devices

if TYPE_CHECKING:
    from ._node import Node

_LOGGER = logging.getLogger(__name__)


KEEP_FINISHED_DAYS = 7
"""Done and cancelled print jobs are deleted after this many days (at start-up, then daily)."""


class PrinterConfigError(ValueError):
    """A [[printer]] entry that cannot be used."""


def _printer(entry: dict[str, Any]) -> devices.Printer:
    kind = entry.get("kind", "tcp")
    if kind == "tcp":
        host, _, port = str(entry.get("address", "")).rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            raise PrinterConfigError("a tcp printer needs address = HOST:PORT")
        # ~HS is Zebra's: a PDF printer on 9100 would take it as data and never answer.
        return devices.TcpPrinter(host, int(port), check_status=entry.get("format") != "pdf")
    if kind == "serial" and entry.get("port"):
        return devices.SerialPrinter(str(entry["port"]), int(entry.get("baud", 9600)))
    if kind == "cups" and entry.get("destination"):
        # ZPL goes raw to the printer; a PDF needs CUPS's filters (raw, it prints nothing)
        return devices.CupsPrinter(str(entry["destination"]), raw=entry.get("format") != "pdf")
    if kind == "folder" and entry.get("path"):
        return devices.FolderPrinter(str(entry["path"]), suffix=f".{entry.get('format', 'zpl')}")
    raise PrinterConfigError(
        f"printer {str(entry.get('name'))[:40]!r}: unknown kind or missing address"
    )


class Printing:
    """The node's print queue and printers."""

    def __init__(self, node: Node, config: dict[str, Any]) -> None:
        self.node = node
        entries = config.get("printer", [])
        self.formats: dict[str, str] = {}
        printers: dict[str, devices.Printer] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("name"):
                raise PrinterConfigError("a [[printer]] needs a name")
            name = str(entry["name"])
            printers[name] = _printer(entry)
            self.formats[name] = "pdf" if entry.get("format") == "pdf" else "zpl"
        self.queue = devices.PrintQueue(
            node.data.root / "print-queue", printers, keep_finished=KEEP_FINISHED_DAYS * 86_400
        )

    def start(self) -> None:
        """Start printing queued jobs (a thread)."""
        self.queue.start()

    async def async_stop(self) -> None:
        """Stop the printing thread; queued jobs wait on disk."""
        await asyncio.to_thread(self.queue.stop)

    def submit(self, label_id: str, printer: str) -> dict[str, Any]:
        """Queue a recorded label for a printer; the job as the operator sees it."""
        data = self.node.label_for_printing(label_id)
        if data is None:
            raise devices.PrintQueueError(f"no label {label_id[:40]}")
        fmt = self.formats.get(printer)
        if fmt is None:
            raise devices.PrintQueueError(f"unknown printer {printer[:40]!r}")
        layout = self.node.label_layout()
        body = (
            devices.render_pdf(data, layout) if fmt == "pdf" else devices.render_zpl(data, layout)
        )
        job = self.queue.submit(
            body, label_id=label_id, printer=printer, fmt=fmt, reprint=data.reprint
        )
        return job.to_json()

    def status(self) -> dict[str, Any]:
        """Printers and jobs not yet done, with their errors."""
        jobs = [
            j.to_json()
            for j in self.queue.jobs()
            if j.state not in (devices.JobState.DONE, devices.JobState.CANCELLED)
        ]
        return {"printers": sorted(self.formats), "jobs": jobs}

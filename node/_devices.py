"""The node's devices: machine cycle capture (serial taps, drop folders) turned into events.

Configured in node.toml:

    [[cycle_tap]]            # a sterilizer's or washer's printer port
    port = "/dev/ttyUSB0"
    machine = "AUTO-2"
    format = "dac"           # dac | ims | generic
    baud = 9600

    [[cycle_folder]]         # a folder where a machine's PC drops one file per cycle
    path = "/srv/lavage"
    machine = "LAV-1"        # optional when the files name the machine
    kind = "washer"          # washer | sterilizer

Each record becomes a `wash.cycle`, `steri.cycle` or `steri.test` event with its raw
text; a cycle event without a load number belongs to the machine's open load. A record
the event rules cannot take (garbled beyond use) is kept: its raw text is written to
DATA/devices/unreadable/ and a `note` event says where, so nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import crdt_model as cm
import devices

from ._auth import Principal

if TYPE_CHECKING:
    from ._node import Node

_LOGGER = logging.getLogger(__name__)

CYCLE_TYPES = ("wash.cycle", "steri.cycle", "steri.test")


class DeviceConfigError(ValueError):
    """A device entry of node.toml that cannot be used."""


class CycleCapture:
    """Runs every configured cycle tap and drop folder and records what they capture."""

    def __init__(self, node: Node, config: dict[str, Any]) -> None:
        self.node = node
        self._taps: list[devices.SerialCycleCapture] = []
        self._folders: list[devices.DropFolderWatcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seen: set[tuple[str, str, str]] = set()
        self._config = config
        self.unreadable = node.data.root / "devices" / "unreadable"

    def start(self) -> None:
        """Open every port and folder (reader threads)."""
        self._loop = asyncio.get_running_loop()
        for event in self.node.iter_events():
            if event["type"] in CYCLE_TYPES:
                self._seen.add(self._key(event))
        tz = self.node.timezone
        for entry in self._config.get("cycle_tap", []):
            if not isinstance(entry, dict) or not entry.get("port") or not entry.get("machine"):
                raise DeviceConfigError("a [[cycle_tap]] needs port and machine")
            tap = devices.SerialCycleCapture(
                str(entry["port"]),
                machine=str(entry["machine"]),
                on_record=self._from_thread,
                fmt=str(entry.get("format", "dac")),
                baudrate=int(entry.get("baud", 9600)),
                tz=tz,
            )
            tap.start()
            self._taps.append(tap)
        for entry in self._config.get("cycle_folder", []):
            if not isinstance(entry, dict) or not entry.get("path"):
                raise DeviceConfigError("a [[cycle_folder]] needs path")
            kind = (
                devices.CycleKind.WASHER
                if entry.get("kind", "washer") == "washer"
                else devices.CycleKind.STERILIZER
            )
            watcher = devices.DropFolderWatcher(
                str(entry["path"]),
                machine=entry.get("machine"),
                on_record=self._from_thread,
                fmt=entry.get("format"),
                tz=tz,
                kind=kind,
            )
            watcher.start()
            self._folders.append(watcher)

    async def async_stop(self) -> None:
        """Close ports and folders; record what they still hand out."""
        for tap in self._taps:
            await asyncio.to_thread(tap.stop)
        for watcher in self._folders:
            await asyncio.to_thread(watcher.stop)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @staticmethod
    def _key(event: dict[str, Any]) -> tuple[str, str, str]:
        return (
            event["type"],
            str(event.get("machine")),
            str(event.get("cycle_no") or event.get("hlc")),
        )

    def _from_thread(self, record: devices.CycleRecord) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            _LOGGER.error("cycle record of %s arrived while the node is stopped", record.machine)
            return
        loop.call_soon_threadsafe(self._schedule, record)

    def _schedule(self, record: devices.CycleRecord) -> None:
        task = asyncio.get_running_loop().create_task(self.async_record(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def async_record(self, record: devices.CycleRecord) -> dict[str, Any] | None:
        """Record one captured cycle; None when it was recorded before (a file seen twice)."""
        body = {k: v for k, v in record.to_event(self.node.timezone).items() if v is not None}
        if record.flags:
            body["flags"] = sorted(str(f) for f in record.flags)
        key = self._key(body) if body.get("cycle_no") else None
        if key is not None and key in self._seen:
            _LOGGER.info(
                "cycle %s of %s was recorded already", body.get("cycle_no"), record.machine
            )
            return None
        who = Principal(name=f"device:{str(record.machine)[:40]}", role="operator")
        try:
            event = await self.node.async_record(body, who)
        except cm.EventError as err:
            return await self._keep_unreadable(record, str(err), who)
        if key is not None:
            self._seen.add(key)
        return event

    async def _keep_unreadable(
        self, record: devices.CycleRecord, reason: str, who: Principal
    ) -> dict[str, Any]:
        self.unreadable.mkdir(parents=True, exist_ok=True)
        path = self.unreadable / f"{int(time.time() * 1000)}-{abs(hash(record.raw)) % 10**8}.txt"
        path.write_text(record.raw, encoding="utf-8")
        _LOGGER.warning("unreadable cycle record of %s kept in %s", str(record.machine)[:40], path)
        text = (
            f"Enregistrement de cycle illisible ({str(record.machine)[:40]}), conservé dans {path}. "
            f"Motif : {reason[:300]}\n---\n{record.raw[:3000]}"
        )
        return await self.node.async_record({"type": "note", "text": text, "ref": "cycle"}, who)

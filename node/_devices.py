"""The node's devices: machine cycle capture (serial taps, drop folders) turned into events.

Configured in node.toml:

    [[cycle_tap]]            # a sterilizer's or washer's printer port
    port = "/dev/ttyUSB0"
    machine = "AUTO-2"
    format = "dac"           # dac | ims_csv | generic
    baud = 9600
    silence_minutes = 90     # no byte for this long ends an open record, truncated

    [[cycle_folder]]         # a folder where a machine's PC drops one file per cycle
    path = "/srv/lavage"
    machine = "LAV-1"        # optional when the files name the machine (DAC files do not:
                             # without it their cycles go under the sterilizer's serial)
    format = "ims_csv"       # optional: else each file's format is recognised
    kind = "washer"          # washer | sterilizer
    settle = 120             # seconds a file must stay unchanged before it is read
    settle_unfinished = 3600 # ... when its last cycle has no end yet (a logger writing the
                             # cycle as it runs): then it is taken as it is, truncated

Each record becomes a `wash.cycle`, `steri.cycle` or `steri.test` event with its raw
text; a cycle event without a load number belongs to the machine's open load. A record
the event rules cannot take (garbled beyond use), and stray text that shows no cycle
(neither its start nor its number: it must not take the open load), is kept: its raw
text is written to DATA/devices/unreadable/ and a `note` event says where, so nothing
is dropped. The same printout delivered twice (drop folders deliver at least once) is
recorded once: records are told apart by their content, not by their cycle number,
which machines restart (every day, after a reset) or print unreadably.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import crdt_model as cm
import devices

from ._auth import Principal

if TYPE_CHECKING:
    from ._node import Node

_LOGGER = logging.getLogger(__name__)

CYCLE_TYPES = ("wash.cycle", "steri.cycle", "steri.test")
SEEN_DAYS = 7
"""How long a recorded printout is remembered; drop folders re-deliver within minutes."""
SEEN_MAX = 20_000
"""At most this many printouts remembered (a bound whatever the machines send)."""
MAX_LOAD_TO_CYCLE_MS = 3 * 3_600_000
"""The longest a load waits in a machine before its cycle starts, for a cycle to be taken
for that load's rather than the latest load's."""
CLOCK_MARGIN_MS = 10 * 60_000
"""How far a machine's clock may be behind the node's before a cycle is taken for an older
load's than the latest loaded (a clock a few minutes off changes nothing)."""
_DAY_MS = 86_400_000
FOLDER_WAIT_S = 60.0
"""A drop folder's record must be stored within this, or its file is kept for the next poll."""
_KEPT_NAME = re.compile(r"unreadable/\d+-([0-9a-f]{64})\.txt")
"""The name of a printout kept raw, as its note says it: its digest."""
STRAY = "ni début ni numéro de cycle : ce texte n'est le cycle d'aucune charge"


def _positive(entry: dict[str, Any], key: str, unit: str, *, zero: bool = False) -> float:
    """A number setting of a capture entry; DeviceConfigError for anything else."""
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise DeviceConfigError(f"{key} is a number of {unit}")
    if value == 0 and not zero:
        raise DeviceConfigError(f"{key} is a number of {unit}, above 0")
    return float(value)


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
        self._seen: dict[str, int] = {}  # digest -> when recorded (ms), oldest first
        self._storing: dict[str, asyncio.Future[bool]] = {}
        """Digest -> whether its write, under way, ended stored."""
        self._config = config
        self.unreadable = node.data.root / "devices" / "unreadable"

    def start(self) -> None:
        """Open every port and folder (reader threads)."""
        self._loop = asyncio.get_running_loop()
        since = f"{max(0, self.node._clock() - SEEN_DAYS * _DAY_MS):013d}"
        for event in self.node.iter_events(after=since):
            if event["type"] in CYCLE_TYPES and isinstance(event.get("raw"), str):
                self._seen[self._key(event)] = int(event["hlc"][:13])
            elif event["type"] == "note" and str(event.get("user", "")).startswith("device:"):
                kept = _KEPT_NAME.search(str(event.get("text", "")))
                if kept is not None:  # a printout kept raw (unreadable, or stray text)
                    self._seen[kept.group(1)] = int(event["hlc"][:13])
        self._forget(self.node._clock())
        tz = self.node.timezone
        known = devices.cycle_formats()
        for section in ("cycle_tap", "cycle_folder"):
            for entry in self._config.get(section, []):
                fmt = entry.get("format") if isinstance(entry, dict) else None
                if fmt is not None and fmt not in known:
                    raise DeviceConfigError(
                        f"[[{section}]] format {str(fmt)[:30]!r} is unknown; known: "
                        + ", ".join(sorted(known))
                    )
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
            if "silence_minutes" in entry:  # else the capture's own default
                tap.silence = _positive(entry, "silence_minutes", "minutes") * 60
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
                on_record=self._from_folder,
                fmt=entry.get("format"),
                tz=tz,
                kind=kind,
            )
            if "settle" in entry:  # else the watcher's own default
                watcher.settle = _positive(entry, "settle", "seconds", zero=True)
            if "settle_unfinished" in entry:
                watcher.unfinished_settle = _positive(
                    entry, "settle_unfinished", "seconds", zero=True
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
    def _key(event: dict[str, Any]) -> str:
        """What tells one printout from another: its machine and its text, blanks aside."""
        lines = (" ".join(line.split()) for line in str(event.get("raw", "")).splitlines())
        text = "\n".join(line for line in lines if line)
        whole = f"{event['type']}\0{event.get('machine')}\0{text}"
        return hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()

    def _forget(self, now_ms: int) -> None:
        """Drop printouts older than SEEN_DAYS, and the oldest beyond SEEN_MAX."""
        oldest = now_ms - SEEN_DAYS * _DAY_MS
        seen = self._seen
        while seen:
            key, at = next(iter(seen.items()))
            if at >= oldest and len(seen) <= SEEN_MAX:
                break
            del seen[key]

    def _from_thread(self, record: devices.CycleRecord) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            _LOGGER.error("cycle record of %s arrived while the node is stopped", record.machine)
            return
        loop.call_soon_threadsafe(self._schedule, record)

    def _from_folder(self, record: devices.CycleRecord) -> None:
        """A drop folder's record, recorded durably before the watcher moves its file away
        (raises otherwise: the file stays, and is read again at the next poll)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the node is stopped: the file is kept for later")
        asyncio.run_coroutine_threadsafe(self.async_record(record), loop).result(FOLDER_WAIT_S)

    def _schedule(self, record: devices.CycleRecord) -> None:
        task = asyncio.get_running_loop().create_task(self.async_record(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: self._not_recorded(record, done))

    def _not_recorded(self, record: devices.CycleRecord, task: asyncio.Task[Any]) -> None:
        """A tap's record the node could not store (its disk failed...): the tap cannot
        hand it out again, so its text goes to a file, and the log says where."""
        if task.cancelled() or task.exception() is None:
            return
        err = task.exception()
        try:  # one file a record, several failing at once too
            path = self._keep_text(record.raw, f"{secrets.token_hex(4)}-not-recorded")
        except OSError as write_err:
            _LOGGER.critical(
                "cycle %s of %s could not be recorded (%s) nor kept (%s); its text:\n%s",
                record.cycle_no,
                str(record.machine)[:40],
                err,
                write_err,
                record.raw[:4000],
            )
            return
        _LOGGER.critical(
            "cycle %s of %s could not be recorded (%s): its text is kept in %s; record it"
            " once the node is back",
            record.cycle_no,
            str(record.machine)[:40],
            err,
            path,
        )

    async def async_record(self, record: devices.CycleRecord) -> dict[str, Any] | None:
        """Record one captured cycle; None when it was recorded before (a file seen twice)."""
        body = {k: v for k, v in record.to_event(self.node.timezone).items() if v is not None}
        if record.flags:
            body["flags"] = sorted(str(f) for f in record.flags)
        key = self._key(body)
        if key in self._seen:
            pending = self._storing.get(key)
            if pending is not None and not await asyncio.shield(pending):
                # its first delivery is still being stored: this one says it is done only
                # once that one is (a drop folder moves the file away then)
                raise RuntimeError("the first delivery of this printout was not stored")
            _LOGGER.info(
                "cycle %s of %s was recorded already", body.get("cycle_no"), record.machine
            )
            return None
        # Marked before the write is awaited: the same printout handed out twice at once
        # (two files of one cycle in one poll) must find it taken.
        now = self.node._clock()
        self._seen[key] = now
        self._forget(now)
        stored = asyncio.get_running_loop().create_future()
        self._storing[key] = stored
        try:
            event = await self._record(record, body, key)
        except BaseException:
            self._seen.pop(key, None)  # not recorded: a new delivery may try again
            stored.set_result(False)
            raise
        finally:
            self._storing.pop(key, None)
            if not stored.done():
                stored.set_result(True)
        return event

    async def _record(
        self, record: devices.CycleRecord, body: dict[str, Any], key: str
    ) -> dict[str, Any]:
        who = Principal(name=f"device:{str(record.machine)[:40]}", role="operator")
        if not record.identified:
            return await self._keep_unreadable(record, STRAY, who, key, title="Texte hors cycle")
        load = self._load_of(body)
        if load is not None:  # after the key: the same printout again finds its first record
            body = {**body, "load": load}
        try:
            return await self.node.async_record(body, who)
        except cm.EventError as err:
            return await self._keep_unreadable(record, str(err), who, key)

    def _load_of(self, body: dict[str, Any]) -> str | None:
        """The open load a cycle that names none belongs to, when it is not the machine's
        latest: a cycle that started well before the latest load was loaded (its file read
        after the next load was recorded, a backlog after an outage) is an older load's.
        None leaves it to the latest open load, as the fold does."""
        kinds = {"wash.cycle": "wash", "steri.cycle": "steri"}
        if body["type"] not in kinds or "load" in body or not body.get("started"):
            return None
        fold = self.node.trace.fold
        machine = str(body["machine"])
        waiting = fold.open_loads(machine, kinds[body["type"]])
        if len(waiting) < 2:
            return None
        started = datetime.fromisoformat(str(body["started"])).timestamp() * 1000
        loaded = {
            no: int(view.loaded[:13])
            for no in waiting
            if (view := fold.load(no)) is not None and view.loaded is not None
        }
        if loaded.get(waiting[-1], 0) <= started + CLOCK_MARGIN_MS:
            return None  # the latest load was in the machine when the cycle started
        # Only a load loaded since the machine's previous cycle, and shortly before this
        # one started: a load left open for good (its cycle never came) or a machine clock
        # far behind must not draw a cycle away from the load in the machine.
        previous = fold.last_cycle(machine)
        since = int(previous[:13]) if previous is not None else 0
        fitting = [
            no
            for no in waiting[:-1]
            if no in loaded
            and since <= loaded[no] <= started + CLOCK_MARGIN_MS
            and started - loaded[no] <= MAX_LOAD_TO_CYCLE_MS
        ]
        return fitting[-1] if fitting else None

    def _keep_text(self, raw: str, name: str) -> Path:
        """A printout's text, exactly, in DATA/devices/unreadable/<ms>-<name>.txt."""
        self.unreadable.mkdir(parents=True, exist_ok=True)
        path = self.unreadable / f"{int(time.time() * 1000)}-{name}.txt"
        with path.open("x", encoding="utf-8", newline="") as fh:
            fh.write(raw)
        return path

    async def _keep_unreadable(
        self,
        record: devices.CycleRecord,
        reason: str,
        who: Principal,
        key: str,
        title: str = "Enregistrement de cycle illisible",
    ) -> dict[str, Any]:
        # the file is named by the printout's digest: the note says it, and a restart reads it
        # back from the note (the same text delivered again is not kept twice)
        path = self._keep_text(record.raw, key)
        _LOGGER.warning("unreadable cycle record of %s kept in %s", str(record.machine)[:40], path)
        text = (
            f"{title} ({str(record.machine)[:40]}), conservé dans {path}. "
            f"Motif : {reason[:300]}\n---\n{record.raw[:3000]}"
        )
        return await self.node.async_record({"type": "note", "text": text, "ref": "cycle"}, who)


TERMINATORS = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n", "tab": b"\t"}
SCANS_KEPT = 200
"""Scans kept per station for stations that look (a bounded ring)."""
MAX_WAIT_S = 25.0


def resolve_scan(node: Node, scan: devices.Scan) -> dict[str, Any]:
    """What a scan names: a set instance (its code, or the DataMatrix of a label this
    cluster printed), an instrument (and its set) or a plain code."""
    if scan.kind is devices.ScanKind.INSTANCE:
        return {"set": scan.text}
    if scan.gs1 is None:
        return {"code": scan.text}
    label = devices.decode_label_code(scan.gs1)
    if label is not None:
        return {"set": label.instance, "label": label.label_id}
    gtin, serial = scan.gs1.get("01"), scan.gs1.get("21")
    found: dict[str, Any] = {"gtin": gtin, "serial": serial}
    ref = node.trace.fold.reference
    doc = None if ref is None else node.docs.get(cm.ref_doc_name(ref.export_id))
    if doc is not None and gtin is not None:
        for row in cm.read_table(doc, "instruments"):
            if row.get("gtin") == gtin and (serial is None or str(row.get("serial")) == serial):
                found.update(instrument=row.get("udi"), set=row.get("set_instance") or None)
                break
    return found


class Scanners:
    """Serial scanners of this node: each scan becomes input of its station.

    node.toml:

        [[scanner]]
        port = "/dev/ttyACM0"
        station = "sale-1"
        terminator = "cr"      # cr | lf | crlf | tab
        baud = 9600

    A station (its web page, or any client) reads `GET /api/scans?station=&after=&wait=`.
    """

    def __init__(self, node: Node, config: dict[str, Any]) -> None:
        self.node = node
        self._entries = config.get("scanner", [])
        self._readers: list[devices.ScannerReader] = []
        self._scans: dict[str, list[dict[str, Any]]] = {}
        self._seq = 0
        self.boot = secrets.token_hex(4)
        """Names this run's numbering of scans: it starts again at 1 when the node does."""
        self._changed: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def stations(self) -> list[str]:
        """Stations that have a scanner."""
        return sorted({str(e.get("station")) for e in self._entries if isinstance(e, dict)})

    def start(self) -> None:
        """Open every scanner's port (reader threads)."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        for entry in self._entries:
            if not isinstance(entry, dict) or not entry.get("port") or not entry.get("station"):
                raise DeviceConfigError("a [[scanner]] needs port and station")
            terminator = TERMINATORS.get(str(entry.get("terminator", "cr")))
            if terminator is None:
                raise DeviceConfigError(f"scanner terminator is one of {', '.join(TERMINATORS)}")
            station = str(entry["station"])
            reader = devices.ScannerReader(
                str(entry["port"]),
                baudrate=int(entry.get("baud", 9600)),
                terminator=terminator,
                on_scan=self._scan_handler(station),
                on_error=self._error_handler(station),
            )
            reader.start()
            self._readers.append(reader)

    def _scan_handler(self, station: str) -> Callable[[devices.Scan], None]:
        return lambda scan: self._from_thread(station, scan, None)

    def _error_handler(self, station: str) -> Callable[[devices.BarcodeError, bytes], None]:
        return lambda err, _raw: self._from_thread(station, None, str(err))

    async def async_stop(self) -> None:
        """Close every scanner's port."""
        for reader in self._readers:
            await asyncio.to_thread(reader.stop)

    def _from_thread(self, station: str, scan: devices.Scan | None, error: str | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._add, station, scan, error)

    def _add(self, station: str, scan: devices.Scan | None, error: str | None) -> None:
        self._seq += 1
        entry: dict[str, Any] = {"seq": self._seq, "station": station, "at": time.time()}
        if scan is None:
            entry.update(kind="error", error=(error or "unreadable scan")[:200])
        else:
            entry.update(kind=str(scan.kind), text=scan.text, **self._resolve(scan))
        ring = self._scans.setdefault(station, [])
        ring.append(entry)
        del ring[:-SCANS_KEPT]
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def _resolve(self, scan: devices.Scan) -> dict[str, Any]:
        return resolve_scan(self.node, scan)

    def answer(self, scans: list[dict[str, Any]]) -> dict[str, Any]:
        """What a reader of scans gets: the scans, the number to ask after next time, and
        this run's name (a reader that held a number of another run starts afresh)."""
        return {"scans": scans, "last": scans[-1]["seq"] if scans else self._seq, "boot": self.boot}

    async def async_scans(self, station: str, after: int, wait: float) -> list[dict[str, Any]]:
        """Scans of a station newer than `after`, waiting up to `wait` seconds for one."""
        deadline = time.monotonic() + min(wait, MAX_WAIT_S)
        while True:
            found = [s for s in self._scans.get(station, []) if s["seq"] > after]
            left = deadline - time.monotonic()
            if found or left <= 0 or self._changed is None:
                return found
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    return []

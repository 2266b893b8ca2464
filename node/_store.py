"""Durable LMDB store: an append-only log of document updates, compacted into snapshots.

Every update a node makes or accepts is appended to the log and fsynced before
anyone is told it exists. One writer thread owns every write transaction and
commits whatever has queued up meanwhile in a single durable commit (group
commit). Compaction merges a document's snapshot and log into a new snapshot
and deletes the merged log entries in the same transaction, so a crash at any
instant leaves either the old or the new form, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import struct
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import pycrdt

from crdt_model import CodecError, decode, encode

_LOGGER = logging.getLogger(__name__)

FORMAT = b"sterimesh-store/1"
DEFAULT_MAP_SIZE = 32 * 1024**3
"""Address space reserved for the store; the file grows only as data does (Linux)."""
MAX_BATCH = 512
"""Most operations folded into one durable commit."""

_UPDATE_MAGIC = b"U1"
_SNAP_MAGIC = b"S1"
_HEAD = struct.Struct(">2sI")
_SNAP_HEAD = struct.Struct(">2sIQ")
_SEQ = struct.Struct(">Q")


class StoreError(Exception):
    """The store cannot be used: damaged, of another format, or not initialised."""


class StoreDamagedError(StoreError):
    """The store's content fails its checks; the node refuses to start on it."""


@dataclass
class DocRecords:
    """What the store holds for one document: a snapshot and the log after it."""

    snapshot: bytes | None = None
    snapshot_seq: int = 0
    updates: list[bytes] = field(default_factory=list)
    last_seq: int = 0


def _log_key(doc: str, seq: int) -> bytes:
    return doc.encode() + b"\x00" + _SEQ.pack(seq)


def _pack_update(payload: bytes) -> bytes:
    return _HEAD.pack(_UPDATE_MAGIC, zlib.crc32(payload)) + payload


def _checked(value: bytes, head: struct.Struct, magic: bytes, doc: str) -> bytes:
    """The payload of a stored value, its checksum verified (compaction never merges what
    has rotted into a fresh, valid-looking snapshot)."""
    if len(value) < head.size:
        raise StoreDamagedError(f"an entry of {doc} is truncated: not compacted")
    found, crc = head.unpack_from(value)[:2]
    payload = value[head.size :]
    if found != magic or zlib.crc32(payload) != crc:
        raise StoreDamagedError(f"an entry of {doc} fails its checksum: not compacted")
    return payload


def _pack_snapshot(seq: int, payload: bytes) -> bytes:
    return _SNAP_HEAD.pack(_SNAP_MAGIC, zlib.crc32(payload), seq) + payload


Op = Callable[[lmdb.Transaction], Any]
Waiter = Future[Any] | asyncio.Future[Any]
"""Who hears of an operation's commit: a thread (Future) or a coroutine (asyncio.Future)."""


def _owner_only(folder: Path) -> None:
    """Take group and others' access away from the store folder and its files (older nodes')."""
    for item in (folder, *folder.iterdir()):
        mode = item.stat().st_mode & 0o777
        if mode & 0o077:
            item.chmod(mode & 0o700)


class Store:
    """One node's LMDB environment: meta, update log and snapshots."""

    def __init__(self, path: Path, *, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.path = path
        # Owner only: the store holds password, PIN and token hashes and patient codes.
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(path)
        existed = (path / "data.mdb").exists()
        env = None
        try:
            self._env = env = lmdb.open(
                str(path),
                mode=0o600,
                map_size=map_size,
                max_dbs=4,
                subdir=True,
                sync=True,
                metasync=True,
                writemap=False,
                max_readers=64,
            )
            self._meta = self._env.open_db(b"meta")
            self._log = self._env.open_db(b"log")
            self._snap = self._env.open_db(b"snap")
        except lmdb.Error as err:
            if env is not None:
                env.close()  # its files stay free: a full disk can be cleaned, the folder removed
            if not existed:
                raise StoreError(f"the data store in {path} cannot be created ({err})") from None
            raise StoreDamagedError(
                f"the data store in {path} cannot be opened ({err}); restore it from a "
                "backup or from another node"
            ) from None
        self._seq: dict[str, int] = {}
        self._queue: queue.SimpleQueue[tuple[Op, Waiter] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._queuing = threading.Lock()
        """Held while a write is queued, and while the writer is said stopped."""
        self.commits = 0
        self.committed_ops = 0
        self.failure: StoreError | None = None
        """Set by the first failed durable commit: nothing is written after it (a later update
        may build on one the disk never got, and would make the stored log unreadable)."""

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="store-writer")
            self._writer.start()

    def close(self) -> None:
        """Finish queued writes, stop the writer thread and close the environment."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            with self._queuing:  # no write slips in between this and the drain below
                self._writer = None
            # queued after the stop: never written, and its caller must not wait for ever
            left: list[tuple[Waiter, Any, BaseException | None]] = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    left.append((item[1], None, StoreError("the store closed before this write")))
            _notify(left)
        self._env.close()

    # -- meta ---------------------------------------------------------------

    def is_initialised(self) -> bool:
        """True when this store has been initialised for a node."""
        with self._env.begin(db=self._meta) as txn:
            return txn.get(b"format") is not None

    def check_format(self) -> None:
        """Raise StoreError unless this is an initialised store of our format."""
        with self._env.begin(db=self._meta) as txn:
            found = txn.get(b"format")
        if found is None:
            raise StoreError(f"{self.path} holds no sterimesh node: run `sterimesh init` first")
        if found != FORMAT:
            raise StoreError(f"{self.path} is a store of another format ({found[:40]!r})")

    def get_meta(self, key: str) -> Any:
        """A meta value, decoded; None when absent."""
        with self._env.begin(db=self._meta) as txn:
            raw = txn.get(key.encode())
        if raw is None:
            return None
        try:
            return decode(raw)
        except CodecError:
            raise StoreDamagedError(f"meta value {key!r} is damaged") from None

    def put_meta_now(self, values: dict[str, Any]) -> None:
        """Write meta values durably, synchronously (start-up and CLI use only)."""
        with self._env.begin(write=True, db=self._meta) as txn:
            for key, value in values.items():
                txn.put(key.encode(), encode(value))
            txn.put(b"format", FORMAT)

    def initialise(self, meta: dict[str, Any], docs: dict[str, bytes]) -> None:
        """Write a new node's meta and first document updates in one durable commit."""
        with self._env.begin(write=True) as txn:
            if txn.get(b"format", db=self._meta) is not None:
                raise StoreError(f"{self.path} is initialised already")
            for name, update in docs.items():
                txn.put(_log_key(name, 1), _pack_update(update), db=self._log)
                self._seq[name] = 1
            for key, value in meta.items():
                txn.put(key.encode(), encode(value), db=self._meta)
            txn.put(b"format", FORMAT, db=self._meta)

    async def async_put_meta(self, values: dict[str, Any]) -> None:
        """Write meta values through the writer thread, durably."""
        encoded = {key.encode(): encode(value) for key, value in values.items()}

        def op(txn: lmdb.Transaction) -> None:
            for key, value in encoded.items():
                txn.put(key, value, db=self._meta)

        await self._async_submit(op)

    async def async_delete_doc(self, doc: str) -> None:
        """Remove a document's snapshot and log, durably (retired reference exports)."""
        prefix = doc.encode() + b"\x00"

        def op(txn: lmdb.Transaction) -> None:
            txn.delete(doc.encode(), db=self._snap)
            cursor = txn.cursor(db=self._log)
            if cursor.set_range(prefix):
                while bytes(cursor.key()).startswith(prefix):
                    if not cursor.delete():
                        break

        await self._async_submit(op)  # its numbering goes on: no key of it is ever reused

    # -- reading ------------------------------------------------------------

    def load(self) -> dict[str, DocRecords]:
        """Every document's snapshot and log, checksums verified."""
        docs: dict[str, DocRecords] = {}
        with self._env.begin() as txn:
            for key, value in txn.cursor(db=self._snap):
                name = self._doc_name(key)
                if len(value) < _SNAP_HEAD.size:
                    raise StoreDamagedError(f"snapshot of {name} is truncated")
                magic, crc, seq = _SNAP_HEAD.unpack_from(value)
                payload = bytes(value[_SNAP_HEAD.size :])
                if magic != _SNAP_MAGIC or zlib.crc32(payload) != crc:
                    raise StoreDamagedError(f"snapshot of {name} fails its checksum")
                docs[name] = DocRecords(snapshot=payload, snapshot_seq=seq, last_seq=seq)
            for key, value in txn.cursor(db=self._log):
                raw_key = bytes(key)
                name_raw, sep, seq_raw = (
                    raw_key[: -_SEQ.size - 1],
                    raw_key[-_SEQ.size - 1 : -_SEQ.size],
                    raw_key[-_SEQ.size :],
                )
                name = self._doc_name(name_raw)
                if sep != b"\x00" or len(value) < _HEAD.size:
                    raise StoreDamagedError(f"log entry of {name} is malformed")
                (seq,) = _SEQ.unpack(seq_raw)
                magic, crc = _HEAD.unpack_from(value)
                payload = bytes(value[_HEAD.size :])
                if magic != _UPDATE_MAGIC or zlib.crc32(payload) != crc:
                    raise StoreDamagedError(f"log entry {seq} of {name} fails its checksum")
                records = docs.setdefault(name, DocRecords())
                if seq <= records.snapshot_seq:
                    raise StoreDamagedError(f"log entry {seq} of {name} predates its snapshot")
                records.updates.append(payload)
                records.last_seq = seq
        self._seq = {name: rec.last_seq for name, rec in docs.items()}
        return docs

    @staticmethod
    def _doc_name(raw: bytes) -> str:
        try:
            return bytes(raw).decode()
        except UnicodeDecodeError:
            raise StoreDamagedError("a document name in the store is damaged") from None

    def log_length(self, doc: str) -> int:
        """Number of log entries of a document since its snapshot."""
        prefix = doc.encode() + b"\x00"
        count = 0
        with self._env.begin(db=self._log) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key in cursor.iternext(values=False):
                    if not bytes(key).startswith(prefix):
                        break
                    count += 1
        return count

    def stat(self) -> dict[str, int]:
        """Sizes: bytes on disk, log entries, snapshots."""
        with self._env.begin() as txn:
            log = txn.stat(self._log)["entries"]
            snaps = txn.stat(self._snap)["entries"]
        info = self._env.info()
        return {
            "log_entries": log,
            "snapshots": snaps,
            "bytes_used": (info["last_pgno"] + 1) * self._env.stat()["psize"],
        }

    # -- writing ------------------------------------------------------------

    def _async_submit(self, op: Op) -> asyncio.Future[Any]:
        """Queue an operation; the returned asyncio future resolves once durable."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._queuing:
            if self._writer is None:
                raise StoreError("the store writer is not running")
            self._queue.put((op, fut))
        return fut

    def submit(self, op: Op) -> Future[Any]:
        """Queue an operation for the writer thread; its future resolves once durable."""
        fut: Future[Any] = Future()
        with self._queuing:
            if self._writer is None:
                raise StoreError("the store writer is not running")
            self._queue.put((op, fut))
        return fut

    async def async_append(self, doc: str, update: bytes) -> int:
        """Append an update to a document's log; returns its sequence number once durable."""
        seq = self._seq.get(doc, 0) + 1
        self._seq[doc] = seq
        key = _log_key(doc, seq)
        value = _pack_update(update)

        def op(txn: lmdb.Transaction) -> int:
            txn.put(key, value, db=self._log)
            return seq

        result: int = await self._async_submit(op)
        return result

    def append_now(self, doc: str, update: bytes) -> int:
        """Append synchronously (CLI use, when no node is running)."""
        seq = self._seq.get(doc, 0) + 1
        self._seq[doc] = seq
        with self._env.begin(write=True, db=self._log) as txn:
            txn.put(_log_key(doc, seq), _pack_update(update))
        return seq

    def compact(self, doc: str, merge: Callable[..., bytes] = pycrdt.merge_updates) -> int:
        """Merge a document's snapshot and log into a new snapshot; returns entries merged.

        Runs in any thread: the merge happens outside the write transaction and
        the install step checks that nothing it merged changed meanwhile.
        `merge` may hand the work to another process (pycrdt holds the GIL).
        """
        prefix = doc.encode() + b"\x00"
        with self._env.begin() as txn:
            snap_raw = txn.get(doc.encode(), db=self._snap)
            parts: list[bytes] = []
            old_seq = 0
            if snap_raw is not None:
                _, _, old_seq = _SNAP_HEAD.unpack_from(snap_raw)
                parts.append(_checked(bytes(snap_raw), _SNAP_HEAD, _SNAP_MAGIC, doc))
            keys: list[bytes] = []
            values: list[bytes] = []
            cursor = txn.cursor(db=self._log)
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    keys.append(bytes(key))
                    values.append(bytes(value))
                    parts.append(_checked(values[-1], _HEAD, _UPDATE_MAGIC, doc))
        if not keys:
            return 0
        merged = merge(*parts) if len(parts) > 1 else parts[0]
        (upto,) = _SEQ.unpack(keys[-1][-_SEQ.size :])
        snap_value = _pack_snapshot(upto, merged)

        def install(txn: lmdb.Transaction) -> int:
            current = txn.get(doc.encode(), db=self._snap)
            current_seq = _SNAP_HEAD.unpack_from(current)[2] if current is not None else 0
            if current_seq != old_seq:
                return 0  # another compaction won the race; ours is stale
            if any(txn.get(k, db=self._log) != v for k, v in zip(keys, values, strict=True)):
                return 0  # the document was deleted (and perhaps written again) meanwhile
            txn.put(doc.encode(), snap_value, db=self._snap)
            for key in keys:
                txn.delete(key, db=self._log)
            return len(keys)

        if self._writer is None:
            with self._env.begin(write=True) as txn:
                done: int = install(txn)
            return done
        installed: int = self.submit(_Spare(install)).result()
        return installed

    def _write_loop(self) -> None:
        held: tuple[Op, Waiter] | None = None
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH and not isinstance(item[0], _Spare):
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if isinstance(nxt[0], _Spare):  # committed alone, next
                    held = nxt
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Op, Waiter]]) -> None:
        outcome: list[tuple[Waiter, Any, BaseException | None]]
        if self.failure is not None:
            _notify([(waiter, None, self.failure) for _, waiter in batch])
            return
        try:
            with self._env.begin(write=True) as txn:
                results = [op(txn) for op, _ in batch]
        except Exception as err:  # every waiter hears of the failed commit
            if isinstance(batch[0][0], _Spare):  # it added nothing: nothing builds on it
                _LOGGER.warning("a compaction could not be stored (%s); the log is kept", err)
                _notify([(batch[0][1], None, StoreError(f"compaction not stored: {err}"))])
                return
            _LOGGER.exception("durable commit of %d operations failed", len(batch))
            failure = StoreError(f"durable commit failed: {err}")
            self.failure = StoreError(f"an earlier durable commit failed ({err}): restart the node")
            outcome = [(waiter, None, failure) for _, waiter in batch]
        else:
            self.commits += 1
            self.committed_ops += len(batch)
            outcome = [
                (waiter, result, None) for (_, waiter), result in zip(batch, results, strict=True)
            ]
        _notify(outcome)


class _Spare:
    """An operation that adds nothing (a compaction's install): committed alone, and its
    failure (the disk or map full: it writes the largest values) does not stop the store."""

    def __init__(self, op: Op) -> None:
        self.op = op

    def __call__(self, txn: lmdb.Transaction) -> Any:
        return self.op(txn)


def _notify(outcome: list[tuple[Waiter, Any, BaseException | None]]) -> None:
    """Tell each waiter how its operation went (asyncio ones on their own event loop)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Waiter, Any, BaseException | None]]] = {}
    for waiter, result, error in outcome:
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, result, error))
        else:
            _settle(waiter, result, error)
    for loop, items in by_loop.items():
        # one wake-up of each event loop per commit, not one per waiter
        try:
            loop.call_soon_threadsafe(_settle_all, items)
        except RuntimeError:
            _LOGGER.warning("an event loop closed before hearing of its commit")


def _settle(waiter: Waiter, result: Any, error: BaseException | None) -> None:
    if waiter.cancelled():
        return
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(result)


def _settle_all(items: list[tuple[Waiter, Any, BaseException | None]]) -> None:
    for waiter, result, error in items:
        _settle(waiter, result, error)

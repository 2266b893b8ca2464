"""The node: documents in memory, durable local writes, queries, reference imports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from datetime import UTC, date, datetime
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycrdt
from pycrdt import Doc, Map

import crdt_model as cm
import devices
import sync

from ._auth import (
    EVENT_PERMISSION,
    AdminMessage,
    Principal,
    check_login,
    check_role,
    check_token_name,
    hash_password,
    new_token,
    token_hash,
)
from ._index import EventIndex
from ._layout import DataDir, DataDirError, fsync_folder, write_private
from ._metrics import Metrics
from ._pki import NodePki, create_ca, fingerprint, load_cert, make_csr, new_key, sign_node
from ._store import Store, StoreDamagedError, StoreError
from ._trace import Traceability
from ._user_records import count_logout, enable, put_field
from ._writes import LocalRewriteError, LocalWrites

if TYPE_CHECKING:
    from ._bundle import Bundle

_LOGGER = logging.getLogger(__name__)

VERSION = "0.1.0"
COMPACT_EVERY = 1000
"""Log entries of one document that trigger its compaction into a snapshot."""
MEMBERS_SEEN = "members_seen"
"""Store meta: per member node id, the certificate fingerprint first seen and whether it was
ever seen revoked. Any member may write the cluster document, so a revoked one could write
itself back, or another member's entry with a certificate it signed (every member holds the
CA key): what this node once saw stays true here (revocation for good, the first
certificate pinned)."""
STAGING = ".creating"
"""Where init, join and restore make a node's files before moving them into place."""
MOVING = "moving.json"
"""In STAGING: the names being moved into place (what the next attempt undoes if cut)."""
_STAGED_NAMES = frozenset({"store", "pki", "node.toml"})
"""What a creation moves into place (and all an undo may remove)."""
KEEP_REFERENCES = 3
"""Reference exports kept; older ones are retired."""
DEFAULT_TIMEZONE = "Europe/Paris"
FREEZE_MIN_EVENTS = 10_000
"""Events held before the first freeze after start-up (see Node._freeze)."""
FOLD_IDLE_S = 0.2
"""A peer's events, stored and applied, reach the views once no more of them came for this
long and no peer's change is on its way to the disk (a heal's catch-ups folded after the
last, a day's as one batch), as soon as anything reads the views, or about FOLD_LATEST_S
after the first was held, whichever comes first."""
FOLD_LATEST_S = 1.0
"""About the longest a peer's events wait for the views while more keep coming."""
FOLD_HELD_MAX = 200_000
"""Events held for the views at most (then folded at once)."""
RULED_TYPES = frozenset(
    {"load.released", "anomaly.resolved", "label.printed", "set.used", "set.stocked"}
)
"""Event types the node checks against what it holds before recording (Trace.refusal)."""
USER_KEPT = ("badge", "pin", "lang")
"""What a user keeps when an administrator replaces their role or password."""


class NodeError(Exception):
    """A request the node refuses; `status` is the HTTP status it maps to."""

    status = 400


class ConflictError(NodeError):
    """The request clashes with what the node already holds."""

    status = 409


_UNSAFE_LOAD = frozenset({"rejected", "not_released", "cycle_failed", "no_cycle"})
"""Reasons a label already printed must not be printed again: its load is not safe now."""


class RuleError(NodeError):
    """A safety rule forbids recording this now (e.g. releasing a load whose cycle failed)."""

    status = 422

    def __init__(self, problem: cm.Problem) -> None:
        super().__init__(problem)
        self.problem = problem


class ForbiddenError(NodeError):
    """The caller's role may not do this."""

    status = 403


class TooLargeError(NodeError):
    """A change larger than peers take in one update: it would never replicate."""

    status = 413


class NodeFailedError(NodeError):
    """The node lost its durable storage and takes no more writes until restarted."""

    status = 503


async def finished_even_if_cancelled(step: Coroutine[Any, Any, None]) -> None:
    """Run `step` to its end even when the caller is cancelled (who then hears of it after)."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True  # cancelled again while waiting: still wait for the step
    if cancelled:
        raise asyncio.CancelledError
    task.result()  # its own failure, if any


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, from the system clock."""
    return time.time_ns() // 1_000_000


@contextlib.contextmanager
def creating_store(data: DataDir, *, name: str, zone: str) -> Iterator[tuple[Store, DataDir]]:
    """Make a new node's files (store, keys, config) for `data`: (its store, where to write).

    They are made in a staging folder inside `data` (STAGING: the same disk, whatever is
    mounted where) and moved into place once whole, the store last: a creation cut off (a
    crash, a power cut, an error) leaves no node in `data`, and the next attempt removes
    what it left (that folder, and what it had moved already).
    """
    if zone not in cm.ZONES:
        raise DataDirError(f"unknown zone {zone[:20]!r}: choose one of {', '.join(cm.ZONES)}")
    if not name.strip() or len(name) > 64:
        raise DataDirError("a node name has 1 to 64 characters")
    if data.root.exists() and not data.root.is_dir():
        raise DataDirError(f"{data.root} is a file: give a folder")
    if data.store.exists():
        raise DataDirError(f"{data.root} holds a node already")
    # the keys a creation moves in, checked up front: a join asks the inviter to admit the
    # node before it writes anything here (node.toml may be written beforehand)
    leftovers = cut_move_leftovers(data) if data.root.is_dir() else set()
    if (data.root / "pki").exists() and "pki" not in leftovers:
        raise DataDirError(
            f"{data.root} holds pki already (an earlier node's?): give an empty folder,"
            " or move pki away"
        )
    made_root = not data.root.exists()
    try:
        data.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataDirError(f"cannot make the folder {data.root}: {err.strerror or err}") from None
    staged = DataDir(data.root / STAGING)
    if staged.root.exists():
        staged.acquire().close()  # NodeRunningError while another creation is under way
        _undo_cut_move(data)
        shutil.rmtree(staged.root)  # what a creation cut off left
    staged.root.mkdir(mode=0o700)
    try:
        lock = staged.acquire()
        try:
            store = Store(staged.store)
            try:
                yield store, staged
            finally:
                store.close()
            _move_into_place(staged, data)
        finally:
            lock.close()
    except BaseException:
        _undo_cut_move(data)  # an error, or Ctrl-C, halfway through the moves
        shutil.rmtree(staged.root, ignore_errors=True)
        if made_root:
            with contextlib.suppress(OSError):
                data.root.rmdir()
        raise
    shutil.rmtree(staged.root, ignore_errors=True)


def _move_into_place(staged: DataDir, data: DataDir) -> None:
    """The staged files into `data` (which may hold a node.toml written beforehand).

    The names moved are written first (MOVING): a move cut off before the store (the last)
    is undone by the next attempt, which removes them from `data` (_undo_cut_move)."""
    if not data.config.exists() and not staged.config.exists():
        staged.write_config()
    if staged.config.exists():
        write_private(staged.config, staged.config.read_bytes())  # durable before it moves
    items = sorted(
        (p for p in staged.root.iterdir() if p.name not in (staged.lock.name, MOVING)),
        key=lambda p: p.name == "store",  # the store last: a node is there once it is
    )
    for item in items:
        if (data.root / item.name).exists():
            raise DataDirError(f"{data.root} holds {item.name} already: give an empty folder")
    write_private(staged.root / MOVING, json.dumps([p.name for p in items]).encode())
    for item in items:
        item.rename(data.root / item.name)
    fsync_folder(data.root)  # the moves themselves survive a power cut


def cut_move_leftovers(data: DataDir) -> set[str]:
    """The names in `data` that a creation cut off left there: STAGING and what it had moved
    already (listed in MOVING, gone from STAGING); nothing of a node whose store moved."""
    staged = data.root / STAGING
    if not staged.is_dir():
        return set()
    try:
        names = json.loads((staged / MOVING).read_bytes())
    except (OSError, ValueError):
        names = []  # the move never began
    moved = {
        name
        for name in (names if isinstance(names, list) else ())
        if name in _STAGED_NAMES and not (staged / name).exists()  # moved, not still staged
    }
    if "store" in moved or (data.root / "store").exists():
        return set()  # the node is there: nothing is a leftover
    return {STAGING} | {name for name in moved if (data.root / name).exists()}


def _undo_cut_move(data: DataDir) -> None:
    """Remove from `data` what a move cut off before its store had moved there."""
    for name in cut_move_leftovers(data) - {STAGING}:
        target = data.root / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def init_node(data: DataDir, *, name: str, zone: str, now_ms: int | None = None) -> dict[str, Any]:
    """Create a new cluster with this node as its first member (node code A)."""
    with creating_store(data, name=name, zone=zone) as (store, staged):
        at = datetime.fromtimestamp((now_ms or wall_clock_ms()) / 1000, UTC).isoformat()
        return found_cluster(staged, store, name=name, zone=zone, code="A", at=at)


def found_cluster(
    data: DataDir,
    store: Store,
    *,
    name: str,
    zone: str,
    code: str,
    at: str,
    base: Mapping[str, bytes] | None = None,
    meta: Mapping[str, Any] | None = None,
    before_join: Callable[[Doc[Any]], None] | None = None,
) -> dict[str, Any]:
    """Make a new cluster (CA, this node's key and certificate) and write the node's store.

    `base`: documents to start from (a restored backup; its `cluster` document is kept and
    changed by `before_join`, then this node is written as a member), else an empty cluster.
    """
    identity = {
        "node_id": uuid.uuid4().hex,
        "code": code,
        "name": name.strip(),
        "zone": zone,
        "cluster_id": uuid.uuid4().hex,
        "created_at": at,
    }
    pki = NodePki(data.pki)
    ca_key, ca_cert = create_ca(identity["cluster_id"])
    node_key, node_key_pem = new_key()
    node_cert = sign_node(
        ca_key, ca_cert, make_csr(node_key, identity["node_id"]), identity["node_id"]
    )
    pki.write(pki.ca_key, ca_key)
    pki.write(pki.ca_cert, ca_cert)
    pki.write(pki.key, node_key_pem)
    pki.write(pki.cert, node_cert)
    docs = dict(base or {})
    doc: Doc[Any] = Doc()
    if cm.CLUSTER_DOC in docs:
        doc.apply_update(docs[cm.CLUSTER_DOC])
    with doc.transaction():
        if before_join is not None:
            before_join(doc)
        member = {
            "name": identity["name"],
            "code": code,
            "zone": zone,
            "joined_at": at,
            "cert_fingerprint": fingerprint(load_cert(node_cert)),
        }
        cm.cluster_put(doc, "members", identity["node_id"], member)
        if cm.cluster_get(doc, "settings", "site") is None:
            cm.cluster_put(doc, "settings", "site", {"timezone": DEFAULT_TIMEZONE})
    docs[cm.CLUSTER_DOC] = doc.get_update()
    store.initialise({**identity, **(meta or {}), "incarnation": 0, "client_ids": []}, docs)
    return identity


class Node:
    """One node's state and services; the API and CLI stay thin on top of it."""

    def __init__(self, data: DataDir, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.data = data
        self._clock = clock
        self.docs: dict[str, Doc[Any]] = {}
        self.metrics = Metrics()
        self._failed: str | None = None
        self._freeze_at = FREEZE_MIN_EVENTS
        self._lock: IO[bytes] | None = None
        self._store: Store | None = None
        self.members_seen: dict[str, Any] = {}
        self._writes = LocalWrites(0)  # with this incarnation's client id once open
        self.exclusive = asyncio.Lock()
        """Held from a rule's check to its write applied: a write is seen by the views only
        once durable, so two concurrent requests must not both pass one check (two releases
        of a load, two decisions on an anomaly, one invitation used twice)."""
        self._listeners: list[Callable[[str, bytes, str | None], None]] = []
        self._subs: list[Any] = []
        self._events_watch: dict[str, _Observed] = {}
        """Events document -> its observers (index and views)."""
        self._held: list[tuple[str, list[tuple[str, bytes | bytearray]]]] = []
        """A peer's events stored and applied, not folded yet: (UTC day, entries) in the
        order they came (see FOLD_IDLE_S)."""
        self._held_count = 0
        self._held_since = 0.0
        self._held_last = 0.0
        self._fold_timer: asyncio.TimerHandle | None = None
        self._folding: asyncio.Task[None] | None = None
        self._storing_remote = 0
        """Peers' changes on their way to the disk."""
        self._compacting: set[str] = set()
        self._log_counts: dict[str, int] = {}
        self._ref_read: dict[str, tuple[bytes, dict[str, Any] | None]] = {}
        self._ref_built: dict[str, cm.Reference] = {}
        """Exports just read whole (by _readable), until the views took the one they use."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._merge_pool: ProcessPoolExecutor | None = None
        self.peer_status: Callable[[], list[dict[str, Any]]] | None = None
        """Set by the replication service: per-peer sync status for metrics."""
        self.backup_status: Callable[[], dict[str, Any]] | None = None
        """How the scheduled backups go, when the node makes any (set by ScheduledBackups)."""
        self._principals: dict[str, Principal | None] = {}
        self._pending_local: dict[str, dict[str, Any]] = {}
        self.started_at = ""

    # -- lifecycle --------------------------------------------------------

    @property
    def store(self) -> Store:
        """The open store."""
        if self._store is None:
            raise StoreError("the node is not open")
        return self._store

    async def async_open(self, *, readonly: bool = False) -> None:
        """Lock the data directory, load the store, and get ready to write (or only read)."""
        if self.data.root.is_dir() and not (self.data.store / "data.mdb").exists():
            # said before the lock is taken: a folder without a node is left as it was
            raise StoreError(
                f"{self.data.root} holds no sterimesh node: run `sterimesh init` first"
            )
        self._lock = self.data.acquire()
        try:
            self._store = Store(self.data.store)
            self.store.check_format()
            self._load_identity()
            records = self.store.load()
            self.client_id = self._fresh_client_id()
            self._writes = LocalWrites(self.client_id)
            retired = set()
            stale: list[str] = []
            if cm.CLUSTER_DOC in records:
                self.docs[cm.CLUSTER_DOC] = self._build_doc(cm.CLUSTER_DOC, records)
                retired = set(cm.cluster_map(self.docs[cm.CLUSTER_DOC], "retired").keys())
            for name in sorted(records):
                self._log_counts[name] = len(records[name].updates)
                if name == cm.CLUSTER_DOC:
                    continue
                if not cm.is_doc_name(name):
                    raise StoreDamagedError(f"the store holds an unknown document {name[:60]!r}")
                if name.startswith(cm.REF_PREFIX) and name[len(cm.REF_PREFIX) :] in retired:
                    stale.append(name)  # retired by another node, or an import cut off
                    continue
                self.docs[name] = self._build_doc(name, records)
            self._index = EventIndex(self.code)
            self.timezone = self._timezone()
            self._trace = Traceability(self.code, self.timezone)
            with cm.collector_paused():  # all of it lives on: collected and frozen at the end
                for name, doc in self.docs.items():
                    if name.startswith(cm.EVENTS_PREFIX):
                        day = name[len(cm.EVENTS_PREFIX) :]
                        self.index.add_many(
                            day, self.trace.add_encoded(cm.events_map(doc).values())
                        )
                        for key in cm.acks_map(doc).keys():  # noqa: SIM118 (pycrdt Map)
                            self.trace.add_ack(key)
                    self._watch(name, doc)
            self._refresh_views()
            seen = self.store.get_meta(MEMBERS_SEEN)
            self.members_seen = dict(seen) if isinstance(seen, dict) else {}
            noted = self._note_members()
            self.add_listener(self._on_members_change)
            self.add_listener(self._on_retired)
            self.hlc = cm.HybridClock(self.index.own_max)
            latest = self.index.latest()
            if latest is not None:  # peers' clocks it had followed (within the drift allowed)
                self.hlc.observe(cm.split_event_id(latest)[0], self._clock())
            self.incarnation = int(self.store.get_meta("incarnation") or 0)
            if not readonly:
                self.store.start()
                self.incarnation += 1
                used = list(self.store.get_meta("client_ids") or [])
                await self.store.async_put_meta(
                    {"incarnation": self.incarnation, "client_ids": [*used, self.client_id]}
                    | ({MEMBERS_SEEN: self.members_seen} if noted else {})
                )
                for name in stale:
                    await self.store.async_delete_doc(name)
            self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
            self.metrics.bind(self)
            if not readonly:
                for name in list(self.docs):
                    self._maybe_compact(name)
        except BaseException:
            await self.async_close()
            raise
        # what start-up built lives as long as the node: keep it out of the collector's scans
        self._freeze()
        _LOGGER.info(
            "node %s (%s) open: %d events, incarnation %d",
            self.code,
            self.name,
            self.index.count,
            self.incarnation,
        )

    @property
    def index(self) -> EventIndex:
        """The index of the events held (a peer's events held back for it folded first)."""
        if self._held:
            self._fold_held()
        return self._index

    @property
    def trace(self) -> Traceability:
        """The views of the events held (a peer's events held back for them folded first)."""
        if self._held:
            self._fold_held()
        return self._trace

    async def async_close(self) -> None:
        """Finish pending writes and release the data directory."""
        if self._fold_timer is not None:
            self._fold_timer.cancel()
            self._fold_timer = None
        if self._folding is not None:  # what it holds is stored: the views end with the node
            self._folding.cancel()
            await asyncio.gather(self._folding, return_exceptions=True)
            self._folding = None
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None
        if self._merge_pool is not None:
            await asyncio.to_thread(self._merge_pool.shutdown)
            self._merge_pool = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _load_identity(self) -> None:
        store = self.store
        self.node_id: str = store.get_meta("node_id")
        self.code: str = store.get_meta("code")
        self.name: str = store.get_meta("name")
        self.zone: str = store.get_meta("zone")
        self.cluster_id: str = store.get_meta("cluster_id")
        if not all(isinstance(v, str) for v in (self.node_id, self.code, self.name, self.zone)):
            raise StoreDamagedError("the node identity in the store is incomplete")

    def _fresh_client_id(self) -> int:
        used = set(self.store.get_meta("client_ids") or [])
        while True:
            candidate = secrets.randbits(52) + 1
            if candidate not in used:
                return candidate

    def _build_doc(self, name: str, records: dict[str, Any]) -> Doc[Any]:
        rec = records[name]
        doc: Doc[Any] = Doc(client_id=self.client_id)
        try:
            for update in ([rec.snapshot] if rec.snapshot else []) + rec.updates:
                doc.apply_update(update)
        except ValueError as err:
            raise StoreDamagedError(f"document {name} cannot be rebuilt: {err}") from None
        if self.client_id in sync.parse_state_vector(doc.get_state()):
            # our fresh id was seen before in this document: never reuse (client, clock) pairs
            raise StoreDamagedError(f"client id collision in {name}; restart the node")
        return doc

    def _timezone(self) -> ZoneInfo:
        site = cm.cluster_get(self.docs[cm.CLUSTER_DOC], "settings", "site") or {}
        try:
            return ZoneInfo(str(site.get("timezone", DEFAULT_TIMEZONE)))
        except (ZoneInfoNotFoundError, ValueError):
            _LOGGER.warning("unknown time zone in settings; using %s", DEFAULT_TIMEZONE)
            return ZoneInfo(DEFAULT_TIMEZONE)

    def _watch(self, name: str, doc: Doc[Any]) -> None:
        if name == cm.CLUSTER_DOC:
            self._subs.append(doc.observe(lambda _ev: self._principals.clear()))
        if name.startswith(cm.EVENTS_PREFIX):
            day = name[len(cm.EVENTS_PREFIX) :]

            def on_events(ev: Any) -> None:
                # never anything but additions: sync refuses others, local writes cannot
                self._took_events(day, _added(ev))

            def on_acks(ev: Any) -> None:
                for key, _value in _added(ev):
                    self._trace.add_ack(key)

            self._events_watch[name] = _Observed(
                (cm.events_map(doc), on_events), (cm.acks_map(doc), on_acks)
            )

    def _took_events(self, day: str, added: Iterable[tuple[str, bytes | bytearray]]) -> None:
        """Index and fold new entries of a day's events map (local or a peer's), after any
        held back."""
        if self._held:
            self._fold_held()
        self._fold_events(day, added)

    def _hold_events(self, day: str, added: list[tuple[str, bytes | bytearray]]) -> None:
        """A peer's checked events, stored and applied: the clock hears of them now, the index
        and views fold them once no peer's change is on its way (FOLD_IDLE_S), or at once
        when anything reads the views first."""
        if not added:
            return
        self._hear([key for key, _value in added])
        loop = asyncio.get_running_loop()
        self._held_last = loop.time()
        if not self._held:
            self._held_since = self._held_last
        self._held.append((day, added))
        self._held_count += len(added)
        if self._held_count >= FOLD_HELD_MAX:
            self._fold_held()
        elif self._fold_timer is None and self._folding is None:
            self._fold_timer = loop.call_later(FOLD_IDLE_S, self._fold_due)

    def _fold_due(self) -> None:
        self._fold_timer = None
        if not self._held or self._folding is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        busy = self._storing_remote or now - self._held_last < FOLD_IDLE_S
        if busy and now - self._held_since < FOLD_LATEST_S:  # more is coming: wait for it
            wait = FOLD_IDLE_S - (now - self._held_last)
            self._fold_timer = loop.call_later(max(wait, FOLD_IDLE_S / 4), self._fold_due)
            return
        self._folding = loop.create_task(self._fold_days())

    async def _fold_days(self) -> None:
        """Fold what is held, a day's events in one batch (the fold replays what a late event
        changes once a batch: smaller slices would replay the same machines and sets again
        and again), letting the node answer between days."""
        try:
            while self._held:
                self._fold_piece(*self._take_held_day())
                await asyncio.sleep(0)
            self._maybe_freeze()
        finally:
            self._folding = None

    def _fold_held(self) -> None:
        """Fold all that is held now, a day's events in one batch."""
        if self._fold_timer is not None:
            self._fold_timer.cancel()
            self._fold_timer = None
        while self._held:
            self._fold_piece(*self._take_held_day())
        self._maybe_freeze()

    def _take_held_day(self) -> tuple[str, list[tuple[str, bytes | bytearray]]]:
        """The events held of the first day held, taken out of what is held."""
        day = self._held[0][0]
        added = [entry for of, entries in self._held if of == day for entry in entries]
        self._held = [(of, entries) for of, entries in self._held if of != day]
        self._held_count -= len(added)
        return day, added

    def _fold_piece(self, day: str, added: list[tuple[str, bytes | bytearray]]) -> None:
        try:
            self._fold_events(day, added, heard=True)
        except Exception:  # stored and in the documents: only the views lack them
            _LOGGER.critical(
                "stored events of %s did not reach every view (restart the node to rebuild them)",
                day,
                exc_info=True,
            )

    def _hear(self, keys: list[str]) -> None:
        """Let our clock hear of the latest time of a peer's events it may adopt."""
        wall = self._clock()
        if keys and self.hlc.observe(cm.split_event_id(max(keys))[0], wall):
            return  # the latest (the usual case: no peer's clock far ahead)
        for key in sorted(keys, reverse=True):  # ids sort by their clocks
            if self.hlc.observe(cm.split_event_id(key)[0], wall):
                break

    def _fold_events(
        self, day: str, added: Iterable[tuple[str, bytes | bytearray]], *, heard: bool = False
    ) -> None:
        """Index and fold new entries now (`heard`: the clock heard of them already)."""
        local: list[dict[str, Any]] = []
        remote: dict[str, bytes | bytearray] = {}  # a peer's, checked by sync
        for key, value in added:
            event = self._pending_local.pop(key, None)
            if event is None:
                remote[key] = value
            else:
                local.append(event)
        if remote and not heard:
            self._hear(list(remote))
        # a peer's catch-up arrives in no useful order: the fold sorts each batch once
        try:
            records = self._trace.add_encoded(remote.values()) if remote else []
            if len(local) == 1:
                records += self._trace.add_event(local[0])
            elif local:
                records += self._trace.add_events(local)
        except Exception:  # a view failed: the index and numbering still learn of them
            self._index.add_many(day, _records_of([*local, *remote.values()]))
            raise
        self._index.add_many(day, records)

    def _doc(self, name: str) -> Doc[Any]:
        doc = self.docs.get(name)
        if doc is None:
            doc = Doc(client_id=self.client_id)
            self.docs[name] = doc
            self._watch(name, doc)
        return doc

    # -- durable local writes ---------------------------------------------

    async def _commit(self, name: str, mutate: Callable[[Doc[Any]], None]) -> None:
        """Make a local change durable, then apply it to its document (see node/_writes.py)."""
        if self.failed is not None:
            raise NodeFailedError(self.failed)
        try:
            update = self._writes.prepare(name, self.docs.get(name), mutate)
        except LocalRewriteError as err:
            # every peer would refuse this for good: keep it off the disk, stop writing
            self.failed = f"a local write would rewrite an entry ({err}); restart the node"
            _LOGGER.critical("%s", self.failed)
            raise NodeFailedError(self.failed) from None
        if update is None:
            return
        if len(update) > sync.MAX_UPDATE_BYTES:  # a reference of a huge export, say
            self._writes.applied(name, update)
            self._writes.forget(name)
            raise TooLargeError(
                f"the change of {name} is {len(update):,} bytes; peers take at most "
                f"{sync.MAX_UPDATE_BYTES:,} in one update, so it would never reach them"
            )
        # once queued for the disk, it reaches the document too, even if the caller goes away
        await finished_even_if_cancelled(self._store_and_apply(name, update))

    async def _store_and_apply(self, name: str, update: bytes) -> None:
        started = time.perf_counter()
        try:
            await self.store.async_append(name, update)
        except StoreError as err:
            # the shadow holds what the disk may not: refuse every write until a restart
            self.failed = f"storage failed, restart the node: {err}"
            _LOGGER.critical("%s", self.failed)
            raise NodeFailedError(self.failed) from None
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self._apply(name, update, "local")
        self._writes.applied(name, update)
        self._after_commit(name, update, None)

    def _apply(
        self, name: str, update: bytes, origin: str, read: sync.Checked | None = None
    ) -> None:
        """Apply a durable update to its document. pycrdt applies it, then raises what an
        observer (index, views) raised: the change is kept and passed on all the same, and
        the fault logged (the views may lack it until the next start rebuilds them).

        `read`: sync's check of an update to an events document, with every entry it adds
        when it read them from its bytes: the index and views take them from there, the
        observers (to which pycrdt would hand each entry again, a tenth of a heal's time)
        paused meanwhile, as long as the document is still as the check saw it."""
        doc = self._doc(name)
        entries = None if read is None else read.entries
        if entries is not None and read is not None:
            state = sync.parse_state_vector(doc.get_state())
            if state != sync.parse_state_vector(read.state):
                entries = None  # a local write came between: the observers hear what integrates
        watch = None if entries is None else self._events_watch.get(name)
        try:
            if watch is None or entries is None:
                with doc.transaction(origin=origin):
                    doc.apply_update(update)
            else:
                with watch.paused(), doc.transaction(origin=origin):
                    doc.apply_update(update)
                for key, _value in _entries_of(entries, "acks"):  # first: it cannot fail
                    self._trace.add_ack(key)
                self._hold_events(name[len(cm.EVENTS_PREFIX) :], _entries_of(entries, "events"))
        except Exception:
            _LOGGER.critical(
                "a stored change of %s did not reach every view (restart the node to rebuild them)",
                name,
                exc_info=True,
            )

    @property
    def failed(self) -> str | None:
        """Why the node takes no more writes (None while it takes them): a write it could
        not store, or any failed commit of its store (a deletion, its own settings)."""
        store = self._store
        if self._failed is None and store is not None and store.failure is not None:
            return f"storage failed, restart the node: {store.failure}"
        return self._failed

    @failed.setter
    def failed(self, why: str | None) -> None:
        self._failed = why

    def _refresh_views(self) -> None:
        """Point the views at the current reference export and settings (a failure is
        logged: it must neither stop a start nor fail a write already stored)."""
        try:
            ref = self.current_reference()
            name = "" if ref is None else cm.ref_doc_name(ref["export_id"])
            self.trace.set_reference(
                ref, lambda: self._ref_built.get(name) or self._build_reference(name)
            )
            self._ref_built.clear()  # made while reading the exports: the views hold theirs
            settings = cm.cluster_get(self.docs[cm.CLUSTER_DOC], "settings", "views") or {}
            self.trace.set_settings(settings)
        except Exception:
            _LOGGER.critical(
                "the views could not take the new reference or settings", exc_info=True
            )

    def _freeze(self) -> None:
        """Collect, then move every object alive into the collector's permanent generation.

        The views of a day of events are millions of long-lived objects: a full collection
        scanning them all takes a fifth of a second, often in the middle of a page. Done at
        start-up and each time the events grew by a quarter, later full collections scan
        only what came since.
        """
        gc.collect()
        gc.freeze()
        self._freeze_at = max(FREEZE_MIN_EVENTS, self._index.count + self._index.count // 4)

    def _maybe_freeze(self) -> None:
        if self._index.count >= self._freeze_at:
            self._freeze()

    def _after_commit(self, name: str, update: bytes, origin: str | None) -> None:
        self._maybe_freeze()
        if name.startswith(cm.REF_PREFIX) or name == cm.CLUSTER_DOC:
            self._refresh_views()
        self._log_counts[name] = self._log_counts.get(name, 0) + 1
        self._maybe_compact(name)
        for listener in list(self._listeners):
            try:
                listener(name, update, origin)
            except Exception:
                _LOGGER.exception("a change listener failed")

    def is_revoked(self, node_id: str) -> bool:
        """A member revoked: as the cluster document says, or as this node once saw it."""
        entry = cm.cluster_get(self.docs[cm.CLUSTER_DOC], "members", node_id)
        seen = self.members_seen.get(node_id)
        return bool((entry or {}).get("revoked")) or bool(seen and seen.get("revoked"))

    def pinned_fingerprint(self, node_id: str) -> str | None:
        """The certificate fingerprint this node first saw for a member."""
        seen = self.members_seen.get(node_id)
        found = seen.get("fp") if isinstance(seen, dict) else None
        return found if isinstance(found, str) else None

    def _note_members(self) -> bool:
        """Remember each member's first fingerprint and any revocation; True when changed."""
        changed = False
        for node_id, entry in cm.cluster_items(self.docs[cm.CLUSTER_DOC], "members").items():
            seen = self.members_seen.get(node_id)
            if not isinstance(seen, dict):
                fp = entry.get("cert_fingerprint")
                seen = {"fp": fp if isinstance(fp, str) else None, "revoked": False}
                self.members_seen[node_id] = seen
                changed = True
            if entry.get("revoked") and not seen.get("revoked"):
                self.members_seen[node_id] = {**seen, "revoked": True}
                changed = True
        return changed

    def _on_members_change(self, name: str, _update: bytes, _origin: str | None) -> None:
        if name != cm.CLUSTER_DOC or not self._note_members() or self._store is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.store.async_put_meta({MEMBERS_SEEN: dict(self.members_seen)})
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_retired(self, name: str, _update: bytes, origin: str | None) -> None:
        """A reference export retired on another node leaves this one's store too."""
        if name != cm.CLUSTER_DOC or origin is None or self._store is None:
            return
        for held in [n for n in self.docs if self.is_retired(n)]:
            self.docs.pop(held, None)
            task = asyncio.get_running_loop().create_task(self.store.async_delete_doc(held))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def add_listener(
        self, listener: Callable[[str, bytes, str | None], None]
    ) -> Callable[[], None]:
        """Call `listener(doc, update, origin peer or None)` after each durable change."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def is_retired(self, name: str) -> bool:
        """True for a reference document this cluster has retired."""
        if not name.startswith(cm.REF_PREFIX):
            return False
        retired = cm.cluster_map(self.docs[cm.CLUSTER_DOC], "retired")
        return name[len(cm.REF_PREFIX) :] in retired

    async def async_store_remote(
        self, name: str, change: bytes, peer: str, read: sync.Checked | None = None
    ) -> None:
        """Durably store, then apply, a peer's checked change (`read`: sync's check of it,
        with the entries it read from it, if it did); listeners hear of it."""
        if self.failed is not None:
            raise NodeFailedError(self.failed)
        self._storing_remote += 1
        try:
            await self.store.async_append(name, change)
        except StoreError as err:
            self.failed = f"storage failed, restart the node: {err}"
            _LOGGER.critical("%s", self.failed)
            raise NodeFailedError(self.failed) from None
        finally:
            self._storing_remote -= 1
        if self.is_retired(name):  # retired while this change waited for the disk
            task = asyncio.get_running_loop().create_task(self.store.async_delete_doc(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._apply(name, change, peer, read)
        self._writes.remote_change(name)
        self._after_commit(name, change, peer)

    async def commit_cluster(self, mutate: Callable[[Doc[Any]], None]) -> None:
        """Change the cluster document durably (members, users, tokens, settings)."""
        await self._commit(cm.CLUSTER_DOC, mutate)

    def _maybe_compact(self, name: str) -> None:
        if self._log_counts.get(name, 0) < COMPACT_EVERY or name in self._compacting:
            return
        self._compacting.add(name)
        self._log_counts[name] = 0

        if self._merge_pool is None:
            # pycrdt's merge holds the GIL: run it in another process, not beside the API
            self._merge_pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        pool = self._merge_pool

        def merge(*parts: bytes) -> bytes:
            return pool.submit(pycrdt.merge_updates, *parts).result()

        async def run() -> None:
            try:
                merged = await asyncio.to_thread(self.store.compact, name, merge)
                _LOGGER.debug("compacted %d log entries of %s", merged, name)
            except BrokenExecutor:  # its worker died (out of memory, killed): a new one next
                _LOGGER.exception("compaction of %s failed; the log is kept", name)
                if self._merge_pool is pool:
                    self._merge_pool = None
                    pool.shutdown(wait=False)
            except Exception:  # a failed compaction keeps the log, and the next one tries again
                _LOGGER.exception("compaction of %s failed; the log is kept", name)
            finally:
                self._compacting.discard(name)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- events -------------------------------------------------------------

    async def async_submit(
        self, body: Any, principal: Principal
    ) -> tuple[dict[str, Any], list[str]]:
        """Record a station's event under the safety rules: (event, warnings).

        What the node can see breaking a rule is refused (RuleError); a fact of the
        physical world that breaks one is recorded, with warnings for the operator.
        """
        submission = self.trace.canonical(cm.validate_submission(body))
        permission = self.permission_for(submission)
        if not principal.can(permission):
            raise ForbiddenError(f"the role {principal.role} may not do this ({permission})")
        if submission["type"] not in RULED_TYPES:
            return await self._checked_record(submission, principal)
        async with self.exclusive:
            return await self._checked_record(submission, principal)

    async def _checked_record(
        self, submission: dict[str, Any], principal: Principal
    ) -> tuple[dict[str, Any], list[str]]:
        today = self.trace.today(self._clock())
        problem = self.trace.refusal(submission, today)
        if problem is not None:
            raise RuleError(problem)
        warnings = self.trace.warnings(submission, today)
        return await self._record_valid(submission, principal), warnings

    def permission_for(self, submission: dict[str, Any]) -> str:
        """The permission recording `submission` takes: voiding an event takes the right to
        make the event it finally cancels (voiding a void brings that event back)."""
        kind, seen = submission.get("type"), 0
        while kind == "event.voided" and isinstance(submission.get("target"), str) and seen < 64:
            target = self.get_event(submission["target"])
            if target is None:
                raise RuleError(cm.Problem("unknown_event", event=submission["target"][:40]))
            submission, kind, seen = target, target["type"], seen + 1
        return EVENT_PERMISSION.get(str(kind), "record")

    async def async_record(self, body: Any, principal: Principal) -> dict[str, Any]:
        """Validate, stamp and durably store a new event; returns it as stored."""
        return await self._record_valid(
            self.trace.canonical(cm.validate_submission(body)), principal
        )

    async def _record_valid(
        self, submission: dict[str, Any], principal: Principal
    ) -> dict[str, Any]:
        event_type = cm.EVENT_TYPES[submission["type"]]
        wall = self._clock()
        ts = self.hlc.now(wall)
        at = datetime.fromtimestamp(wall / 1000, self.timezone)
        event: dict[str, Any] = {
            "id": cm.make_event_id(ts, self.code),
            "hlc": str(ts),
            "at": at.isoformat(timespec="milliseconds"),
            "node": self.code,
            "user": principal.name,
            "zone": self.zone,
            **submission,
        }
        load = None
        if event_type.is_load:
            load = submission.get("load")
            owner = None if load is None else self.index.load_owner(load)
            if load is None:
                load = event["load"] = self.index.next_load_number(at.strftime("%y%m%d"))
            elif self.index.load_taken(load):
                raise ConflictError(f"load {load} exists already")
            elif owner is not None and owner != self.code:
                raise ConflictError(
                    f"load {load} follows node {owner}'s numbering; leave the number out "
                    "and this node gives one"
                )
        # the check every peer makes of it: an event a peer refuses would never leave this
        # node, and would hold back every later change of its day behind it
        if cm.validate_event(event) != event:
            raise NodeError("the event would not be stored as given: nothing was recorded")
        self._pending_local[event["id"]] = event
        if load is not None:
            self.index.reserve_load(load)  # until indexed: a concurrent write cannot take it
        try:
            await self._commit(cm.events_doc_name(ts), lambda doc: cm.add_event(doc, event))
        finally:
            self._pending_local.pop(event["id"], None)
            if load is not None:
                self.index.release_load(load)
        self.metrics.events_recorded.labels(event["type"]).inc()
        return event

    async def async_ack(self, ids: list[str], by: str) -> int:
        """Record the platform's acknowledgement of events (replicated); returns how many are new."""
        at = datetime.fromtimestamp(self._clock() / 1000, UTC).isoformat(timespec="seconds")
        by_doc: dict[str, list[str]] = {}
        done = 0
        for event_id in dict.fromkeys(ids):
            if event_id not in self.trace.acked:
                by_doc.setdefault(cm.events_doc_name(cm.split_event_id(event_id)[0]), []).append(
                    event_id
                )
        for name, todo in sorted(by_doc.items()):

            def write(doc: Doc[Any], todo: list[str] = todo) -> None:
                nonlocal done
                acks = cm.acks_map(doc)
                for event_id in todo:
                    key = f"{event_id}/{self.code}"
                    if key not in acks:  # an ack being written by a request still in flight
                        acks[key] = cm.encode({"at": at, "by": by})
                        done += 1

            await self._commit(name, write)
        return done

    async def async_issue_label(
        self, set_code: str, load: str, principal: Principal, printer: Any = None
    ) -> dict[str, Any]:
        """Issue a label for a set of a released load and record label.printed."""
        async with self.exclusive:  # reprint or not, and the id, hold until it is recorded
            return await self._issue_label(set_code, load, principal, printer)

    async def _issue_label(
        self, set_code: str, load: str, principal: Principal, printer: Any
    ) -> dict[str, Any]:
        problem = cm.check_label(self.trace.fold, set_code, load)
        if problem is not None:
            raise RuleError(problem)
        data = cm.label_data(self.trace.fold, None, set_code, load, self.trace.fold.settings)
        if data["expires_on"] is None:
            raise RuleError(cm.Problem("no_shelf_life", set=set_code))
        local_day = datetime.fromtimestamp(self._clock() / 1000, self.timezone).date()
        label_id = self.trace.next_label_id(local_day)
        try:  # what is recorded must print: a code a barcode cannot carry is refused first
            devices.plan_label(
                self._label(
                    set_code,
                    load,
                    data["lot"],
                    data["expires_on"],
                    label_id,
                    reprint=bool(data["reprint"]),
                ),
                self.label_layout(),
            )
        except devices.LabelError:
            raise RuleError(cm.Problem("label_not_printable", set=set_code)) from None
        submission: dict[str, Any] = {
            "type": "label.printed",
            "set": set_code,
            "load": load,
            "lot": data["lot"],
            "expires_on": data["expires_on"],
            "label_id": label_id,
            "reprint": bool(data["reprint"]),
        }
        if isinstance(printer, str) and printer.strip():
            submission["printer"] = printer
        event = await self.async_record(submission, principal)
        return {
            **data,
            "label_id": label_id,
            "event": event["id"],
            "pdf": f"/api/labels/{label_id}.pdf",
            "zpl": f"/api/labels/{label_id}.zpl",
        }

    def label_layout(self) -> devices.LabelLayout:
        """The label geometry: cluster setting `label` (mm, dpi), else 50x30 mm at 203 dpi."""
        settings = cm.cluster_get(self.docs[cm.CLUSTER_DOC], "settings", "label") or {}
        try:
            return devices.LabelLayout.from_settings(settings)
        except devices.LabelError as err:
            _LOGGER.warning("label layout settings ignored: %s", err)
            return devices.LabelLayout()

    def label_for_printing(self, label_id: str) -> devices.LabelData | None:
        """What a recorded label shows, ready to render; None if unknown or voided.

        RuleError when its load is no longer safe (rejected, or its release voided since).
        """
        event_id = self.trace.labels.get(label_id)
        event = None if event_id is None else self.get_event(event_id)
        if event is None or event["id"] in self.trace.fold.voided:
            return None
        problem = cm.check_label(self.trace.fold, event["set"], event["load"])
        if problem is not None and problem.params.get("why") in _UNSAFE_LOAD:
            raise RuleError(problem)
        return self._label(
            event["set"],
            event["load"],
            event["lot"],
            event["expires_on"],
            label_id,
            reprint=bool(event.get("reprint")),
        )

    def _label(
        self, set_code: str, load: str, lot: str, expires_on: str, label_id: str, *, reprint: bool
    ) -> devices.LabelData:
        """A label's printed fields; devices.LabelError when they cannot be printed."""
        data = cm.label_data(self.trace.fold, None, set_code, load, self.trace.fold.settings)
        expires = date.fromisoformat(expires_on)
        sterilized = date.fromisoformat(data["sterilized_on"]) if data["sterilized_on"] else expires
        return devices.LabelData(
            set_code=data["set_type"] or set_code.split("#", maxsplit=1)[0],
            set_name=data["set_name"] or set_code,
            instance=set_code,
            lot=lot,
            sterilized_on=sterilized,
            expires_on=expires,
            sterilizer=data["sterilizer"] or "-",
            cycle_no=str(data["cycle_no"] or "-"),
            packer=data["packer"] or "-",
            label_id=label_id,
            reprint=reprint,
        )

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """One event by id, or None."""
        try:
            ts, _ = cm.split_event_id(event_id)
        except cm.ClockError:
            return None
        doc = self.docs.get(cm.events_doc_name(ts))
        if doc is None:
            return None
        raw = cm.events_map(doc).get(event_id)
        return None if raw is None else cm.decode_map(raw)

    def iter_events(
        self,
        *,
        day: str | None = None,
        set_code: str | None = None,
        event_type: str | None = None,
        after: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events in (hlc, id) order, filtered."""
        for event_id in self.index.ids_after(after, day=day, set_code=set_code):
            event = self.get_event(event_id)
            if event is not None and (event_type is None or event["type"] == event_type):
                yield event

    # -- reference data -------------------------------------------------------

    def references(self) -> list[dict[str, Any]]:
        """Manifests of the reference exports held, newest first."""
        found = []
        for name, doc in self.docs.items():
            if name.startswith(cm.REF_PREFIX):
                manifest = self._readable(name, doc)
                if manifest is not None:
                    found.append(manifest)
        return sorted(found, key=self._export_order, reverse=True)

    def _readable(self, name: str, doc: Doc[Any]) -> dict[str, Any] | None:
        """The manifest of a reference document read whole (its tables, as the views read
        them); None while it has not arrived whole, or when it cannot be read (a member's
        broken export is left aside, logged, never used). Worked out once per state of the
        document: an export is written once."""
        state = doc.get_state()
        known = self._ref_read.get(name)
        if known is not None and known[0] == state:
            return known[1]
        manifest = None
        try:
            found = cm.read_manifest(doc)
            if found is not None:
                export_id, exported_at = found.get("export_id"), found.get("exported_at")
                if export_id != name.removeprefix(cm.REF_PREFIX) or not isinstance(
                    exported_at, str
                ):
                    raise cm.DocumentError("its manifest does not name it, or not when")
                self._ref_built[name] = self._build_reference(name, found)
                manifest = found
        except Exception as err:  # whatever a member wrote: this node goes on without it
            why = sync.sanitize(err)  # one line: the cause said, no trace
            _LOGGER.error("reference %s cannot be read, left aside: %s", name, why)  # noqa: TRY400
        self._ref_read[name] = (state, manifest)
        return manifest

    def _build_reference(self, name: str, manifest: dict[str, Any] | None = None) -> cm.Reference:
        """A reference export read whole from its document, as the views use it."""
        doc = self.docs[name]
        manifest = manifest or cm.read_manifest(doc) or {}
        tables = {t: cm.read_table(doc, t) for t in cm.table_names(doc)}
        return cm.Reference(
            tables, export_id=str(manifest["export_id"]), exported_at=manifest["exported_at"]
        )

    def _export_order(self, manifest: dict[str, Any]) -> tuple[float, str]:
        """When an export was made, as an instant (a time without offset is the site's
        local time): exports written with another offset or layout compare by time, not text."""
        try:
            moment = datetime.fromisoformat(str(manifest["exported_at"]))
        except ValueError:
            return (float("-inf"), str(manifest["export_id"]))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.timezone)
        return (moment.timestamp(), str(manifest["export_id"]))

    def current_reference(self) -> dict[str, Any] | None:
        """The manifest of the export with the greatest exported_at."""
        refs = self.references()
        return refs[0] if refs else None

    async def async_import(self, bundle: Bundle) -> dict[str, Any]:
        """Store a read and checked bundle as a reference document; all or nothing."""
        name = cm.ref_doc_name(bundle.export_id)
        retired = cm.cluster_map(self.docs[cm.CLUSTER_DOC], "retired")
        if bundle.export_id in retired:
            raise ConflictError(f"export {bundle.export_id} was retired; it cannot come back")
        held = self.references()
        if len(held) >= KEEP_REFERENCES and bundle.export_id not in {m["export_id"] for m in held}:
            oldest = held[KEEP_REFERENCES - 1]
            if self._export_order(bundle.manifest) < self._export_order(oldest):
                raise ConflictError(
                    f"export {bundle.export_id} (made {bundle.exported_at}) is older than the"
                    f" {KEEP_REFERENCES} exports kept (the oldest, {oldest['export_id']}, made"
                    f" {oldest['exported_at']}): not imported"
                )
        unchanged = False

        def write(doc: Doc[Any]) -> None:  # on the shadow: sees an import still in flight
            nonlocal unchanged
            found = cm.read_manifest(doc)
            if found is None:
                cm.write_reference(doc, bundle.manifest, bundle.tables)
            elif found == bundle.manifest:
                unchanged = True
            else:
                raise ConflictError(f"export {bundle.export_id} was imported with other content")

        await self._commit(name, write)
        if unchanged:
            return {"export_id": bundle.export_id, "status": "unchanged"}
        retiring = self.references()[KEEP_REFERENCES:]
        if retiring:
            now = datetime.now(UTC).isoformat(timespec="seconds")

            def retire(doc: Doc[Any]) -> None:
                for manifest in retiring:
                    cm.cluster_put(
                        doc,
                        "retired",
                        manifest["export_id"],
                        {"exported_at": manifest["exported_at"], "retired_at": now},
                    )

            await self._commit(cm.CLUSTER_DOC, retire)
            for manifest in retiring:
                old = cm.ref_doc_name(manifest["export_id"])
                self.docs.pop(old, None)
                await self.store.async_delete_doc(old)
        rows = {table: len(rows) for table, rows in bundle.tables.items()}
        _LOGGER.info("imported reference export %s", bundle.export_id)
        current = self.current_reference()
        return {
            "export_id": bundle.export_id,
            "status": "imported",
            "rows": rows,
            "retired": [m["export_id"] for m in retiring],
            # an export older than the one in use is kept, not used
            "current": current is not None and current["export_id"] == bundle.export_id,
            "in_use": None if current is None else current["export_id"],
        }

    # -- people and tokens ------------------------------------------------------

    async def async_create_token(self, name: str, role: str, created_by: str) -> str:
        """A new API token; only its hash is stored (in the cluster document)."""
        check_role(role)
        check_token_name(name)
        token = new_token()
        entry = {
            "name": name.strip(),
            "role": role,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": created_by,
        }
        await self._commit(
            cm.CLUSTER_DOC, lambda doc: cm.cluster_put(doc, "tokens", token_hash(token), entry)
        )
        return token

    async def async_add_user(self, login: str, role: str, password: str, by: str) -> None:
        """Create a user, or replace their role and password (badge, PIN, language kept)."""
        check_login(login)
        check_role(role)
        entry = {
            "role": role,
            "password": hash_password(password),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": by,
        }

        def save(doc: Doc[Any]) -> None:
            before = cm.cluster_get(doc, "users", login) or {}
            # badge, PIN, language, and being disabled: a new password does not re-enable
            kept = {
                n: v
                for n, v in before.items()
                if n in USER_KEPT or n.startswith("disabled") or n == "sessions"
            }
            cm.cluster_put(doc, "users", login, {**entry, **kept})

        await self._commit(cm.CLUSTER_DOC, save)

    async def async_revoke_tokens(self, name: str, by: str) -> int:
        """Revoke every API token of this name; how many were in use."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        done = 0

        def revoke(doc: Doc[Any]) -> None:
            nonlocal done
            for key, entry in cm.cluster_items(doc, "tokens").items():
                if entry.get("name") == name and not entry.get("revoked"):
                    cm.cluster_put(
                        doc,
                        "tokens",
                        key,
                        {**entry, "revoked": True, "revoked_at": at, "revoked_by": by},
                    )
                    done += 1

        await self._commit(cm.CLUSTER_DOC, revoke)
        if not done:
            raise NodeError(AdminMessage("unknown_token", name=name[:64]))
        _LOGGER.warning("API token %r revoked by %s", name[:64], by)
        return done

    async def async_disable_user(self, login: str, by: str, *, disabled: bool = True) -> None:
        """Stop a user logging in (their sessions end at once), or let them again."""

        def change(doc: Doc[Any]) -> None:
            if disabled:
                put_field(doc, login, "disabled", True, by)
                count_logout(doc, login, self.code)  # enabled again, their old cookies stay dead
            else:
                enable(doc, login, by)

        await self._change_user(login, change)
        _LOGGER.warning("user %s %s by %s", login, "disabled" if disabled else "enabled", by)

    async def async_end_sessions(self, login: str) -> None:
        """End every web session of a user, on every PC (at logout, say)."""
        await self._change_user(login, lambda doc: count_logout(doc, login, self.code))

    async def _change_user(self, login: str, change: Callable[[Doc[Any]], None]) -> None:
        async with self.exclusive:  # never between another change's read and its write
            await self._change_user_now(login, change)

    async def _change_user_now(self, login: str, change: Callable[[Doc[Any]], None]) -> None:
        found = False

        def save(doc: Doc[Any]) -> None:
            nonlocal found
            if "/" not in login and cm.cluster_get(doc, "users", login) is not None:
                found = True
                change(doc)

        await self._commit(cm.CLUSTER_DOC, save)
        if not found:
            raise NodeError(AdminMessage("unknown_user", login=login[:64]))

    def authenticate(self, token: str) -> Principal | None:
        """The principal of an API token, or None (cached until the cluster document changes)."""
        key = token_hash(token)
        if key in self._principals:
            return self._principals[key]
        entry = cm.cluster_get(self.docs[cm.CLUSTER_DOC], "tokens", key)
        principal = None
        if entry is not None and not entry.get("revoked"):
            principal = Principal(name=str(entry["name"]), role=str(entry["role"]))
        if len(self._principals) > 1000:
            self._principals.clear()  # bounded: keys come from whoever calls the API
        self._principals[key] = principal
        return principal

    # -- status -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What an operator or IT needs to see at a glance."""
        ref = self.current_reference()
        members = cm.cluster_items(self.docs[cm.CLUSTER_DOC], "members")
        days = {day: len(ids) for day, ids in self._index.by_day.items()}
        for day, added in self._held:  # held events are in the documents, not the views yet
            days[day] = days.get(day, 0) + len(added)
        return {
            "ok": self.failed is None,
            "failure": self.failed,
            "node": self.code,
            "node_id": self.node_id,
            "name": self.name,
            "zone": self.zone,
            "cluster_id": self.cluster_id,
            "version": VERSION,
            "incarnation": self.incarnation,
            "started_at": self.started_at,
            "timezone": str(self.timezone),
            "events": self._index.count + self._held_count,
            "views_behind": self._held_count,
            "days": dict(sorted(days.items())),
            "reference": None
            if ref is None
            else {k: ref[k] for k in ("export_id", "exported_at", "site")},
            "references": [m["export_id"] for m in self.references()],
            "members": len(members),
            "store": self.store.stat(),
            "backup": None if self.backup_status is None else self.backup_status(),
        }


class _Observed:
    """The observers of a document's shared maps, which a change whose entries are known
    already may pause."""

    def __init__(self, *watched: tuple[Map[Any], Callable[[Any], None]]) -> None:
        self._watched = watched
        self._subs = [shared.observe(callback) for shared, callback in watched]

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No observer hears of what changes meanwhile."""
        for (shared, _callback), sub in zip(self._watched, self._subs, strict=True):
            shared.unobserve(sub)
        try:
            yield
        finally:
            self._subs = [shared.observe(callback) for shared, callback in self._watched]


def _added(ev: Any) -> list[tuple[str, bytes | bytearray]]:
    """(key, value) of each entry a map's change event adds."""
    return [
        (key, change["newValue"])
        for key, change in ev.keys.items()
        if change.get("action") == "add"
    ]


def _entries_of(entries: list[sync.Entry], root: str) -> list[tuple[str, bytes | bytearray]]:
    return [(key, value) for of, key, value in entries if of == root]


def _records_of(events: list[dict[str, Any] | bytes | bytearray]) -> list[cm.Record]:
    """The records of events, decoded or stored, made apart from the fold (those it can)."""
    records = []
    for event in events:
        with contextlib.suppress(Exception):
            decoded = event if isinstance(event, dict) else cm.decode_map(event)
            records.append(cm.record_of(decoded, {}))
    return records

"""One connection with one peer: handshake, catch-up, live updates, anti-entropy, liveness.

Every frame after HELLO may be lost, repeated or reordered without harm:
updates are idempotent, an update that cannot integrate yet is answered by
STEP1 (send me a diff from my state), and the manifests sent every
`anti_entropy_s` bring back whatever was lost. An update is acknowledged only
once the replica stored it durably; a forbidden update or a malformed frame
flags the peer and ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pycrdt

import crdt_model as cm

from ._channel import Channel
from ._errors import (
    ChannelClosed,
    LocalProtocolError,
    PeerRejected,
    RemoteProtocolError,
    UpdateIncomplete,
    UpdateRefused,
)
from ._frames import FrameDecoder, encode_frame
from ._ledger import Ledger
from ._protocol import (
    MAX_LIVE_UPDATE_BYTES,
    MAX_REASON,
    MAX_UPDATE_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Hello,
    Manifest,
    Message,
    Ping,
    Pong,
    Refused,
    Step1,
    Step2,
    Update,
    decode_message,
    encode_message,
)
from ._replica import Replica
from ._status import NodeIdentity, PeerState, PeerStatus, Timing
from ._text import sanitize
from ._vectors import parse_state_vector

_LOGGER = logging.getLogger(__name__)

MAX_OUTBOX_BYTES = 32 * 1024 * 1024
"""Queued outgoing bytes past which live updates are dropped (anti-entropy resends them)."""
MAX_INBOX_BYTES = 8 * 1024 * 1024
"""Received bytes waiting to be applied before we stop reading (backpressure)."""
MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Queued updates of one document merged and checked as one, up to this size."""

OnHello = Callable[["PeerSession"], "tuple[str, PeerState] | None"]
"""Called once the peer's HELLO is accepted; a (reason, state) ends the session."""


class _Turned(PeerRejected):
    """The manager turned the session down after HELLO (duplicate, flagged peer)."""

    def __init__(self, reason: str, state: PeerState) -> None:
        super().__init__(reason)
        self.state = state


class PeerSession:
    """Runs the sync protocol with one peer over one channel."""

    def __init__(
        self,
        replica: Replica,
        identity: NodeIdentity,
        channel: Channel,
        *,
        address: str = "",
        initiator: bool = False,
        timing: Timing | None = None,
        on_hello: OnHello | None = None,
        expected_node: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.replica = replica
        self.identity = identity
        self.channel = channel
        self.initiator = initiator
        self.timing = timing or Timing.default()
        self.status = PeerStatus(address=address, direction="out" if initiator else "in")
        self.status.since = wall()
        self.ended = asyncio.Event()
        self.reached_live = False
        self._seen_sv: dict[str, dict[int, int]] = {}
        """Per document, our state vector after the last durable change this session saw."""
        self.ledger = Ledger()
        self._on_hello = on_hello
        self._expected_node = expected_node
        self._clock = clock
        self._wall = wall
        self._decoder = FrameDecoder()
        self._frames: deque[bytes] = deque()
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._pong: bytes | None = None
        """The answer to the peer's latest PING, sent before anything queued (one at most:
        a peer that pings and never reads cannot make the outbox grow)."""
        self._timed: dict[str, bytes] = {}
        """The PING and MANIFEST the timers queued, by kind, until the writer takes them: no
        other is queued meanwhile (a peer that stops reading, yet still sends, would
        otherwise pile them up in the outbox for as long as it lives)."""
        self._wake = asyncio.Event()
        self._inbox: deque[Step2 | Update | Manifest] = deque()
        self._inbox_bytes = 0
        self._inbox_ready = asyncio.Event()
        self._inbox_room = asyncio.Event()
        self._applying = False
        self._pings: dict[int, float] = {}
        self._last_rx = self._last_ping = self._last_manifest = 0.0
        self._manifest_due = False
        self._push_after = 0.0
        """No catch-up diff before this (a connection the pair may replace at once)."""
        self._stop: asyncio.Future[str] | None = None
        self._final: list[Message] = []
        self._closing: str | None = None

    # -- public ---------------------------------------------------------------------------

    @property
    def peer_node(self) -> str | None:
        """The peer's node id, once its HELLO arrived."""
        return self.status.node

    @property
    def state(self) -> PeerState:
        """Where the session stands."""
        return self.status.state

    def close(self, reason: str = "closing") -> None:
        """End the session, telling the peer why."""
        if self._stop is None:
            self._closing = reason
        self._finish(reason, PeerState.CLOSED, [Bye(reason[:MAX_REASON])])

    def status_dict(self) -> dict[str, Any]:
        """The peer's status, with the figures computed now."""
        status = self.status
        status.unconfirmed, status.unconfirmed_bytes = self.ledger.unconfirmed()
        if not self.ended.is_set():
            behind = self.ledger.behind(self.replica)
            if behind is not None:
                status.behind, status.behind_docs = behind
        return status.as_dict()

    async def run(self) -> str:
        """Run the session until it ends; returns why it ended. Closes the channel."""
        self._stop = asyncio.get_running_loop().create_future()
        tasks: list[asyncio.Future[Any]] = []
        unsubscribe: Callable[[], None] | None = None
        try:
            if self._closing is not None:
                self._finish(self._closing, PeerState.CLOSED)
                return self._stop.result()
            self._last_rx = self._clock()
            await self.channel.send(self._frame(self._hello()))
            handshake = asyncio.create_task(self._read_hello(), name="sync-hello")
            tasks.append(handshake)
            waiting: list[asyncio.Future[Any]] = [handshake, self._stop]
            await asyncio.wait(
                waiting, timeout=self.timing.handshake_s, return_when=asyncio.FIRST_COMPLETED
            )
            if self._stopped():
                return self._stop.result()
            if not handshake.done():
                raise TimeoutError
            tasks.remove(handshake)
            self._accept_hello(handshake.result())
            unsubscribe = self.replica.add_listener(self._on_durable)
            self._set_state(PeerState.SYNCING)
            self._queue_timed(self._manifest())
            self._last_manifest = self._last_ping = self._clock()
            for job in (self._reader, self._writer, self._applier, self._ticker):
                tasks.append(asyncio.create_task(job(), name=f"sync{job.__name__}"))
            await asyncio.wait([self._stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    _LOGGER.error(
                        "sync session with %s failed", self._who(), exc_info=task.exception()
                    )
                    self._finish("internal error", PeerState.CLOSED, [Bye("internal error")])
        except TimeoutError:
            self._finish("no hello from the peer", PeerState.DEAD)
        except ChannelClosed:
            self._finish("connection lost", PeerState.DEAD)
        except _Turned as err:
            self._finish(str(err), err.state, [Bye(str(err)[:MAX_REASON])])
        except PeerRejected as err:
            _LOGGER.warning("peer %s rejected: %s", self._who(), err)
            self._finish(str(err), PeerState.REJECTED, [Bye(str(err)[:MAX_REASON])])
        except RemoteProtocolError as err:
            self._flag(f"protocol error: {err}")
        except Exception:
            _LOGGER.exception("sync session with %s failed", self._who())
            self._finish("internal error", PeerState.CLOSED, [Bye("internal error")])
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self._finish("closed", PeerState.CLOSED)
            for task in tasks:
                task.cancel()
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._flush_final()
            finally:  # also when cancelled again while cleaning up
                self.channel.close()
                self.status_dict()
                self.ended.set()
        return self._stop.result()

    def tick(self, now: float) -> None:
        """Timers: heartbeat, anti-entropy, expiry of unconfirmed updates, death."""
        if self._stopped():
            return
        t = self.timing
        if self._applying or self._inbox:
            self._last_rx = now  # busy with what the peer sent: it is not silent
        if now - self._last_rx > t.dead_after_s:
            self._finish(f"no frame for {t.dead_after_s:g} s", PeerState.DEAD)
            return
        if now - self._last_ping >= t.heartbeat_s and Ping.KIND not in self._timed:
            nonce = self.ledger.new_id()
            self._pings[nonce] = now
            while len(self._pings) > 8:
                del self._pings[next(iter(self._pings))]
            self._queue_timed(Ping(nonce))
            self._last_ping = now
        since = now - self._last_manifest
        due = since >= t.anti_entropy_s or (self._manifest_due and since >= t.anti_entropy_s / 10)
        if due and Manifest.KIND not in self._timed:
            self._queue_timed(self._manifest())
            self._last_manifest = now
            self._manifest_due = False
        self.ledger.expire(now, t.ack_timeout_s)
        if self._push_after and now >= self._push_after:
            self._push_after = 0.0
            self._wake.set()
        if self.ledger.release_held(now, self.replica):
            self._wake.set()

    # -- handshake ------------------------------------------------------------------------

    def _hello(self) -> Hello:
        me = self.identity
        return Hello(PROTOCOL_VERSION, me.cluster_id, me.node_id, me.code, me.name)

    async def _read_hello(self) -> Hello:
        while not self._frames:
            self._frames.extend(self._decoder.feed(await self.channel.recv()))
        msg = decode_message(self._frames.popleft())
        if not isinstance(msg, Hello):
            raise RemoteProtocolError(f"expected hello, got {msg.KIND}")
        self._last_rx = self._clock()
        return msg

    def _accept_hello(self, hello: Hello) -> None:
        if hello.version != PROTOCOL_VERSION:
            raise PeerRejected(f"protocol version {hello.version}; we speak {PROTOCOL_VERSION}")
        if hello.cluster != self.identity.cluster_id:
            raise PeerRejected("the peer belongs to another cluster")
        if hello.node == self.identity.node_id:
            raise PeerRejected("connected to ourselves")
        if self._expected_node is not None and hello.node != self._expected_node:
            raise PeerRejected("the node id does not match the peer's certificate")
        self.status.node = hello.node
        if (self.identity.node_id < hello.node) != self.initiator:
            # both nodes keep the connection the smaller node id opened (SyncManager): when
            # both dial at once, this one is about to be replaced; its catch-up would be
            # sent twice
            self._push_after = self._clock() + self.timing.heartbeat_s / 2
        self.status.code = hello.code
        self.status.name = sanitize(hello.name, 64)
        verdict = None if self._on_hello is None else self._on_hello(self)
        if verdict is not None:
            raise _Turned(*verdict)

    # -- tasks --------------------------------------------------------------------------------

    async def _reader(self) -> None:
        try:
            while True:
                while self._frames:
                    msg = decode_message(self._frames.popleft())
                    self._last_rx = self._clock()
                    await self._dispatch(msg)
                    if self._stopped():
                        return
                data = await self.channel.recv()
                self._last_rx = self._clock()  # part of a large frame is proof of life too
                self._frames.extend(self._decoder.feed(data))
        except ChannelClosed:
            self._finish("connection lost", PeerState.DEAD)
        except RemoteProtocolError as err:
            self._flag(f"protocol error: {err}")

    async def _writer(self) -> None:
        try:
            while True:
                if self._pong is not None:
                    frame, self._pong = self._pong, None
                    await self.channel.send(frame)
                    continue
                if self._outbox:
                    frame = self._outbox.popleft()
                    self._outbox_bytes -= len(frame)
                    for kind, timed in list(self._timed.items()):
                        if timed is frame:
                            del self._timed[kind]
                    await self.channel.send(frame)
                    continue
                push = None if self._clock() < self._push_after else self.ledger.next_push()
                if push is not None:
                    self._push(*push)
                    continue
                self._wake.clear()
                await self._wake.wait()
        except ChannelClosed:
            self._finish("connection lost", PeerState.DEAD)

    async def _applier(self) -> None:
        while not self._stopped():
            if not self._inbox:
                self._inbox_ready.clear()
                await self._inbox_ready.wait()
                continue
            head = self._inbox[0]
            if isinstance(head, Manifest):
                self._inbox.popleft()
                self._inbox_bytes -= _size(head)
                self._inbox_room.set()
                self.ledger.on_manifest(head.docs, self.replica, self._clock())
                self._wake.set()
                self._evaluate_sync()
                continue
            self._applying = True
            try:
                for doc, msgs in self._take_batch().items():
                    if self._stopped() or not await self._apply(doc, msgs):
                        return
            finally:
                self._applying = False
                self._last_rx = self._clock()

    async def _ticker(self) -> None:
        while not self._stopped():
            await asyncio.sleep(self.timing.tick_s)
            self.tick(self._clock())

    # -- incoming -------------------------------------------------------------------------

    async def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, Step2 | Update | Manifest):
            size = _size(msg)
            while self._inbox and self._inbox_bytes + size > MAX_INBOX_BYTES:
                self._inbox_room.clear()
                await self._inbox_room.wait()
            self._inbox.append(msg)
            self._inbox_bytes += size
            self._inbox_ready.set()
        elif isinstance(msg, Step1):
            # a document we hold (we sent it): a request for any other is nothing we owe,
            # and a hostile peer could fill our tables with them
            if msg.doc in self.replica.doc_names():
                self.ledger.on_step1(msg.doc, msg.sv)
                self._wake.set()
        elif isinstance(msg, Ack):
            sent = self.ledger.on_ack(msg.ack)
            self._wake.set()
            if sent is not None and sent.covers is not None:
                self._evaluate_sync()
        elif isinstance(msg, Ping):
            self._pong = self._frame(Pong(msg.nonce))  # an earlier unsent one is not needed
            self._wake.set()
        elif isinstance(msg, Pong):
            sent_at = self._pings.pop(msg.nonce, None)
            if sent_at is not None:
                self.status.rtt_ms = round((self._clock() - sent_at) * 1000, 1)
        elif isinstance(msg, Refused):
            reason = sanitize(msg.reason)
            self.status.refused_by_peer = reason
            _LOGGER.error("peer %s refused what we sent: %s", self._who(), reason)
            self._finish(f"the peer refused our update: {reason}", PeerState.CLOSED)
        elif isinstance(msg, Bye):
            self.status.error = f"peer closed: {sanitize(msg.reason)}"
            self._finish(self.status.error, PeerState.CLOSED)
        else:
            raise RemoteProtocolError("hello after the handshake")

    def _take_batch(self) -> dict[str, list[Step2 | Update]]:
        batch: dict[str, list[Step2 | Update]] = {}
        size = 0
        while self._inbox:
            msg = self._inbox[0]
            if isinstance(msg, Manifest) or (batch and size + _size(msg) > MAX_BATCH_BYTES):
                break
            self._inbox.popleft()
            size += _size(msg)
            batch.setdefault(msg.doc, []).append(msg)
        self._inbox_bytes -= size
        self._inbox_room.set()
        return batch

    async def _apply(self, doc: str, msgs: list[Step2 | Update]) -> bool:
        if not any(isinstance(m, Step2) for m in msgs) and self.ledger.awaiting(
            doc, self._clock(), self.timing.heartbeat_s
        ):
            # an update of this document could not integrate and its catch-up is asked for:
            # what the peer sent since is in that catch-up; checking it would only find it
            # incomplete again, at the cost of copying the whole document each time
            return True
        try:
            update = msgs[0].update
            if len(msgs) > 1:
                update = pycrdt.merge_updates(*[m.update for m in msgs])
            changed = await self.replica.async_apply_remote(doc, update, self.status.node or "")
        except UpdateIncomplete:
            steps: list[Step2 | Update] = [m for m in msgs if isinstance(m, Step2)]
            if steps and len(steps) < len(msgs):
                # a live update it cannot take yet came in the same batch as the catch-up:
                # the catch-up alone (what it cannot take, the peer sends again)
                return await self._apply(doc, steps)
            if self.ledger.should_ask(doc, self._clock(), self.timing.heartbeat_s):
                self._queue(Step1(doc, self.replica.state_vector(doc)))
            return True
        except (UpdateRefused, ValueError) as err:
            reason = sanitize(err.reason if isinstance(err, UpdateRefused) else "malformed update")
            self._flag(f"refused update of {doc}: {reason}", [Refused(msgs[0].ack, reason)])
            return False
        for msg in msgs:
            self._queue(Ack(msg.ack))
        if any(isinstance(m, Step2) for m in msgs):
            self._manifest_due = self._manifest_due or changed  # show the peer we caught up
            self.ledger.answered(doc)
        return True

    def _evaluate_sync(self) -> None:
        if not self.ledger.synced(self.replica):
            return
        self.status.last_sync = self._wall()
        if self.status.state is PeerState.SYNCING:
            self.reached_live = True
            self._set_state(PeerState.LIVE)
            _LOGGER.info("in sync with peer %s", self._who())

    # -- outgoing -------------------------------------------------------------------------

    def _on_durable(self, name: str, update: bytes, origin: str | None) -> None:
        after = parse_state_vector(self.replica.state_vector(name))
        before = self._seen_sv.get(name)  # ours just before this change (None: not seen)
        self._seen_sv[name] = after
        if self._stopped() or origin == self.status.node:
            return  # never echo an update to the peer it came from
        if origin is not None and len(update) > MAX_LIVE_UPDATE_BYTES:
            # a catch-up from another peer: this one may be getting it first-hand; its next
            # manifest (asked for promptly) tells, else it goes after the wait
            # the clients it moved on: from the states around it, or (the first change of
            # the document this session sees) every client it names, as held now (its state
            # vector would leave out a client it continues from a clock above 0)
            authors = (
                {
                    client: after[client]
                    for client in cm.clients_named(update) or ()
                    if client in after
                }
                if before is None
                else {
                    client: clock
                    for client, clock in after.items()
                    if clock > before.get(client, 0)
                }
            )
            self.ledger.hold(name, authors, self._clock(), self.timing.anti_entropy_s)
            self._manifest_due = True
            return
        how = self.ledger.live(name, len(update), MAX_LIVE_UPDATE_BYTES)
        if how == "diff":
            self._wake.set()
        elif how == "update":
            if self._outbox_bytes + len(update) > MAX_OUTBOX_BYTES:
                self.status.dropped += 1
                return
            ack = self.ledger.sent(name, len(update), self._clock(), None, reach=after, base=before)
            self._queue(Update(name, update, ack))

    def _push(self, name: str, sv: bytes) -> None:
        ours = parse_state_vector(self.replica.state_vector(name))
        base = self.ledger.diff_base(name, sv, ours)
        if base is None:
            return
        sv, ours = base
        update = self.replica.diff(name, sv)
        if len(update) > MAX_UPDATE_BYTES:
            self.status.error = f"{name} is too large to send ({len(update)} bytes)"
            _LOGGER.error("cannot sync with %s: %s", self._who(), self.status.error)
            return
        ack = self.ledger.sent(name, len(update), self._clock(), ours)
        self._queue(Step2(name, update, ack))

    def _manifest(self) -> Manifest:
        names = self.replica.doc_names()
        return Manifest({name: self.replica.state_vector(name) for name in names})

    def _queue(self, msg: Message) -> bytes | None:
        try:
            frame = self._frame(msg)
        except LocalProtocolError:
            _LOGGER.exception("not sending an invalid %s to %s", msg.KIND, self._who())
            return None
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        self._wake.set()
        return frame

    def _queue_timed(self, msg: Ping | Manifest) -> None:
        """Queue what a timer sends: one of each kind in the outbox at most."""
        frame = self._queue(msg)
        if frame is not None:
            self._timed[msg.KIND] = frame

    @staticmethod
    def _frame(msg: Message) -> bytes:
        return encode_frame(encode_message(msg))

    # -- ending ---------------------------------------------------------------------------

    def _flag(self, reason: str, final: list[Message] | None = None) -> None:
        reason = sanitize(reason)
        self.status.refused = reason
        _LOGGER.warning("peer %s flagged: %s", self._who(), reason)
        self._finish(reason, PeerState.REFUSED, [*(final or []), Bye(reason[:MAX_REASON])])

    def _finish(self, reason: str, state: PeerState, final: list[Message] | None = None) -> None:
        if self._stop is None or self._stop.done():
            return
        self._final = final or []
        self._set_state(state)
        if state in (PeerState.DEAD, PeerState.REJECTED):
            self.status.error = sanitize(reason)
        self._stop.set_result(reason)

    async def _flush_final(self) -> None:
        frames, self._final = [self._frame(m) for m in self._final], []
        if frames:
            with contextlib.suppress(ChannelClosed, TimeoutError):
                await asyncio.wait_for(self.channel.send(b"".join(frames)), 1.0)

    def _stopped(self) -> bool:
        return self._stop is None or self._stop.done()

    def _set_state(self, state: PeerState) -> None:
        if self.status.state is not state:
            self.status.state = state
            self.status.since = self._wall()

    def _who(self) -> str:
        status = self.status
        return f"{status.code or '?'} ({status.name or status.address or 'unknown'})"


def _size(msg: Step2 | Update | Manifest) -> int:
    if isinstance(msg, Manifest):
        return sum(len(name) + len(sv) for name, sv in msg.docs.items())
    return len(msg.update)

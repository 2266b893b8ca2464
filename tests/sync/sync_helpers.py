"""Builders for the sync tests: events, replicas, fast timing, in-memory networks."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pycrdt import Doc, Map

import crdt_model as cm
from crdt_model import Timestamp
from sync import (
    PROTOCOL_VERSION,
    Channel,
    ChannelClosed,
    FrameDecoder,
    Hello,
    MemoryChannel,
    MemoryReplica,
    Message,
    NodeIdentity,
    Step2,
    SyncManager,
    Timing,
    Update,
    decode_message,
    encode_frame,
    encode_message,
    memory_channel_pair,
)

M = TypeVar("M", bound=Message)
CLUSTER = "c0ffee"
DAY0_MS = 1_795_869_091_234  # 2026-11-28T09:11:31Z

FAST = Timing(
    anti_entropy_s=0.2,
    heartbeat_s=0.1,
    dead_after_s=0.6,
    handshake_s=1.0,
    ack_timeout_s=0.8,
    backoff_min_s=0.02,
    backoff_max_s=0.2,
    dial_timeout_s=1.0,
)


def identity(code: str, cluster: str = CLUSTER) -> NodeIdentity:
    """A node identity whose node id sorts like its code."""
    return NodeIdentity(cluster, f"node-{code}", code, f"Poste {code}")


def events_doc(*events: dict[str, Any], client_id: int | None = None) -> Doc[Any]:
    """A document holding `events` (written by `client_id`, else a random client)."""
    doc: Doc[Any] = Doc(client_id=client_id) if client_id else Doc()
    for ev in events:
        cm.add_event(doc, ev)
    return doc


def copy(doc: Doc[Any], client_id: int) -> Doc[Any]:
    """Another replica of `doc`, writing as `client_id`."""
    twin: Doc[Any] = Doc(client_id=client_id)
    twin.apply_update(doc.get_update())
    return twin


def event(n: int, node: str = "A", *, day: int = 0, text: str | None = None) -> dict[str, Any]:
    """A valid stored note event; `n` orders it inside its day."""
    ts = Timestamp(DAY0_MS + day * 86_400_000 + n, 0)
    return cm.validate_event(
        {
            "type": "note",
            "text": text or f"note {n} of {node}",
            "id": cm.make_event_id(ts, node),
            "hlc": str(ts),
            "at": "2026-11-28T10:11:31.234+01:00",
            "node": node,
            "user": "u",
            "zone": "office",
        }
    )


def doc_of(ev: dict[str, Any]) -> str:
    """The events document an event belongs in."""
    return cm.events_doc_name(Timestamp.parse(ev["hlc"]))


def record(replica: MemoryReplica, ev: dict[str, Any]) -> bytes | None:
    """Store an event locally, as the node does."""
    return replica.write(doc_of(ev), lambda doc: cm.add_event(doc, ev))


def events_of(replica: MemoryReplica) -> dict[str, dict[str, Any]]:
    """Every event a replica holds, by id."""
    found: dict[str, dict[str, Any]] = {}
    for name, doc in replica.docs.items():
        if name.startswith(cm.EVENTS_PREFIX):
            found.update(cm.iter_events(doc))
    return found


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until `predicate()` holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Counter(MemoryChannel):
    """A channel end that counts the bytes of the catch-up diffs and updates it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.update_bytes = 0

    async def send(self, data: bytes) -> None:
        for frame in FrameDecoder().feed(data):
            msg = decode_message(frame)
            if isinstance(msg, Update | Step2):
                self.update_bytes += len(msg.update)
        await super().send(data)


class ChaosChannel:
    """A channel end whose later messages may be delayed, reordered, dropped or repeated.

    The first message each way (HELLO) goes through at once: the protocol asks a
    handshake in order; what follows may suffer everything a bad network does.
    """

    def __init__(self, inner: MemoryChannel, net: ChaosNet) -> None:
        self.inner = inner
        self.net = net
        self._sent = 0

    async def send(self, data: bytes) -> None:
        if self.inner.closed:
            raise ChannelClosed("closed")
        self._sent += 1
        peer = self.inner.peer
        assert peer is not None
        if self._sent == 1 or not self.net.chaos:
            if self.net.chaos or self.net.pending:
                # keep order behind what is still delayed
                self.net.later(peer, data, self.net.max_delay if self._sent > 1 else 0.0)
            else:
                peer.deliver(data)
            return
        rnd = self.net.rng
        if rnd.random() < self.net.drop:
            return
        copies = 2 if rnd.random() < self.net.dup else 1
        for _ in range(copies):
            self.net.later(peer, data, rnd.uniform(0, self.net.max_delay))

    async def recv(self) -> bytes:
        return await self.inner.recv()

    def close(self) -> None:
        self.inner.close()


class ChaosNet:
    """The lossy network between in-memory nodes."""

    def __init__(
        self,
        rng: random.Random,
        *,
        drop: float = 0.1,
        dup: float = 0.1,
        max_delay: float = 0.02,
    ) -> None:
        self.rng = rng
        self.drop = drop
        self.dup = dup
        self.max_delay = max_delay
        self.chaos = True
        self.pending = 0
        self.channels: list[ChaosChannel] = []

    def later(self, peer: MemoryChannel, data: bytes, delay: float) -> None:
        self.pending += 1

        def deliver() -> None:
            self.pending -= 1
            peer.deliver(data)

        asyncio.get_running_loop().call_later(delay, deliver)

    def pair(self) -> tuple[ChaosChannel, ChaosChannel]:
        a, b = memory_channel_pair()
        pair = ChaosChannel(a, self), ChaosChannel(b, self)
        self.channels.extend(pair)
        return pair

    def cut_one(self) -> None:
        """Close a random open connection (as a cable pulled out)."""
        open_ = [c for c in self.channels if not c.inner.closed]
        if open_:
            self.rng.choice(open_).close()


class Cluster:
    """N in-memory nodes, each with a replica and a manager, all dialling each other."""

    def __init__(self, codes: str, net: ChaosNet | None = None, timing: Timing = FAST) -> None:
        self.net = net
        self.replicas = {code: MemoryReplica() for code in codes}
        self.managers = {
            code: SyncManager(
                self.replicas[code], identity(code), timing=timing, rng=random.Random(i)
            )
            for i, code in enumerate(codes)
        }
        self._accepts: set[asyncio.Task[str]] = set()

    def dialer(self, src: str, dst: str) -> Callable[[], Any]:
        async def dial() -> Channel:
            if self.net is not None:
                mine, theirs = self.net.pair()
            else:
                mine, theirs = memory_channel_pair()  # type: ignore[assignment]
            task = asyncio.create_task(
                self.managers[dst].accept(theirs, address=f"mem:{src}", peer_node=f"node-{src}")
            )
            self._accepts.add(task)
            task.add_done_callback(self._accepts.discard)
            return mine

        return dial

    async def connect_all(self, both_ways: bool = False) -> None:
        codes = list(self.managers)
        for i, src in enumerate(codes):
            for dst in codes[i + 1 :]:
                await self.managers[src].connect(f"mem:{dst}", self.dialer(src, dst))
                if both_ways:
                    await self.managers[dst].connect(f"mem:{src}", self.dialer(dst, src))

    async def close(self) -> None:
        for manager in self.managers.values():
            await manager.close()
        await asyncio.gather(*self._accepts, return_exceptions=True)

    def converged(self) -> bool:
        first, *rest = self.replicas.values()
        want = snapshot(first)
        return all(snapshot(r) == want for r in rest)


def snapshot(replica: MemoryReplica) -> dict[str, Any]:
    """What must be equal on converged replicas: decoded content of every document."""
    out: dict[str, Any] = {}
    for name, doc in replica.docs.items():
        roots: dict[str, Any] = {}
        for root in sorted(doc.keys()):
            shared = doc.get(root, type=Map)
            if len(shared):
                roots[root] = {k: cm.decode(v) for k, v in shared.items()}
        if roots:  # a document nobody wrote in yet has nothing to sync
            out[name] = roots
    return out


def frames_of(data: bytes) -> list[bytes]:
    """The frame payloads in a byte string."""
    return FrameDecoder().feed(data)


class RawPeer:
    """A peer under the test's control: it speaks the protocol by hand (or breaks it)."""

    def __init__(self, channel: MemoryChannel) -> None:
        self.channel = channel
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []
        self.seen: list[Message] = []

    async def send(self, *msgs: Message) -> None:
        await self.channel.send(b"".join(encode_frame(encode_message(m)) for m in msgs))

    async def recv(self, timeout: float = 2.0) -> Message:
        while not self.frames:
            data = await asyncio.wait_for(self.channel.recv(), timeout)
            self.frames.extend(self.decoder.feed(data))
        msg = decode_message(self.frames.pop(0))
        self.seen.append(msg)
        return msg

    async def expect(self, kind: type[M], timeout: float = 2.0) -> M:
        """The next message of a kind, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(msg, kind):
                return msg

    async def handshake(self, me: NodeIdentity, *, version: int = PROTOCOL_VERSION) -> Hello:
        await self.send(Hello(version, me.cluster_id, me.node_id, me.code, me.name))
        return await self.expect(Hello)

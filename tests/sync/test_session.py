from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

import pycrdt
import pytest

import crdt_model as cm
from sync import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Manifest,
    MemoryChannel,
    MemoryReplica,
    PeerSession,
    PeerState,
    Ping,
    Step2,
    Timing,
    Update,
    encode_frame,
    memory_channel_pair,
)

from .sync_helpers import (
    FAST,
    Counter,
    RawPeer,
    doc_of,
    event,
    events_of,
    identity,
    record,
    snapshot,
    wait_until,
)


class Pair:
    """Two replicas, each with a session, over one in-memory connection."""

    def __init__(
        self,
        a: MemoryReplica,
        b: MemoryReplica,
        ca: Any = None,
        cb: Any = None,
        timing: Timing = FAST,
        names: str = "AB",
    ) -> None:
        if ca is None:
            ca, cb = memory_channel_pair()
        self.a, self.b = a, b
        first, second = identity(names[0]), identity(names[1])
        self.sa = PeerSession(a, first, ca, timing=timing, initiator=True, address="mem:b")
        self.sb = PeerSession(b, second, cb, timing=timing, address="mem:a")
        self.tasks = [asyncio.create_task(self.sa.run()), asyncio.create_task(self.sb.run())]

    async def close(self) -> list[str]:
        self.sa.close()
        return list(await asyncio.gather(*self.tasks))


async def _stop(session: PeerSession, task: asyncio.Task[Any]) -> None:
    """End a session a test runs by hand, and its task."""
    session.close("test over")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def replica_with(*events: dict[str, Any]) -> MemoryReplica:
    replica = MemoryReplica()
    for ev in events:
        record(replica, ev)
    return replica


async def test_two_replicas_sync_every_document_both_ways() -> None:
    a = replica_with(event(1, "A"), event(2, "A"))
    a.write(
        cm.ref_doc_name("EXP-1"),
        lambda d: cm.write_reference(
            d, {"export_id": "EXP-1", "exported_at": "2026-11-27T22:00:00"}, {"sets": [{"n": 1}]}
        ),
    )
    a.write(cm.CLUSTER_DOC, lambda d: cm.cluster_put(d, "members", "node-A", {"code": "A"}))
    b = replica_with(event(1, "B", day=1))
    b.write(cm.CLUSTER_DOC, lambda d: cm.cluster_put(d, "members", "node-B", {"code": "B"}))
    pair = Pair(a, b)
    await wait_until(lambda: pair.sa.state is PeerState.LIVE and pair.sb.state is PeerState.LIVE)
    assert snapshot(a) == snapshot(b)
    assert len(events_of(b)) == 3
    status = pair.sa.status_dict()
    assert status["node"] == "B"
    assert status["name"] == "Poste B"
    assert status["address"] == "mem:b"
    assert status["last_sync"] is not None
    assert status["behind"] == 0
    await wait_until(lambda: pair.sa.status_dict()["unconfirmed"] == 0)
    assert await pair.close() == ["closing", "peer closed: closing"]


async def test_sync_over_a_channel_that_delivers_one_byte_at_a_time() -> None:
    class Trickle(MemoryChannel):
        async def send(self, data: bytes) -> None:
            for i in range(len(data)):
                await super().send(data[i : i + 1])

    ca, cb = Trickle(), Trickle()
    ca.peer, cb.peer = cb, ca
    a = replica_with(*(event(n, "A") for n in range(5)))
    b = replica_with(event(9, "B"))
    pair = Pair(a, b, ca, cb)
    await wait_until(lambda: len(events_of(a)) == len(events_of(b)) == 6)
    record(b, event(10, "B"))
    await wait_until(lambda: len(events_of(a)) == 7)
    await pair.close()


async def test_live_updates_are_acknowledged_once_durable() -> None:
    a = replica_with(event(1, "A"))
    b = MemoryReplica(store_delay=0.05)
    pair = Pair(a, b)
    await wait_until(lambda: pair.sa.state is PeerState.LIVE)
    update = record(a, event(2, "A"))
    assert pair.sa.status_dict()["unconfirmed"] == 1
    await wait_until(lambda: pair.sa.status_dict()["unconfirmed"] == 0)
    assert (doc_of(event(2)), update, "node-A") in b.stored  # stored before the ack came back
    assert events_of(a) == events_of(b)
    await pair.close()


class Spy(MemoryChannel):
    """Records every message it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Any] = []
        self.raw = RawPeer(MemoryChannel())

    async def send(self, data: bytes) -> None:
        from sync import FrameDecoder, decode_message

        self.sent.extend(decode_message(f) for f in FrameDecoder().feed(data))
        await super().send(data)


async def test_a_session_never_echoes_an_update_to_its_sender() -> None:
    ca, cb = MemoryChannel(), Spy()
    ca.peer, cb.peer = cb, ca
    a, b = MemoryReplica(), MemoryReplica()
    pair = Pair(a, b, ca, cb)
    await wait_until(lambda: pair.sb.state is PeerState.LIVE)
    for n in range(5):
        record(a, event(n, "A"))
    await wait_until(lambda: len(events_of(b)) == 5)
    await asyncio.sleep(FAST.anti_entropy_s * 2)  # a few anti-entropy rounds
    assert not [m for m in cb.sent if isinstance(m, Update | Step2)]
    assert len([m for m in cb.sent if isinstance(m, Ack)]) == 5
    await pair.close()


async def test_updates_are_relayed_but_not_sent_back() -> None:
    a, b, c = MemoryReplica(), MemoryReplica(), MemoryReplica()
    ab_a, ab_b = MemoryChannel(), Spy()
    ab_a.peer, ab_b.peer = ab_b, ab_a
    ab = Pair(a, b, ab_a, ab_b)
    bc = Pair(b, c)  # C talks to B only
    await wait_until(lambda: ab.sb.state is PeerState.LIVE and bc.sb.state is PeerState.LIVE)
    record(a, event(1, "A"))
    record(c, event(2, "C"))
    await wait_until(lambda: len(events_of(a)) == len(events_of(c)) == 2)
    assert [m.doc for m in ab_b.sent if isinstance(m, Update)] == [doc_of(event(2))]  # C's only
    await ab.close()
    await bc.close()


async def silent_peer(
    victim: MemoryReplica, timing: Timing = FAST, **kw: Any
) -> tuple[PeerSession, RawPeer, Any]:
    mine, theirs = memory_channel_pair()
    session = PeerSession(victim, identity("A"), mine, timing=timing, **kw)
    task = asyncio.create_task(session.run())
    raw = RawPeer(theirs)
    return session, raw, task


async def test_heartbeats_find_a_silent_peer_dead() -> None:
    session, raw, task = await silent_peer(MemoryReplica())
    await raw.handshake(identity("B"))
    await raw.send(Manifest({}))
    await raw.expect(Ping)
    started = asyncio.get_running_loop().time()
    reason = await asyncio.wait_for(task, 3)
    assert session.state is PeerState.DEAD
    assert "no frame" in reason
    assert asyncio.get_running_loop().time() - started <= FAST.dead_after_s + 0.3


async def test_a_peer_answering_pings_stays_alive() -> None:
    session, raw, task = await silent_peer(MemoryReplica())
    await raw.handshake(identity("B"))
    await raw.send(Manifest({}))
    for _ in range(15):  # 1.5 dead_after_s worth of heartbeats
        ping = await raw.expect(Ping)
        await raw.send(Ack(ping.nonce))  # any frame shows life
    assert session.state is PeerState.LIVE
    session.close()
    await task


@pytest.mark.parametrize(
    ("who", "version", "why"),
    [
        (identity("B", cluster="other"), PROTOCOL_VERSION, "another cluster"),
        (identity("B"), PROTOCOL_VERSION + 1, "protocol version"),
        (identity("B"), PROTOCOL_VERSION - 1, "protocol version"),  # a node not upgraded
        (identity("A"), PROTOCOL_VERSION, "ourselves"),
        (identity("C"), PROTOCOL_VERSION, "certificate"),
    ],
)
async def test_incompatible_peers_are_rejected_with_bye(who: Any, version: int, why: str) -> None:
    session, raw, task = await silent_peer(MemoryReplica(), expected_node="node-B")
    if who.code == "C":
        who = identity("C")
    await raw.handshake(who, version=version)
    bye = await raw.expect(Bye)
    assert why in bye.reason
    await task
    assert session.state is PeerState.REJECTED
    assert why in (session.status.error or "")


async def test_anti_entropy_heals_lost_updates() -> None:
    class DropsUpdates(MemoryChannel):
        async def send(self, data: bytes) -> None:
            from sync import FrameDecoder, decode_message

            kept = [
                f for f in FrameDecoder().feed(data) if not isinstance(decode_message(f), Update)
            ]
            await super().send(b"".join(encode_frame(f) for f in kept))

    ca, cb = DropsUpdates(), MemoryChannel()
    ca.peer, cb.peer = cb, ca
    a, b = MemoryReplica(), MemoryReplica()
    pair = Pair(a, b, ca, cb)
    await wait_until(lambda: pair.sa.state is PeerState.LIVE)
    for n in range(3):
        record(a, event(n, "A"))
    assert not events_of(b)  # every live update is lost on the way...
    await wait_until(lambda: len(events_of(b)) == 3, timeout=FAST.anti_entropy_s * 5)
    await pair.close()  # ... and the next manifest brought them all


def counted_pair(
    a: MemoryReplica, b: MemoryReplica, names: str, timing: Timing = FAST
) -> tuple[Pair, Counter, Counter]:
    ca, cb = Counter(), Counter()
    ca.peer, cb.peer = cb, ca
    return Pair(a, b, ca, cb, timing=timing, names=names), ca, cb


def big_replica(node: str, count: int = 1500) -> MemoryReplica:
    """Over MAX_LIVE_UPDATE_BYTES of one day's events: catching up on it is a large diff."""
    return replica_with(*(event(n, node, text=f"{n:05d} " + "x" * 900) for n in range(count)))


async def test_a_large_catch_up_crosses_each_link_once_in_a_full_mesh() -> None:
    a, b, c = big_replica("A"), MemoryReplica(), MemoryReplica()
    size = len(a.diff(doc_of(event(0)), b"\x00"))
    slow = replace(FAST, anti_entropy_s=1.0, dead_after_s=3.0)  # applying 1.6 MB takes a while
    ab, _, _ = counted_pair(a, b, "AB", slow)
    ac, _, _ = counted_pair(a, c, "AC", slow)
    bc, b_to_c, c_to_b = counted_pair(b, c, "BC", slow)
    await wait_until(lambda: len(events_of(b)) == len(events_of(c)) == 1500)
    await asyncio.sleep(slow.anti_entropy_s * 2)  # held-back relays would have gone by now
    # B and C each got A's events first-hand: neither passes them on to the other
    assert b_to_c.update_bytes + c_to_b.update_bytes < size / 10
    for pair in (ab, ac, bc):
        await pair.close()


async def test_a_catch_up_continuing_a_history_already_held_crosses_each_link_once() -> None:
    """B and C held the start of A's history before the split: A's catch-up continues its
    client from a clock above 0, which the update's own state vector does not name."""
    a, b, c = MemoryReplica(), MemoryReplica(), MemoryReplica()
    name = doc_of(event(0))
    record(a, event(0, "A"))
    for other in (b, c):
        await other.async_apply_remote(name, a.diff(name, b"\x00"), "A")
    before = a.state_vector(name)
    for n in range(1, 1500):
        record(a, event(n, "A", text=f"{n:05d} " + "x" * 900))
    catch_up = a.diff(name, before)
    assert pycrdt.get_state(catch_up) == b"\x00"  # it names no client: none starts at 0
    slow = replace(FAST, anti_entropy_s=1.0, dead_after_s=3.0)
    ab, _, _ = counted_pair(a, b, "AB", slow)
    ac, _, _ = counted_pair(a, c, "AC", slow)
    bc, b_to_c, c_to_b = counted_pair(b, c, "BC", slow)
    await wait_until(lambda: len(events_of(b)) == len(events_of(c)) == 1500)
    await asyncio.sleep(slow.anti_entropy_s * 2)
    assert b_to_c.update_bytes + c_to_b.update_bytes < len(catch_up) / 10
    for pair in (ab, ac, bc):
        await pair.close()


async def test_a_large_catch_up_is_relayed_to_a_node_that_cannot_reach_its_author() -> None:
    a, b, c = big_replica("A"), MemoryReplica(), MemoryReplica()
    ab = Pair(a, b)
    bc, b_to_c, _ = counted_pair(b, c, "BC")  # C talks to B only
    await wait_until(lambda: len(events_of(c)) == 1500)
    assert snapshot(c) == snapshot(a)
    assert b_to_c.update_bytes < 1.1 * len(a.diff(doc_of(event(0)), b"\x00"))  # once
    await ab.close()
    await bc.close()


class _Stalled:
    """A peer whose TCP window is full: our sends never complete after HELLO; it talks."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent = 0

    async def send(self, data: bytes) -> None:
        self.sent += 1
        if self.sent > 1:
            await asyncio.Event().wait()

    async def recv(self) -> bytes:
        return await self.inbound.get()

    def close(self) -> None:
        pass


def _stalled_session() -> tuple[PeerSession, _Stalled, asyncio.Task[Any]]:
    """A session of node A with a stalled peer M that said HELLO, running."""
    from sync import PROTOCOL_VERSION, Hello, encode_frame, encode_message

    from .sync_helpers import CLUSTER, FAST, identity

    channel = _Stalled()
    session = PeerSession(MemoryReplica(), identity("A"), channel, timing=FAST)
    hello = Hello(PROTOCOL_VERSION, CLUSTER, "node-M", "M", "M")
    channel.inbound.put_nowait(encode_frame(encode_message(hello)))
    return session, channel, asyncio.get_running_loop().create_task(session.run())


async def test_a_peer_that_pings_and_never_reads_cannot_fill_our_memory() -> None:
    from sync import Ping, encode_frame, encode_message

    session, channel, task = _stalled_session()
    try:
        await asyncio.sleep(0.05)
        pings = b"".join(encode_frame(encode_message(Ping(2**40 + i))) for i in range(5_000))
        for _ in range(10):
            channel.inbound.put_nowait(pings)
            await asyncio.sleep(0.02)
        assert len(session._outbox) < 100  # 50,000 pings: at most one answer waits
    finally:
        await _stop(session, task)


async def test_a_peer_that_sends_but_never_reads_gets_one_ping_and_one_manifest_queued() -> None:
    """The timers queue a PING and a MANIFEST only once the previous one went out: a peer
    that keeps talking but reads nothing costs a bounded outbox, however long it lives."""
    from sync import FrameDecoder, Ping, decode_message, encode_frame, encode_message

    session, channel, task = _stalled_session()
    try:
        for i in range(40):  # 2 s: 20 heartbeats and 10 anti-entropy rounds of FAST
            channel.inbound.put_nowait(encode_frame(encode_message(Ping(2**40 + i))))
            await asyncio.sleep(0.05)
        assert not task.done()  # alive: it talks
        kinds = [
            decode_message(body).KIND
            for frame in session._outbox
            for body in FrameDecoder().feed(frame)
        ]
        assert kinds.count("ping") <= 1
        assert kinds.count("manifest") <= 1
    finally:
        await _stop(session, task)


async def test_a_catch_up_slower_to_cross_than_dead_after_still_arrives() -> None:
    """On a slow link a large diff arrives piece by piece: each piece shows the peer alive."""

    class SlowLink(MemoryChannel):
        """A byte stream at about 1.3 MB/s: a send completes once its bytes have crossed."""

        async def send(self, data: bytes) -> None:
            for start in range(0, len(data), 64 * 1024):
                await asyncio.sleep(0.05)
                await super().send(data[start : start + 64 * 1024])

    ca, cb = SlowLink(), SlowLink()
    ca.peer, cb.peer = cb, ca
    a, b = big_replica("A"), MemoryReplica()
    crossing = len(a.diff(doc_of(event(0)), b"\x00")) / (64 * 1024) * 0.05
    assert crossing > 2 * FAST.dead_after_s  # the catch-up takes longer than dead-after
    pair = Pair(a, b, ca, cb)
    await wait_until(lambda: len(events_of(b)) == 1500, timeout=crossing * 4)
    assert pair.sa.state is PeerState.LIVE or pair.sa.state is PeerState.SYNCING
    assert pair.sb.state is not PeerState.DEAD
    assert pair.sb.status.error is None
    await pair.close()


async def test_updates_that_cannot_integrate_are_checked_once_until_the_catch_up_comes() -> None:
    """Each check of an update that cannot integrate copies the whole day: it is done once."""
    from sync import Step1

    theirs = MemoryReplica()
    updates = [record(theirs, event(n, "B")) for n in range(31)]
    name = doc_of(event(0, "B"))
    victim = MemoryReplica()
    checked: list[str] = []
    apply_remote = victim.async_apply_remote

    async def counted(doc: str, update: bytes, peer: str) -> bool:
        checked.append(doc)
        return await apply_remote(doc, update, peer)

    victim.async_apply_remote = counted  # type: ignore[method-assign]
    calm = replace(FAST, heartbeat_s=1.0, anti_entropy_s=5.0, dead_after_s=5.0)
    session, raw, task = await silent_peer(victim, calm)
    await raw.handshake(identity("B"))
    await raw.send(Manifest({}))
    for n, update in enumerate(updates[1:30], start=1):  # the first one never arrives
        assert update is not None
        await raw.send(Update(name, update, n))
        await asyncio.sleep(0.002)  # one at a time: no batch merges them
    asked = await raw.expect(Step1)
    await asyncio.sleep(0.05)
    assert checked == [name]  # the first was found incomplete; the others waited for the catch-up
    assert not events_of(victim)
    await raw.send(Step2(name, theirs.diff(name, asked.sv), 100))
    await wait_until(lambda: len(events_of(victim)) == 31)
    last = record(theirs, event(31, "B"))
    assert last is not None
    await raw.send(Update(name, last, 101))  # live updates flow again once caught up
    while (await raw.expect(Ack)).ack != 101:
        pass
    await wait_until(lambda: len(events_of(victim)) == 32)
    assert events_of(victim) == events_of(theirs)
    session.close()
    await task


async def test_a_manifest_read_behind_a_slow_store_does_not_bring_the_catch_up_again() -> None:
    """Both sides catch up on a slow disk: manifests wait in the inbox while acks are read
    at once. An old manifest must not make the peer look as if it lacked what it acked."""
    timing = replace(FAST, anti_entropy_s=0.3, heartbeat_s=0.1, dead_after_s=5, ack_timeout_s=30)
    a, b = MemoryReplica(store_delay=0.6), MemoryReplica(store_delay=0.6)
    for n in range(3000):
        record(a, event(n, "A"))
        record(b, event(n, "B"))
    doc = doc_of(event(0, "A"))
    needed = len(a.diff(doc, b.state_vector(doc))) + len(b.diff(doc, a.state_vector(doc)))
    ca, cb = Counter(), Counter()
    ca.peer, cb.peer = cb, ca
    pair = Pair(a, b, ca, cb, timing=timing)
    await wait_until(lambda: len(events_of(a)) == len(events_of(b)) == 6000, 20)
    await asyncio.sleep(1.5)  # several anti-entropy periods after both are whole
    await pair.close()
    assert ca.update_bytes + cb.update_bytes < 1.1 * needed


async def test_requests_for_documents_we_do_not_hold_cost_nothing() -> None:
    """STEP1 asks again for a document we sent: one for any other name is ignored (a hostile
    peer's thousands would fill our tables and cost quadratic time on every send)."""
    from sync import Hello, Manifest, Step1

    from .sync_helpers import CLUSTER

    ours, theirs = memory_channel_pair()
    replica = replica_with(event(0))
    session = PeerSession(replica, identity("A"), ours, timing=FAST)
    peer = RawPeer(theirs)
    task = asyncio.create_task(session.run())
    try:
        await peer.send(Hello(PROTOCOL_VERSION, CLUSTER, "node-M", "M", "M"), Manifest({}))
        await asyncio.sleep(0.05)
        await peer.send(*(Step1(f"ref/x{i}", b"\x00") for i in range(2_000)))
        await asyncio.sleep(0.3)
        assert session.ledger.peer_svs is not None
        assert not any(name.startswith("ref/x") for name in session.ledger.peer_svs)
        assert not any(name.startswith("ref/x") for name in session.ledger.push_queue)
        assert not any(s.doc.startswith("ref/x") for s in session.ledger.inflight.values())
    finally:
        await _stop(session, task)


async def test_a_catch_up_batched_with_an_update_it_cannot_take_is_applied_alone() -> None:
    """The peer relays C's second event (its first came to the peer in a catch-up held back
    from us), we ask for a catch-up, and the answer lands in one batch with that update
    again: the catch-up is applied and acknowledged, not dropped with it."""
    from sync import Hello, Manifest

    from .sync_helpers import CLUSTER

    name = doc_of(event(0))
    p = replica_with(*(event(n, "A") for n in range(50)))
    c = MemoryReplica()
    record(c, event(100, "C"))
    second = record(c, event(101, "C"))
    r = MemoryReplica()
    ours, theirs = memory_channel_pair()
    session = PeerSession(r, identity("R"), ours, timing=replace(FAST, heartbeat_s=2))
    peer = RawPeer(theirs)
    task = asyncio.create_task(session.run())
    try:
        await peer.send(Hello(PROTOCOL_VERSION, CLUSTER, "node-P", "P", "P"), Manifest({}))
        await peer.send(Update(name, second, 1))  # cannot integrate: we ask for a catch-up
        await asyncio.sleep(0.2)
        catch_up = p.diff(name, r.state_vector(name))
        await peer.send(Step2(name, catch_up, 2), Update(name, second, 3))
        ack = await peer.expect(Ack)
        assert ack.ack == 2
        assert len(events_of(r)) == 50
    finally:
        await _stop(session, task)


async def test_a_peer_is_not_called_live_while_it_lacks_most_of_a_document() -> None:
    """A live update in flight counts only for what it carries: B, on a slow disk, is
    still taking in A's 1,000 events while a station keeps writing; A must not say "live"
    (and a fresh last sync) before B holds them, and does once it does."""
    timing = replace(FAST, anti_entropy_s=0.2, heartbeat_s=0.1, dead_after_s=5, ack_timeout_s=30)
    a, b = MemoryReplica(), MemoryReplica(store_delay=0.8)
    for n in range(1000):
        record(a, event(n, "A"))
    pair = Pair(a, b, timing=timing)
    try:
        for i in range(20):
            record(a, event(5000 + i, "A"))  # a station keeps writing today's document
            await asyncio.sleep(0.05)
            if pair.sa.status_dict()["state"] == "live":
                assert len(events_of(b)) >= 1000, "live while the peer lacks the catch-up"
        await wait_until(lambda: pair.sa.status_dict()["state"] == "live", 15)
        assert len(events_of(b)) >= 1000  # the catch-up is in; the last writes on their way
        await wait_until(lambda: len(events_of(b)) == len(events_of(a)), 10)
    finally:
        await pair.close()

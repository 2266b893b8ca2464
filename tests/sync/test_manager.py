from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any

import crdt_model as cm
from sync import Channel, MemoryReplica, PeerState, SyncManager

from .sync_helpers import (
    FAST,
    ChaosNet,
    Cluster,
    Counter,
    doc_of,
    event,
    events_of,
    identity,
    record,
    wait_until,
)


def live_peers(manager: SyncManager) -> list[dict[str, Any]]:
    return [p for p in manager.peers() if p["state"] == "live"]


async def test_two_connections_between_a_pair_become_one() -> None:
    cluster = Cluster("AB")
    await cluster.connect_all(both_ways=True)
    a, b = cluster.managers["A"], cluster.managers["B"]
    await wait_until(lambda: len(live_peers(a)) == 1 and len(live_peers(b)) == 1)
    kept_a, kept_b = a._sessions["node-B"], b._sessions["node-A"]
    await asyncio.sleep(FAST.backoff_max_s * 2)  # no churn: the other dialler waits
    assert a._sessions["node-B"] is kept_a
    assert b._sessions["node-A"] is kept_b
    # the connection kept is the one opened by the smaller node id
    assert kept_a.initiator
    assert not kept_b.initiator
    record(cluster.replicas["B"], event(1, "B"))
    await wait_until(lambda: len(events_of(cluster.replicas["A"])) == 1)
    await cluster.close()


async def test_a_catch_up_goes_once_when_both_nodes_dial_at_once() -> None:
    a, b = MemoryReplica(), MemoryReplica(store_delay=0.2)  # B takes its time to store
    for n in range(300):
        record(a, event(n, "A"))
    size = len(a.diff(doc_of(event(0)), b"\x00"))
    managers = {c: SyncManager(r, identity(c), timing=FAST) for c, r in (("A", a), ("B", b))}
    sent_by_a: list[Counter] = []
    accepting: set[asyncio.Task[str]] = set()

    def dialer(src: str, dst: str) -> Any:
        async def dial() -> Channel:
            mine, theirs = Counter(), Counter()
            mine.peer, theirs.peer = theirs, mine
            sent_by_a.append(mine if src == "A" else theirs)
            accepting.add(
                asyncio.create_task(
                    managers[dst].accept(theirs, address=f"mem:{src}", peer_node=f"node-{src}")
                )
            )
            return mine

        return dial

    # B's connection comes up first; A's, the one both keep, a moment later
    await managers["B"].connect("mem:A", dialer("B", "A"))
    await asyncio.sleep(0.02)
    await managers["A"].connect("mem:B", dialer("A", "B"))
    await wait_until(lambda: len(events_of(b)) == 300)
    await asyncio.sleep(FAST.anti_entropy_s * 2)
    assert len(sent_by_a) == 2  # two connections were opened, one was kept
    assert sum(c.update_bytes for c in sent_by_a) < 1.1 * size
    for manager in managers.values():
        await manager.close()
    await asyncio.gather(*accepting)


async def test_a_lost_connection_is_dialled_again_and_heals() -> None:
    net = ChaosNet(random.Random(1))
    net.chaos = False
    cluster = Cluster("AB", net)
    await cluster.connect_all()
    a_mgr = cluster.managers["A"]
    await wait_until(lambda: len(live_peers(a_mgr)) == 1)
    first = a_mgr._sessions["node-B"]
    net.cut_one()
    record(cluster.replicas["A"], event(1, "A"))  # written while disconnected
    await wait_until(lambda: a_mgr._sessions.get("node-B") not in (None, first))
    await wait_until(lambda: len(events_of(cluster.replicas["B"])) == 1)
    await wait_until(lambda: [p["node"] for p in live_peers(a_mgr)] == ["B"])
    await cluster.close()


async def test_dialling_backs_off_exponentially_with_jitter() -> None:
    manager = SyncManager(MemoryReplica(), identity("A"), timing=FAST, rng=random.Random(3))
    delays = [manager._backoff(n) for n in range(12)]
    for n, delay in enumerate(delays):
        base = min(FAST.backoff_max_s, FAST.backoff_min_s * 2**n)
        assert base * 0.5 <= delay <= base
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter at the cap too

    attempts: list[float] = []

    async def failing() -> Channel:
        attempts.append(time.monotonic())
        raise OSError("connection refused \x1b[31m")

    await manager.connect("10.0.0.9:8701", failing)
    await wait_until(lambda: len(attempts) >= 6, timeout=3)
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[-1] > gaps[0]
    [entry] = manager.peers()
    assert entry["address"] == "10.0.0.9:8701"
    assert entry["state"] == "connecting"
    assert "connection refused" in entry["error"]
    assert "\x1b" not in entry["error"]
    await manager.close()


async def test_redial_ends_the_wait_of_every_dialler_at_once() -> None:
    slow = dataclasses.replace(FAST, backoff_min_s=60.0, backoff_max_s=60.0)
    manager = SyncManager(MemoryReplica(), identity("A"), timing=slow)
    attempts: dict[str, int] = {"10.0.0.8:8701": 0, "10.0.0.9:8701": 0}

    def failing(address: str) -> Any:
        async def dial() -> Channel:
            attempts[address] += 1
            raise OSError("turned away")

        return dial

    for address in attempts:
        await manager.connect(address, failing(address))
    await wait_until(lambda: all(n == 1 for n in attempts.values()))
    await asyncio.sleep(0.1)
    assert all(n == 1 for n in attempts.values())  # each waits its 30-60 s now
    manager.redial()
    await wait_until(lambda: all(n == 2 for n in attempts.values()), timeout=5)
    await asyncio.sleep(0.1)
    assert all(n == 2 for n in attempts.values())  # once, then back to waiting
    await manager.close()


async def test_a_compromised_node_is_flagged_and_the_others_carry_on() -> None:
    cluster = Cluster("ABM")
    evil = cluster.replicas["M"] = MemoryReplica(validate=False)
    cluster.managers["M"] = SyncManager(evil, identity("M"), timing=FAST)
    a, b = cluster.replicas["A"], cluster.replicas["B"]
    for n in range(3):
        record(a, event(n, "A"))
        record(b, event(n, "B"))
    await cluster.connect_all()
    await wait_until(cluster.converged)
    original = events_of(a)
    target = event(1, "A")["id"]
    # M rewrites one of A's events and erases one of B's
    evil.write(
        doc_of(event(1)),
        lambda d: cm.events_map(d).__setitem__(
            target, cm.encode({**event(1, "A"), "text": "forged"})
        ),
    )
    evil.write(doc_of(event(1)), lambda d: cm.events_map(d).pop(event(2, "B")["id"]))
    for code in "AB":
        manager = cluster.managers[code]
        await wait_until(lambda m=manager: "node-M" in m.flagged())  # type: ignore[misc]
    assert events_of(a) == original
    assert events_of(b) == original
    assert events_of(evil) != original
    flagged = {p["node_id"]: p for p in cluster.managers["A"].peers()}["node-M"]
    assert flagged["state"] == "refused"
    assert flagged["flagged"]
    assert flagged["refused"]
    # the honest nodes keep syncing
    record(a, event(7, "A"))
    record(b, event(8, "B"))
    await wait_until(lambda: len(events_of(a)) == len(events_of(b)) == 8)
    assert events_of(a) == events_of(b)
    [peer_b] = [p for p in cluster.managers["A"].peers() if p["node"] == "B"]
    assert peer_b["state"] == "live"
    assert peer_b["last_sync"]
    assert peer_b["name"] == "Poste B"
    await wait_until(lambda: [p["unconfirmed"] for p in live_peers(cluster.managers["A"])] == [0])
    # cut off for good: its new connections are turned down until the flag is cleared
    await asyncio.sleep(FAST.backoff_max_s * 2)
    assert all(
        s.state is not PeerState.LIVE
        for s in cluster.managers["A"]._running
        if s.peer_node == "node-M"
    )
    assert events_of(a) == events_of(b)
    await cluster.close()


async def test_status_of_a_peer_behind() -> None:
    cluster = Cluster("AB")
    await cluster.connect_all()
    await wait_until(lambda: len(live_peers(cluster.managers["A"])) == 1)
    session = cluster.managers["A"]._sessions["node-B"]
    session.ledger.peer_svs = {}  # as if B had told us it holds nothing
    for n in range(4):
        record(cluster.replicas["A"], event(n, "A"))
    [entry] = cluster.managers["A"].peers()
    assert entry["behind"] >= 4
    assert entry["behind_docs"] == 1
    await wait_until(lambda: cluster.managers["A"].peers()[0]["behind"] == 0)
    await cluster.close()


async def test_a_cleared_flag_lets_the_repaired_peer_sync_again() -> None:
    cluster = Cluster("AM")
    evil = cluster.replicas["M"] = MemoryReplica(validate=False)
    cluster.managers["M"] = SyncManager(evil, identity("M"), timing=FAST)
    a = cluster.replicas["A"]
    record(a, event(1, "A"))
    await cluster.connect_all()
    await wait_until(cluster.converged)
    evil.write(doc_of(event(1)), lambda d: cm.events_map(d).pop(event(1, "A")["id"]))
    await wait_until(lambda: "node-M" in cluster.managers["A"].flagged())
    await cluster.managers["M"].close()
    # M is repaired (its data rebuilt) and starts again under the same identity
    repaired = cluster.replicas["M"] = MemoryReplica()
    record(repaired, event(5, "M"))
    cluster.managers["M"] = SyncManager(repaired, identity("M"), timing=FAST)
    await cluster.managers["M"].connect("mem:A", cluster.dialer("M", "A"))
    await asyncio.sleep(FAST.backoff_max_s * 2)
    assert event(5, "M")["id"] not in events_of(a)  # still turned down
    await cluster.managers["M"].close()  # the operator looks at it, M stopped meanwhile
    await asyncio.sleep(0.1)
    cluster.managers["A"].clear_flag("node-M")
    [seen] = [p for p in cluster.managers["A"].peers() if p.get("node_id") == "node-M"]
    assert seen["flagged"] is False  # /api/peers says so at once, not "refused" still
    assert seen["state"] != "refused"
    cluster.managers["M"] = SyncManager(repaired, identity("M"), timing=FAST)
    await cluster.managers["M"].connect("mem:A", cluster.dialer("M", "A"))
    await wait_until(lambda: events_of(a) == events_of(repaired))
    assert not cluster.managers["A"].flagged()
    await cluster.close()


async def test_a_dialled_member_cannot_take_another_members_place() -> None:
    """The dialled peer's certificate names it (the channel's peer_node): its HELLO must agree."""
    from sync import PROTOCOL_VERSION, Hello, encode_frame, encode_message, memory_channel_pair

    from .sync_helpers import CLUSTER

    a = SyncManager(MemoryReplica(), identity("A"), timing=FAST)
    c = SyncManager(MemoryReplica(), identity("C"), timing=FAST)
    try:

        async def dial_c() -> Channel:
            mine, theirs = memory_channel_pair()
            mine.peer_node = "node-C"  # type: ignore[attr-defined]  # as the node's dialer sets
            asyncio.get_running_loop().create_task(c.accept(theirs, peer_node="node-A"))
            return mine

        await a.connect("c:8701", dial_c)
        await wait_until(lambda: [p["node_id"] for p in live_peers(a)] == ["node-C"])
        real = a._sessions["node-C"]

        async def dial_m() -> Channel:  # member M, whose certificate says node-M, claims C
            mine, theirs = memory_channel_pair()
            mine.peer_node = "node-M"  # type: ignore[attr-defined]
            hello = Hello(PROTOCOL_VERSION, CLUSTER, "node-C", "C", "Poste C")
            await theirs.send(encode_frame(encode_message(hello)))
            return mine

        await a.connect("m:8701", dial_m)
        await asyncio.sleep(0.5)
        assert not real.ended.is_set()  # the real C keeps its session
        assert a.flagged() == {}
        assert [p["node_id"] for p in live_peers(a)] == ["node-C"]
    finally:
        await a.close()
        await c.close()


async def test_a_node_revoked_while_its_connection_opens_gets_nothing() -> None:
    """Admission is asked again when the HELLO arrives, not only when the certificate did."""
    from sync import (
        PROTOCOL_VERSION,
        FrameDecoder,
        Hello,
        Manifest,
        Step2,
        decode_message,
        encode_frame,
        encode_message,
        memory_channel_pair,
    )

    from .sync_helpers import CLUSTER

    members = {"node-R"}
    replica = MemoryReplica()
    record(replica, event(1, "A"))
    a = SyncManager(replica, identity("A"), timing=FAST, admit=members.__contains__)
    try:
        mine, theirs = memory_channel_pair()
        accepted = asyncio.get_running_loop().create_task(a.accept(mine, peer_node="node-R"))
        await asyncio.sleep(0.2)  # its certificate passed; it holds its HELLO back
        members.discard("node-R")  # the revocation lands
        a.disconnect("node-R", "revoked")
        hello = Hello(PROTOCOL_VERSION, CLUSTER, "node-R", "R", "stolen PC")
        await theirs.send(encode_frame(encode_message(hello)))
        await theirs.send(encode_frame(encode_message(Manifest({}))))
        received: list[Any] = []
        decoder = FrameDecoder()

        async def read() -> None:
            while True:
                for frame in decoder.feed(await theirs.recv()):
                    received.append(decode_message(frame))

        reader = asyncio.get_running_loop().create_task(read())
        reason = await asyncio.wait_for(accepted, 5)
        reader.cancel()
        assert "not a current member" in reason
        assert not [m for m in received if isinstance(m, Step2)]
        assert live_peers(a) == []
    finally:
        await a.close()

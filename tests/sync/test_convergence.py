"""(a) Replicas exchanging through the protocol over a lossy network converge."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crdt_model as cm

from .sync_helpers import ChaosNet, Cluster, event, events_of, record, snapshot, wait_until

KINDS = ("event", "event", "event", "cluster", "uncluster", "ref", "shared-ref", "ack", "cut")


def write(cluster: Cluster, code: str, kind: str, n: int, rng: random.Random) -> str | None:
    """One local write (or a pulled cable); the id of an event written, if any."""
    replica = cluster.replicas[code]
    if kind == "event":
        ev = event(n, code, day=rng.randrange(3))
        if ev["id"] not in events_of(replica):
            record(replica, ev)
            return str(ev["id"])
    elif kind == "cluster":  # concurrent writes to few keys
        key = f"k{rng.randrange(3)}"
        replica.write(cm.CLUSTER_DOC, lambda d: cm.cluster_put(d, "settings", key, {"by": code}))
    elif kind == "uncluster":
        key = f"k{rng.randrange(3)}"
        replica.write(cm.CLUSTER_DOC, lambda d: cm.cluster_map(d, "settings").pop(key, None))
    elif kind in ("ref", "shared-ref"):
        export = "SHARED" if kind == "shared-ref" else f"EXP-{code}"
        name = cm.ref_doc_name(export)
        if name not in replica.docs:  # written once; the same export may land on two nodes
            manifest = {"export_id": export, "exported_at": "2026-11-27T22:00:00+01:00"}
            rows = {"instruments": [{"udi": f"{export}-{i}"} for i in range(5)]}
            replica.write(name, lambda d: cm.write_reference(d, manifest, rows))
    elif kind == "ack":
        held = sorted(events_of(replica).items())
        if held:
            event_id, ev = rng.choice(held)
            key = f"{event_id}/{code}"
            doc = replica.docs[cm.events_doc_name(cm.Timestamp.parse(ev["hlc"]))]
            if key not in cm.acks_map(doc):
                replica.write(
                    cm.events_doc_name(cm.Timestamp.parse(ev["hlc"])),
                    lambda d: cm.acks_map(d).__setitem__(key, cm.encode({"at": n})),
                )
    elif kind == "cut" and cluster.net is not None:
        cluster.net.cut_one()
    return None


async def scenario(
    seed: int, nodes: int, ops: list[tuple[int, str]], drop: float, dup: float
) -> None:
    rng = random.Random(seed)
    net = ChaosNet(rng, drop=drop, dup=dup, max_delay=0.02)
    cluster = Cluster("ABCDE"[:nodes], net)
    try:
        await cluster.connect_all(both_ways=rng.random() < 0.5)
        written: list[str] = []
        codes = list(cluster.replicas)
        for n, (who, kind) in enumerate(ops):
            event_id = write(cluster, codes[who % nodes], kind, n, rng)
            if event_id:
                written.append(event_id)
            await asyncio.sleep(rng.uniform(0, 0.02))
        net.chaos = False  # the network heals
        await wait_until(cluster.converged, timeout=20)
        for replica in cluster.replicas.values():
            assert set(written) <= events_of(replica).keys()
        for manager in cluster.managers.values():
            assert not manager.flagged()
        first = snapshot(next(iter(cluster.replicas.values())))
        assert all(snapshot(r) == first for r in cluster.replicas.values())
    finally:
        await cluster.close()


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    nodes=st.integers(3, 5),
    ops=st.lists(st.tuples(st.integers(0, 4), st.sampled_from(KINDS)), min_size=5, max_size=60),
    drop=st.sampled_from([0.0, 0.1, 0.3]),
    dup=st.sampled_from([0.0, 0.1, 0.3]),
)
async def test_replicas_converge_over_a_lossy_network(
    seed: int, nodes: int, ops: list[tuple[int, str]], drop: float, dup: float
) -> None:
    await scenario(seed, nodes, ops, drop, dup)


async def test_a_heavy_mix_converges() -> None:
    rng = random.Random(2026)
    ops: list[Any] = [(rng.randrange(5), rng.choice(KINDS)) for _ in range(120)]
    await scenario(7, 5, ops, 0.3, 0.3)

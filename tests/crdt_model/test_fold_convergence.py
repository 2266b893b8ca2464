"""Convergence: the same events, delivered to nodes in any order and batches, fold the same."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crdt_model as cm
from tests.crdt_model.fold_helpers import Fold, feed_bytes, random_history, small_reference

TODAY = "2026-12-01"


class SimulatedNode:
    """A node's fold and its store of CBOR values, fed in whatever order events arrive."""

    def __init__(self) -> None:
        self.fold = Fold(reference=small_reference())
        self.store: dict[str, bytes] = {}

    def receive(self, batch: list[dict[str, Any]]) -> None:
        for event in batch:
            self.store.setdefault(event["id"], cm.encode(event))
        if len(batch) == 1:
            self.fold.add(batch[0])
        else:
            self.fold.add_many(batch)

    def views(self) -> dict[str, Any]:
        return self.fold.snapshot(TODAY)

    def feed(self) -> bytes:
        return feed_bytes(_shuffled_keys(cm.decode_map(v)) for v in self.store.values())


def _shuffled_keys(event: dict[str, Any]) -> dict[str, Any]:
    keys = list(event)
    random.Random(len(keys)).shuffle(keys)
    return {k: event[k] for k in keys}


def deliver(events: list[dict[str, Any]], rng: random.Random, node: SimulatedNode) -> None:
    """Deliver every event once (some twice), shuffled, in batches of random sizes."""
    order = list(events) + rng.sample(events, min(3, len(events)))
    rng.shuffle(order)
    i = 0
    while i < len(order):
        size = rng.choice((1, 1, 2, 5, 20))
        node.receive(order[i : i + size])
        i += size


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    history_seed=st.integers(0, 2**32 - 1),
    n_sets=st.integers(2, 8),
    rounds=st.integers(1, 4),
    orders=st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=3),
)
def test_nodes_fed_in_any_order_agree_on_views_anomalies_and_feed(
    history_seed: int, n_sets: int, rounds: int, orders: list[int]
) -> None:
    events = random_history(random.Random(history_seed), n_sets=n_sets, rounds=rounds)
    reference = SimulatedNode()
    reference.receive(sorted(events, key=lambda e: e["id"])[:1])
    for event in sorted(events, key=lambda e: e["id"])[1:]:
        reference.receive([event])
    want_views = reference.views()
    want_feed = reference.feed()
    for seed in orders:
        node = SimulatedNode()
        deliver(events, random.Random(seed), node)
        assert node.views() == want_views
        assert node.feed() == want_feed
    assert json.dumps(want_views, sort_keys=True)  # the views are JSON data


def test_a_partition_healing_merges_to_the_same_state() -> None:
    events = random_history(random.Random(5), n_sets=8, rounds=4)
    rng = random.Random(9)
    left = [e for e in events if e["node"] in ("A", "C")]
    right = [e for e in events if e["node"] not in ("A", "C")]
    one, two = SimulatedNode(), SimulatedNode()
    deliver(left, rng, one)
    deliver(right, rng, two)
    one.receive(right)
    for event in left:
        two.receive([event])
    assert one.views() == two.views()
    assert one.feed() == two.feed()
    canonical = SimulatedNode()
    canonical.receive(events)
    assert canonical.views() == one.views()

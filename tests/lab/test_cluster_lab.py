"""Five real nodes, each in its own network namespace: mDNS discovery, a split, a power cut, healing.

The nodes find each other by mDNS alone (no static peer). They are reached
through their control sockets (see tests/lab/cluster_helpers.py), and once over
TCP from inside their namespaces. The sync timings are the node's own (anti-entropy
5 s, heartbeat 2 s, dead after 8 s: the node reads no setting to shorten them),
so every wait is bounded and says what it waited for.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.lab import Lab
from node import DataDir
from tests.lab.cluster_helpers import (
    ClusterError,
    LabNode,
    build_cluster,
    describe_peers,
    feed_ids,
    join_node,
    start_first,
    tcp_feed_digest,
    wait_until,
)
from tests.lab.lab_helpers import lab_namespaces, lab_prefix, require_netns
from tests.procs import node_status

pytestmark = pytest.mark.slow

SUBNET = "10.231.42.0/24"
LIVE_TIMEOUT_S = 45.0  # mDNS (register ~1.5 s) + TLS + first sync; a dial backoff may add to it
SPLIT_TIMEOUT_S = 30.0  # dead after 8 s without a frame, checked every 0.5 s
CONVERGE_TIMEOUT_S = 90.0  # redial backoff grows during a split (up to 30 s) + anti-entropy 5 s
LINK_TIMEOUT_S = 20.0


def _event(node: str, i: int, rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.3:
        return {
            "type": "wash.loaded",
            "machine": f"LAV-{node.upper()}",
            "program": "INSTRU 93°C 3MIN NORMAL",
            "sets": [f"JDIGGRBA#{node}{i:03d}"],
        }
    return {"type": "note", "text": f"poste {node}: note {i}"}


def _write(nodes: list[LabNode], per_node: int, phase: str, acked: dict[str, str]) -> None:
    """Write `per_node` events on each running node; every 201 id goes into `acked`."""
    rng = random.Random(phase)
    for node in nodes:
        for i in range(per_node):
            event_id = node.post_event(_event(node.node, i, rng))
            acked[event_id] = f"{node.node}/{phase}"


def _wait_all_live(nodes: list[LabNode], timeout: float = LIVE_TIMEOUT_S) -> None:
    codes = {n.node.upper() for n in nodes}

    def all_live() -> bool:
        for node in nodes:
            want = codes - {node.node.upper()}
            if node.live_peers() != want:
                raise ClusterError("\n" + describe_peers(nodes))
        return True

    wait_until("every node live with the 4 others (GET /api/peers)", all_live, timeout)


def _wait_split(nodes: list[LabNode], groups: list[set[str]]) -> None:
    group_of = {name: g for g in groups for name in g}

    def split_seen() -> bool:
        for node in nodes:
            across = {c for c in node.live_peers() if c.lower() not in group_of[node.node]}
            if across:
                raise ClusterError(f"{node.node} still live with {sorted(across)}")
        return True

    wait_until("the split seen by every node", split_seen, SPLIT_TIMEOUT_S)


def _wait_converged(nodes: list[LabNode], acked: dict[str, str]) -> bytes:
    expected = set(acked)

    def converged() -> bytes | None:
        feeds = {node.node: node.feed() for node in nodes}
        missing = {
            name: sorted(expected - feed_ids(feed))[:3]
            for name, feed in feeds.items()
            if not expected <= feed_ids(feed)
        }
        if missing:
            where = {n: [f"{i} ({acked[i]})" for i in ids] for n, ids in missing.items()}
            raise ClusterError(f"acknowledged events missing: {where}\n{describe_peers(nodes)}")
        if len(set(feeds.values())) != 1:
            sizes = {name: len(feed.splitlines()) for name, feed in feeds.items()}
            raise ClusterError(f"feeds differ (lines per node: {sizes})\n{describe_peers(nodes)}")
        return next(iter(feeds.values()))

    return wait_until("all five nodes converged", converged, CONVERGE_TIMEOUT_S, step=1.0)


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_netns()
    prefix = lab_prefix("smtclu")
    with Lab(prefix, 5, SUBNET) as built:
        yield built
    assert lab_namespaces(prefix) == []


def test_five_nodes_find_each_other_by_mdns_and_converge_after_split_and_power_cut(
    lab: Lab, tmp_path: Path
) -> None:
    nodes, token = build_cluster(lab, tmp_path)
    a, b, c, d, e = nodes
    # One at a time, each once it is live with a: a node that joined before another
    # learns of it from a's member list, and only then sees its mDNS announcement.
    # Started together, a node may see a newer member's announcement first and
    # would once have been ignored for good (see the test below).
    for node in nodes[1:]:
        node.start()
        wait_until(
            f"{node.node} live with a",
            lambda node=node: "A" in node.live_peers() or None,
            LIVE_TIMEOUT_S,
        )

    # (c1) mDNS alone: no node was given a peer address
    _wait_all_live(nodes)

    # (c2) split {a, b} | {c, d, e}; write on both sides, also before the split is noticed
    acked: dict[str, str] = {}
    _write(nodes, 3, "before-split", acked)
    lab.partition([["a", "b"], ["c", "d", "e"]])
    _write(nodes, 5, "split-unnoticed", acked)
    _wait_split(nodes, [{"a", "b"}, {"c", "d", "e"}])
    _write(nodes, 10, "split", acked)

    # power cut of d during the split: what it answered 201 must survive
    d_acked = {i for i, where in acked.items() if where.startswith("d/")}
    assert d.kill() == -9
    d.start()
    assert d_acked <= feed_ids(d.feed()), "d lost events it had acknowledged"
    _write(nodes, 10, "after-restart", acked)
    wait_until(
        "d live again with c and e",
        lambda: d.live_peers() >= {"C", "E"} or None,
        LIVE_TIMEOUT_S,
    )
    _write([a, c, d], 5, "late-split", acked)

    lab.heal()
    _write([b, e], 5, "healed", acked)
    feed = _wait_converged(nodes, acked)
    ids = feed_ids(feed)
    assert len(ids) == len(acked) == len(feed.splitlines())
    assert set(acked) == ids

    # the same feed over each node's TCP API, inside its namespace, with a token
    digests = {node.node: tcp_feed_digest(lab, node.node, token) for node in nodes}
    assert {x["lines"] for x in digests.values()} == {len(acked)}
    assert len({x["sha256"] for x in digests.values()}) == 1, digests


class NeverLinkedError(AssertionError):
    """The two nodes never linked directly: the failure this test guards against."""


def test_an_mdns_peer_ignored_while_unknown_is_dialled_once_it_is_a_member(
    lab: Lab, tmp_path: Path
) -> None:
    a, _ = start_first(lab, tmp_path)
    # Two joiners such that the earlier one (stale: it does not know the later one)
    # has the smaller node id, i.e. it is the one that must dial.
    joined: list[tuple[DataDir, str]] = []
    pair: tuple[DataDir, DataDir] | None = None
    for i in range(8):
        data = DataDir(tmp_path / f"j{i}")
        join_node(lab, a, "b", data)
        node_id = str(node_status(data)["node_id"])
        older = [(d, n) for d, n in joined if n < node_id]
        if older:
            pair = (min(older, key=lambda x: x[1])[0], data)
            break
        joined.append((data, node_id))
    assert pair is not None, "no join order with increasing node ids in 8 joins"
    newer_code = str(node_status(pair[1])["node"])
    a.stop()  # the stale node cannot learn of the newer one before it hears its announcement
    stale = LabNode(lab, "b", pair[0])
    newer = LabNode(lab, "c", pair[1])
    stale.launch(log_level="DEBUG")
    newer.launch()
    stale.wait_ready()
    newer.wait_ready()
    wait_until(
        "the stale node ignoring the newer one's mDNS announcement",
        lambda: f"mDNS peer {newer_code} is not a known member yet" in stale.stderr_text() or None,
        LINK_TIMEOUT_S,
    )
    a.start()
    wait_until(
        "the stale node knowing the newer one as a member",
        lambda: newer_code in stale.live_peers() or _knows(stale, newer_code),
        LIVE_TIMEOUT_S,
    )
    try:
        wait_until(
            "the two linked directly",
            lambda: newer_code in stale.live_peers() or None,
            LINK_TIMEOUT_S,
        )
    except ClusterError as err:
        raise NeverLinkedError(str(err)) from None


def _knows(node: LabNode, code: str) -> bool | None:
    status, _, raw = node.request("GET", "/api/nodes")
    if status != 200:
        return None
    return any(m.get("code") == code for m in json.loads(raw)["nodes"]) or None

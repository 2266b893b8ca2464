"""Real zeroconf between network namespaces: nodes of one cluster find each other,
other clusters and forged or malformed announcements are ignored, a goodbye is seen."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.lab import Lab
from tests.discovery.discovery_helpers import Agent
from tests.lab.lab_helpers import lab_namespaces, lab_prefix, require_netns

CA = "5a" * 32
OTHER_CA = "c3" * 32
NODE_A = "a1" * 16
NODE_B = "b2" * 16
NODE_C = "c3" * 16
SYNC_PORT = 8701

StartAgent = Callable[..., Agent]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_netns()
    prefix = lab_prefix("smtdisc")
    with Lab(prefix, 3) as built:
        yield built
    assert lab_namespaces(prefix) == []


@pytest.fixture
def start(lab: Lab, tmp_path: Path) -> Iterator[StartAgent]:
    """Start agents; every one is stopped at teardown, whatever happened."""
    agents: list[Agent] = []

    def _start(node: str, *args: str) -> Agent:
        agent = Agent(lab, node, args, tmp_path)
        agents.append(agent)
        return agent

    yield _start
    for agent in agents:
        agent.stop()


def _node(start: StartAgent, ns: str, node_id: str, code: str, ca: str = CA) -> Agent:
    return start(
        ns,
        "run",
        *("--node-id", node_id, "--code", code, "--ca", ca),
        *("--port", str(SYNC_PORT), "--interface", "eth0"),
    )


def _no_peer(agent: Agent, *node_ids: str) -> None:
    proposed = [e for e in agent.peers() if e["node_id"] in node_ids]
    assert not proposed, f"agent {agent.node} proposed {proposed}"


def test_two_nodes_of_one_cluster_find_each_other(lab: Lab, start: StartAgent) -> None:
    a = _node(start, "a", NODE_A, "A")
    b = _node(start, "b", NODE_B, "B")
    a.started()
    b.started()

    seen_by_a = a.peer(NODE_B)
    seen_by_b = b.peer(NODE_A)

    assert seen_by_a == {
        "event": "peer",
        "node_id": NODE_B,
        "code": "B",
        "host": lab.addr("b"),
        "port": SYNC_PORT,
        "source": "mdns",
        "proto_version": 1,
    }
    assert (seen_by_b["host"], seen_by_b["code"]) == (lab.addr("a"), "A")
    _no_peer(a, NODE_A)
    _no_peer(b, NODE_B)


def test_another_clusters_nodes_are_ignored(lab: Lab, start: StartAgent) -> None:
    a = _node(start, "a", NODE_A, "A")
    c = _node(start, "c", NODE_C, "C", ca=OTHER_CA)
    a_name = a.started()["name"]
    c_name = c.started()["name"]

    assert "other cluster" in a.ignored(c_name)["reason"]
    assert "other cluster" in c.ignored(a_name)["reason"]
    _no_peer(a, NODE_C)
    _no_peer(c, NODE_A)


def test_forged_and_malformed_announcements_are_ignored(lab: Lab, start: StartAgent) -> None:
    def entries(*items: bytes) -> str:
        return b"".join(bytes((len(x),)) + x for x in items).hex()

    ca, node, code, v = (f"ca={CA}".encode(), b"node=" + b"f0" * 16, b"code=F", b"v=1")
    forged: dict[str, dict[str, Any]] = {
        "forged-no-ca": {"txt": {"node": "f1" * 16, "code": "F", "v": "1"}},
        "forged-wrong-ca": {"txt": {"ca": OTHER_CA, "node": "f2" * 16, "code": "F", "v": "1"}},
        "forged-bad-version": {"txt": {"ca": CA, "node": "f3" * 16, "code": "F", "v": "one"}},
        "forged-control-chars": {"txt": {"ca": CA, "node": "evil\x1b[2J", "code": "F", "v": "1"}},
        "forged-our-node-id": {"txt": {"ca": CA, "node": NODE_A, "code": "A", "v": "1"}},
        "forged-twice-ca": {"raw": entries(ca, node, code, v, f"ca={OTHER_CA}".encode())},
        "forged-truncated": {"raw": entries(ca, node, code, v) + "40" + b"v=2".hex()},
        "forged-not-utf8": {"raw": entries(ca, b"node=\xff\xfe", code, v)},
        # The control: a well-formed record with our CA is proposed (only TLS decides).
        "forged-well-formed": {"txt": {"ca": CA, "node": "f9" * 16, "code": "F", "v": "2"}},
    }
    records = [{"name": name, **spec} for name, spec in forged.items()]
    forger = start("c", "forge", "--interface", "eth0", "--records", json.dumps(records))
    forger.started()
    a = _node(start, "a", NODE_A, "A")
    a.started()

    control = a.peer("f9" * 16)
    assert (control["host"], control["proto_version"]) == (lab.addr("c"), 2)
    reasons = {name: a.ignored(name)["reason"] for name in forged if name != "forged-well-formed"}
    assert "lacks ca" in reasons["forged-no-ca"]
    assert "other cluster" in reasons["forged-wrong-ca"]
    assert "not a version" in reasons["forged-bad-version"]
    assert "not a node id" in reasons["forged-control-chars"]
    assert "\x1b" not in reasons["forged-control-chars"]
    assert "own node id" in reasons["forged-our-node-id"]
    assert "appears twice" in reasons["forged-twice-ca"]
    assert "past the end" in reasons["forged-truncated"]
    assert "not UTF-8" in reasons["forged-not-utf8"]
    assert [e["node_id"] for e in a.peers()] == ["f9" * 16]


def test_a_graceful_stop_is_seen_as_gone(lab: Lab, start: StartAgent) -> None:
    a = _node(start, "a", NODE_A, "A")
    b = _node(start, "b", NODE_B, "B")
    a.started()
    b.started()
    a.peer(NODE_B)

    b.stop()

    assert b.events[-1]["event"] == "stopped", b.describe()
    a.wait_for("gone B", lambda e: e["event"] == "gone" and e["node"] == NODE_B)

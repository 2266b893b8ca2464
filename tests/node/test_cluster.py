"""Real node processes on loopback forming a cluster with static peers."""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node import DataDir
from node._pki import NodePki, create_ca, make_csr, new_key, sign_node
from tests.procs import NodeProcess, create_token, init_node_dir, run_cli

pytestmark = pytest.mark.slow

CONVERGE_TIMEOUT_S = 60


def join_node(a: NodeProcess, path: Path, name: str, zone: str) -> DataDir:
    token = run_cli("invite", "--data", str(a.data.root)).stdout.strip()
    assert a.sync_address is not None
    run_cli(
        "join",
        "--data",
        str(path),
        "--name",
        name,
        "--zone",
        zone,
        "--token",
        token,
        "--peer",
        a.sync_address,
    )
    return DataDir(path)


class Cluster:
    def __init__(self, nodes: list[NodeProcess], token: str) -> None:
        self.nodes = nodes
        self.token = token

    async def feed(self, node: NodeProcess, session: aiohttp.ClientSession) -> bytes:
        out = b""
        after = None
        while True:
            params = {"limit": "10000", **({"after": after} if after else {})}
            async with session.get(
                node.base_url + "/api/feed",
                params=params,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                out += await resp.read()
                after = resp.headers.get("Sterimesh-Next-After")
            if after is None:
                return out

    async def wait_converged(self, expected: set[str]) -> list[bytes]:
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while True:
                feeds = [await self.feed(n, session) for n in self.nodes]
                ids = [
                    {
                        line.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
                        for line in f.splitlines()
                    }
                    for f in feeds
                ]
                if all(i >= expected for i in ids) and len(set(feeds)) == 1:
                    return feeds
                if time.monotonic() > deadline:
                    missing = [sorted(expected - i)[:3] for i in ids]
                    pytest.fail(
                        f"no convergence in {CONVERGE_TIMEOUT_S}s; missing per node: {missing}"
                    )
                await asyncio.sleep(0.5)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    a_dir = init_node_dir(tmp_path / "a", "Poste lavage", "sale")
    token = create_token(a_dir, "operator", "station")  # made before the joins: every node knows it
    a = NodeProcess(a_dir).start()
    nodes = [a]
    try:
        b_dir = join_node(a, tmp_path / "b", "Poste propre", "propre")
        c_dir = join_node(a, tmp_path / "c", "Poste stérile", "sterile")
        assert a.sync_address is not None
        b = NodeProcess(b_dir, peers=[a.sync_address]).start()
        nodes.append(b)
        assert b.sync_address is not None
        c = NodeProcess(c_dir, peers=[a.sync_address, b.sync_address]).start()
        nodes.append(c)
        yield Cluster(nodes, token)
    finally:
        for node in nodes:
            node.close()


async def _write(
    node: NodeProcess, token: str, n: int, tag: str, session: aiohttp.ClientSession
) -> list[str]:
    ids = []
    rng = random.Random(tag)
    for i in range(n):
        body: dict[str, Any] = {"type": "note", "text": f"{tag} {i}"}
        if rng.random() < 0.3:
            body = {
                "type": "wash.loaded",
                "machine": f"LAV-{tag}",
                "program": "INSTRU",
                "sets": [f"{tag}#{i}"],
            }
        async with session.post(
            node.base_url + "/api/events", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            answer = await resp.json()
            assert resp.status == 201, answer
            ids.append(answer["id"])
    return ids


async def test_three_nodes_written_concurrently_converge_to_identical_feeds(
    cluster: Cluster,
) -> None:
    async with aiohttp.ClientSession() as session:
        batches = await asyncio.gather(
            *(
                _write(node, cluster.token, 60, tag, session)
                for node, tag in zip(cluster.nodes, "ABC", strict=True)
            )
        )
    acknowledged = {i for batch in batches for i in batch}
    assert len(acknowledged) == 180
    feeds = await cluster.wait_converged(acknowledged)
    assert len(feeds[0].splitlines()) == 180
    # load numbers are unique across nodes
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            cluster.nodes[0].base_url + "/api/events?type=wash.loaded&limit=1000",
            headers={"Authorization": f"Bearer {cluster.token}"},
        ) as resp,
    ):
        loads = [e["load"] for e in (await resp.json())["events"]]
    assert len(loads) == len(set(loads))
    assert {load[0] for load in loads} <= {"A", "B", "C"}


async def test_peers_report_their_sync_state(cluster: Cluster) -> None:
    admin = create_token(cluster.nodes[0].data, "admin", "it")
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(
                cluster.nodes[0].base_url + "/api/peers",
                headers={"Authorization": f"Bearer {admin}"},
            ) as resp:
                peers = (await resp.json())["peers"]
            live = [p for p in peers if p.get("state") == "live"]
            if len({p.get("node") for p in live}) == 2:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"peers never live: {peers}")
            await asyncio.sleep(0.3)
    assert {p["node"] for p in live} == {"B", "C"}
    assert all(p["member"] == "member" for p in live)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            cluster.nodes[0].base_url + "/metrics", headers={"Authorization": f"Bearer {admin}"}
        ) as resp,
    ):
        text = await resp.text()
    assert 'sterimesh_peer_live{peer="B"} 1.0' in text
    assert 'sterimesh_peer_live{peer="C"} 1.0' in text
    assert "sterimesh_peer_unconfirmed" in text


async def test_a_node_restarted_after_sigkill_catches_up(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    async with aiohttp.ClientSession() as session:
        first = await _write(a, cluster.token, 20, "before", session)
        c.kill()
        during = await _write(b, cluster.token, 20, "during", session)
        c.start()
        after = await _write(c, cluster.token, 10, "after", session)
    await cluster.wait_converged(set(first + during + after))
    # the outage is in the logs of the survivors connected to C, where IT looks
    logs = [node.stderr_path.read_text() for node in (a, b)]
    assert any(re.search(r"peer C \(.*\) disconnected: ", log) for log in logs)


def _tls(cert_dir: Path | None, ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert_dir is not None:
        pki = NodePki(cert_dir)
        ctx.load_cert_chain(pki.cert, pki.key)
    return ctx


async def _knock(address: str, ctx: ssl.SSLContext) -> tuple[str, Any]:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"wss://{address}/sync", ssl=ctx) as ws,
        ):
            msg = await ws.receive(timeout=5)
            return "connected", msg.type
    except aiohttp.WSServerHandshakeError as err:
        return "refused", err.status
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as err:
        return "tls-failed", type(err).__name__


async def test_sync_port_gives_nothing_without_a_member_certificate(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b, _ = cluster.nodes
    assert a.sync_address is not None
    # no certificate at all
    assert await _knock(a.sync_address, _tls(None, None)) == ("refused", 401)
    # a certificate of another CA: the TLS handshake verifies client certificates it is sent
    other = NodePki(tmp_path / "other")
    ca_key, ca_cert = create_ca("another-cluster")
    key, key_pem = new_key()
    other.write(other.key, key_pem)
    other.write(other.cert, sign_node(ca_key, ca_cert, make_csr(key, b.data.root.name), "x" * 32))
    verdict = await _knock(a.sync_address, _tls(tmp_path / "other", None))
    assert verdict[0] in {"tls-failed", "refused"}, verdict
    assert verdict != ("connected", aiohttp.WSMsgType.BINARY)
    # a revoked member
    status = run_cli("status", "--data", str(b.data.root), "--json").stdout
    b_id = __import__("json").loads(status)["node_id"]
    run_cli("revoke", "--data", str(a.data.root), b_id)
    assert await _knock(a.sync_address, _tls(b.data.pki, None)) == ("refused", 403)
    logged = a.stderr_path.read_text()
    assert "sync connection from 127.0.0.1 refused: no client certificate" in logged
    assert re.search(r"node B \(.*\) revoked by ", logged)
    assert f"sync connection from 127.0.0.1 refused: node {b_id} is revoked" in logged


async def test_a_revoked_node_is_refused_by_every_peer(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    b_id = __import__("json").loads(run_cli("status", "--data", str(b.data.root), "--json").stdout)[
        "node_id"
    ]
    run_cli("revoke", "--data", str(a.data.root), "B")
    admin = create_token(a.data, "admin", "it")  # replicated to C with the revocation
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(
                c.base_url + "/api/nodes", headers={"Authorization": f"Bearer {admin}"}
            ) as resp:
                states = (
                    {n["code"]: n["state"] for n in (await resp.json())["nodes"]}
                    if resp.status == 200
                    else {}
                )
            if states.get("B") == "revoked":
                break
            if time.monotonic() > deadline:
                pytest.fail(f"C never learned of the revocation: {states}")
            await asyncio.sleep(0.3)
    assert c.sync_address is not None
    assert await _knock(c.sync_address, _tls(b.data.pki, None)) == ("refused", 403)
    # B keeps working alone, but what it records no longer reaches the others
    async with aiohttp.ClientSession() as session:
        [late] = await _write(b, cluster.token, 1, "after-revocation", session)
        await asyncio.sleep(3)
        async with session.get(
            f"{a.base_url}/api/events/{late}", headers={"Authorization": f"Bearer {cluster.token}"}
        ) as resp:
            assert resp.status == 404
    assert b_id

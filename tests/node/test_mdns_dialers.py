"""mDNS only proposes: announcements naming a member at ever new addresses (forged ones
too) leave one dialler for it, not one more each time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import crdt_model as cm
from discovery import PeerCandidate
from node._replication import Replication
from tests.node.nodes import new_data_dir, open_node

MEMBER = "f" * 32  # a larger node id than ours: we are the one who dials


async def test_announcements_at_new_addresses_keep_one_dialler_per_member(
    tmp_path: Path,
) -> None:
    node = await open_node(new_data_dir(tmp_path))
    entry = {"name": "Poste B", "code": "B", "zone": "propre", "cert_fingerprint": "0" * 64}
    await node.commit_cluster(lambda d: cm.cluster_put(d, "members", MEMBER, entry))
    static = "127.0.0.1:9"
    replication = Replication(
        node, static_peers=[static], mdns=False, mdns_interfaces=None, sync_port=0
    )
    await replication.async_start()
    try:
        for n in range(400):
            replication._on_candidate(
                PeerCandidate(MEMBER, "B", f"192.0.2.{n % 250 + 1}", 9000 + n, "mdns")
            )
        replication._on_candidate(PeerCandidate(MEMBER, "B", "127.0.0.1", 9, "mdns"))
        replication._on_candidate(PeerCandidate(MEMBER, "B", "192.0.2.7", 7, "mdns"))
        await asyncio.sleep(0)
        dialled = sorted(p["address"] for p in replication.manager.peers())
        # the member's latest address, and the configured peer (never dropped by mDNS)
        assert dialled == ["127.0.0.1:9", "192.0.2.7:7"]
    finally:
        await replication.async_stop()
        await node.async_close()

"""mDNS only proposes: announcements naming a member at ever new addresses (forged ones
too) leave one dialler for it, not one more each time."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import crdt_model as cm
import sync
from discovery import PeerCandidate
from node._replication import Replication
from tests.node.nodes import new_data_dir, open_node
from tests.sync.sync_helpers import wait_until

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


async def test_a_peer_turned_away_as_a_stranger_is_dialled_again_once_it_is_a_member(
    tmp_path: Path,
) -> None:
    # a node that joined through another while this one was away: its certificate is not
    # a member's here until the cluster document says so; then it is dialled at once, not
    # after a backoff that may have grown to half a minute
    node = await open_node(new_data_dir(tmp_path))
    replication = Replication(
        node, static_peers=["127.0.0.1:9"], mdns=False, mdns_interfaces=None, sync_port=0
    )
    slow = dataclasses.replace(replication.manager.timing, backoff_min_s=60, backoff_max_s=60)
    replication.manager.timing = slow
    attempts: list[str] = []

    def dialer(address: str) -> Any:
        async def dial() -> Any:
            attempts.append(address)
            raise sync.PeerRejected(f"{address} is not a current member of this cluster")

        return dial

    replication._dialer = dialer  # type: ignore[method-assign]
    await replication.async_start()
    try:
        await wait_until(lambda: len(attempts) == 1)
        await node.commit_cluster(lambda d: cm.cluster_put(d, "settings", "views", {"x": 1}))
        await asyncio.sleep(0.2)
        assert len(attempts) == 1  # no new member: the dialler keeps waiting
        entry = {"name": "Poste C", "code": "C", "zone": "sterile", "cert_fingerprint": "1" * 64}
        await node.commit_cluster(lambda d: cm.cluster_put(d, "members", "c" * 32, entry))
        await wait_until(lambda: len(attempts) == 2)
    finally:
        await replication.async_stop()
        await node.async_close()

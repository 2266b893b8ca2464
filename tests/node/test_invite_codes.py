"""Node codes stay unique when two nodes invite at the same moment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import crdt_model as cm
from node import Node
from node._cluster import async_accept_join, async_invite, taken_codes
from node._node import ConflictError
from node._pki import Invite, make_csr, new_key
from tests.node.nodes import new_data_dir, open_node

NOW = 1_800_000_000


def join_request(token: str, name: str) -> dict[str, Any]:
    node_id = f"{name:0<32}"[:32]
    key, _ = new_key()
    return {
        "secret": Invite.decode(token).secret,
        "csr": make_csr(key, node_id).decode(),
        "name": name,
        "zone": "propre",
        "node_id": node_id,
    }


def promised(node: Node, token: str) -> str:
    """The code an invitation promises."""
    entry = cm.cluster_get(node.docs[cm.CLUSTER_DOC], "invites", Invite.decode(token).secret_hash)
    assert entry is not None
    return str(entry["code"])


async def promise_elsewhere(node: Node, code: str, secret_hash: str) -> None:
    """An invitation another node made at the same moment, merged in by sync."""
    entry = {"code": code, "expires": NOW + 3600, "by": "admin", "inviter": "f" * 32}
    await node.commit_cluster(lambda d: cm.cluster_put(d, "invites", secret_hash, entry))


@pytest.mark.parametrize("ours_first", [True, False])
async def test_two_invitations_of_one_code_admit_one_node(tmp_path: Path, ours_first: bool) -> None:
    node = await open_node(new_data_dir(tmp_path))
    try:
        token = await async_invite(node, "admin", now_s=NOW)
        ours = Invite.decode(token).secret_hash
        code = promised(node, token)
        other = ("f" if ours_first else "0") * len(ours)
        await promise_elsewhere(node, code, other)
        request = join_request(token, "newnode")
        if ours_first:
            answer = await async_accept_join(node, request, now_s=NOW + 60)
            assert answer["code"] == code
        else:
            with pytest.raises(ConflictError, match="promised to another node meanwhile"):
                await async_accept_join(node, request, now_s=NOW + 60)
            assert cm.cluster_get(node.docs[cm.CLUSTER_DOC], "members", request["node_id"]) is None
            # a new invitation gets a code nobody holds or was promised
            again = await async_invite(node, "admin", now_s=NOW + 120)
            fresh = promised(node, again)
            assert fresh != code
            answer = await async_accept_join(node, join_request(again, "newnode"), now_s=NOW + 180)
            assert answer["code"] == fresh
    finally:
        await node.async_close()


async def test_an_expired_promise_does_not_block_its_code(tmp_path: Path) -> None:
    node = await open_node(new_data_dir(tmp_path))
    try:
        await promise_elsewhere(node, "B", "0" * 64)  # expires at NOW + 3600, never used
        later = NOW + 7200
        assert "B" not in taken_codes(node, later)
        token = await async_invite(node, "admin", now_s=later)
        answer = await async_accept_join(node, join_request(token, "newnode"), now_s=later + 60)
        assert answer["code"] == "B"
    finally:
        await node.async_close()


async def test_an_invitation_planted_by_a_member_admits_no_one(tmp_path: Path) -> None:
    """Any member may write the cluster document: a revoked one could have left an entry
    naming this node as inviter, with a secret it knows. Only invitations this node made
    admit, once, whatever the document says later."""
    node = await open_node(new_data_dir(tmp_path))
    try:
        planted = Invite(node.cluster_id, node.node_id, "", "s" * 32, 4_000_000_000, "a" * 64)
        entry = {"code": "Q", "expires": 4_000_000_000, "by": "admin", "inviter": node.node_id}
        await node.commit_cluster(
            lambda d: cm.cluster_put(d, "invites", planted.secret_hash, entry)
        )
        request = join_request(planted.encode(), "intruder")
        with pytest.raises(PermissionError, match="unknown join token"):
            await async_accept_join(node, request, now_s=NOW)
        assert cm.cluster_get(node.docs[cm.CLUSTER_DOC], "members", request["node_id"]) is None
        # a real invitation admits once, even if a member wipes its `used_by` afterwards
        token = await async_invite(node, "admin", now_s=NOW)
        answer = await async_accept_join(node, join_request(token, "newnode"), now_s=NOW + 60)
        assert answer["code"] == "B"
        spent = Invite.decode(token).secret_hash
        used = cm.cluster_get(node.docs[cm.CLUSTER_DOC], "invites", spent)
        assert used is not None
        wiped = {k: v for k, v in used.items() if k not in ("used_by", "used_at")}
        await node.commit_cluster(lambda d: cm.cluster_put(d, "invites", spent, wiped))
        with pytest.raises(PermissionError):
            await async_accept_join(node, join_request(token, "again"), now_s=NOW + 120)
    finally:
        await node.async_close()


async def test_a_revocation_and_a_first_certificate_hold_whatever_a_member_writes_later(
    tmp_path: Path,
) -> None:
    """A revoked member could write itself back (it holds the cluster document), or write
    another member's entry with a certificate it signed: what this node saw stays."""
    from node._cluster import async_revoke, member_by_cert, members

    data = new_data_dir(tmp_path)
    node = await open_node(data)
    entries = {
        "b" * 32: {"name": "Poste B", "code": "B", "zone": "propre", "cert_fingerprint": "1" * 64},
        "c" * 32: {"name": "Poste C", "code": "C", "zone": "propre", "cert_fingerprint": "2" * 64},
    }
    try:
        for node_id, entry in entries.items():
            await node.commit_cluster(
                lambda d, n=node_id, e=entry: cm.cluster_put(d, "members", n, e)
            )
        await async_revoke(node, "B", "admin")
        back = {**entries["b" * 32], "revoked": False}
        swapped = {**entries["c" * 32], "cert_fingerprint": "3" * 64}
        await node.commit_cluster(lambda d: cm.cluster_put(d, "members", "b" * 32, back))
        await node.commit_cluster(lambda d: cm.cluster_put(d, "members", "c" * 32, swapped))
        for _ in range(2):  # and after a restart
            assert member_by_cert(node, "b" * 32, "1" * 64) is None
            assert member_by_cert(node, "c" * 32, "3" * 64) is None
            assert [m["state"] for m in members(node) if m["code"] in ("B", "C")] == [
                "revoked",
                "member",
            ]
            await node.async_close()
            node = await open_node(data)
    finally:
        await node.async_close()

"""Changes made to one person on two PCs during a network split are all kept once healed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pycrdt import Doc

import crdt_model as cm
from node import Node
from node._replication import NodeReplica
from node._user_records import user_record
from node._users import active_user, async_set_language, async_update_user
from node._web_support import session_mark
from tests.node.nodes import copy_as, new_data_dir, open_node

PASSWORD = "correct horse battery"


async def two_nodes(tmp_path: Path) -> tuple[Node, Node]:
    """A and B of one cluster, both knowing the user mdupont, now apart."""
    data_a = new_data_dir(tmp_path, "a")
    node = await open_node(data_a)
    await node.async_add_user("mdupont", "operator", PASSWORD, "adm")
    await node.async_close()
    data_b = copy_as(data_a, tmp_path / "b", "B", "Poste stérile")
    return await open_node(data_a), await open_node(data_b)


async def heal(a: Node, b: Node) -> None:
    """Each takes what the other's cluster document holds, through sync's checks."""
    name = cm.CLUSTER_DOC
    for src, dst in ((a, b), (b, a)):
        diff = src.docs[name].get_update(dst.docs[name].get_state())
        await NodeReplica(dst).async_apply_remote(name, diff, src.code)


async def test_a_person_disabled_on_one_pc_stays_disabled_whatever_they_did_elsewhere(
    tmp_path: Path,
) -> None:
    a, b = await two_nodes(tmp_path)
    try:
        await a.async_disable_user("mdupont", "adm")  # the admin, on A
        await async_set_language(b, "mdupont", "en")  # the person, on B, at the same time
        await async_update_user(b, "mdupont", {"badge": "04A1B2C3D4", "pin": "4821"}, "adm2")
        await b.async_end_sessions("mdupont")
        await heal(a, b)
        for node in (a, b):
            record = user_record(node.docs[cm.CLUSTER_DOC], "mdupont")
            assert record is not None
            assert record["disabled"] is True, node.code
            assert record["lang"] == "en"
            assert record["badge"]
            assert record["pin"]
            assert active_user(node, "mdupont") is None  # refused on every PC
    finally:
        await a.async_close()
        await b.async_close()


async def test_a_new_password_and_logouts_on_two_pcs_are_all_kept(tmp_path: Path) -> None:
    a, b = await two_nodes(tmp_path)
    try:
        before = user_record(a.docs[cm.CLUSTER_DOC], "mdupont")
        assert before is not None
        await a.async_add_user("mdupont", "releaser", "a new password 42", "adm")
        await b.async_end_sessions("mdupont")  # logged out on B...
        b_view = user_record(b.docs[cm.CLUSTER_DOC], "mdupont")
        await a.async_end_sessions("mdupont")  # ...and on A, at the same time
        await heal(a, b)
        after = user_record(a.docs[cm.CLUSTER_DOC], "mdupont")
        assert after == user_record(b.docs[cm.CLUSTER_DOC], "mdupont")
        assert after is not None
        assert b_view is not None
        assert after["role"] == "releaser"
        assert after["password"] != before["password"]  # the new password was not undone
        assert after["sessions"] == 2  # each PC's logout counted
        # no session made before the split, nor on B during it, is valid any more
        assert session_mark(after) not in {session_mark(before), session_mark(b_view)}
    finally:
        await a.async_close()
        await b.async_close()


async def test_a_disable_beside_a_new_password_holds_and_enabling_clears_it(
    tmp_path: Path,
) -> None:
    a, b = await two_nodes(tmp_path)
    try:
        await a.async_add_user("mdupont", "operator", "a new password 42", "adm")
        await b.async_disable_user("mdupont", "adm")  # apart, at the same time
        await heal(a, b)
        for node in (a, b):
            assert active_user(node, "mdupont") is None, node.code
        # a record flagged whole, as a node of protocol 1 wrote it, counts too
        await a.async_disable_user("mdupont", "adm", disabled=False)
        assert active_user(a, "mdupont") is not None

        def old_style_disable(doc: Doc[Any]) -> None:
            record = cm.cluster_get(doc, "users", "mdupont")
            assert record is not None
            cm.cluster_put(doc, "users", "mdupont", {**record, "disabled": True})

        await a.commit_cluster(old_style_disable)
        assert active_user(a, "mdupont") is None
        await a.async_disable_user("mdupont", "adm", disabled=False)  # clears both
        await heal(a, b)
        for node in (a, b):
            record = active_user(node, "mdupont")
            assert record is not None, node.code
            assert not any(name.startswith("disabled") for name in record)
    finally:
        await a.async_close()
        await b.async_close()

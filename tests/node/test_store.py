from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

import crdt_model as cm
import node._node as node_module
import sync
from node import Node, NodeRunningError, StoreDamagedError, StoreError
from node._replication import NodeReplica
from tests.helpers import submission
from tests.node.nodes import (
    OPERATOR,
    StepClock,
    doc_contents,
    hold_store_writes,
    new_data_dir,
    open_node,
)

DAY_MS = 86_400_000

ops = st.lists(
    st.tuples(
        st.sampled_from(["note", "set.received", "wash.loaded", "steri.test", "compact"]),
        st.integers(0, 3),  # which day
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_restart_gives_back_exactly_the_state_before(steps: list[tuple[str, int]]) -> None:
    async def scenario(tmp: Path) -> None:
        data = new_data_dir(tmp)
        clock = StepClock()
        node = await open_node(data, clock=clock)
        for kind, day in steps:
            if kind == "compact":
                for name in list(node.docs):
                    await asyncio.to_thread(node.store.compact, name)
                continue
            clock.now = clock.now + day * DAY_MS
            await node.async_record(submission(kind), OPERATOR)
        before = doc_contents(node)
        ids_before = [e["id"] for e in node.iter_events()]
        await node.async_close()
        again = await open_node(data)
        assert doc_contents(again) == before
        assert [e["id"] for e in again.iter_events()] == ids_before
        await again.async_close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


async def test_compaction_keeps_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_module, "COMPACT_EVERY", 50)
    data = new_data_dir(tmp_path)
    node = await open_node(data, clock=StepClock())
    await asyncio.gather(
        *(node.async_record(submission("note", text=f"n{i}"), OPERATOR) for i in range(180))
    )
    for task in list(node._tasks):
        await task
    before = doc_contents(node)
    stat = node.store.stat()
    assert stat["snapshots"] >= 1
    assert stat["log_entries"] < 180  # merged entries left the log
    await node.async_close()
    again = await open_node(data)
    assert doc_contents(again) == before
    assert len(before[next(n for n in before if n.startswith("events/"))]["events"]) == 180
    await again.async_close()


async def _settle(node: Node) -> None:
    while node._tasks:
        await asyncio.gather(*list(node._tasks), return_exceptions=True)


async def test_compaction_goes_on_after_its_worker_process_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge runs in a worker process; killed (out of memory, by hand), the next
    compaction starts a new one instead of failing for good while the log grows."""
    monkeypatch.setattr(node_module, "COMPACT_EVERY", 20)
    node = await open_node(new_data_dir(tmp_path), clock=StepClock())
    try:
        for i in range(20):
            await node.async_record(submission("note", text=f"a{i}"), OPERATOR)
        await _settle(node)
        pool = node._merge_pool
        assert pool is not None
        for pid in list(pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, 9)
        await asyncio.sleep(0.5)
        for i in range(20):  # this compaction finds the worker dead
            await node.async_record(submission("note", text=f"b{i}"), OPERATOR)
        await _settle(node)
        for i in range(20):  # and this one runs in a new worker
            await node.async_record(submission("note", text=f"c{i}"), OPERATOR)
        await _settle(node)
        assert node._merge_pool is not None
        assert node._merge_pool is not pool
        assert node.store.stat()["log_entries"] < 40
        assert node.index.count == 60
    finally:
        await node.async_close()


async def test_the_cluster_document_log_counts_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its writes (logouts among them) are compacted though no run alone makes enough."""
    monkeypatch.setattr(node_module, "COMPACT_EVERY", 30)
    data = new_data_dir(tmp_path)
    for run in range(3):
        node = await open_node(data, clock=StepClock())
        for i in range(12):
            await node.async_create_token(f"t{run}-{i}", "operator", "test")
        await _settle(node)
        await node.async_close()
    node = await open_node(data, clock=StepClock())
    try:
        assert node.store.stat()["snapshots"] >= 1
        assert len(node.store.load()[cm.CLUSTER_DOC].updates) < 36
    finally:
        await node.async_close()


def _map_updates(count: int, start: int = 0) -> list[bytes]:
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    data = doc.get("m", type=Map)
    for i in range(start, start + count):
        data[f"k{i}"] = i
    return updates


async def test_compaction_racing_a_deletion_never_brings_the_document_back(
    tmp_path: Path,
) -> None:
    """A retired export deleted while its compaction merges: the merge is not installed,
    and what is written under that name afterwards is kept as written."""
    node = await open_node(new_data_dir(tmp_path), clock=StepClock())
    store, name = node.store, "ref/OLD"
    try:
        for update in _map_updates(5):
            await store.async_append(name, update)
        merging, go_on = threading.Event(), threading.Event()

        def slow_merge(*parts: bytes) -> bytes:
            merging.set()
            go_on.wait(10)
            return pycrdt.merge_updates(*parts)

        compaction = asyncio.ensure_future(asyncio.to_thread(store.compact, name, slow_merge))
        assert await asyncio.to_thread(merging.wait, 10)
        await store.async_delete_doc(name)
        (again,) = _map_updates(1, start=99)
        await store.async_append(name, again)
        go_on.set()
        assert await compaction == 0
        records = store.load()[name]
        assert records.snapshot is None
        assert records.updates == [again]
    finally:
        await node.async_close()


async def test_compaction_never_merges_a_rotten_entry(tmp_path: Path) -> None:
    node = await open_node(new_data_dir(tmp_path), clock=StepClock())
    store, name = node.store, "ref/ROT"
    try:
        for update in _map_updates(3):
            await store.async_append(name, update)
        key = name.encode() + b"\x00" + (2).to_bytes(8, "big")
        with store._env.begin(write=True) as txn:
            value = bytearray(txn.get(key, db=store._log))
            value[-1] ^= 0xFF
            txn.put(key, bytes(value), db=store._log)
        with pytest.raises(StoreDamagedError):
            await asyncio.to_thread(store.compact, name)
        with pytest.raises(StoreDamagedError):  # still found at the next start
            store.load()
    finally:
        await node.async_close()


async def test_a_view_failing_on_a_stored_change_loses_nothing_and_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """pycrdt applies an update, then raises what an observer raised: the change is on disk
    and in the document, so it is answered, passed on to peers and logged, not half-done."""
    data = new_data_dir(tmp_path)
    node = await open_node(data, clock=StepClock())
    heard: list[str] = []
    node.add_listener(lambda name, update, origin: heard.append(name))
    real_add = node.index.add
    failures = [RuntimeError("a bug in a view")]

    def failing_add(day: str, rec: cm.Record) -> None:
        if failures:  # the first event recorded from now on
            raise failures.pop()
        real_add(day, rec)

    monkeypatch.setattr(node.index, "add", failing_add)
    try:
        event = await node.async_record(submission("note", text="boom"), OPERATOR)
        assert heard  # peers hear of it
        assert "did not reach every view" in caplog.text
        after = await node.async_record(submission("note", text="next"), OPERATOR)
        assert node.get_event(after["id"]) is not None  # writing goes on
    finally:
        await node.async_close()
    again = await open_node(data)
    try:
        assert again.get_event(event["id"]) is not None  # the start rebuilds every view
        assert again.index.count == 2
    finally:
        await again.async_close()


async def test_a_fold_failing_on_an_event_still_leaves_its_load_number_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the views must not free a load number: the next load gets another one."""
    node = await open_node(new_data_dir(tmp_path), clock=StepClock())
    real_add = node.trace.add_event
    failures = [RuntimeError("a bug in the fold")]

    def failing_add(event: dict[str, Any]) -> list[cm.Record]:
        if failures:
            raise failures.pop()
        return real_add(event)

    monkeypatch.setattr(node.trace, "add_event", failing_add)
    try:
        first = await node.async_record(submission("wash.loaded"), OPERATOR)
        assert "did not reach every view" in caplog.text
        second = await node.async_record(submission("wash.loaded"), OPERATOR)
        assert first["load"] != second["load"]
        assert node.index.loads[first["load"]] == first["id"]
    finally:
        await node.async_close()


async def test_a_fold_failing_on_a_peers_events_still_indexes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer's events are folded from their stored bytes (pycrdt hands them over as
    bytearrays): a bug in the views must not keep them out of the index either."""
    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    real_add = node.trace.add_encoded
    failures = [RuntimeError("a bug in the fold")]

    def failing_add(blobs: Any) -> list[cm.Record]:
        if failures:
            raise failures.pop()
        return real_add(blobs)

    monkeypatch.setattr(node.trace, "add_encoded", failing_add)
    try:
        stamp = cm.Timestamp(clock.now + 1000, 0)
        body = submission("wash.loaded") | {"load": "B-261128-001"}
        loaded = await _store_from_b(node, body, stamp, user="lav", zone="sale")
        assert "did not reach every view" in caplog.text
        assert node.index.loads["B-261128-001"] == loaded["id"]
        assert node.index.count == 1
        assert list(node.index.ids()) == [loaded["id"]]
    finally:
        await node.async_close()


async def test_compaction_racing_new_writes_loses_nothing(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    node = await open_node(data, clock=StepClock())
    name = cm.events_doc_name(cm.Timestamp(StepClock().now, 0))
    await node.async_record(submission("note"), OPERATOR)
    writes = [node.async_record(submission("note", text=f"n{i}"), OPERATOR) for i in range(100)]
    compactions = [asyncio.to_thread(node.store.compact, name) for _ in range(5)]
    await asyncio.gather(*writes, *compactions)
    before = doc_contents(node)
    await node.async_close()
    again = await open_node(data)
    assert doc_contents(again) == before
    assert again.index.count == 101
    await again.async_close()


async def test_concurrent_writers_share_commits(tmp_path: Path) -> None:
    node = await open_node(new_data_dir(tmp_path), clock=StepClock())
    commits_before = node.store.commits
    await asyncio.gather(*(node.async_record(submission("note"), OPERATOR) for _ in range(200)))
    commits = node.store.commits - commits_before
    assert node.index.count == 200
    assert commits < 100, f"{commits} commits for 200 concurrent events: no group commit"
    await node.async_close()


async def test_each_incarnation_writes_with_a_fresh_client_id(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    seen = []
    for _ in range(3):
        node = await open_node(data, clock=StepClock(start=StepClock().now + len(seen) * 1000))
        seen.append((node.client_id, node.incarnation))
        await node.async_record(submission("note"), OPERATOR)
        doc = next(d for n, d in node.docs.items() if n.startswith("events/"))
        clients = set(sync.parse_state_vector(doc.get_state()))
        await node.async_close()
    assert len({cid for cid, _ in seen}) == 3
    assert [inc for _, inc in seen] == [1, 2, 3]
    assert {cid for cid, _ in seen} <= clients


async def test_clock_stays_monotonic_across_restart_with_clock_set_back(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    node = await open_node(data, clock=StepClock(start=2_000_000_000_000))
    first = await node.async_record(submission("note"), OPERATOR)
    await node.async_close()
    node = await open_node(data, clock=StepClock(start=1_000_000_000_000))  # clock set back
    second = await node.async_record(submission("note"), OPERATOR)
    await node.async_close()
    assert second["id"] > first["id"]


def _event_of_b(
    body: dict[str, Any], ts: cm.Timestamp, *, user: str = "x", zone: str = "sale"
) -> dict[str, Any]:
    """An event node B recorded at `ts`."""
    return cm.validate_event(
        {
            **body,
            "id": cm.make_event_id(ts, "B"),
            "hlc": str(ts),
            "at": "2033-05-18T03:36:20.000+00:00",
            "node": "B",
            "user": user,
            "zone": zone,
        }
    )


async def _store_from_b(
    node: Node, body: dict[str, Any], ts: cm.Timestamp, *, user: str, zone: str
) -> dict[str, Any]:
    """An event node B recorded at `ts`, stored by `node` as a peer's update."""
    event = _event_of_b(body, ts, user=user, zone=zone)
    doc: Doc[Any] = Doc()
    cm.add_event(doc, event)
    await node.async_store_remote(cm.events_doc_name(ts), doc.get_update(), "B")
    return event


async def test_after_a_restart_the_clock_still_follows_a_peer_a_little_ahead(
    tmp_path: Path,
) -> None:
    """A peer's clock 3 minutes fast released a load; this node restarts and records a
    use of it: the use must come after the release in the merged order."""
    start = 2_000_000_000_000
    data = new_data_dir(tmp_path)
    node = await open_node(data, clock=StepClock(start=start))
    ahead = cm.Timestamp(start + 3 * 60_000, 0)
    body = submission("load.released", load="B-261128-001")
    release = await _store_from_b(node, body, ahead, user="rel", zone="sterile")
    await node.async_close()
    node = await open_node(data, clock=StepClock(start=start + 1000))  # a second later
    try:
        use = await node.async_record(submission("note"), OPERATOR)
        assert use["id"] > release["id"]
    finally:
        await node.async_close()


def _flip_byte_of(path: Path, marker: bytes) -> None:
    """Damage every copy of marker (LMDB leaves stale copies in freed pages)."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(marker)
    assert pos >= 0, "marker not found in the store file"
    while pos >= 0:
        raw[pos] ^= 0xFF
        pos = raw.find(marker, pos + 1)
    path.write_bytes(bytes(raw))


async def test_damaged_update_is_detected_at_start(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    node = await open_node(data)
    await node.async_record(submission("note", text="MARKER-7f3a9c"), OPERATOR)
    await node.async_close()
    _flip_byte_of(data.store / "data.mdb", b"MARKER-7f3a9c")
    with pytest.raises(StoreDamagedError, match="fails its checksum"):
        await open_node(data)
    assert not data.is_served()  # the failed start released the lock


async def test_damaged_snapshot_is_detected_at_start(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    node = await open_node(data)
    event = await node.async_record(submission("note", text="SNAPMARK-1b2c"), OPERATOR)
    await asyncio.to_thread(
        node.store.compact, cm.events_doc_name(cm.split_event_id(event["id"])[0])
    )
    await node.async_close()
    _flip_byte_of(data.store / "data.mdb", b"SNAPMARK-1b2c")
    with pytest.raises(StoreDamagedError, match="snapshot .* fails its checksum"):
        await open_node(data)


async def test_truncated_store_file_is_refused_clearly(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    node = await open_node(data)
    await node.async_record(submission("note"), OPERATOR)
    await node.async_close()
    path = data.store / "data.mdb"
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(StoreError, match="damaged|cannot be opened|checksum"):
        node = await open_node(data)
        await node.async_close()


async def test_uninitialised_directory_is_refused(tmp_path: Path) -> None:
    from node import DataDir

    data = DataDir(tmp_path / "empty")
    data.root.mkdir()
    with pytest.raises(StoreError, match="sterimesh init"):
        await open_node(data)


async def test_second_process_on_same_data_is_refused(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    node = await open_node(data)
    with pytest.raises(NodeRunningError):
        await Node(data).async_open()
    await node.async_close()


async def test_only_the_nodes_user_may_read_its_store(tmp_path: Path) -> None:
    """The store holds password, PIN and token hashes and patient codes: owner only."""
    old_umask = os.umask(0o022)
    try:
        data = new_data_dir(tmp_path)
    finally:
        os.umask(old_umask)

    def modes() -> dict[str, int]:
        items = [data.store, *data.store.iterdir()]
        return {p.name: p.stat().st_mode & 0o777 for p in items}

    assert modes() == {"store": 0o700, "data.mdb": 0o600, "lock.mdb": 0o600}
    for item in (data.store, *data.store.iterdir()):  # a store made by an older version
        item.chmod(0o755 if item.is_dir() else 0o644)
    node = await open_node(data)
    await node.async_close()
    assert modes() == {"store": 0o700, "data.mdb": 0o600, "lock.mdb": 0o600}


async def test_two_overlapping_acks_never_rewrite_an_ack(tmp_path: Path) -> None:
    """A platform retrying an ack spanning two days: every peer must still take our diffs."""
    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    try:
        first, _ = await node.async_submit({"type": "note", "text": "day one"}, OPERATOR)
        clock.now += 86_400_000
        second, _ = await node.async_submit({"type": "note", "text": "day two"}, OPERATOR)
        day2 = cm.events_doc_name(cm.Timestamp.parse(second["hlc"]))
        peer = Doc()
        peer.apply_update(node.docs[day2].get_update())  # a peer holding day two as it was
        counts = await asyncio.gather(
            node.async_ack([first["id"], second["id"]], "platform"),
            node.async_ack([second["id"]], "platform"),
        )
        assert sum(counts) == 2  # each id acknowledged once
        diff = node.docs[day2].get_update(peer.get_state())
        assert sync.UpdateChecker().check(peer, day2, diff) is not None  # taken, not refused
        assert node.trace.acked == {first["id"], second["id"]}
    finally:
        await node.async_close()


async def test_a_local_write_that_would_rewrite_an_event_stops_the_node(tmp_path: Path) -> None:
    node = await open_node(new_data_dir(tmp_path))
    try:
        event, _ = await node.async_submit({"type": "note", "text": "x"}, OPERATOR)
        name = cm.events_doc_name(cm.Timestamp.parse(event["hlc"]))

        def rewrite(doc: Doc[Any]) -> None:
            cm.events_map(doc)[event["id"]] = cm.encode({**event, "text": "forged"})

        with pytest.raises(node_module.NodeFailedError):
            await node._commit(name, rewrite)
        with pytest.raises(node_module.NodeFailedError):  # nothing more is written
            await node.async_submit({"type": "note", "text": "y"}, OPERATOR)
    finally:
        await node.async_close()
    again = await open_node(node.data)  # the disk never held the rewrite
    try:
        assert again.get_event(event["id"]) == event
    finally:
        await again.async_close()


async def test_a_peers_change_stored_as_its_session_ends_is_applied_too(tmp_path: Path) -> None:
    """Cancelled while the store commits, the change still reaches memory and the listeners."""
    from node._replication import NodeReplica

    node = await open_node(new_data_dir(tmp_path))
    try:
        peer: Doc[Any] = Doc()
        ev = cm.validate_event(
            {
                "type": "note",
                "text": "from a peer",
                "id": "1795869091234-00000-B",
                "hlc": "1795869091234-00000",
                "at": "2026-11-28T12:11:31.234+01:00",
                "node": "B",
                "user": "u",
            }
        )
        cm.add_event(peer, ev)
        name = cm.events_doc_name(cm.Timestamp.parse(ev["hlc"]))
        heard: list[str] = []
        node.add_listener(lambda doc, _update, origin: heard.append(doc))
        entered, release = hold_store_writes(node)
        task = asyncio.create_task(
            NodeReplica(node).async_apply_remote(name, peer.get_update(), "B")
        )
        await entered.wait()
        task.cancel()  # the session ends: peer gone, replaced or revoked
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert node.get_event(ev["id"]) == ev
        assert heard == [name]
    finally:
        await node.async_close()


async def test_a_local_write_reaches_peers_only_once_durable(tmp_path: Path) -> None:
    """What a peer's session reads (state vector, diff) never holds a write not yet stored."""
    from node._replication import NodeReplica

    node = await open_node(new_data_dir(tmp_path))
    try:
        replica = NodeReplica(node)
        entered, release = hold_store_writes(node)
        task = asyncio.create_task(node.async_submit({"type": "note", "text": "x"}, OPERATOR))
        await entered.wait()  # the change is made; the disk does not have it yet
        for name in replica.doc_names():
            if name.startswith(cm.EVENTS_PREFIX):
                seen: Doc[Any] = Doc()
                seen.apply_update(replica.diff(name, b"\x00"))
                assert len(cm.events_map(seen)) == 0, name
        release.set()
        event, _ = await task
        name = cm.events_doc_name(cm.Timestamp.parse(event["hlc"]))
        seen = Doc()
        seen.apply_update(replica.diff(name, b"\x00"))
        assert dict(cm.iter_events(seen)) == {event["id"]: event}
    finally:
        await node.async_close()


async def test_writes_in_flight_on_many_documents_are_all_kept(tmp_path: Path) -> None:
    """Shadows of other documents come and go while a write waits for the disk: none is lost."""
    data = new_data_dir(tmp_path)
    clock = StepClock()
    node = await open_node(data, clock=clock)
    try:
        days = []
        for _day in range(6):  # one event on each of six days: more documents than shadows kept
            days.append((await node.async_record(submission("note"), OPERATOR))["id"])
            clock.now += 86_400_000
        clock.now -= 86_400_000
        today = [asyncio.create_task(node.async_record(submission("note"), OPERATOR))]
        acks = [asyncio.create_task(node.async_ack([i], "platform")) for i in days[:5]]
        today.append(asyncio.create_task(node.async_record(submission("note"), OPERATOR)))
        written = [e["id"] for e in await asyncio.gather(*today)]
        assert await asyncio.gather(*acks) == [1] * 5
    finally:
        await node.async_close()
    again = await open_node(data)
    try:
        assert all(again.get_event(i) is not None for i in [*days, *written])
        assert again.trace.acked == set(days[:5])
    finally:
        await again.async_close()


async def test_a_change_that_fails_midway_leaves_the_others_whole(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    node = await open_node(data)

    def put(key: str) -> Any:
        return lambda doc: cm.cluster_put(doc, "tokens", key, {"name": key, "role": "admin"})

    def half(doc: Doc[Any]) -> None:
        put("half")(doc)
        raise RuntimeError("failed midway")

    try:
        results = await asyncio.gather(
            node.commit_cluster(put("a")),
            node.commit_cluster(half),
            node.commit_cluster(put("c")),
            return_exceptions=True,
        )
        assert [type(r).__name__ for r in results] == ["NoneType", "RuntimeError", "NoneType"]
        assert {"a", "c"} <= set(cm.cluster_items(node.docs[cm.CLUSTER_DOC], "tokens"))
        assert "half" not in cm.cluster_items(node.docs[cm.CLUSTER_DOC], "tokens")
    finally:
        await node.async_close()
    again = await open_node(data)
    try:
        tokens = cm.cluster_items(again.docs[cm.CLUSTER_DOC], "tokens")
        assert {"a", "c"} <= set(tokens)
        assert "half" not in tokens
    finally:
        await again.async_close()


async def test_a_load_number_is_given_once_even_to_concurrent_writes(tmp_path: Path) -> None:
    node = await open_node(new_data_dir(tmp_path), clock=StepClock())
    loaded = {"type": "wash.loaded", "machine": "LAV-1", "program": "P", "sets": ["JDIGGRBA#111"]}
    try:
        twice = await asyncio.gather(
            node.async_record({**loaded, "load": "X-1"}, OPERATOR),
            node.async_record({**loaded, "load": "X-1"}, OPERATOR),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in twice) == ["ConflictError", "dict"]
        auto, explicit = await asyncio.gather(
            node.async_record(loaded, OPERATOR),
            node.async_record({**loaded, "load": "A-261128-002"}, OPERATOR),
        )
        assert auto["load"] != explicit["load"]
        assert (await node.async_record(loaded, OPERATOR))["load"] == "A-261128-003"
        with pytest.raises(node_module.ConflictError, match="node B's numbering"):
            await node.async_record({**loaded, "load": "B-261128-001"}, OPERATOR)
    finally:
        await node.async_close()


def test_a_write_queued_as_the_store_closes_is_told_so(tmp_path: Path) -> None:
    """Nobody waits for ever on a write that came after the writer's stop."""
    from concurrent.futures import Future

    from node._store import Store

    store = Store(tmp_path / "store")
    store.start()
    written: Future[Any] = store.submit(lambda txn: "first")
    store._queue.put(None)
    late: Future[Any] = store.submit(lambda txn: "late")
    store.close()
    assert written.result(timeout=5) == "first"
    with pytest.raises(StoreError, match="closed before this write"):
        late.result(timeout=5)


def test_a_compaction_the_disk_cannot_take_stops_nothing_but_a_write_does(
    tmp_path: Path,
) -> None:
    """A compaction writes the largest values (a whole snapshot) and adds nothing: the map
    full under it, the store goes on. A write that cannot be stored stops the store."""
    from concurrent.futures import Future

    from node._store import Store, _Spare

    store = Store(tmp_path / "store", map_size=1 << 20)
    store.start()
    try:

        def too_big(txn: Any) -> None:
            txn.put(b"snapshot", b"x" * (4 << 20))

        spare: Future[Any] = store.submit(_Spare(too_big))
        with pytest.raises(StoreError, match="compaction not stored"):
            spare.result(timeout=10)
        assert store.failure is None
        assert store.submit(lambda txn: txn.put(b"k", b"v")).result(timeout=10) is True
        with pytest.raises(StoreError, match="durable commit failed"):
            store.submit(too_big).result(timeout=10)
        assert store.failure is not None
    finally:
        store.close()


async def test_a_failed_commit_of_any_kind_shows_in_the_nodes_health(tmp_path: Path) -> None:
    """A deletion or a settings write that could not be stored stops the node's writes as a
    failed event write does: health and status say so at once, not at the next write."""
    node = await open_node(new_data_dir(tmp_path))
    try:
        assert node.failed is None

        def broken(txn: Any) -> None:
            raise OSError(28, "No space left on device")

        with pytest.raises(StoreError):
            await asyncio.wrap_future(node.store.submit(broken))
        assert node.failed is not None
        assert "restart the node" in node.failed
        assert node.status()["ok"] is False
    finally:
        await node.async_close()


async def test_one_invitation_admits_one_node_even_at_once(tmp_path: Path) -> None:
    from node._cluster import async_accept_join, async_invite
    from node._pki import Invite, make_csr, new_key

    node = await open_node(new_data_dir(tmp_path))
    try:
        invite = Invite.decode(await async_invite(node, "test"))

        def request(n: int) -> dict[str, Any]:
            key, _ = new_key()
            node_id = f"{n:032x}"
            return {
                "secret": invite.secret,
                "csr": make_csr(key, node_id).decode(),
                "name": f"Poste {n}",
                "zone": "sale",
                "node_id": node_id,
            }

        answers = await asyncio.gather(
            *(async_accept_join(node, request(n)) for n in (1, 2)), return_exceptions=True
        )
        assert sorted(type(a).__name__ for a in answers) == ["PermissionError", "dict"]
        codes = [m["code"] for m in cm.cluster_items(node.docs[cm.CLUSTER_DOC], "members").values()]
        assert sorted(codes) == ["A", "B"]
    finally:
        await node.async_close()


async def test_a_peers_batch_moves_the_clock_to_its_latest_time_within_the_drift(
    tmp_path: Path,
) -> None:
    """An event of a batch far in the future is not adopted; the latest one within is."""
    from node._replication import NodeReplica

    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    try:
        near = clock.now + 60_000  # a peer a minute ahead: adopted
        far = near + node.hlc.max_drift_ms + 1_000  # a skewed peer: not adopted
        peers: dict[str, Doc[Any]] = {}
        for ms in (near - 5, near, far):
            ts = cm.Timestamp(ms, 0)
            body = {"type": "note", "text": "from a peer", "node": "B", "user": "u"}
            at = "2026-11-28T12:11:31.234+01:00"
            ev = cm.validate_event(
                {**body, "id": cm.make_event_id(ts, "B"), "hlc": str(ts), "at": at}
            )
            cm.add_event(peers.setdefault(cm.events_doc_name(ts), Doc()), ev)
        replica = NodeReplica(node)
        for name, doc in peers.items():
            assert await replica.async_apply_remote(name, doc.get_update(), "B")
        assert node.index.count == 3
        mine = cm.Timestamp.parse((await node.async_record(submission("note"), OPERATOR))["hlc"])
        assert cm.Timestamp(near, 0) < mine
        assert mine.physical < far
    finally:
        await node.async_close()


async def test_after_a_failed_commit_no_later_write_is_stored_or_answered(tmp_path: Path) -> None:
    """A write built on one the disk refused is refused too: else its update is stored without
    the one it depends on and that day's document never reaches a peer again."""
    import time

    from node._store import Store

    data = new_data_dir(tmp_path)
    node = await open_node(data)
    real = Store._commit
    calls = 0

    def failing_once(self: Store, batch: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # a slow fsync that then fails (disk full, I/O error)
            time.sleep(0.3)

            def refused(txn: Any) -> None:
                raise OSError("No space left on device")

            batch = [(refused, waiter) for _, waiter in batch]
        real(self, batch)

    node.store._commit = failing_once.__get__(node.store)  # type: ignore[method-assign]
    first = asyncio.create_task(node.async_record(submission("note"), OPERATOR))
    await asyncio.sleep(0.05)  # the second is prepared while the first is on its way
    second = asyncio.create_task(node.async_record(submission("note"), OPERATOR))
    answers = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(a, Exception) for a in answers), answers
    assert node.failed is not None
    with pytest.raises(Exception, match="restart the node"):
        await node.async_record(submission("note"), OPERATOR)
    await node.async_close()
    node = await open_node(data)
    try:
        assert node.index.count == 0
        for name, doc in node.docs.items():  # every stored document is whole
            if name.startswith(cm.EVENTS_PREFIX):
                sync.check_update(None, name, doc.get_update())
    finally:
        await node.async_close()


async def test_a_write_cancelled_twice_is_still_waited_for() -> None:
    """A request cancelled (its client gone) while its write waits for the disk, then again:
    the caller hears of it only once the write is done, so nothing it holds (a lock, a load
    number) is let go while the write is still on its way."""
    from node._node import finished_even_if_cancelled

    release = asyncio.Event()
    done: list[str] = []

    async def write() -> None:
        await release.wait()
        done.append("stored")

    caller = asyncio.ensure_future(finished_even_if_cancelled(write()))
    await asyncio.sleep(0)
    for _ in range(2):
        caller.cancel()
        await asyncio.sleep(0.01)
        assert not caller.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["stored"]


def _read_back(node: Node) -> dict[str, Any]:
    """What a node keeps beside its fold, built as events come and again when it starts."""
    index, trace = node.index, node.trace
    return {
        "by_day": index.by_day,
        "by_set": dict(index.by_set),
        "loads": index.loads,
        "load_counters": dict(index._load_counters),
        "own_max": index.own_max,
        "count": index.count,
        "activity": trace.activity,
        "loads_by_day": trace.loads_by_day,
        "labels": trace.labels,
        "label_counters": trace._label_counters,
        "views": node.trace.fold.snapshot("2026-12-01"),
    }


async def test_a_restarted_node_reads_back_its_indexes_and_activity(tmp_path: Path) -> None:
    """At start-up the stored events are read straight into the fold's records, and the
    indexes, load and label numbering and the activity chart come from those: the same as
    the events recorded one by one gave (zones, loads, labels, other nodes' events)."""
    data = new_data_dir(tmp_path)
    clock = StepClock()
    node = await open_node(data, clock=clock)
    for zone, kind in [("sale", "set.received"), ("sale", "wash.loaded"), ("propre", "note")]:
        for _ in range(3):
            await node.async_record(submission(kind) | {"zone": zone}, OPERATOR)
            clock.now += 3_600_000
    await node.async_record(submission("steri.test"), OPERATOR)  # no zone: the office
    body = {
        **submission("label.printed", set="JDIGGRBA#101", load="A-261128-001"),
        "lot": "A-261128-001",
        "expires_on": "2027-02-26",
        "label_id": "LB2611280007",
    }
    stamp = cm.Timestamp(clock.now + 1000, 0)
    label = await _store_from_b(node, body, stamp, user="pack", zone="propre")
    before = _read_back(node)
    assert before["count"] == 11
    assert before["labels"] == {"LB2611280007": label["id"]}
    assert before["loads"]  # the washer loads got their numbers
    await node.async_close()
    again = await open_node(data, clock=clock)
    try:
        assert _read_back(again) == before
    finally:
        await again.async_close()


@pytest.mark.skipif(not cm.reads_bytes(), reason="updates are read from their bytes compiled")
async def test_entries_read_by_the_check_are_not_folded_when_a_local_write_came_between(
    tmp_path: Path,
) -> None:
    """A peer forges entries under this node's own client at the clock it holds: the check
    reads them as new; a local write then takes that clock; yrs skips the forged items. The
    views must not hold an event the document does not."""
    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    try:
        await node.async_record(submission("note"), OPERATOR)
        name = next(n for n in node.docs if n.startswith(cm.EVENTS_PREFIX))
        ts = cm.Timestamp(clock.now + 5, 0)
        forged = _event_of_b(submission("note", text="écrit sous l'identité du poste"), ts)
        doc: Doc[Any] = Doc(client_id=node.client_id)
        doc.apply_update(node.docs[name].get_update())
        before = doc.get_state()
        cm.add_event(doc, forged)
        update = doc.get_update(before)
        checked = sync.UpdateChecker().check_read(node.docs[name], name, update)
        assert checked is not None
        assert checked.entries  # read from its bytes: new entries
        mine = await node.async_record(submission("note", text="entre-temps"), OPERATOR)
        await node.async_store_remote(name, checked.change, "B", checked)
        held = set(cm.events_map(node.docs[name]).keys())
        assert mine["id"] in held
        assert forged["id"] not in held
        assert set(node.index.ids()) == held
        assert forged["id"] not in node.trace.fold
    finally:
        await node.async_close()


@pytest.mark.skipif(not cm.reads_bytes(), reason="updates are read from their bytes compiled")
async def test_a_fold_failing_on_entries_read_by_the_check_still_notes_their_acks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    try:
        ts = cm.Timestamp(clock.now + 1000, 0)
        event = _event_of_b(submission("note"), ts)
        doc: Doc[Any] = Doc()
        cm.add_event(doc, event)
        cm.acks_map(doc)[f"{event['id']}/B"] = cm.encode({"at": event["at"], "by": "platform"})
        name = cm.events_doc_name(ts)
        checked = sync.UpdateChecker().check_read(node.docs.get(name), name, doc.get_update())
        assert checked is not None
        assert checked.entries is not None
        assert {root for root, _, _ in checked.entries} == {"events", "acks"}

        def failing_add(blobs: Any) -> list[cm.Record]:
            raise RuntimeError("a bug in the fold")

        monkeypatch.setattr(node.trace, "add_encoded", failing_add)
        await node.async_store_remote(name, checked.change, "B", checked)
        assert node.status()["views_behind"] == 1  # held for the views: not folded yet
        assert event["id"] in node.trace.acked  # reading the views folds what is held
        assert "did not reach every view" in caplog.text
        assert list(node.index.ids()) == [event["id"]]
        assert node.status()["views_behind"] == 0
    finally:
        await node.async_close()


async def test_a_peer_writing_under_this_nodes_client_id_is_refused(tmp_path: Path) -> None:
    """A local write takes its clock, then waits for the disk; a compromised peer sends an
    entry under this node's client id at that clock. Taken, it would make yrs skip the local
    write once stored: an event answered 201 and lost. Refused, the write lands."""
    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    replica = NodeReplica(node)
    release: asyncio.Event | None = None
    try:
        await node.async_record(submission("note"), OPERATOR)
        name = next(n for n in node.docs if n.startswith(cm.EVENTS_PREFIX))
        forger: Doc[Any] = Doc(client_id=node.client_id)
        forger.apply_update(node.docs[name].get_update())
        before = forger.get_state()
        forged = _event_of_b(
            submission("note", text="à la place du poste"), cm.Timestamp(clock.now + 5, 0)
        )
        cm.add_event(forger, forged)
        update = forger.get_update(before)
        entered, release = hold_store_writes(node)
        writing = asyncio.ensure_future(
            node.async_record(submission("note", text="en cours"), OPERATOR)
        )
        await entered.wait()  # its clock taken, on its way to the disk
        check = asyncio.ensure_future(replica.async_apply_remote(name, update, "B"))
        done, _ = await asyncio.wait({check}, timeout=10)
        assert check in done  # refused at once, not stored after the local write
        with pytest.raises(sync.UpdateRefused, match="own client id"):
            check.result()
        # what a peer relays of ours that we hold is no forgery
        assert not await replica.async_apply_remote(name, node.docs[name].get_update(), "B")
        release.set()
        mine = await writing
        held = set(cm.events_map(node.docs[name]).keys())
        assert mine["id"] in held
        assert forged["id"] not in held
        assert set(node.index.ids()) == held
    finally:
        if release is not None:
            release.set()
        await node.async_close()


def _peer_update(node: Node, count: int, offset_ms: int) -> tuple[str, sync.Checked, list[str]]:
    """`count` notes node B recorded, as one update checked the way sync checks it."""
    clock_ms = node._clock() + offset_ms
    events = [
        _event_of_b(submission("note", text=f"note {n}"), cm.Timestamp(clock_ms + n, 0))
        for n in range(count)
    ]
    doc: Doc[Any] = Doc()
    for event in events:
        cm.add_event(doc, event)
    name = cm.events_doc_name(cm.Timestamp(clock_ms, 0))
    checked = sync.UpdateChecker().check_read(node.docs.get(name), name, doc.get_update())
    assert checked is not None
    assert checked.entries is not None  # read from its bytes
    return name, checked, [event["id"] for event in events]


@pytest.mark.skipif(not cm.reads_bytes(), reason="updates are read from their bytes compiled")
async def test_a_peers_events_reach_the_views_once_no_catch_up_is_on_its_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer's catch-up is stored, applied and counted at once; the index and views fold
    it once no other is on its way, as one batch, without anything reading them."""
    monkeypatch.setattr(node_module, "FOLD_IDLE_S", 0.05)
    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    try:
        name, checked, ids = _peer_update(node, 3, 1000)
        await node.async_store_remote(name, checked.change, "B", checked)
        status = node.status()
        assert (status["events"], status["views_behind"]) == (3, 3)
        assert status["days"] == {name[len(cm.EVENTS_PREFIX) :]: 3}
        assert sorted(cm.events_map(node.docs[name]).keys()) == ids  # in the document now
        for _ in range(200):
            if node.status()["views_behind"] == 0:
                break
            await asyncio.sleep(0.01)
        assert node.status()["views_behind"] == 0  # folded on its own
        assert list(node.index.ids()) == ids
        assert all(event_id in node.trace.fold for event_id in ids)
    finally:
        await node.async_close()


@pytest.mark.skipif(not cm.reads_bytes(), reason="updates are read from their bytes compiled")
async def test_a_peers_held_events_are_folded_before_anything_reads_the_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held events are folded first whenever the views are read, and before a local
    write is; the clock heard of them at once: a local write made meanwhile comes after."""
    monkeypatch.setattr(node_module, "FOLD_IDLE_S", 60.0)  # never on its own in this test
    clock = StepClock()
    node = await open_node(new_data_dir(tmp_path), clock=clock)
    try:
        name, checked, ids = _peer_update(node, 2, 5_000)
        await node.async_store_remote(name, checked.change, "B", checked)
        assert node.status()["views_behind"] == 2
        assert all(event_id in node.trace.fold for event_id in ids)  # a read folds them
        assert node.status()["views_behind"] == 0

        name, checked, more = _peer_update(node, 2, 10_000)
        await node.async_store_remote(name, checked.change, "B", checked)
        assert node.status()["views_behind"] == 2
        mine = await node.async_record(submission("note", text="après la reprise"), OPERATOR)
        assert mine["id"] > max(more)  # the clock heard of the held events
        assert node.status()["views_behind"] == 0  # folded before the local write
        assert list(node.index.ids()) == [*ids, *more, mine["id"]]
    finally:
        await node.async_close()

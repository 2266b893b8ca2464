"""Builders for node tests: data directories, open nodes, clocks."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crdt_model as cm
from node import DataDir, Node, Store, init_node
from node._auth import Principal

OPERATOR = Principal(name="mdupont", role="operator")
BASE_MS = 1_795_869_091_234  # 2026-11-28T11:11:31Z


class StepClock:
    """A wall clock for tests: each reading moves forward by `step` ms."""

    def __init__(self, start: int = BASE_MS, step: int = 1) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def new_data_dir(tmp: Path, name: str = "node") -> DataDir:
    data = DataDir(tmp / name)
    init_node(data, name="Poste test", zone="sale")
    return data


def copy_as(data: DataDir, folder: Path, code: str, name: str) -> DataDir:
    """A copy of a closed node's data (same cluster and documents) under another short code."""
    copy = DataDir(folder)
    shutil.copytree(data.root, copy.root)
    store = Store(copy.store)
    store.put_meta_now({"code": code, "name": name})
    store.close()
    return copy


async def open_node(data: DataDir, **kwargs: Any) -> Node:
    node = Node(data, **kwargs)
    await node.async_open()
    return node


def doc_contents(node: Node) -> dict[str, Any]:
    """Every document's content, decoded: what a restart must give back."""
    out: dict[str, Any] = {}
    for name, doc in sorted(node.docs.items()):
        if name.startswith(cm.EVENTS_PREFIX):
            out[name] = {
                "events": {k: cm.decode(v) for k, v in cm.events_map(doc).items()},
                "acks": {k: cm.decode(v) for k, v in cm.acks_map(doc).items()},
            }
        elif name == cm.CLUSTER_DOC:
            out[name] = {m: cm.cluster_items(doc, m) for m in cm.CLUSTER_MAPS}
        else:
            manifest = cm.read_manifest(doc)
            out[name] = {
                "manifest": manifest,
                "tables": {t: cm.read_table(doc, t) for t in cm.table_names(doc)},
            }
    return out


def iter_ids(node: Node) -> Iterator[str]:
    for event in node.iter_events():
        yield event["id"]


def hold_store_writes(node: Node) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the node's store wait before each durable write: (entered, release).

    `entered` is set when a write reaches the store; it goes on once `release` is set.
    """
    entered, release = asyncio.Event(), asyncio.Event()
    append = node.store.async_append

    async def slow_append(doc: str, update: bytes) -> Any:
        entered.set()
        await release.wait()
        return await append(doc, update)

    node.store.async_append = slow_append  # type: ignore[method-assign]
    return entered, release

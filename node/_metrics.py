"""Prometheus metrics of one node (a registry per node, so several can share a process)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ._node import Node


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        node = self._node
        yield GaugeMetricFamily("sterimesh_events", "Events held (merged)", value=node.index.count)
        stat = node.store.stat() if node._store is not None else {}
        yield GaugeMetricFamily(
            "sterimesh_store_log_entries",
            "Update log entries not yet compacted",
            value=stat.get("log_entries", 0),
        )
        yield GaugeMetricFamily(
            "sterimesh_store_bytes", "Bytes used by the store", value=stat.get("bytes_used", 0)
        )
        yield GaugeMetricFamily(
            "sterimesh_store_commits",
            "Durable commits since start",
            value=node.store.commits if node._store is not None else 0,
        )
        yield GaugeMetricFamily(
            "sterimesh_up", "1 while the node takes writes", value=0 if node.failed else 1
        )
        peers = node.peer_status() if node.peer_status is not None else []
        live = GaugeMetricFamily(
            "sterimesh_peer_live", "1 while the peer is in sync", labels=["peer"]
        )
        unconfirmed = GaugeMetricFamily(
            "sterimesh_peer_unconfirmed",
            "Local updates the peer has not confirmed",
            labels=["peer"],
        )
        behind = GaugeMetricFamily(
            "sterimesh_peer_behind",
            "Updates the peer lacks by its last state vectors",
            labels=["peer"],
        )
        last = GaugeMetricFamily(
            "sterimesh_peer_last_sync_timestamp_seconds", "Last complete sync", labels=["peer"]
        )
        for peer in peers:
            name = str(peer.get("node") or peer.get("address") or "?")[:16]
            live.add_metric([name], 1 if peer.get("state") == "live" else 0)
            unconfirmed.add_metric([name], float(peer.get("unconfirmed") or 0))
            behind.add_metric([name], float(peer.get("behind") or 0))
            stamp = peer.get("last_sync")
            if isinstance(stamp, str):
                last.add_metric([name], datetime.fromisoformat(stamp).timestamp())
        yield from (live, unconfirmed, behind, last)
        backup = node.backup_status() if node.backup_status is not None else None
        if backup is not None:
            yield GaugeMetricFamily(
                "sterimesh_backup_ok",
                "1 unless scheduled backups fail or are late",
                value=1 if backup["state"] in ("ok", "pending") else 0,
            )
            yield GaugeMetricFamily(
                "sterimesh_backup_failures", "Scheduled backups failed", value=backup["failures"]
            )
            if backup["last_ok_at"] is not None:
                yield GaugeMetricFamily(
                    "sterimesh_backup_last_success_timestamp_seconds",
                    "Last scheduled backup written and checked",
                    value=datetime.fromisoformat(backup["last_ok_at"]).timestamp(),
                )


class Metrics:
    """The counters and histograms a node updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_recorded = Counter(
            "sterimesh_events_recorded",
            "Events recorded on this node",
            ["type"],
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "sterimesh_commit_seconds",
            "Time from a local change to its durable commit",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
            registry=self.registry,
        )
        self.http_requests = Counter(
            "sterimesh_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._bound = False

    def bind(self, node: Node) -> None:
        """Expose the node's gauges."""
        if not self._bound:
            self.registry.register(_NodeCollector(node))
            self._bound = True

    def render(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)

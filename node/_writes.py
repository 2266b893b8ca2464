"""Local writes are made on a shadow of their document, stored, and only then applied to it.

Peers' sessions read the live documents at any moment (state vectors, diffs, manifests). A
change made on a live document before its update is durable could reach a peer and outlive
a crash of this node, which would then not know it: an event answered with an error could
come back, a load number be given twice. So a local change is made on a shadow copy of the
document (same client id, so its items are exactly those the document will hold), its
update stored durably, then applied to the live document, where the views see it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pycrdt
from pycrdt import Doc, Map, MapEvent

import crdt_model as cm
import sync

MAX_SHADOWS = 4
"""Shadows kept: the documents written most recently (today's events, the cluster)."""


class LocalRewriteError(Exception):
    """A local change would change or delete an entry of an events document."""


class LocalWrites:
    """The shadows of the documents this node writes, one per document, most recent last."""

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self._shadows: dict[str, Doc[Any]] = {}
        self._inflight: dict[str, list[bytes]] = {}
        """Per document, the updates prepared and not yet applied to it, in order."""

    def prepare(
        self, name: str, live: Doc[Any] | None, mutate: Callable[[Doc[Any]], None]
    ) -> bytes | None:
        """The update `mutate` makes, made on the shadow of `live` (None: it changes nothing).

        `live` (None: not held yet) is not touched: apply the update once it is durable. Raises LocalRewriteError
        when the change would rewrite an events entry (every peer would refuse it).
        """
        shadow = self._shadow(name, live)
        captured: list[bytes] = []
        rewrites: list[str] = []
        watched: list[tuple[Map[Any], Any]] = []
        if name.startswith(cm.EVENTS_PREFIX):
            for shared in (cm.events_map(shadow), cm.acks_map(shadow)):
                watched.append((shared, shared.observe(_rewrite_watch(rewrites))))
        sub = shadow.observe(lambda ev: captured.append(ev.update))
        try:
            with shadow.transaction(origin="local"):
                mutate(shadow)
        except BaseException:
            self.forget(name)  # what it half made must never be built on
            raise
        finally:
            shadow.unobserve(sub)
            for shared, watch in watched:
                shared.unobserve(watch)
        if rewrites:
            self.forget(name)
            raise LocalRewriteError(f"{name}: {rewrites[0][:60]!r} would be rewritten")
        if not captured:
            return None
        update = captured[0] if len(captured) == 1 else pycrdt.merge_updates(*captured)
        self._inflight.setdefault(name, []).append(update)
        return update

    def applied(self, name: str, update: bytes) -> None:
        """`update` (prepared here) is in its document now, or was given up: no longer in flight."""
        pending = self._inflight.get(name, [])
        if update in pending:
            pending.remove(update)
        if not pending:
            self._inflight.pop(name, None)
            if name.startswith(cm.REF_PREFIX):
                self._shadows.pop(name, None)  # written once, and large

    def forget(self, name: str) -> None:
        """Drop a shadow: it is made again from its document and the writes still in flight."""
        self._shadows.pop(name, None)

    def _shadow(self, name: str, live: Doc[Any] | None) -> Doc[Any]:
        shadow = self._shadows.pop(name, None)
        if shadow is None:
            # the document, then what is on its way to it: never reuse an in-flight clock
            shadow = Doc(client_id=self.client_id)
            if live is not None:
                shadow.apply_update(live.get_update())
            for update in self._inflight.get(name, ()):
                shadow.apply_update(update)
        elif live is None:
            pass  # its own writes, still on their way to the disk
        elif not name.startswith(cm.EVENTS_PREFIX) or not _covers(shadow, live):
            # what reached the document since (peers' changes, and deletions, which an
            # events document never has), without what the shadow holds already
            shadow.apply_update(live.get_update(shadow.get_state()))
        self._shadows[name] = shadow
        idle = [n for n in self._shadows if n != name and n not in self._inflight]
        for old in idle[: max(0, len(self._shadows) - MAX_SHADOWS)]:
            del self._shadows[old]  # the oldest with nothing in flight
        return shadow


def _covers(shadow: Doc[Any], live: Doc[Any]) -> bool:
    """True when the shadow holds every item of `live` (its own writes may be ahead)."""
    have = sync.parse_state_vector(shadow.get_state())
    return sync.covers(have, sync.parse_state_vector(live.get_state()))


def _rewrite_watch(found: list[str]) -> Callable[[MapEvent], None]:
    def watch(event: MapEvent) -> None:
        keys: dict[str, dict[str, Any]] = event.keys  # type: ignore[attr-defined]
        found.extend(key for key, change in keys.items() if change.get("action") != "add")

    return watch

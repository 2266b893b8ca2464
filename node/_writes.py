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
from pycrdt import Doc, MapEvent

import crdt_model as cm

MAX_SHADOWS = 4
"""Shadows kept: the documents written most recently (today's events, the cluster)."""


class LocalRewriteError(Exception):
    """A local change would change or delete an entry of an events document."""


class _Shadow:
    """A shadow document, watched once: the updates its transactions make, and any entry of
    an events document they change or delete."""

    def __init__(self, name: str, client_id: int) -> None:
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.stale = False
        """Its document took a change from a peer since the shadow last caught up."""
        self.captured: list[bytes] = []
        self.rewrites: list[str] = []
        # kept: a subscription nobody holds may be dropped
        self._subs = [self.doc.observe(lambda ev: self.captured.append(ev.update))]
        if name.startswith(cm.EVENTS_PREFIX):
            for shared in (cm.events_map(self.doc), cm.acks_map(self.doc)):
                self._subs.append(shared.observe(_rewrite_watch(self.rewrites)))

    def close(self) -> None:
        """Drop its subscriptions: pycrdt holds their callbacks (and so the shadow) until then."""
        for sub in self._subs:
            sub.drop()
        self._subs.clear()

    def catch_up(self, update: bytes) -> None:
        """Take what the document holds and the shadow lacks (prepare forgets what it noted)."""
        self.doc.apply_update(update)


class LocalWrites:
    """The shadows of the documents this node writes, one per document, most recent last."""

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self._shadows: dict[str, _Shadow] = {}
        self._inflight: dict[str, list[bytes]] = {}
        """Per document, the updates prepared and not yet applied to it, in order."""

    def prepare(
        self, name: str, live: Doc[Any] | None, mutate: Callable[[Doc[Any]], None]
    ) -> bytes | None:
        """The update `mutate` makes, made on the shadow of `live` (None: it changes nothing).

        `live` (None: not held yet) is not touched: apply the update once it is durable.
        Raises LocalRewriteError when the change would rewrite an events entry (every peer
        would refuse it).
        """
        shadow = self._shadow(name, live)
        shadow.captured.clear()
        shadow.rewrites.clear()
        try:
            with shadow.doc.transaction(origin="local"):
                mutate(shadow.doc)
        except BaseException:
            self.forget(name)  # what it half made must never be built on
            raise
        if shadow.rewrites:
            found = shadow.rewrites[0]
            self.forget(name)
            raise LocalRewriteError(f"{name}: {found[:60]!r} would be rewritten")
        captured = list(shadow.captured)
        shadow.captured.clear()
        if not captured:
            return None
        update = captured[0] if len(captured) == 1 else pycrdt.merge_updates(*captured)
        self._inflight.setdefault(name, []).append(update)
        return update

    def remote_change(self, name: str) -> None:
        """A peer's change reached the document: its shadow catches up before the next write."""
        shadow = self._shadows.get(name)
        if shadow is not None:
            shadow.stale = True

    def applied(self, name: str, update: bytes) -> None:
        """`update` (prepared here) is in its document now, or was given up: no longer in flight."""
        pending = self._inflight.get(name, [])
        if update in pending:
            pending.remove(update)
        if not pending:
            self._inflight.pop(name, None)
            if name.startswith(cm.REF_PREFIX):
                self.forget(name)  # written once, and large

    def forget(self, name: str) -> None:
        """Drop a shadow: it is made again from its document and the writes still in flight."""
        shadow = self._shadows.pop(name, None)
        if shadow is not None:
            shadow.close()

    def _shadow(self, name: str, live: Doc[Any] | None) -> _Shadow:
        shadow = self._shadows.pop(name, None)
        if shadow is None:
            # the document, then what is on its way to it: never reuse an in-flight clock
            shadow = _Shadow(name, self.client_id)
            if live is not None:
                shadow.catch_up(live.get_update())
            for update in self._inflight.get(name, ()):
                shadow.catch_up(update)
        elif live is not None and (shadow.stale or not name.startswith(cm.EVENTS_PREFIX)):
            # what reached the document since (peers' changes, and deletions, which an
            # events document never has), without what the shadow holds already
            shadow.catch_up(live.get_update(shadow.doc.get_state()))
        shadow.stale = False
        self._shadows[name] = shadow
        idle = [n for n in self._shadows if n != name and n not in self._inflight]
        for old in idle[: max(0, len(self._shadows) - MAX_SHADOWS)]:
            self.forget(old)  # the oldest with nothing in flight
        return shadow


def _rewrite_watch(found: list[str]) -> Callable[[MapEvent], None]:
    def watch(event: MapEvent) -> None:
        keys: dict[str, dict[str, Any]] = event.keys  # type: ignore[attr-defined]
        found.extend(key for key, change in keys.items() if change.get("action") != "add")

    return watch

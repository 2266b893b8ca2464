"""What sync needs from the node that holds the documents, and an in-memory reference."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import pycrdt
from pycrdt import Doc

from ._errors import UpdateRefused
from ._protocol import MAX_UPDATE_BYTES
from ._text import sanitize
from ._validate import UpdateChecker
from ._vectors import EMPTY_STATE, EMPTY_UPDATE

_LOGGER = logging.getLogger(__name__)

Listener = Callable[[str, bytes, "str | None"], None]
"""Called as (document name, update, origin peer node id or None for a local write)."""


class Replica(Protocol):
    """The documents of one node, as sync sees them."""

    def doc_names(self) -> list[str]:
        """Names of the documents held."""
        ...

    def state_vector(self, name: str) -> bytes:
        """The state vector of a document; b"\\x00" for one not held."""
        ...

    def diff(self, name: str, state_vector: bytes) -> bytes:
        """What the holder of `state_vector` lacks of a document (an empty update if not held)."""
        ...

    async def async_apply_remote(self, name: str, update: bytes, peer: str) -> bool:
        """Check, durably store, then apply a peer's update; True if it changed anything.

        Raises UpdateRefused (a rule forbids it) or UpdateIncomplete (it depends on
        changes not held yet); in both cases nothing of it is stored or applied.
        Remote updates of one document are handled one at a time, so that each is
        checked against the very state it is applied to.
        """
        ...

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after each durable change; returns the unsubscribe function."""
        ...


class MemoryReplica:
    """A Replica in memory: "durable" means appended to `stored`. Used by tests."""

    def __init__(
        self,
        *,
        validate: bool = True,
        max_update_bytes: int = MAX_UPDATE_BYTES,
        store_delay: float = 0.0,
    ) -> None:
        self.docs: dict[str, Doc[Any]] = {}
        self.stored: list[tuple[str, bytes, str | None]] = []
        """Every durable change: (document, update, origin peer or None)."""
        self.refused: list[tuple[str, str, str]] = []
        """Every refusal: (peer, document, reason)."""
        self.validate = validate
        self.max_update_bytes = max_update_bytes
        self.store_delay = store_delay
        self._listeners: list[Listener] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._checker = UpdateChecker()

    # -- Replica ----------------------------------------------------------------

    def doc_names(self) -> list[str]:
        """Names of the documents held."""
        return sorted(self.docs)

    def state_vector(self, name: str) -> bytes:
        """The state vector of a document; b"\\x00" for one not held."""
        doc = self.docs.get(name)
        return EMPTY_STATE if doc is None else doc.get_state()

    def diff(self, name: str, state_vector: bytes) -> bytes:
        """What the holder of `state_vector` lacks of a document."""
        doc = self.docs.get(name)
        return EMPTY_UPDATE if doc is None else doc.get_update(state_vector)

    async def async_apply_remote(self, name: str, update: bytes, peer: str) -> bool:
        """Check, store, then apply a peer's update; True if it changed anything."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:  # checked against the state it is applied to
            return await self._apply_remote(name, update, peer)

    async def _apply_remote(self, name: str, update: bytes, peer: str) -> bool:
        doc = self.docs.get(name)
        if self.validate:
            try:
                change = self._checker.check(doc, name, update, max_bytes=self.max_update_bytes)
            except UpdateRefused as err:
                self.refused.append((peer, name, err.reason))
                raise
        else:
            change = update
        if change is None:
            return False
        # persist before apply: a crash in between replays the stored change
        self.stored.append((name, change, peer))
        if self.store_delay:
            await asyncio.sleep(self.store_delay)
        doc = self._doc(name)
        before = doc.get_state()
        with doc.transaction(origin=peer):
            doc.apply_update(change)
        if not self.validate and doc.get_state() == before:
            return False
        self._notify(name, change, peer)
        return True

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after each durable change; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # -- local writes and reads -------------------------------------------------

    def write(self, name: str, mutate: Callable[[Doc[Any]], None]) -> bytes | None:
        """A local change, durable at once; the update it made, or None if it changed nothing."""
        doc = self._doc(name)
        captured: list[bytes] = []
        sub = doc.observe(lambda ev: captured.append(ev.update))
        try:
            with doc.transaction():
                mutate(doc)
        finally:
            doc.unobserve(sub)
        if not captured:
            return None
        update = captured[0] if len(captured) == 1 else pycrdt.merge_updates(*captured)
        self.stored.append((name, update, None))
        self._notify(name, update, None)
        return update

    def _doc(self, name: str) -> Doc[Any]:
        doc = self.docs.get(name)
        if doc is None:
            doc = self.docs[name] = Doc()
        return doc

    def _notify(self, name: str, update: bytes, origin: str | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(name, update, origin)
            except Exception:
                _LOGGER.exception("sync listener failed on %s", sanitize(name, 60))

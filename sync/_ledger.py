"""What we know of one peer's documents and what we sent it (sans-I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import crdt_model as cm

from ._replica import Replica
from ._vectors import (
    EMPTY_STATE,
    covers,
    encode_state_vector,
    merge_vectors,
    missing_clock,
    parse_state_vector,
)

MAX_INFLIGHT = 10_000
MAX_ASKED = 1024
MAX_PUSH_WINDOW_BYTES = 16 * 1024 * 1024
"""Catch-up bytes sent and not yet acknowledged before the next diff is made."""
ALWAYS_PUSH = (cm.CLUSTER_DOC,)
"""Documents with deletions, which state vectors do not show: their diff goes on every manifest."""


@dataclass(slots=True)
class Held:
    """Authors of a relayed catch-up held back from one peer, and for how long."""

    authors: dict[int, int]
    patient_until: float
    """A manifest after this that still lacks them releases them."""
    until: float
    """Released then whatever the manifests say."""


@dataclass(slots=True)
class Sent:
    """An update sent and not yet acknowledged."""

    doc: str
    size: int
    at: float
    covers: dict[int, int] | None
    """Our state vector when a catch-up diff was made: what the peer holds once it acks."""
    reach: dict[int, int] | None = None
    """A live update: our state vector once it was applied, what it brings the peer up to
    from `base` (ours just before it)."""
    base: dict[int, int] | None = None


class Ledger:
    """State vectors the peer told us, updates in flight, diffs to send."""

    def __init__(self) -> None:
        self.peer_svs: dict[str, dict[int, int]] | None = None
        """Per document, the peer's state vector as last known; None before its manifest."""
        self.inflight: dict[int, Sent] = {}
        self.push_queue: dict[str, bytes] = {}
        """Documents to send a diff of, with the state vector to diff from."""
        self.pushing: dict[str, int] = {}
        """Document -> ack id of the catch-up diff in flight."""
        self.held: dict[str, Held] = {}
        """Per document, authors of a large catch-up that came from another peer, left out
        of diffs for this one for a while: it may be receiving them first-hand."""
        self._asked: dict[str, float] = {}
        self._next_id = 1

    def new_id(self) -> int:
        """A fresh ack id or ping nonce."""
        value = self._next_id
        self._next_id += 1
        return value

    # -- what the peer tells us -----------------------------------------------------------

    def on_manifest(self, docs: dict[str, bytes], replica: Replica, now: float = 0.0) -> None:
        """The peer's manifest: queue a diff of every document it lacks something of.

        Held-back authors are released when the manifest shows the peer holds them (it got
        them elsewhere), or still lacks them after `Held.patient_until` (it is not
        getting them first-hand: a peer busy taking them in sends no manifest meanwhile).
        """
        # merged with what acks told us meanwhile: within a session a peer's state vectors
        # only grow, and a manifest read behind a long apply is older than its acks (it
        # would have the whole catch-up sent again)
        known = self.peer_svs or {}
        holding = set(replica.doc_names())
        self.peer_svs = {
            name: merge_vectors(
                known.get(name, {}), parse_state_vector(docs.get(name, EMPTY_STATE))
            )
            # what acks taught of a document the manifest was made before it had (a node
            # that just joined learns every document so)
            for name in docs.keys() | (known.keys() & holding)
        }
        for name in sorted(set(replica.doc_names()) | docs.keys()):
            ours = parse_state_vector(replica.state_vector(name))
            lacking = not covers(self.peer_svs.get(name, {}), ours)
            held = self.held.get(name)
            if held is not None and (
                covers(self.peer_svs.get(name, {}), held.authors) or now >= held.patient_until
            ):
                del self.held[name]
            if (lacking or (name in ALWAYS_PUSH and ours)) and not self.in_flight(name):
                theirs = self.peer_svs.get(name)
                self.push_queue[name] = EMPTY_STATE if not theirs else encode_state_vector(theirs)

    def on_step1(self, doc: str, sv: bytes) -> None:
        """The peer could not take in what we sent of `doc`: send a diff from its state."""
        for ack, sent in list(self.inflight.items()):
            if sent.doc == doc:
                self.forget(ack)  # never acknowledged; the diff covers them
        if self.peer_svs is not None:
            self.peer_svs[doc] = parse_state_vector(sv)
        self.push_queue[doc] = sv

    def on_ack(self, ack: int) -> Sent | None:
        """The peer stored what we sent under `ack`; what that was (None if unknown)."""
        sent = self.inflight.get(ack)
        if sent is None:
            return None  # repeated or expired
        if sent.covers is not None and self.peer_svs is not None:
            known = self.peer_svs.get(sent.doc, {})
            self.peer_svs[sent.doc] = merge_vectors(known, sent.covers)
        self.forget(ack)
        return sent

    # -- what we send -----------------------------------------------------------------------

    def sent(
        self,
        doc: str,
        size: int,
        now: float,
        ours: dict[int, int] | None,
        *,
        reach: dict[int, int] | None = None,
        base: dict[int, int] | None = None,
    ) -> int:
        """Record an update sent (a catch-up diff made at `ours`, or a live update taking a
        peer at `base` to `reach`); its ack id."""
        ack = self.new_id()
        self.inflight[ack] = Sent(doc, size, now, ours, reach, base)
        while len(self.inflight) > MAX_INFLIGHT:
            self.forget(next(iter(self.inflight)))
        if ours is not None:
            self.pushing[doc] = ack
        return ack

    def live(self, doc: str, size: int, max_live: int) -> str:
        """How to send a live update: "update", "diff" (queued) or "skip"."""
        if self.peer_svs is None or doc in self.push_queue:
            return "skip"  # the catch-up diff, made when sent, carries it
        if size > max_live:
            self.push_queue[doc] = encode_state_vector(self.peer_svs.get(doc, {}))
            return "diff"
        return "update"

    def hold(self, doc: str, authors: dict[int, int], now: float, patience: float) -> None:
        """Leave `authors`' changes to `doc` out of diffs for this peer for a while.

        Released by a manifest (see on_manifest), or after 3 x `patience` at the latest.
        """
        if self.peer_svs is None:
            return
        held = self.held.get(doc)
        if held is None:
            self.held[doc] = Held(dict(authors), now + patience, now + 3 * patience)
        else:
            held.authors = merge_vectors(held.authors, authors)

    def release_held(self, now: float, replica: Replica) -> bool:
        """Queue a diff of what was held back too long; True if one was queued."""
        queued = False
        for doc in [d for d, held in self.held.items() if held.until <= now]:
            del self.held[doc]
            theirs = {} if self.peer_svs is None else self.peer_svs.get(doc, {})
            ours = parse_state_vector(replica.state_vector(doc))
            if not covers(theirs, ours) and not self.in_flight(doc):
                self.push_queue[doc] = encode_state_vector(theirs)
                queued = True
        return queued

    def diff_base(
        self, doc: str, sv: bytes, ours: dict[int, int]
    ) -> tuple[bytes, dict[int, int]] | None:
        """The state vector to diff `doc` from, and what the peer holds once it takes that diff.

        Held-back authors are left out whole (a part of an author's changes would not
        integrate). None when nothing else is left to send.
        """
        held = self.held.get(doc)
        if held is None:
            return sv, ours
        theirs = parse_state_vector(sv)
        base = dict(theirs)
        after = dict(ours)
        for client in held.authors:
            base[client] = max(theirs.get(client, 0), ours.get(client, 0))
            after[client] = theirs.get(client, 0)
        if covers(base, ours) and doc not in ALWAYS_PUSH:
            return None
        return encode_state_vector(base), after

    def next_push(self) -> tuple[str, bytes] | None:
        """The next document to send a diff of, if the window allows."""
        if not self.push_queue:
            return None
        window = sum(self.inflight[a].size for a in self.pushing.values() if a in self.inflight)
        if window >= MAX_PUSH_WINDOW_BYTES:
            return None
        name = next(iter(self.push_queue))
        return name, self.push_queue.pop(name)

    def forget(self, ack: int) -> None:
        """Stop waiting for an ack."""
        sent = self.inflight.pop(ack, None)
        if sent is not None and self.pushing.get(sent.doc) == ack:
            del self.pushing[sent.doc]

    def expire(self, now: float, timeout: float) -> None:
        """Stop waiting for acks older than `timeout` (anti-entropy resends what was lost)."""
        for ack, sent in list(self.inflight.items()):
            if now - sent.at < timeout:
                break
            self.forget(ack)

    def in_flight(self, name: str) -> bool:
        """A diff of `name` is queued or unacknowledged."""
        return name in self.push_queue or name in self.pushing

    def should_ask(self, doc: str, now: float, interval: float) -> bool:
        """Whether to send STEP1 for `doc` now (at most once per `interval`)."""
        if now - self._asked.get(doc, -1e18) < interval:
            return False
        self._asked[doc] = now
        while len(self._asked) > MAX_ASKED:
            del self._asked[next(iter(self._asked))]
        return True

    def awaiting(self, doc: str, now: float, interval: float) -> bool:
        """Whether STEP1 for `doc` went less than `interval` ago and is not answered yet."""
        return now - self._asked.get(doc, -1e18) < interval

    def answered(self, doc: str) -> None:
        """A diff of `doc` arrived: a new STEP1 may go at once."""
        self._asked.pop(doc, None)

    # -- figures ------------------------------------------------------------------------------

    def synced(self, replica: Replica) -> bool:
        """Each side holds all the other holds, but for live updates on their way."""
        if self.peer_svs is None:
            return False
        # where live updates on their way take the peer, in the order they were sent: each
        # counts only from what it was made on (a document the peer lacks much of is not
        # "in sync" for a write in flight)
        reached = {name: dict(sv) for name, sv in self.peer_svs.items()}
        for sent in self.inflight.values():
            if sent.covers is not None or sent.reach is None or sent.base is None:
                continue
            theirs = reached.get(sent.doc, {})
            if covers(theirs, sent.base):
                reached[sent.doc] = merge_vectors(theirs, sent.reach)
        for name in set(replica.doc_names()) | self.peer_svs.keys():
            ours = parse_state_vector(replica.state_vector(name))
            if not covers(ours, self.peer_svs.get(name, {})):
                return False
            if not covers(reached.get(name, {}), ours):
                return False
        return True

    def behind(self, replica: Replica) -> tuple[int, int] | None:
        """(clock units, documents) we hold and the peer lacks; None before its manifest."""
        if self.peer_svs is None:
            return None
        units = docs = 0
        for name in replica.doc_names():
            ours = parse_state_vector(replica.state_vector(name))
            missing = missing_clock(self.peer_svs.get(name, {}), ours)
            units += missing
            docs += missing > 0
        return units, docs

    def unconfirmed(self) -> tuple[int, int]:
        """(updates, bytes) sent and not acknowledged."""
        return len(self.inflight), sum(s.size for s in self.inflight.values())

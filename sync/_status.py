"""Per-peer sync status and the session timing (constants tests can shorten)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ANTI_ENTROPY_S = 5.0
"""Each side re-sends its manifest this often; whatever was lost is sent again."""
HEARTBEAT_S = 2.0
"""A PING goes out this often."""
DEAD_AFTER_S = 8.0
"""A peer from which no frame came for this long is dead; its connection is closed."""
HANDSHAKE_S = 10.0
"""Time allowed for the peer's HELLO."""
ACK_TIMEOUT_S = 30.0
"""An update unconfirmed this long is no longer counted in flight (anti-entropy covers it)."""
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
"""Reconnection delays: doubling from min to max, each with random jitter (50-100%)."""
DIAL_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who this node is, as told to peers in HELLO."""

    cluster_id: str
    node_id: str
    code: str
    name: str


class PeerState(enum.StrEnum):
    """Where a peer connection stands."""

    CONNECTING = "connecting"
    SYNCING = "syncing"
    LIVE = "live"
    DEAD = "dead"
    CLOSED = "closed"
    REJECTED = "rejected"
    """Incompatible: other cluster, protocol version or identity."""
    REFUSED = "refused"
    """Flagged: the peer sent a forbidden update or a malformed frame."""


@dataclass(frozen=True, slots=True)
class Timing:
    """Delays of a session and of reconnection."""

    anti_entropy_s: float = ANTI_ENTROPY_S
    heartbeat_s: float = HEARTBEAT_S
    dead_after_s: float = DEAD_AFTER_S
    handshake_s: float = HANDSHAKE_S
    ack_timeout_s: float = ACK_TIMEOUT_S
    backoff_min_s: float = BACKOFF_MIN_S
    backoff_max_s: float = BACKOFF_MAX_S
    dial_timeout_s: float = DIAL_TIMEOUT_S

    @classmethod
    def default(cls) -> Timing:
        """The module constants as they are now (tests may have shortened them)."""
        return cls(
            anti_entropy_s=ANTI_ENTROPY_S,
            heartbeat_s=HEARTBEAT_S,
            dead_after_s=DEAD_AFTER_S,
            handshake_s=HANDSHAKE_S,
            ack_timeout_s=ACK_TIMEOUT_S,
            backoff_min_s=BACKOFF_MIN_S,
            backoff_max_s=BACKOFF_MAX_S,
            dial_timeout_s=DIAL_TIMEOUT_S,
        )

    @property
    def tick_s(self) -> float:
        """How often a session looks at its timers."""
        return min(self.heartbeat_s, self.anti_entropy_s, self.dead_after_s) / 4


def iso(epoch_s: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC, to the second."""
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class PeerStatus:
    """What an operator sees of one peer (strings from the peer are sanitized)."""

    address: str = ""
    direction: str = ""
    """"out" when we dialled, "in" when the peer did."""
    node: str | None = None
    code: str | None = None
    name: str | None = None
    state: PeerState = PeerState.CONNECTING
    since: float | None = None
    last_sync: float | None = None
    """When both sides last held everything of each other's manifest."""
    unconfirmed: int = 0
    """Updates sent to the peer and not yet acknowledged as durable."""
    unconfirmed_bytes: int = 0
    behind: int | None = None
    """Clock units (about one per event) we hold that the peer lacks, by its last state vectors."""
    behind_docs: int | None = None
    refused: str | None = None
    """Why we flagged the peer."""
    refused_by_peer: str | None = None
    """Why the peer refused what we sent."""
    error: str | None = None
    rtt_ms: float | None = None
    dropped: int = 0
    """Live updates not queued because the send queue was full (anti-entropy resends them)."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of /api/peers."""
        return {
            "node": self.code,
            "node_id": self.node,
            "name": self.name,
            "address": self.address,
            "direction": self.direction,
            "state": str(self.state),
            "since": iso(self.since),
            "last_sync": iso(self.last_sync),
            "unconfirmed": self.unconfirmed,
            "unconfirmed_bytes": self.unconfirmed_bytes,
            "behind": self.behind,
            "behind_docs": self.behind_docs,
            "flagged": self.state is PeerState.REFUSED,
            "refused": self.refused,
            "refused_by_peer": self.refused_by_peer,
            "error": self.error,
            "rtt_ms": self.rtt_ms,
            "dropped": self.dropped,
        }

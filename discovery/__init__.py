"""Peer discovery: mDNS (python-zeroconf) on the isolated segment, plus static peers.

Discovery only proposes candidates; the mutual-TLS handshake of sync decides
who is a peer. Liveness comes from sync heartbeats, not from mDNS.
"""

from __future__ import annotations

from ._errors import (
    AnnouncementError,
    DiscoveryConfigError,
    DiscoveryError,
    MdnsStartError,
    PeerAddressError,
)
from ._mdns import MdnsDiscovery
from ._peer import PeerCandidate, PeerSource
from ._static import parse_peer, parse_peers
from ._txt import SERVICE_TYPE, Announcement, normalize_fingerprint, parse_announcement

__all__ = [
    "SERVICE_TYPE",
    "Announcement",
    "AnnouncementError",
    "DiscoveryConfigError",
    "DiscoveryError",
    "MdnsDiscovery",
    "MdnsStartError",
    "PeerAddressError",
    "PeerCandidate",
    "PeerSource",
    "normalize_fingerprint",
    "parse_announcement",
    "parse_peer",
    "parse_peers",
]

"""The errors raised by discovery: one root, narrow subclasses."""

from __future__ import annotations


class DiscoveryError(Exception):
    """Root of every error raised by the discovery package."""


class DiscoveryConfigError(DiscoveryError, ValueError):
    """A discovery setting is invalid: fingerprint, node id, code, port or interface."""


class PeerAddressError(DiscoveryError, ValueError):
    """A static peer is not HOST:PORT (an IPv6 address in brackets)."""


class AnnouncementError(DiscoveryError, ValueError):
    """A received mDNS announcement is malformed; it is ignored."""


class MdnsStartError(DiscoveryError, OSError):
    """mDNS could not start on the configured interfaces (bind, probe or register failed)."""

"""Errors of the sync package: one root, narrow subclasses."""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error raised by the sync package."""


class ProtocolError(SyncError):
    """A frame or message that breaks the sync protocol."""


class LocalProtocolError(ProtocolError):
    """We were about to send something the protocol forbids (a bug or an oversize write)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class FrameTooLarge(RemoteProtocolError):
    """A frame header announces more bytes than the frame size limit."""


class UpdateRefused(SyncError):
    """A remote update our rules forbid; nothing of it reached the stored state."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpdateIncomplete(SyncError):
    """A remote update that depends on changes not held here yet; nothing of it was applied."""


class ChannelClosed(SyncError, ConnectionError):
    """The transport under a session is closed."""


class PeerRejected(SyncError):
    """A peer we do not sync with: other cluster or protocol version, wrong identity, flagged."""

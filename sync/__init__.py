"""Peer replication of the node's documents over one multiplexed connection per peer pair.

Transport-agnostic: a session runs over any `Channel` (the TLS WebSocket
adapter lives with the node). Frames and messages are sans-I/O; updates are
checked (`check_update`), stored durably by the `Replica`, then acknowledged
and relayed.
"""

from ._channel import Channel, MemoryChannel, memory_channel_pair
from ._errors import (
    ChannelClosed,
    FrameTooLarge,
    LocalProtocolError,
    PeerRejected,
    ProtocolError,
    RemoteProtocolError,
    SyncError,
    UpdateIncomplete,
    UpdateRefused,
)
from ._frames import MAX_FRAME_BYTES, FrameDecoder, encode_frame
from ._manager import SyncManager
from ._protocol import (
    MAX_DOC_NAME,
    MAX_LIVE_UPDATE_BYTES,
    MAX_MANIFEST_DOCS,
    MAX_UPDATE_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Hello,
    Manifest,
    Message,
    Ping,
    Pong,
    Refused,
    Step1,
    Step2,
    Update,
    decode_message,
    encode_message,
)
from ._replica import Listener, MemoryReplica, Replica
from ._session import PeerSession
from ._status import NodeIdentity, PeerState, PeerStatus, Timing
from ._text import sanitize
from ._validate import Checked, Entry, UpdateChecker, check_update
from ._vectors import parse_state_vector

__all__ = [
    "MAX_DOC_NAME",
    "MAX_FRAME_BYTES",
    "MAX_LIVE_UPDATE_BYTES",
    "MAX_MANIFEST_DOCS",
    "MAX_UPDATE_BYTES",
    "PROTOCOL_VERSION",
    "Ack",
    "Bye",
    "Channel",
    "ChannelClosed",
    "Checked",
    "Entry",
    "FrameDecoder",
    "FrameTooLarge",
    "Hello",
    "Listener",
    "LocalProtocolError",
    "Manifest",
    "MemoryChannel",
    "MemoryReplica",
    "Message",
    "NodeIdentity",
    "PeerRejected",
    "PeerSession",
    "PeerState",
    "PeerStatus",
    "Ping",
    "Pong",
    "ProtocolError",
    "Refused",
    "RemoteProtocolError",
    "Replica",
    "Step1",
    "Step2",
    "SyncError",
    "SyncManager",
    "Timing",
    "Update",
    "UpdateChecker",
    "UpdateIncomplete",
    "UpdateRefused",
    "check_update",
    "decode_message",
    "encode_frame",
    "encode_message",
    "memory_channel_pair",
    "parse_state_vector",
    "sanitize",
]

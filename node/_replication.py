"""The node's side of peer sync: its documents as a Replica, TLS WebSockets, discovery."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509

import crdt_model as cm
import sync
from discovery import MdnsDiscovery, PeerCandidate

from ._cluster import member_by_cert
from ._node import Node, NodeError, finished_even_if_cancelled
from ._pki import NodePki, fingerprint, node_id_of

_LOGGER = logging.getLogger(__name__)

WS_MAX_MESSAGE = sync.MAX_FRAME_BYTES + 1024
WS_CHUNK_BYTES = 256 * 1024
"""Sync bytes are sent in WebSocket messages of at most this size: the peer's reader
sees a large catch-up arrive piece by piece (proof of life on a slow link) instead of
one message that may take longer than the dead-after delay to cross."""
MDNS_PROTO_VERSION = sync.PROTOCOL_VERSION
MAX_STRANGERS = 64


class NodeReplica:
    """A node's documents as sync sees them: check, store durably, then apply."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._checker = sync.UpdateChecker()

    def doc_names(self) -> list[str]:
        """Documents held (retired reference exports are not offered)."""
        return [name for name in sorted(self.node.docs) if not self.node.is_retired(name)]

    def state_vector(self, name: str) -> bytes:
        """A document's state vector; b"\\x00" when not held."""
        doc = self.node.docs.get(name)
        return b"\x00" if doc is None else doc.get_state()

    def diff(self, name: str, state_vector: bytes) -> bytes:
        """What the holder of `state_vector` lacks."""
        doc = self.node.docs.get(name)
        return b"\x00\x00" if doc is None else doc.get_update(state_vector)

    async def async_apply_remote(self, name: str, update: bytes, peer: str) -> bool:
        """Check a peer's update, store it durably, apply it; UpdateRefused changes nothing."""
        if self.node.is_retired(name):
            return False
        async with self._locks[name]:
            checked = self._checker.check_read(
                self.node.docs.get(name), name, update, own=self.node.client_id
            )
            if checked is None:
                return False
            # once the store has it, memory and listeners must too, even if the session ends
            await finished_even_if_cancelled(
                self.node.async_store_remote(name, checked.change, peer, checked)
            )
        return True

    def add_listener(self, listener: sync.Listener) -> Callable[[], None]:
        """Hear of every durable change, local or remote."""
        return self.node.add_listener(listener)


class WebSocketChannel:
    """A sync Channel over an aiohttp WebSocket (server or client side)."""

    def __init__(
        self,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        peer_node: str | None = None,
    ) -> None:
        self._ws = ws
        self.peer_node = peer_node
        """The node id the peer's certificate names: its HELLO must say the same."""
        self._send_lock = asyncio.Lock()
        self._torn = False
        """A send was cut off mid-frame (cancelled): the peer's stream is broken for good."""
        self._closing: asyncio.Task[Any] | None = None

    async def send(self, data: bytes) -> None:
        """Send the bytes in order, in binary messages of at most WS_CHUNK_BYTES."""
        async with self._send_lock:
            if self._torn:
                raise sync.ChannelClosed("websocket closed: a frame was cut off")
            self._torn = True  # until every piece is out: nothing may follow half a frame
            for start in range(0, max(len(data), 1), WS_CHUNK_BYTES):
                if self._ws.closed:
                    raise sync.ChannelClosed("websocket closed")
                try:
                    await self._ws.send_bytes(data[start : start + WS_CHUNK_BYTES])
                except (ConnectionError, RuntimeError) as err:
                    raise sync.ChannelClosed(f"websocket closed: {err}") from None
            self._torn = False

    async def recv(self) -> bytes:
        """The next binary message (a piece of the peer's byte stream)."""
        msg = await self._ws.receive()
        if msg.type == aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type == aiohttp.WSMsgType.TEXT:
            raise sync.RemoteProtocolError("text message on the sync channel")
        raise sync.ChannelClosed("websocket closed")

    def close(self) -> None:
        """Close the WebSocket (in the background)."""
        if self._closing is None and not self._ws.closed:
            self._closing = asyncio.get_running_loop().create_task(self._ws.close())

    async def wait_closed(self) -> None:
        """Wait for a close begun by close()."""
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)


class Replication:
    """Runs a node's peer sync: the manager, outgoing dials, the /sync endpoint, mDNS."""

    def __init__(
        self,
        node: Node,
        *,
        static_peers: list[str],
        mdns: bool,
        mdns_interfaces: list[str] | None,
        sync_port: int,
    ) -> None:
        self.node = node
        self.pki = NodePki(node.data.pki)
        identity = sync.NodeIdentity(
            cluster_id=node.cluster_id, node_id=node.node_id, code=node.code, name=node.name
        )
        self.manager = sync.SyncManager(NodeReplica(node), identity, admit=self._is_member)
        self.static_peers = static_peers
        self.mdns_enabled = mdns
        self.mdns_interfaces = mdns_interfaces
        self.sync_port = sync_port
        self._client: aiohttp.ClientSession | None = None
        self._mdns: MdnsDiscovery | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._client_ssl = self.pki.client_context()
        self._strangers: dict[str, PeerCandidate] = {}
        """mDNS candidates not (yet) known as members; proposed again when membership changes."""
        self._announced: dict[str, str] = {}
        """Member node id -> the address its mDNS dialler dials."""
        self._members: set[str] = set()
        """The member ids the cluster document named at its last change."""

    async def async_start(self) -> None:
        """Dial the static peers and start mDNS."""
        self._client = aiohttp.ClientSession()
        self._unsubscribe = self.node.add_listener(self._on_change)
        self.node.peer_status = self.peers
        self._members = set(cm.cluster_items(self.node.docs[cm.CLUSTER_DOC], "members"))
        for address in self.static_peers:
            await self.manager.connect(address, self._dialer(address))
        if self.mdns_enabled:
            self._mdns = MdnsDiscovery(
                node_id=self.node.node_id,
                node_code=self.node.code,
                ca_fingerprint=self.pki.ca_fingerprint(),
                sync_port=self.sync_port,
                interfaces=self.mdns_interfaces,
                proto_version=MDNS_PROTO_VERSION,
                on_peer=self._on_candidate,
            )
            await self._mdns.async_start()

    async def async_stop(self) -> None:
        """Say goodbye on mDNS, close every session."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.node.peer_status = None
        if self._mdns is not None:
            await self._mdns.async_stop()
        await self.manager.close()
        if self._client is not None:
            await self._client.close()

    def peers(self) -> list[dict[str, Any]]:
        """Sync status per peer."""
        members = {
            m_id: m
            for m_id, m in cm.cluster_items(self.node.docs[cm.CLUSTER_DOC], "members").items()
        }
        out = []
        for peer in self.manager.peers():
            member = members.get(str(peer.get("node_id") or ""))
            node_id = str(peer.get("node_id") or "")
            revoked = member is not None and self.node.is_revoked(node_id)
            state = None if member is None else "revoked" if revoked else "member"
            out.append({**peer, "member": state})
        return out

    def clear_flag(self, which: str, by: str) -> dict[str, Any]:
        """Let a flagged peer (node id or code) sync again, once someone checked it."""
        members = cm.cluster_items(self.node.docs[cm.CLUSTER_DOC], "members")
        node_id = next(
            (m_id for m_id, m in members.items() if which in (m_id, m.get("code"))), which
        )
        if node_id not in self.manager.flagged():
            raise NodeError(f"peer {which[:40]!r} is not flagged")
        self.manager.clear_flag(node_id)
        code = members.get(node_id, {}).get("code")
        _LOGGER.warning("flag of peer %s cleared by %s", code or node_id, by)
        return {"node_id": node_id, "code": code, "flagged": False}

    # -- inside ---------------------------------------------------------------------

    def _on_candidate(self, candidate: PeerCandidate) -> None:
        """mDNS proposes; the TLS handshake decides."""
        node_id = str(candidate.node_id)
        member = cm.cluster_get(self.node.docs[cm.CLUSTER_DOC], "members", node_id)
        if member is None:
            # not a member as far as we know yet: look again when the cluster document changes
            if len(self._strangers) < MAX_STRANGERS:
                self._strangers[node_id] = candidate
            _LOGGER.debug("mDNS peer %s is not a known member yet", str(candidate.code)[:8])
            return
        self._strangers.pop(node_id, None)
        if self.node.is_revoked(node_id) or node_id < self.node.node_id:
            return  # the smaller node id dials; a single connection per pair
        # one mDNS dialler per member, at its latest address: announcements (forged ones too)
        # naming it at ever new addresses must not pile up diallers that never stop
        dialled = self._announced.get(node_id)
        if dialled == candidate.address:
            return
        if dialled is not None:
            if self.manager.connected_at(dialled):
                return  # a working connection is kept
            if dialled not in self.static_peers:  # configured peers are dialled for good
                self.manager.forget(dialled)
        self._announced[node_id] = candidate.address
        self.manager.dial(candidate.address, self._dialer(candidate.address))

    def _dialer(self, address: str) -> sync._manager.Dial:
        async def dial() -> sync.Channel:
            assert self._client is not None
            ws = await self._client.ws_connect(
                f"wss://{address}/sync",
                ssl=self._client_ssl,
                max_msg_size=WS_MAX_MESSAGE,
                autoping=True,
            )
            ssl_obj = ws.get_extra_info("ssl_object")
            der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            cert = x509.load_der_x509_certificate(der) if der else None
            if (
                cert is None
                or member_by_cert(self.node, node_id_of(cert), fingerprint(cert)) is None
            ):
                await ws.close()
                raise sync.PeerRejected(f"{address} is not a current member of this cluster")
            return WebSocketChannel(ws, peer_node=node_id_of(cert))

        return dial

    def _on_change(self, name: str, update: bytes, origin: str | None) -> None:
        if name == cm.CLUSTER_DOC:
            self._drop_revoked()
            members = set(cm.cluster_items(self.node.docs[cm.CLUSTER_DOC], "members"))
            if members - self._members:  # a peer we turned away as a stranger may be one
                self.manager.redial()
            self._members = members
            for candidate in list(self._strangers.values()):
                self._on_candidate(candidate)

    def _is_member(self, node_id: str) -> bool:
        """A member not revoked (asked again as each peer's HELLO arrives)."""
        entry = cm.cluster_get(self.node.docs[cm.CLUSTER_DOC], "members", node_id)
        return entry is not None and not self.node.is_revoked(node_id)

    def _drop_revoked(self) -> None:
        for node_id in cm.cluster_items(self.node.docs[cm.CLUSTER_DOC], "members"):
            if self.node.is_revoked(node_id):
                self.manager.disconnect(node_id, "revoked")


REPLICATION_KEY: web.AppKey[Replication] = web.AppKey("replication", Replication)


async def sync_endpoint(
    request: web.Request, replication: Replication, cert: x509.Certificate
) -> web.WebSocketResponse:
    """Run the session a peer opens on /sync (its certificate already checked)."""
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_MESSAGE, autoping=True)
    await ws.prepare(request)
    channel = WebSocketChannel(ws)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
    await replication.manager.accept(channel, address=address, peer_node=node_id_of(cert))
    await channel.wait_closed()
    return ws

"""mDNS registration and browsing of `_sterimesh._tcp.local.` with python-zeroconf.

Discovery only proposes: a record of our cluster becomes a PeerCandidate and
the mutual-TLS handshake decides. A crashed peer's record stays cached for
about 19 minutes, so `on_gone` (goodbye or expiry) is a hint, not liveness:
liveness comes from the sync heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from ipaddress import IPv4Interface

from zeroconf import BadTypeInNameException, IPVersion, ServiceStateChange, Zeroconf
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ._errors import AnnouncementError, DiscoveryConfigError, MdnsStartError
from ._net import choose_address, published_addresses, resolve_interfaces
from ._peer import PeerCandidate
from ._sanitize import sanitize
from ._txt import SERVICE_TYPE, Announcement, own_announcement, parse_announcement

_LOGGER = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 3000
MAX_PEERS = 256  # names we track; a flood of announcements cannot grow memory past this
MAX_RESOLVING = 32
MAX_NAME_LEN = 255
INSTANCE_PREFIX = "sterimesh"
# Log records about an ignored announcement carry (name, reason) under this attribute.
IGNORED_ATTR = "mdns_ignored"


class MdnsDiscovery:
    """Announce this node and propose the nodes of our cluster seen on the segment.

    `on_peer` is called for each new or changed candidate, `on_gone` with the
    node id when a proposed peer says goodbye (or its record expires). Both run
    on the event loop and must not block.
    """

    def __init__(
        self,
        *,
        node_id: str,
        node_code: str,
        ca_fingerprint: str,
        sync_port: int,
        interfaces: list[str] | None,
        proto_version: int,
        on_peer: Callable[[PeerCandidate], None],
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        self._own: Announcement = own_announcement(
            ca=ca_fingerprint, node_id=node_id, code=node_code, version=proto_version
        )
        if isinstance(sync_port, bool) or not 1 <= sync_port <= 65535:
            raise DiscoveryConfigError(f"sync port {sync_port!r}: 1 to 65535")
        self._sync_port = sync_port
        self._interfaces = None if interfaces is None else list(interfaces)
        self._on_peer = on_peer
        self._on_gone = on_gone
        self._bound: list[IPv4Interface] = []
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._peers: dict[str, PeerCandidate] = {}  # service name (lower case) -> proposed
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._warned: set[str] = set()
        self._running = False

    @property
    def service_name(self) -> str | None:
        """Our registered service name (zeroconf may have renamed it on a conflict)."""
        return None if self._info is None else self._info.name

    @property
    def peers(self) -> list[PeerCandidate]:
        """The candidates proposed and not gone, in the order they were seen."""
        return list(self._peers.values())

    async def async_start(self) -> None:
        """Bind to the interfaces, register our service (probe + announce), start browsing.

        Raises DiscoveryConfigError for an unknown interface, MdnsStartError when
        zeroconf cannot bind or register.
        """
        if self._running:
            return
        self._bound = resolve_interfaces(self._interfaces)
        if not self._bound:
            raise DiscoveryConfigError("this host has no IPv4 address to announce")
        own = self._own
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{_instance_label(own)}.{SERVICE_TYPE}",
            port=self._sync_port,
            properties=own.properties(),
            server=f"{INSTANCE_PREFIX}-{_host_label(own.node_id)}.local.",
            parsed_addresses=published_addresses(self._bound),
        )
        try:
            self._aiozc = AsyncZeroconf(
                interfaces=[str(x.ip) for x in self._bound]
                if self._interfaces is not None
                else _all_interfaces(),
                ip_version=IPVersion.V4Only,
            )
            # Awaiting the call gives an awaitable: awaiting that one sends the announcements.
            await (await self._aiozc.async_register_service(self._info, allow_name_change=True))
            self._running = True
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf, [SERVICE_TYPE], handlers=[self._on_state_change]
            )
        except (OSError, ZeroconfError, RuntimeError) as exc:
            await self._async_close_zeroconf()
            raise MdnsStartError(f"mDNS could not start: {exc}") from exc
        _LOGGER.info(
            "mDNS: announcing %s on %s port %d",
            self._info.name,
            ", ".join(published_addresses(self._bound)),
            self._sync_port,
        )

    async def async_stop(self) -> None:
        """Stop browsing, say goodbye (unregister) and close; idempotent."""
        if self._aiozc is None:
            return
        self._running = False
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        tasks = list(self._resolving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._resolving.clear()
        if self._info is not None:
            try:
                # Awaiting the call gives an awaitable: awaiting that one sends the goodbyes.
                await (await self._aiozc.async_unregister_service(self._info))
            except (OSError, ZeroconfError) as exc:
                _LOGGER.warning("mDNS: goodbye not sent: %s", sanitize(str(exc)))
        await self._async_close_zeroconf()
        self._peers.clear()

    # -- browsing ---------------------------------------------------------------

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if not self._running:
            return
        key = name.lower()
        if state_change is ServiceStateChange.Removed:
            task = self._resolving.pop(key, None)
            if task is not None:
                task.cancel()
            self._forget(key, "goodbye or expired")
            return
        if len(name) > MAX_NAME_LEN:
            self._ignore(name, "service name too long")
            return
        if key not in self._peers and len(self._peers) >= MAX_PEERS:
            self._ignore(name, f"already {MAX_PEERS} peers tracked")
            return
        previous = self._resolving.pop(key, None)
        if previous is not None:
            previous.cancel()
        elif len(self._resolving) >= MAX_RESOLVING:
            self._ignore(name, "too many announcements being resolved")
            return
        task = asyncio.get_running_loop().create_task(self._async_resolve(name))
        self._resolving[key] = task
        task.add_done_callback(lambda t: self._resolved(key, t))

    def _resolved(self, key: str, task: asyncio.Task[None]) -> None:
        if self._resolving.get(key) is task:
            del self._resolving[key]
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("mDNS: resolving failed", exc_info=task.exception())

    async def _async_resolve(self, name: str) -> None:
        if self._aiozc is None:
            return
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
        except BadTypeInNameException:
            self._ignore(name, "bad service name")
            return
        if not await info.async_request(self._aiozc.zeroconf, RESOLVE_TIMEOUT_MS):
            self._ignore(name, "did not resolve")
            return
        if not self._running:
            return
        try:
            candidate = self._candidate(info)
        except AnnouncementError as exc:
            self._ignore(name, str(exc))
            self._forget(name.lower(), "announcement no longer valid")
            return
        key = name.lower()
        if self._peers.get(key) == candidate:
            return
        self._peers[key] = candidate
        _LOGGER.info(
            "mDNS: proposing peer %s (%s) at %s",
            candidate.node_id,
            candidate.code,
            candidate.address,
        )
        try:
            self._on_peer(candidate)
        except Exception:
            _LOGGER.exception("mDNS: on_peer failed")

    def _candidate(self, info: AsyncServiceInfo) -> PeerCandidate:
        """The candidate a resolved record proposes; AnnouncementError tells why not."""
        announced = parse_announcement(info.text or b"")
        if announced.ca != self._own.ca:
            raise AnnouncementError(f"other cluster (ca {announced.ca[:12]}…)")
        if announced.node_id == self._own.node_id:
            if (
                info.name != self.service_name
                and info.name not in self._warned
                and len(self._warned) < MAX_PEERS
            ):
                self._warned.add(info.name)
                _LOGGER.warning(
                    "mDNS: %s announces our own node id: a copied data directory?",
                    sanitize(info.name),
                )
            raise AnnouncementError("our own node id")
        if info.port is None or not 1 <= info.port <= 65535:
            raise AnnouncementError(f"bad port {info.port!r}")
        host = choose_address(info.parsed_addresses(IPVersion.V4Only), self._bound)
        if host is None:
            raise AnnouncementError("no usable IPv4 address")
        return PeerCandidate(
            node_id=announced.node_id,
            code=announced.code,
            host=host,
            port=info.port,
            source="mdns",
            proto_version=announced.version,
        )

    def _forget(self, key: str, why: str) -> None:
        candidate = self._peers.pop(key, None)
        if candidate is None or candidate.node_id is None:
            return
        if any(p.node_id == candidate.node_id for p in self._peers.values()):
            return  # still announced under another name
        _LOGGER.info("mDNS: peer %s (%s) gone: %s", candidate.node_id, candidate.code, why)
        if self._on_gone is not None:
            try:
                self._on_gone(candidate.node_id)
            except Exception:
                _LOGGER.exception("mDNS: on_gone failed")

    def _ignore(self, name: str, reason: str) -> None:
        _LOGGER.debug(
            "mDNS: ignoring %s: %s",
            sanitize(name),
            sanitize(reason, 120),
            extra={IGNORED_ATTR: (name[:MAX_NAME_LEN], reason)},
        )

    async def _async_close_zeroconf(self) -> None:
        aiozc, self._aiozc = self._aiozc, None
        self._running = False
        if aiozc is not None:
            await aiozc.async_close()


def _instance_label(own: Announcement) -> str:
    """The DNS-SD instance name: at most 63 bytes, unique per node."""
    return f"{INSTANCE_PREFIX} {own.code} {own.node_id}"[:63]


def _host_label(node_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", node_id.lower())[:50].strip("-") or "node"


def _all_interfaces() -> list[str]:
    # Every IPv4 address: zeroconf's InterfaceChoice.All, as a list for one code path.
    return [str(x.ip) for x in resolve_interfaces(None)]

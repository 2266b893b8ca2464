"""All peer sessions of a node: one per peer, reconnection, flags, status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._channel import Channel
from ._replica import Replica
from ._session import PeerSession
from ._status import NodeIdentity, PeerState, PeerStatus, Timing
from ._text import sanitize

_LOGGER = logging.getLogger(__name__)

MAX_REMEMBERED = 256
"""Ended sessions whose last status is kept for /api/peers."""

Dial = Callable[[], Awaitable[Channel]]


@dataclass(slots=True)
class _Dialer:
    address: str
    dial: Dial
    status: PeerStatus
    node: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set to end its wait before the next attempt (`SyncManager.redial`)."""


class SyncManager:
    """Keeps one session per peer node: dials out with backoff, accepts, flags, reports."""

    def __init__(
        self,
        replica: Replica,
        identity: NodeIdentity,
        *,
        timing: Timing | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        admit: Callable[[str], bool] | None = None,
    ) -> None:
        """`admit(node_id)`: whether a peer may sync now, asked as its HELLO arrives (a node
        revoked while its connection was being opened is refused there)."""
        self.replica = replica
        self._admit = admit
        self.identity = identity
        self.timing = timing or Timing.default()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._clock = clock
        self._wall = wall
        self._sessions: dict[str, PeerSession] = {}
        self._running: set[PeerSession] = set()
        self._dialers: dict[str, _Dialer] = {}
        self._flagged: dict[str, str] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._closed = False

    # -- public -----------------------------------------------------------------------------

    async def connect(self, address: str, dial: Dial) -> None:
        """Keep a connection to the peer at `address`, dialling again with backoff when lost."""
        self.dial(address, dial)

    def dial(self, address: str, dial: Dial) -> None:
        """As `connect`, from synchronous code running in the event loop."""
        if self._closed or address in self._dialers:
            return
        status = PeerStatus(address=address, direction="out", since=self._wall())
        dialer = _Dialer(address, dial, status)
        self._dialers[address] = dialer
        dialer.task = asyncio.create_task(self._dial_loop(dialer), name=f"sync-dial-{address}")

    def forget(self, address: str) -> None:
        """Stop dialling `address` (a session it runs ends with it)."""
        dialer = self._dialers.pop(address, None)
        if dialer is not None and dialer.task is not None:
            dialer.task.cancel()

    def redial(self) -> None:
        """Every dialler waiting to try again tries now (e.g. a peer it turned away for not
        being a member is one now); flagged peers stay refused."""
        for dialer in self._dialers.values():
            dialer.wake.set()

    def connected_at(self, address: str) -> bool:
        """Whether the dialler of `address` has a session running now."""
        dialer = self._dialers.get(address)
        return dialer is not None and dialer.node is not None and dialer.node in self._sessions

    async def accept(
        self, channel: Channel, *, address: str = "", peer_node: str | None = None
    ) -> str:
        """Run a session a peer opened until it ends; `peer_node` is the id its certificate names."""
        if self._closed:
            channel.close()
            return "shutting down"
        session = self._session(channel, address, initiator=False, expected_node=peer_node)
        return await self._run(session)

    def peers(self) -> list[dict[str, Any]]:
        """Per peer: node, name, address, state, last sync, unconfirmed, behind, flag."""
        found: dict[str, dict[str, Any]] = dict(self._last)
        for node, session in self._sessions.items():
            found[node] = session.status_dict()
        for node, reason in self._flagged.items():
            entry = found.setdefault(node, {"node_id": node, "address": ""})
            entry.update(state=str(PeerState.REFUSED), flagged=True, refused=reason)
        for dialer in self._dialers.values():
            if dialer.node is None or dialer.node not in found:
                found[f"@{dialer.address}"] = dialer.status.as_dict()
        return sorted(found.values(), key=lambda p: (p.get("node") or "~", p.get("address") or ""))

    def disconnect(self, node: str, reason: str) -> None:
        """End the session with a peer (e.g. revoked); it may connect again only if allowed."""
        session = self._sessions.get(node)
        if session is not None:
            session.close(reason)

    def flagged(self) -> dict[str, str]:
        """Peers cut off for a forbidden update or malformed frame: node id -> reason."""
        return dict(self._flagged)

    def clear_flag(self, node: str) -> None:
        """Let a flagged peer sync again (after an operator checked it)."""
        if self._flagged.pop(node, None) is not None:
            _LOGGER.warning("flag of peer %s cleared", sanitize(node, 64))
            last = self._last.get(node)
            if last is not None:  # what its ended session said: refused no more
                self._last[node] = {
                    **last,
                    "state": str(PeerState.CLOSED),
                    "flagged": False,
                    "refused": None,
                }

    async def close(self) -> None:
        """Close every session and stop dialling."""
        self._closed = True
        sessions = list(self._running)
        for session in sessions:
            session.close("node shutting down")
        await asyncio.gather(*(s.ended.wait() for s in sessions))
        tasks = [d.task for d in self._dialers.values() if d.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- inside ---------------------------------------------------------------------------------

    def _session(
        self, channel: Channel, address: str, *, initiator: bool, expected_node: str | None = None
    ) -> PeerSession:
        return PeerSession(
            self.replica,
            self.identity,
            channel,
            address=address,
            initiator=initiator,
            timing=self.timing,
            on_hello=self._on_hello,
            expected_node=expected_node,
            clock=self._clock,
            wall=self._wall,
        )

    async def _run(self, session: PeerSession) -> str:
        self._running.add(session)
        reason = "ended"
        try:
            reason = await session.run()
            return reason
        finally:
            self._running.discard(session)
            node = session.peer_node
            if node is not None:
                if self._sessions.get(node) is session:
                    del self._sessions[node]
                    if not self._closed:  # an outage or a restart, where IT looks for it
                        _LOGGER.warning(
                            "peer %s (%s) disconnected: %s",
                            session.status.code,
                            session.status.name,
                            sanitize(reason, 120),
                        )
                if session.state is PeerState.REFUSED:
                    self._flagged[node] = session.status.refused or "refused"
                if node not in self._sessions:
                    self._last.pop(node, None)
                    self._last[node] = session.status_dict()
                    while len(self._last) > MAX_REMEMBERED:
                        del self._last[next(iter(self._last))]

    def _on_hello(self, session: PeerSession) -> tuple[str, PeerState] | None:
        node = session.peer_node
        assert node is not None
        dialer = self._dialers.get(session.status.address) if session.initiator else None
        if dialer is not None:
            dialer.node = node
        if self._closed:
            return "node shutting down", PeerState.CLOSED
        if self._admit is not None and not self._admit(node):
            return "not a current member of this cluster", PeerState.CLOSED
        if node in self._flagged:
            session.status.refused = self._flagged[node]
            return "flagged: " + self._flagged[node], PeerState.REFUSED
        existing = self._sessions.get(node)
        if existing is not None and not existing.ended.is_set():
            if not self._keep_new(existing, session):
                return "duplicate connection", PeerState.CLOSED
            existing.close("duplicate connection")
        self._sessions[node] = session
        _LOGGER.info("peer %s (%s) connected", session.status.code, session.status.name)
        return None

    def _keep_new(self, old: PeerSession, new: PeerSession) -> bool:
        """Of two connections with one peer, both sides keep the one the smaller node id opened."""
        me, peer = self.identity.node_id, new.peer_node or ""
        old_by = me if old.initiator else peer
        new_by = me if new.initiator else peer
        if old_by == new_by:
            return True  # the older one is likely dead already
        return new_by == min(me, peer)

    async def _dial_loop(self, dialer: _Dialer) -> None:
        attempt = 0
        status = dialer.status
        while not self._closed and self._dialers.get(dialer.address) is dialer:
            live = self._sessions.get(dialer.node) if dialer.node else None
            if live is not None:
                await live.ended.wait()
                dialer.wake.clear()  # what woke it while connected is no reason now
                attempt = 0
            elif dialer.node is not None and dialer.node in self._flagged:
                status.state = PeerState.REFUSED
                await asyncio.sleep(self.timing.backoff_max_s)
                continue
            else:
                status.state, status.since = PeerState.CONNECTING, self._wall()
                dialer.wake.clear()  # a reason to try again from now on ends the next wait
                try:
                    async with asyncio.timeout(self.timing.dial_timeout_s):
                        channel = await dialer.dial()
                except Exception as err:  # any transport failure: try again later
                    status.error = sanitize(f"dial failed: {err!r}")
                    _LOGGER.debug("dial %s failed: %s", dialer.address, status.error)
                    attempt += 1
                else:
                    if self._closed or self._dialers.get(dialer.address) is not dialer:
                        channel.close()  # forgotten (or closing) while it dialled
                        return
                    # a transport that authenticated the peer says who it must be
                    expected = getattr(channel, "peer_node", None)
                    session = self._session(
                        channel, dialer.address, initiator=True, expected_node=expected
                    )
                    reason = await self._run(session)
                    if session.reached_live:
                        dialer.wake.clear()  # what woke it while connected is no reason now
                    dialer.node = session.peer_node or dialer.node
                    status.error = sanitize(reason)
                    attempt = 0 if session.reached_live else attempt + 1
            # asyncio.timeout, not wait_for: 3.11's wait_for may swallow a cancellation that
            # comes with the wake (a dialler forgotten then would go on dialling)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._backoff(attempt)):
                    await dialer.wake.wait()

    def _backoff(self, attempt: int) -> float:
        t = self.timing
        base = min(t.backoff_max_s, t.backoff_min_s * 2.0 ** min(attempt, 30))
        return base * self._rng.uniform(0.5, 1.0)

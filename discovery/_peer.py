"""What discovery hands out: a peer that may be worth a TLS handshake."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PeerSource = Literal["mdns", "static"]


@dataclass(frozen=True, slots=True)
class PeerCandidate:
    """A proposed peer; only the mutual-TLS handshake decides whether it is one of ours.

    `node_id` and `code` are what the peer announced over mDNS (unverified) and
    None for a static peer; `host` is an IP address or a host name, without
    brackets.
    """

    node_id: str | None
    code: str | None
    host: str
    port: int
    source: PeerSource
    proto_version: int | None = None

    @property
    def address(self) -> str:
        """HOST:PORT, with an IPv6 host in brackets: what `--peer` takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

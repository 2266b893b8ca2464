"""Static peers, for segments where multicast does not pass: "HOST:PORT" -> PeerCandidate."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from ._errors import PeerAddressError
from ._peer import PeerCandidate
from ._sanitize import sanitize

MAX_PEER_TEXT = 300

_PORT_RE = re.compile(r"^[0-9]{1,5}\Z")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def parse_peer(text: str, *, default_port: int | None = None) -> PeerCandidate:
    """Parse "HOST:PORT", "[IPv6]:PORT" (or a bare host when `default_port` is given).

    HOST is an IPv4 address, an IPv6 address in brackets or a DNS name.
    Raises PeerAddressError with the reason.
    """
    raw = text
    text = text.strip()
    if not text or len(text) > MAX_PEER_TEXT:
        raise PeerAddressError(f"peer {sanitize(raw)!r}: expected HOST:PORT")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise PeerAddressError(f"peer {sanitize(raw)!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        _check_ipv6(host, raw)
        if rest and not rest.startswith(":"):
            raise PeerAddressError(f"peer {sanitize(raw)!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise PeerAddressError(
            f"peer {sanitize(raw)!r}: put an IPv6 address in brackets, e.g. [fe80::1%eth0]:8701"
        )
    else:
        host, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
        _check_host(host, raw)
    port = _parse_port(port_text, default_port, raw)
    return PeerCandidate(node_id=None, code=None, host=host, port=port, source="static")


def parse_peers(texts: Iterable[str], *, default_port: int | None = None) -> list[PeerCandidate]:
    """Parse several static peers, in order, without duplicates; the first bad one raises."""
    peers: list[PeerCandidate] = []
    seen: set[tuple[str, int]] = set()
    for text in texts:
        peer = parse_peer(text, default_port=default_port)
        key = (peer.host.lower(), peer.port)
        if key not in seen:
            seen.add(key)
            peers.append(peer)
    return peers


def _parse_port(text: str | None, default_port: int | None, raw: str) -> int:
    if text is None:
        if default_port is None:
            raise PeerAddressError(f"peer {sanitize(raw)!r}: missing ':PORT'")
        return default_port
    if not _PORT_RE.match(text) or not 1 <= int(text) <= 65535:
        raise PeerAddressError(f"peer {sanitize(raw)!r}: the port is a number from 1 to 65535")
    return int(text)


def _check_ipv6(host: str, raw: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise PeerAddressError(f"peer {sanitize(raw)!r}: not an IPv6 address in brackets") from None


def _check_host(host: str, raw: str) -> None:
    if not host:
        raise PeerAddressError(f"peer {sanitize(raw)!r}: missing host")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise PeerAddressError(f"peer {sanitize(raw)!r}: not an IPv4 address") from None
        return
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in name.split(".")):
        raise PeerAddressError(f"peer {sanitize(raw)!r}: not a valid host name or address")

"""Static peers: "HOST:PORT" (IPv6 in brackets) -> PeerCandidate(source="static")."""

from __future__ import annotations

import pytest

from discovery import DiscoveryError, PeerAddressError, PeerCandidate, parse_peer, parse_peers


@pytest.mark.parametrize(
    ("text", "host", "port", "address"),
    [
        ("10.231.0.12:8701", "10.231.0.12", 8701, "10.231.0.12:8701"),
        ("  cssd-pc2.hopital.local:8701 ", "cssd-pc2.hopital.local", 8701, None),
        ("pc2:1", "pc2", 1, "pc2:1"),
        ("[::1]:8701", "::1", 8701, "[::1]:8701"),
        ("[fe80::1%eth0]:65535", "fe80::1%eth0", 65535, "[fe80::1%eth0]:65535"),
        ("[2001:db8::7]:8701", "2001:db8::7", 8701, "[2001:db8::7]:8701"),
    ],
)
def test_good_peers_parse(text: str, host: str, port: int, address: str | None) -> None:
    peer = parse_peer(text)
    assert peer == PeerCandidate(node_id=None, code=None, host=host, port=port, source="static")
    assert peer.address == (address or f"{host}:{port}")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "HOST:PORT"),
        ("   ", "HOST:PORT"),
        ("10.231.0.12", "missing ':PORT'"),
        ("10.231.0.12:", "1 to 65535"),
        ("10.231.0.12:0", "1 to 65535"),
        ("10.231.0.12:65536", "1 to 65535"),
        ("10.231.0.12:+80", "1 to 65535"),
        ("10.231.0.12:0x50", "1 to 65535"),
        ("10.231.0.12: 80", "1 to 65535"),
        ("10.231.0.300:8701", "not an IPv4 address"),
        ("1.2.3:8701", "not an IPv4 address"),
        (":8701", "missing host"),
        ("::1:8701", "brackets"),
        ("[::1:8701", "missing ']'"),
        ("[::1]8701", "':PORT'"),
        ("[10.0.0.1]:8701", "not an IPv6 address"),
        ("[]:8701", "not an IPv6 address"),
        ("pc_2:8701", "host name"),
        ("-pc:8701", "host name"),
        ("pc..local:8701", "host name"),
        ("a" * 64 + ":8701", "host name"),
        ("x" * 400, "HOST:PORT"),
        ("pc\x1b[31m:8701", "host name"),
    ],
)
def test_bad_peers_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(PeerAddressError, match=reason.replace("[", r"\[")) as info:
        parse_peer(text)
    assert isinstance(info.value, DiscoveryError)
    assert isinstance(info.value, ValueError)
    assert "\x1b" not in str(info.value), "peer text is sanitised in the message"


def test_default_port_fills_a_bare_host() -> None:
    assert parse_peer("10.231.0.12", default_port=8701).port == 8701
    assert parse_peer("[::1]", default_port=8701).address == "[::1]:8701"
    assert parse_peer("pc2:9000", default_port=8701).port == 9000


def test_parse_peers_keeps_order_and_drops_duplicates() -> None:
    peers = parse_peers(["pc2:8701", "10.231.0.13:8701", "PC2:8701", "pc2:8702"])
    assert [p.address for p in peers] == ["pc2:8701", "10.231.0.13:8701", "pc2:8702"]
    assert all(p.source == "static" for p in peers)
    with pytest.raises(PeerAddressError):
        parse_peers(["pc2:8701", "nonsense"])

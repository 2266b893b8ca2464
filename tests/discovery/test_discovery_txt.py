"""The announcement format, the checks on what peers send, the address choice, the public API."""

from __future__ import annotations

from ipaddress import IPv4Interface

import pytest

import discovery
from discovery import (
    AnnouncementError,
    DiscoveryConfigError,
    MdnsDiscovery,
    PeerCandidate,
    normalize_fingerprint,
    parse_announcement,
)
from discovery._net import choose_address, published_addresses, resolve_interfaces
from discovery._sanitize import sanitize
from discovery._txt import own_announcement, parse_txt

CA = "ab" * 32
NODE = "3f2a9c0d5e6b47a8b1c2d3e4f5a6b7c8"

PUBLIC = [
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


def txt(*entries: bytes) -> bytes:
    return b"".join(bytes((len(e),)) + e for e in entries)


GOOD = txt(b"ca=" + CA.encode(), b"node=" + NODE.encode(), b"code=B", b"v=1")


def test_public_api_is_pinned() -> None:
    assert sorted(discovery.__all__) == sorted(PUBLIC)
    assert discovery.SERVICE_TYPE == "_sterimesh._tcp.local."
    for name in discovery.__all__:
        assert getattr(discovery, name) is not None
    errors = [getattr(discovery, n) for n in PUBLIC if n.endswith("Error")]
    assert all(issubclass(e, discovery.DiscoveryError) for e in errors)


def test_own_announcement_round_trips() -> None:
    own = own_announcement(ca=CA.upper(), node_id=NODE, code="AB", version=3)
    raw = txt(*(f"{k}={v}".encode() for k, v in own.properties().items()))
    assert parse_announcement(raw) == own
    assert own.ca == CA


def test_good_record_with_extra_keys_parses() -> None:
    ann = parse_announcement(GOOD + txt(b"future=yes", b""))
    assert (ann.ca, ann.node_id, ann.code, ann.version) == (CA, NODE, "B", 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "lacks ca, node, code, v"),
        (txt(b"node=" + NODE.encode(), b"code=B", b"v=1"), "lacks ca"),
        (txt(b"ca=" + b"ab" * 31, b"node=n", b"code=B", b"v=1"), "not a SHA-256"),
        (txt(b"ca=" + b"zz" * 32, b"node=n", b"code=B", b"v=1"), "not a SHA-256"),
        (txt(b"ca=" + CA.encode(), b"node=" + b"n" * 65, b"code=B", b"v=1"), "not a node id"),
        (txt(b"ca=" + CA.encode(), b"node=ev\x1bil", b"code=B", b"v=1"), "not a node id"),
        (txt(b"ca=" + CA.encode(), b"node=n", b"code=b", b"v=1"), "not a node code"),
        (txt(b"ca=" + CA.encode(), b"node=n", b"code=ABCD", b"v=1"), "not a node code"),
        (txt(b"ca=" + CA.encode(), b"node=n", b"code=B", b"v=0"), "not a version"),
        (txt(b"ca=" + CA.encode(), b"node=n", b"code=B", b"v=x1"), "not a version"),
        (txt(b"ca=" + CA.encode(), b"node=n", b"code=B", b"v=99999"), "not a version"),
        (GOOD + txt(b"ca=" + CA.encode()), "appears twice"),
        (GOOD + txt(b"flag"), "expected key=value"),
        (GOOD + txt(b"=value"), "expected key=value"),
        (GOOD + b"\x40ca=", "runs past the end"),
        (GOOD + txt(b"x=\xff\xfe"), "not UTF-8"),
        (GOOD + b"".join(txt(f"k{i}=1".encode()) for i in range(20)), "more than 16"),
        (txt(b"k=" + b"x" * 250) * 6, "bytes"),
    ],
)
def test_malformed_records_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(AnnouncementError, match=reason):
        parse_announcement(raw)


def test_txt_keys_are_case_insensitive() -> None:
    assert parse_txt(txt(b"CA=x", b"V=2")) == {"ca": "x", "v": "2"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ca_fingerprint": "abc"}, "CA fingerprint"),
        ({"node_id": "bad id!"}, "node id"),
        ({"node_code": "a"}, "node code"),
        ({"proto_version": 0}, "protocol version"),
        ({"sync_port": 0}, "sync port"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {
        "node_id": NODE,
        "node_code": "A",
        "ca_fingerprint": CA,
        "sync_port": 8701,
        "interfaces": None,
        "proto_version": 1,
        "on_peer": lambda p: None,
    }
    with pytest.raises(DiscoveryConfigError, match=message):
        MdnsDiscovery(**{**settings, **kwargs})  # type: ignore[arg-type]


def test_fingerprints_normalise() -> None:
    colons = ":".join(["AB"] * 32)
    assert normalize_fingerprint(colons) == CA
    assert normalize_fingerprint(f" {CA} ") == CA


def test_interfaces_resolve_by_name_and_address() -> None:
    loopback = resolve_interfaces(["lo"])
    assert IPv4Interface("127.0.0.1/8") in loopback
    assert resolve_interfaces(["127.0.0.1"]) == [IPv4Interface("127.0.0.1/8")]
    with pytest.raises(DiscoveryConfigError, match="no network interface"):
        resolve_interfaces(["nope0"])
    with pytest.raises(DiscoveryConfigError, match="no local interface"):
        resolve_interfaces(["10.231.254.254"])
    with pytest.raises(DiscoveryConfigError, match="pass None"):
        resolve_interfaces([])


def test_address_choice_prefers_our_segment() -> None:
    bound = [IPv4Interface("10.231.0.11/24")]
    assert choose_address(["192.168.5.4", "10.231.0.12"], bound) == "10.231.0.12"
    assert choose_address(["192.168.5.4"], bound) == "192.168.5.4"
    assert choose_address(["127.0.0.1", "0.0.0.0", "224.0.0.251", "255.255.255.255"], bound) is None
    assert choose_address(["127.0.0.2"], [IPv4Interface("127.0.0.1/8")]) == "127.0.0.2"
    assert published_addresses([IPv4Interface("127.0.0.1/8"), *bound]) == ["10.231.0.11"]
    assert published_addresses([IPv4Interface("127.0.0.1/8")]) == ["127.0.0.1"]


def test_sanitize_escapes_and_cuts() -> None:
    assert sanitize("a\x1b[31mb\u2028") == "a\\x1b[31mb\\u2028"
    assert sanitize("x" * 100, 10) == "x" * 10 + "…"
    assert sanitize(b"\xff\x00ok") == "\\xff\\x00ok"


def test_candidate_address_brackets_ipv6() -> None:
    peer = PeerCandidate("n", "B", "fe80::2", 8701, "mdns", 1)
    assert peer.address == "[fe80::2]:8701"


async def test_start_on_an_unknown_interface_fails_cleanly() -> None:
    found: list[PeerCandidate] = []
    mdns = MdnsDiscovery(
        node_id=NODE,
        node_code="A",
        ca_fingerprint=CA,
        sync_port=8701,
        interfaces=["nope0"],
        proto_version=1,
        on_peer=found.append,
    )
    with pytest.raises(DiscoveryConfigError, match="nope0"):
        await mdns.async_start()
    await mdns.async_stop()  # nothing started: a no-op
    assert mdns.service_name is None
    assert mdns.peers == []

"""Which local IPv4 addresses mDNS binds to and publishes, and which peer address to propose."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface

import ifaddr

from ._errors import DiscoveryConfigError
from ._sanitize import sanitize


def local_ipv4() -> list[IPv4Interface]:
    """Every IPv4 address of this host, with its prefix, in adapter order."""
    found: list[IPv4Interface] = []
    for adapter in ifaddr.get_adapters():
        found.extend(_adapter_ipv4(adapter))
    return found


def resolve_interfaces(interfaces: Sequence[str] | None) -> list[IPv4Interface]:
    """The IPv4 addresses of the configured interfaces (names or addresses); None means all.

    Raises DiscoveryConfigError for a name or address this host does not have.
    """
    adapters = ifaddr.get_adapters()
    everything = [x for adapter in adapters for x in _adapter_ipv4(adapter)]
    if interfaces is None:
        return everything
    if not interfaces:
        raise DiscoveryConfigError("no interface given: pass None for all of them")
    chosen: list[IPv4Interface] = []
    for item in interfaces:
        try:
            address = IPv4Address(item)
        except ValueError:
            by_name = [a for a in adapters if item in (a.name, a.nice_name)]
            if not by_name:
                raise DiscoveryConfigError(f"no network interface {sanitize(item)!r}") from None
            found = [x for a in by_name for x in _adapter_ipv4(a)]
            if not found:
                raise DiscoveryConfigError(
                    f"network interface {sanitize(item)!r} has no IPv4 address"
                ) from None
        else:
            found = [x for x in everything if x.ip == address]
            if not found:
                raise DiscoveryConfigError(f"no local interface has the address {address}")
        chosen.extend(x for x in found if x not in chosen)
    return chosen


def published_addresses(bound: Sequence[IPv4Interface]) -> list[str]:
    """The addresses to announce: the bound ones but loopback, unless loopback is all there is."""
    outside = [str(x.ip) for x in bound if not x.ip.is_loopback]
    return outside or [str(x.ip) for x in bound]


def choose_address(candidates: Sequence[str], bound: Sequence[IPv4Interface]) -> str | None:
    """The peer address to propose: one on a segment we are bound to, else any usable one.

    Unspecified, multicast and broadcast addresses are never proposed; loopback
    only when we ourselves are bound to loopback (a test on one host).
    """
    usable: list[IPv4Address] = []
    for text in candidates:
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError:
            continue
        if address.is_unspecified or address.is_multicast or address == _BROADCAST:
            continue
        if address.is_loopback and not any(x.ip.is_loopback for x in bound):
            continue
        usable.append(address)
    for address in usable:
        if any(address in x.network and address != x.ip for x in bound):
            return str(address)
    return str(usable[0]) if usable else None


_BROADCAST = IPv4Address("255.255.255.255")


def _adapter_ipv4(adapter: ifaddr.Adapter) -> list[IPv4Interface]:
    return [
        IPv4Interface(f"{ip.ip}/{ip.network_prefix}")
        for ip in adapter.ips
        if ip.is_IPv4 and isinstance(ip.ip, str)
    ]

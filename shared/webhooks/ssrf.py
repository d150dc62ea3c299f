"""The SSRF guard for callback URLs: only public https targets, unless settings allow more.

A URL is checked when the job is accepted (a clear 400 for the caller) and again at every delivery:
the host is resolved, *every* address must be public (a name with one private record is refused),
and the request then goes to the checked address itself, so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.errors import CallbackRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as written (lower case), without brackets
    port: int
    path: str  # path + query
    literal: bool = False  # the host is an IP address as written (no SNI for it)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def pinned_url(self, address: Address) -> str:
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CallbackRefused(f"callback host {host!r} does not resolve ({exc.strerror})", host=host) from None
    return [str(info[4][0]) for info in infos]


def parse(url: str, *, allow_http: bool) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"callback_url is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise CallbackRefused("callback_url must be an https:// URL")
    if scheme == "http" and not allow_http:
        raise CallbackRefused("callback_url must use https (http is refused unless TUNEFLOW_WEBHOOK_ALLOW_HTTP=true)")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("callback_url must not carry credentials (user:password@); put a token in the path "
                              "or verify the signature instead")
    host = (parts.hostname or "").lower()
    if not host:
        raise CallbackRefused("callback_url has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80), path, _literal(host) is not None)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d (RFC 4291, deprecated but still routed by some stacks)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known NAT64 prefix: the IPv4 in the low 32 bits (RFC 6052)
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): a local network's own


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 form carries: mapped, 6to4, Teredo, IPv4-compatible, NAT64."""
    found = [address.ipv4_mapped, address.sixtofour, (address.teredo or (None, None))[1]]
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def is_public(address: Address) -> bool:
    """Globally routable, and so is every IPv4 address it embeds (``[::169.254.169.254]`` is the metadata
    service to a stack that routes IPv4-compatible or NAT64 forms)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL or address in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
            return False
        embedded = _embedded_ipv4(address)
        if embedded:  # the IPv6 form itself is reserved space: what it reaches is the IPv4 address
            return all(is_public(a) for a in embedded)
    return address.is_global and not address.is_multicast


def check(url: str, *, allow_http: bool, allow_private: bool,
          resolver: Resolver = system_resolver) -> tuple[Target, list[Address]]:
    """The parsed URL and the addresses it may be called at; CallbackRefused otherwise."""
    target = parse(url, allow_http=allow_http)
    literal = _literal(target.host)
    addresses: list[Address] = [literal] if literal else []
    if literal is None:
        addresses = []
        for raw in resolver(target.host, target.port):
            address = _literal(raw.split("%", 1)[0])  # drop an IPv6 zone id
            if address is not None and address not in addresses:
                addresses.append(address)
        if not addresses:
            raise CallbackRefused(f"callback host {target.host!r} has no address")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                # the kind, but not an address the caller did not write (no probing of internal DNS)
                what = _describe(address) if literal else _kind(address)
                raise CallbackRefused(
                    f"callback_url points at a non-public address ({what}); refused unless "
                    "TUNEFLOW_WEBHOOK_ALLOW_PRIVATE=true", host=target.host)
    return target, addresses


def _kind(address: Address) -> str:
    kinds: list[tuple[str, Any]] = [("loopback", address.is_loopback), ("link-local", address.is_link_local),
                                    ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
                                    ("private", address.is_private), ("reserved", address.is_reserved)]
    return next((name for name, hit in kinds if hit), "not globally routable")


def _describe(address: Address) -> str:
    return f"{address}, {_kind(address)}"

"""Who is on the other end: the client address behind the reverse proxies we trust.

One answer for the audit log, the login throttle and the console proxy. X-Forwarded-For is believed
only as far as trusted proxies vouch for it: read from the right, each trusted hop names the one before
it; the first address that is not a trusted proxy is the client. Anything further left was written by
the client itself, so it is never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies(entries: Iterable[str] | None = None) -> list[IPNetwork]:
    """The configured proxies (settings.TRUSTED_PROXIES: addresses or networks such as 10.0.0.0/8)."""
    networks = []
    for entry in settings.TRUSTED_PROXIES if entries is None else entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as error:
            raise ImproperlyConfigured(f"VMPORTAL_TRUSTED_PROXIES: {entry!r} is not an address or network") from error
    return networks


def _parse(text: str) -> IPAddress | None:
    """An address as proxies write it ("192.0.2.1", "[2001:db8::1]:443", "192.0.2.1:5000"), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the audit log should say a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(*, peer: str | None, forwarded_for: str | None,
                   trusted: Iterable[str] | None = None) -> str | None:
    """The client's address from the socket's peer and the X-Forwarded-For header; None if the peer is unknown.

    An unparseable hop stops the walk: what lies beyond it cannot be vouched for, so the answer is the
    last trusted hop.
    """
    address = _parse(peer or "")
    if address is None:
        return None
    proxies = trusted_proxies(trusted)

    def is_trusted(hop: IPAddress) -> bool:
        return any(hop.version == network.version and hop in network for network in proxies)

    hops = (forwarded_for or "").split(",")
    while is_trusted(address) and hops:
        earlier = _parse(hops.pop())
        if earlier is None:
            break
        address = earlier
    return str(address)


def request_client_address(request: HttpRequest | None) -> str | None:
    """The client address of a Django request (HttpRequest, or None for a form built without one)."""
    if request is None:
        return None
    return client_address(peer=request.META.get("REMOTE_ADDR"), forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"))

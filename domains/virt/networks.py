"""A host's libvirt networks: list, start, stop, autostart, define a NAT network, and their DHCP leases.

Everything is read from each network's own XML and flags (one listAllNetworks, then per network its XML),
so a listing costs a few round trips per network, never one per guest. Leases are read in bulk, one call per
active network (`DHCPLeases`): leases.py matches them to guests by MAC for the list's address column.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML, and XML we build ourselves
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import libvirt
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .connections import connection
from .errors import NetworkNotFound

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


@dataclass(frozen=True, slots=True)
class DhcpRange:
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    name: str
    uuid: str
    active: bool
    persistent: bool
    autostart: bool
    forward_mode: str  # nat, route, bridge, open, ...; "" for an isolated network
    bridge: str  # the host's bridge device, "" when libvirt names none
    ipv4: str  # the host's side, as "192.168.122.1/24"; "" without an IPv4 address
    dhcp_ranges: tuple[DhcpRange, ...]

    @property
    def subnet(self) -> ipaddress.IPv4Network | None:
        return ipaddress.IPv4Interface(self.ipv4).network if self.ipv4 else None


@dataclass(frozen=True, slots=True)
class DhcpLease:
    network: str
    mac: str  # lower case
    address: str
    prefix: int
    hostname: str
    expiry: int  # seconds since the epoch; 0 for a lease that does not expire

    @property
    def expires_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.expiry, UTC) if self.expiry else None


def _network_info(network: libvirt.virNetwork) -> NetworkInfo:
    root = ET.fromstring(network.XMLDesc(0))  # noqa: S314
    forward = root.find("forward")
    bridge = root.find("bridge")
    ipv4 = ""
    ranges: tuple[DhcpRange, ...] = ()
    for ip in root.iterfind("ip"):
        if ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
            continue
        prefix = ip.get("prefix") or ip.get("netmask") or "24"
        ipv4 = str(ipaddress.IPv4Interface(f"{ip.get('address')}/{prefix}"))
        ranges = tuple(DhcpRange(r.get("start", ""), r.get("end", "")) for r in ip.iterfind("dhcp/range"))
        break
    return NetworkInfo(
        name=network.name(),
        uuid=network.UUIDString(),
        active=bool(network.isActive()),
        persistent=bool(network.isPersistent()),
        autostart=bool(network.autostart()),
        forward_mode=forward.get("mode", "nat") if forward is not None else "",
        bridge=bridge.get("name", "") if bridge is not None else "",
        ipv4=ipv4,
        dhcp_ranges=ranges,
    )


def list_networks(uri: str) -> tuple[NetworkInfo, ...]:
    """Every network of the host, started or not, by name."""
    with connection(uri) as conn:
        return tuple(sorted((_network_info(network) for network in conn.listAllNetworks(0)),
                            key=lambda network: network.name))


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork:
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            raise NetworkNotFound(detail=str(error)) from error
        raise


def get_network(uri: str, name: str) -> NetworkInfo:
    with connection(uri) as conn:
        return _network_info(_lookup(conn, name))


def start_network(uri: str, name: str) -> None:
    with connection(uri) as conn:
        _lookup(conn, name).create()


def stop_network(uri: str, name: str) -> None:
    """Stops (destroys) the network: its guests' interfaces lose their link until it starts again."""
    with connection(uri) as conn:
        _lookup(conn, name).destroy()


def set_network_autostart(uri: str, name: str, autostart: bool) -> None:
    with connection(uri) as conn:
        _lookup(conn, name).setAutostart(int(autostart))


def _leases_of(network: libvirt.virNetwork) -> list[DhcpLease]:
    return [
        DhcpLease(network=network.name(), mac=str(lease.get("mac", "")).lower(), address=str(lease.get("ipaddr", "")),
                  prefix=int(lease.get("prefix", 0)), hostname=str(lease.get("hostname") or ""),
                  expiry=int(lease.get("expirytime", 0)))
        for lease in network.DHCPLeases(None, 0)
        if lease.get("type", libvirt.VIR_IP_ADDR_TYPE_IPV4) == libvirt.VIR_IP_ADDR_TYPE_IPV4
    ]


def network_leases(uri: str, name: str) -> tuple[DhcpLease, ...]:
    """The network's DHCP leases (none while it is stopped)."""
    with connection(uri) as conn:
        network = _lookup(conn, name)
        return tuple(_leases_of(network)) if network.isActive() else ()


def host_leases(conn: libvirt.virConnect) -> list[DhcpLease]:
    """Every lease of every active network of the host: one call per network. A network whose leases this
    host's driver cannot tell (OperationUnsupported) has none."""
    leases = []
    for network in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
        try:
            leases += _leases_of(network)
        except libvirt.libvirtError as error:
            if error.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_NO_NETWORK,
                                              libvirt.VIR_ERR_OPERATION_INVALID):
                raise
    return leases


# --- Defining a NAT network. ---

NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")
NETWORK_NAME_RULE = _("Up to 50 letters, digits, dots, dashes and underscores, starting with a letter or digit.")


@dataclass(frozen=True, slots=True)
class NatNetworkSpec:
    """A NAT network: the host takes the subnet's first address; DHCP hands out the range (by default
    every other address of the subnet)."""

    name: str
    subnet: ipaddress.IPv4Network
    dhcp_start: ipaddress.IPv4Address | None = None
    dhcp_end: ipaddress.IPv4Address | None = None

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def dhcp_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        return (self.dhcp_start or self.gateway + 1, self.dhcp_end or self.subnet.broadcast_address - 1)

    def problems(self, existing: Iterable[NetworkInfo] = ()) -> dict[str, list[StrOrPromise]]:
        """Why this network cannot be defined beside `existing`, in words, by form field; empty when it can."""
        problems: dict[str, list[StrOrPromise]] = {}
        if not NETWORK_NAME.match(self.name):
            problems.setdefault("name", []).append(NETWORK_NAME_RULE)
        if not 8 <= self.subnet.prefixlen <= 29:
            problems.setdefault("subnet", []).append(
                _("A subnet from /8 to /29: room for the host's address and at least one guest."))
        elif self.subnet.is_loopback or self.subnet.is_multicast or self.subnet.is_link_local:
            problems.setdefault("subnet", []).append(
                _("A loopback, link-local or multicast subnet cannot be a network."))
        else:
            start, end = self.dhcp_range
            for field, address in (("dhcp_start", start), ("dhcp_end", end)):
                if address not in self.subnet or not self.gateway < address < self.subnet.broadcast_address:
                    problems.setdefault(field, []).append(format_lazy(
                        _("{address} is not in {first} to {last}, the subnet's guest addresses (the first is the "
                          "host's)."), address=address, first=self.gateway + 1, last=self.subnet.broadcast_address - 1))
            if start > end:
                problems.setdefault("dhcp_end", []).append(
                    format_lazy(_("The range ends at {end}, before its start {start}."), end=end, start=start))
        for network in existing:
            if network.name == self.name:
                problems.setdefault("name", []).append(
                    format_lazy(_("This host already has a network named {name}."), name=self.name))
            if network.subnet is not None and network.subnet.overlaps(self.subnet):
                problems.setdefault("subnet", []).append(format_lazy(
                    _("{subnet} overlaps {other} of network {name}."), subnet=self.subnet, other=network.subnet,
                    name=network.name))
        return problems

    def xml(self) -> str:
        root = ET.Element("network")
        ET.SubElement(root, "name").text = self.name
        ET.SubElement(root, "forward", mode="nat")
        ip = ET.SubElement(root, "ip", address=str(self.gateway), prefix=str(self.subnet.prefixlen))
        start, end = self.dhcp_range
        ET.SubElement(ET.SubElement(ip, "dhcp"), "range", start=str(start), end=str(end))
        return ET.tostring(root, encoding="unicode")


class NetworkRefused(ValueError):
    """The spec cannot be defined on this host; `problems` says why, by form field."""

    def __init__(self, problems: dict[str, list[StrOrPromise]]) -> None:
        super().__init__("; ".join(str(message) for messages in problems.values() for message in messages))
        self.problems = problems


def define_nat_network(uri: str, spec: NatNetworkSpec, *, start: bool = True, autostart: bool = True) -> NetworkInfo:
    """Defines the network (checked against the host's networks as they are now), then starts it and marks it
    to start with the host, as asked. NetworkRefused when the spec does not fit the host."""
    with connection(uri) as conn:
        if problems := spec.problems(_network_info(network) for network in conn.listAllNetworks(0)):
            raise NetworkRefused(problems)
        network = conn.networkDefineXML(spec.xml())
        if autostart:
            network.setAutostart(1)
        if start:
            network.create()
        return _network_info(network)

"""Guest addresses as the agent last reported them, so the list can show them without asking.

Remembered per process: by the agent panel, and by the AddressReader of each host's watcher (agent.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

_known: dict[tuple[str, str], tuple[str, ...]] = {}


def remember_addresses(uri: str, uuid: str, addresses: tuple[str, ...]) -> None:
    _known[(uri, uuid.lower())] = addresses


def known_addresses(uri: str, uuid: str) -> tuple[str, ...]:
    return _known.get((uri, uuid.lower()), ())


@dataclass(frozen=True, slots=True)
class GuestAddress:
    interface: str
    address: str
    prefix: int


def read_agent_addresses(dom: libvirt.virDomain) -> tuple[GuestAddress, ...]:
    """The guest's addresses as its agent reports them, loopback left out."""
    interfaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
    return tuple(
        GuestAddress(interface=name, address=entry["addr"], prefix=entry["prefix"])
        for name, interface in sorted(interfaces.items())
        if name != "lo"
        for entry in interface.get("addrs") or ()
    )

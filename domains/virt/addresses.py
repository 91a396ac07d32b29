"""Guest addresses as the agent, or failing it a libvirt network's DHCP lease, last reported them, so the list can
show them without asking.

They live in one store for the whole deployment (domains.guest_addresses, on Django's cache: shared
through Redis when there is one), handed to this package by `virt.configure()`. The watchers'
AddressReaders and the agent panel write the agent's, the watchers' LeaseReaders the leases'; every listing
(records_for) reads both at once, and shows the agent's when it has any.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import libvirt


class AddressSource(StrEnum):
    AGENT = "agent"  # the guest agent: every address of the guest
    LEASE = "lease"  # a DHCP lease of a libvirt network the guest is on (leases.py)


# What the list shows when both know addresses: the agent sees every interface, a lease only one network's.
SHOWN_SOURCES = (AddressSource.AGENT, AddressSource.LEASE)


class AddressStore(Protocol):
    def read(self, uri: str, uuids: Collection[str],
             sources: Sequence[AddressSource]) -> dict[str, tuple[AddressSource, tuple[str, ...]]]:
        """For those guests of the host at `uri` (lower-case UUIDs) that have any: the first of `sources`
        that knows addresses of the guest, and those addresses."""

    def write(self, uri: str, uuid: str, addresses: tuple[str, ...],
              source: AddressSource = AddressSource.AGENT) -> None: ...


_store: AddressStore | None = None


def use_store(store: AddressStore) -> None:
    global _store
    _store = store


def _the_store() -> AddressStore:
    if _store is None:
        raise RuntimeError("no guest address store: domains.virt.configure() runs when Django starts")
    return _store


def remember_addresses(uri: str, uuid: str, addresses: tuple[str, ...],
                       source: AddressSource = AddressSource.AGENT) -> None:
    _the_store().write(uri, uuid.lower(), addresses, source)


def known_addresses(uri: str, uuids: Collection[str],
                    source: AddressSource = AddressSource.AGENT) -> dict[str, tuple[str, ...]]:
    """By lower-case UUID, for those of `uuids` whose addresses `source` reported."""
    return {uuid: addresses for uuid, (_source, addresses) in shown_addresses(uri, uuids, (source,)).items()}


def shown_addresses(uri: str, uuids: Collection[str], sources: Sequence[AddressSource] = SHOWN_SOURCES
                    ) -> dict[str, tuple[AddressSource, tuple[str, ...]]]:
    """By lower-case UUID, for those of `uuids` with known addresses: where they came from, and them."""
    if not uuids:
        return {}
    return _the_store().read(uri, {uuid.lower() for uuid in uuids}, sources)


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

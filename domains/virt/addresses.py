"""Guest addresses as the agent last reported them, so the list can show them without asking.

They live in one store for the whole deployment (domains.guest_addresses, on Django's cache: shared
through Redis when there is one), handed to this package by `virt.configure()`. The watchers'
AddressReaders and the agent panel write it; every listing (records_for) reads it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import libvirt


class AddressStore(Protocol):
    def read(self, uri: str, uuids: Collection[str]) -> dict[str, tuple[str, ...]]:
        """The known addresses of those guests of the host at `uri` (lower-case UUIDs) that have any."""

    def write(self, uri: str, uuid: str, addresses: tuple[str, ...]) -> None: ...


_store: AddressStore | None = None


def use_store(store: AddressStore) -> None:
    global _store
    _store = store


def _the_store() -> AddressStore:
    if _store is None:
        raise RuntimeError("no guest address store: domains.virt.configure() runs when Django starts")
    return _store


def remember_addresses(uri: str, uuid: str, addresses: tuple[str, ...]) -> None:
    _the_store().write(uri, uuid.lower(), addresses)


def known_addresses(uri: str, uuids: Collection[str]) -> dict[str, tuple[str, ...]]:
    """By lower-case UUID, for those of `uuids` whose addresses are known."""
    if not uuids:
        return {}
    return _the_store().read(uri, {uuid.lower() for uuid in uuids})


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

"""Guest addresses from the DHCP leases of a host's libvirt networks, for guests whose agent tells none.

A host's watcher runs a LeaseReader: every `interval` seconds, and when one of the host's networks starts,
it reads the leases of every active network in bulk (one call per network, networks.host_leases), matches
them to the running guests by the MACs of their interfaces, and writes each guest's leased addresses to the
one address store (addresses.py) under AddressSource.LEASE; the list shows them where the agent has none.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML
from collections.abc import Callable, Iterable, Mapping

import libvirt

from .addresses import AddressSource, remember_addresses
from .connections import ReaderConnection
from .networks import DhcpLease, host_leases
from .readers import HostReader

logger = logging.getLogger(__name__)

# The store forgets what is not written again within its timeout (an hour): unchanged addresses are renewed.
RENEW_SECONDS = 600.0
# A lease no running guest's interface has (a guest that just got a NIC, or a client that is no guest): the
# running guests' definitions are read again, at most this often.
UNMATCHED_REREAD_SECONDS = 60.0


def interface_macs(xml: str) -> frozenset[str]:
    """The MAC addresses (lower case) of a domain's network interfaces, from its XML."""
    root = ET.fromstring(xml)  # noqa: S314
    return frozenset(mac.get("address", "").lower() for mac in root.iterfind("./devices/interface/mac"))


def leased_addresses(leases: Iterable[DhcpLease], macs: Mapping[str, frozenset[str]]) -> dict[str, tuple[str, ...]]:
    """By guest UUID (every one in `macs`): the addresses leased to its interfaces, sorted; () for none."""
    guest_of = {mac: uuid for uuid, guest_macs in macs.items() for mac in guest_macs}
    found: dict[str, set[str]] = {uuid: set() for uuid in macs}
    for lease in leases:
        if (uuid := guest_of.get(lease.mac)) is not None:
            found[uuid].add(lease.address)
    return {uuid: tuple(sorted(addresses)) for uuid, addresses in found.items()}


class LeaseReader(HostReader):
    """Reads one host's DHCP leases on its own thread and connection; `changed(uuid)` tells the watcher when a
    guest's leased addresses changed, so its row is read again with them."""

    def __init__(self, uri: str, *, name: str, connect: Callable[[], libvirt.virConnect],
                 changed: Callable[[str], None], interval: float = 30.0) -> None:
        super().__init__(f"leases-{name}")
        self.uri = uri
        self._conn = ReaderConnection(uri, connect)
        self._changed = changed
        self._interval = interval
        self._macs: dict[tuple[str, int], frozenset[str]] = {}  # (uuid, domain id): its interfaces' MACs
        self._written: dict[str, tuple[str, ...]] = {}  # uuid: the addresses last written for it
        self._written_at = 0.0  # monotonic time every running guest's addresses were last written
        self._reread_at = 0.0  # monotonic time the definitions were last read again for an unmatched lease
        self._poked = threading.Event()

    def poke(self) -> None:
        """Read the leases now (a network started)."""
        self._poked.set()

    def _wake_up(self) -> None:
        self._poked.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            conn = self._conn.get()
            if conn is not None:  # else the host does not answer now: next round
                try:
                    self._read(conn)
                except libvirt.libvirtError as error:
                    logger.debug("reading the leases of %s: %s", self.uri, error)
                except Exception:  # a surprise in one round must not end the reading for good
                    logger.exception("reading the leases of %s failed", self.uri)
            self._poked.wait(self._interval)
            self._poked.clear()
        self._conn.close()

    def _read(self, conn: libvirt.virConnect) -> None:
        leases = host_leases(conn)
        macs = self._running_guests_macs(conn, reread=False)
        known = {mac for guest_macs in macs.values() for mac in guest_macs}
        if (any(lease.mac not in known for lease in leases)
                and time.monotonic() - self._reread_at > UNMATCHED_REREAD_SECONDS):
            self._reread_at = time.monotonic()
            macs = self._running_guests_macs(conn, reread=True)
        renew = time.monotonic() - self._written_at > RENEW_SECONDS
        if renew:
            self._written_at = time.monotonic()
        found = leased_addresses(leases, macs)
        for uuid in self._written.keys() - found.keys():  # no longer running: what it leased no longer holds
            found[uuid] = ()
        for uuid, addresses in found.items():
            before = self._written.get(uuid)
            if renew or addresses != before:
                remember_addresses(self.uri, uuid, addresses, AddressSource.LEASE)
            if addresses:
                self._written[uuid] = addresses
            else:
                self._written.pop(uuid, None)
            if addresses != (before or ()):
                self._changed(uuid)

    def _running_guests_macs(self, conn: libvirt.virConnect, *, reread: bool) -> dict[str, frozenset[str]]:
        """By lower-case UUID, the MACs of every running guest's interfaces: a guest's definition is read once
        per run (its id changes at every start), or again with `reread`."""
        macs: dict[tuple[str, int], frozenset[str]] = {}
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            key = (dom.UUIDString().lower(), dom.ID())
            if reread or key not in self._macs:
                try:
                    macs[key] = interface_macs(dom.XMLDesc(0))
                except libvirt.libvirtError as error:
                    if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
                    continue  # stopped since the listing
            else:
                macs[key] = self._macs[key]
        self._macs = macs
        return {uuid: guest_macs for (uuid, _id), guest_macs in macs.items()}

"""What the QEMU guest agent reports about the guest."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt
from django.utils.translation import gettext_lazy as _

from .addresses import GuestAddress, known_addresses, read_agent_addresses, remember_addresses
from .connections import ReaderConnection, connection
from .details import parse_agent_channel
from .errors import AgentUnavailable
from .readers import HostReader

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuestFileSystem:
    mountpoint: str
    fstype: str
    used_bytes: int | None
    total_bytes: int | None


@dataclass(frozen=True, slots=True)
class GuestInfo:
    hostname: str
    os_name: str
    os_version: str
    kernel: str
    timezone: str
    users: tuple[str, ...]
    filesystems: tuple[GuestFileSystem, ...]
    addresses: tuple[GuestAddress, ...]


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def guest_info(uri: str, uuid: str) -> GuestInfo:
    """Asks the agent; AgentUnavailable when the domain has no agent channel or it is not connected."""
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        state = parse_agent_channel(dom.XMLDesc(0)) if dom.isActive() else None
        if state is None:
            raise AgentUnavailable(_("This machine has no guest agent channel, or it is not running."))
        if state != "connected":
            raise AgentUnavailable()
        info = dom.guestInfo(0, 0)
        addresses = read_agent_addresses(dom)
    remember_addresses(uri, uuid, tuple(a.address for a in addresses))
    return GuestInfo(
        hostname=str(info.get("hostname", "")),
        os_name=str(info.get("os.pretty-name") or info.get("os.name") or ""),
        os_version=str(info.get("os.version", "")),
        kernel=" ".join(str(info[key]) for key in ("os.kernel-release", "os.kernel-version") if key in info),
        timezone=str(info.get("timezone.name", "")),
        users=tuple(str(info[f"user.{i}.name"]) for i in range(_int(info.get("user.count")) or 0)),
        filesystems=tuple(
            GuestFileSystem(
                mountpoint=str(info.get(f"fs.{i}.mountpoint", "")),
                fstype=str(info.get(f"fs.{i}.fstype", "")),
                used_bytes=_int(info.get(f"fs.{i}.used-bytes")),
                total_bytes=_int(info.get(f"fs.{i}.total-bytes")),
            )
            for i in range(_int(info.get("fs.count")) or 0)
        ),
        addresses=addresses,
    )


class AddressReader(HostReader):
    """Asks the agents of one host's guests for their addresses, again and again, on its own thread.

    A host's watcher hands over the guests whose agent is connected: an agent can take seconds to
    answer (a busy or hung guest), and events must never wait on one. When a guest's addresses
    change, `changed(uuid)` tells the watcher, which re-reads the guest so its row carries them.

    A guest is asked every `settle` seconds while it has no address yet (DHCP comes a little after the
    agent), for at most `settle_for` seconds, then every `refresh` seconds (leases change). What it learns
    goes to the one address store (addresses.py), which the listings read.
    """

    def __init__(self, uri: str, *, name: str, connect: Callable[[], libvirt.virConnect],
                 changed: Callable[[str], None], refresh: float = 30.0, settle: float = 2.0,
                 settle_for: float = 120.0) -> None:
        super().__init__(f"addresses-{name}")
        self.uri = uri
        # Its own connection: libvirt crashed tearing down the watcher's under an agent call that waited.
        self._conn = ReaderConnection(uri, connect)
        self._changed = changed
        self._refresh, self._settle, self._settle_for = refresh, settle, settle_for
        self._due: dict[str, float] = {}  # uuid: when to ask next (monotonic)
        self._since: dict[str, float] = {}  # uuid: when it was handed over
        self._unconfirmed: set[str] = set()  # handed over from a listing: is its agent connected at all?
        self._wake = threading.Condition()

    def _wake_up(self) -> None:
        with self._wake:
            self._wake.notify()

    def follow(self, uuid: str, *, unconfirmed: bool = False) -> None:
        """Ask this guest's agent now and from now on; `unconfirmed`: only if its channel says connected."""
        with self._wake:
            if uuid in self._due and unconfirmed:
                return
            self._due[uuid] = time.monotonic()
            self._since[uuid] = time.monotonic()
            if unconfirmed:
                self._unconfirmed.add(uuid)
            else:
                self._unconfirmed.discard(uuid)
            self._wake.notify()

    def forget(self, uuid: str) -> None:
        """The agent went away (or the guest stopped): its addresses are no longer known."""
        with self._wake:
            self._unfollow(uuid)
        remember_addresses(self.uri, uuid, ())

    def _unfollow(self, uuid: str) -> None:
        """Under the lock: stop asking about this guest."""
        self._due.pop(uuid, None)
        self._since.pop(uuid, None)
        self._unconfirmed.discard(uuid)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    due = [uuid for uuid, at in self._due.items() if at <= now]
                    if due:
                        break
                    self._wake.wait(min(self._due.values(), default=now + 3600) - now)
                if self._stopping.is_set():
                    self._conn.close()
                    return
            for uuid in due:
                try:
                    self._ask(uuid)
                except Exception:  # one guest's surprise must not end the reading of every other guest
                    logger.exception("reading the addresses of %s failed", uuid)
                    with self._wake:
                        if uuid in self._due:
                            self._due[uuid] = time.monotonic() + self._refresh

    def _ask(self, uuid: str) -> None:
        addresses: tuple[str, ...] | None = None
        done = False  # the guest stopped, went away, or has no connected agent: stop asking
        conn = self._conn.get()
        if conn is not None:  # else the host does not answer now: ask again later
            try:
                addresses = self._read(conn, uuid)
                done = addresses is None
            except libvirt.libvirtError as error:  # an agent that does not answer now may answer later
                done = error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
                logger.debug("addresses of %s: %s", uuid, error)
        with self._wake:
            if uuid not in self._due:  # forgotten meanwhile
                return
            if done:
                self._unfollow(uuid)
                return
            settling = not addresses and time.monotonic() - self._since[uuid] < self._settle_for
            self._due[uuid] = time.monotonic() + (self._settle if settling else self._refresh)
        if addresses is not None:
            known = known_addresses(self.uri, [uuid]).get(uuid, ())
            remember_addresses(self.uri, uuid, addresses)  # every answer: the store forgets what is not renewed
            if addresses != known:
                self._changed(uuid)

    def _read(self, conn: libvirt.virConnect, uuid: str) -> tuple[str, ...] | None:
        """The agent's addresses; None when the guest no longer runs or has no connected agent."""
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isActive():
            return None
        if uuid in self._unconfirmed:
            if parse_agent_channel(dom.XMLDesc(0)) != "connected":
                return None
            with self._wake:
                self._unconfirmed.discard(uuid)
        return tuple(address.address for address in read_agent_addresses(dom))

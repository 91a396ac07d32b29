"""What the QEMU guest agent reports about the guest."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from .addresses import remember_addresses
from .connections import connection
from .details import parse_agent_channel
from .errors import AgentUnavailable


@dataclass(frozen=True, slots=True)
class GuestFileSystem:
    mountpoint: str
    fstype: str
    used_bytes: int | None
    total_bytes: int | None


@dataclass(frozen=True, slots=True)
class GuestAddress:
    interface: str
    address: str
    prefix: int


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
            raise AgentUnavailable("This machine has no guest agent channel, or it is not running.")
        if state != "connected":
            raise AgentUnavailable()
        info = dom.guestInfo(0, 0)
        interfaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
    addresses = tuple(
        GuestAddress(interface=name, address=entry["addr"], prefix=entry["prefix"])
        for name, interface in sorted(interfaces.items())
        if name != "lo"
        for entry in interface.get("addrs") or ()
    )
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

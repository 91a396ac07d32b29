"""A domain's disks resolved to storage volumes, from the domain's own XML.

Deleting a VM's disks starts here, never from a path a client sent: each disk is named by its
target (vda) and resolved against the definition libvirt holds.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML, not untrusted input
from dataclasses import dataclass

import libvirt

from .connections import connection


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    pool: str
    name: str
    path: str
    capacity_bytes: int

    @property
    def key(self) -> str:
        return f"{self.pool}/{self.name}"


@dataclass(frozen=True, slots=True)
class DiskVolume:
    """One disk of a domain: its target, what kind of device it is, and the volume behind it."""

    target: str
    device: str  # disk, cdrom, floppy, lun
    readonly: bool
    shareable: bool
    volume: VolumeInfo | None  # None: a file, block device or network disk no pool knows
    used_elsewhere: bool  # another domain of the host has the same volume


@dataclass(frozen=True, slots=True)
class PoolCapacity:
    name: str
    active: bool
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int


def pool_capacities(uri: str) -> tuple[PoolCapacity, ...]:
    """Every storage pool of the host with its size and free space (zero for one that is not started)."""
    with connection(uri) as conn:
        pools = []
        for pool in conn.listAllStoragePools(0):
            state, capacity, allocation, available = pool.info()
            pools.append(PoolCapacity(pool.name(), state == libvirt.VIR_STORAGE_POOL_RUNNING, capacity, allocation,
                                      available))
        return tuple(sorted(pools, key=lambda pool: pool.name))


def pool_names(uri: str) -> tuple[str, ...]:
    """Every storage pool the host defines, started or not."""
    with connection(uri) as conn:
        return tuple(sorted(pool.name() for pool in conn.listAllStoragePools(0)))


def _sources(xml: str) -> list[tuple[ET.Element, str]]:
    """(disk element, source key) for every disk with a source: a path, or "pool/volume"."""
    found = []
    for disk in ET.fromstring(xml).iterfind("./devices/disk"):  # noqa: S314
        source = disk.find("source")
        if source is None:
            continue
        if source.get("pool"):
            found.append((disk, f"{source.get('pool')}/{source.get('volume', '')}"))
        elif path := source.get("file") or source.get("dev"):
            found.append((disk, path))
    return found


def _volume(conn: libvirt.virConnect, source: str) -> VolumeInfo | None:
    try:
        if source.startswith("/"):
            volume = conn.storageVolLookupByPath(source)
        else:
            pool_name, _, volume_name = source.partition("/")
            volume = conn.storagePoolLookupByName(pool_name).storageVolLookupByName(volume_name)
    except libvirt.libvirtError as error:
        if error.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            return None
        raise
    return VolumeInfo(volume.storagePoolLookupByVolume().name(), volume.name(), volume.path(), volume.info()[1])


def _definitions(dom: libvirt.virDomain) -> list[str]:
    """The running and the next-boot definition: a disk in either belongs to the domain."""
    xmls = [dom.XMLDesc(0)]
    if dom.isActive() and dom.isPersistent():
        xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return xmls


def _target(disk: ET.Element) -> str:
    target = disk.find("target")
    return target.get("dev", "") if target is not None else ""


def domain_disks(uri: str, uuid: str) -> tuple[DiskVolume, ...]:
    """Every disk of the domain with a source, resolved to its volume, and whether another domain uses it."""
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        disks: dict[str, tuple[ET.Element, str]] = {}
        for xml in _definitions(dom):
            for disk, source in _sources(xml):
                disks.setdefault(_target(disk), (disk, source))
        # Compared by path: another domain may name the same volume by its path or by its pool.
        elsewhere: set[str] = set()
        for other in conn.listAllDomains(0):
            if other.UUIDString() != dom.UUIDString():
                for xml in _definitions(other):
                    for _disk, source in _sources(xml):
                        volume = None if source.startswith("/") else _volume(conn, source)
                        elsewhere.add(volume.path if volume is not None else source)
        found = []
        for target, (disk, source) in disks.items():
            volume = _volume(conn, source)
            found.append(DiskVolume(
                target=target,
                device=disk.get("device", "disk"),
                readonly=disk.find("readonly") is not None,
                shareable=disk.find("shareable") is not None,
                volume=volume,
                used_elsewhere=(volume.path if volume is not None else source) in elsewhere,
            ))
        return tuple(found)


def delete_volumes(conn: libvirt.virConnect, volumes: list[VolumeInfo]) -> list[str]:
    """Deletes the volumes still there; returns the keys of those deleted."""
    deleted = []
    for info in volumes:
        try:
            volume = conn.storagePoolLookupByName(info.pool).storageVolLookupByName(info.name)
        except libvirt.libvirtError as error:
            if error.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
                raise
            continue
        volume.delete(0)
        deleted.append(info.key)
    return deleted

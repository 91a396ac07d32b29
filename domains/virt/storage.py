"""Storage pools and volumes, and a domain's disks resolved to volumes from the domain's own XML.

Deleting a VM's disks starts here, never from a path a client sent: each disk is named by its
target (vda) and resolved against the definition libvirt holds. Volumes travel in and out through
libvirt's storage streams, so an upload works over whatever transport reaches the host.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML, not untrusted input
from collections.abc import Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import libvirt
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .connections import connection
from .errors import OperationInvalid

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    pool: str
    name: str
    path: str
    capacity_bytes: int
    allocation_bytes: int = 0  # what it takes on the host's disk (a sparse file or qcow2 takes less)
    format: str = ""  # raw, qcow2, iso...; "" when the pool does not say

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
    kind: str = ""  # libvirt's pool type: dir, logical, netfs...
    autostart: bool = False


def _pool_capacity(pool: libvirt.virStoragePool) -> PoolCapacity:
    state, capacity, allocation, available = pool.info()
    kind = ET.fromstring(pool.XMLDesc(0)).get("type", "")  # noqa: S314
    return PoolCapacity(pool.name(), state == libvirt.VIR_STORAGE_POOL_RUNNING, capacity, allocation, available,
                        kind, bool(pool.autostart()))


def pool_capacities(uri: str) -> tuple[PoolCapacity, ...]:
    """Every storage pool of the host with its type and size and free space (zero for one that is not started)."""
    with connection(uri) as conn:
        return tuple(sorted((_pool_capacity(pool) for pool in conn.listAllStoragePools(0)),
                            key=lambda pool: pool.name))


def pool_capacity(uri: str, name: str) -> PoolCapacity:
    with connection(uri) as conn:
        return _pool_capacity(conn.storagePoolLookupByName(name))


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
            pool_name, _slash, volume_name = source.partition("/")
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


# --- Pools and volumes acted on by name: storage pages (the storage app). ---


class PoolAction(StrEnum):
    START = "start"
    STOP = "stop"
    REFRESH = "refresh"
    AUTOSTART = "autostart"
    NO_AUTOSTART = "no-autostart"

    def done_message(self, pool: str) -> StrPromise:
        """What the user is told once the action on `pool` is done."""
        return format_lazy(_POOL_DONE[self], pool=pool)


_POOL_DONE = {
    PoolAction.START: _("Pool {pool} started."), PoolAction.STOP: _("Pool {pool} stopped."),
    PoolAction.REFRESH: _("Pool {pool} refreshed."), PoolAction.AUTOSTART: _("Pool {pool} set to start with the host."),
    PoolAction.NO_AUTOSTART: _("Pool {pool} set not to start with the host."),
}


def act_on_pool(uri: str, name: str, action: PoolAction) -> None:
    with connection(uri) as conn:
        pool = conn.storagePoolLookupByName(name)
        if action is PoolAction.START:
            pool.create(0)
        elif action is PoolAction.STOP:
            pool.destroy()
        elif action is PoolAction.REFRESH:
            pool.refresh(0)
        else:
            pool.setAutostart(int(action is PoolAction.AUTOSTART))


def define_dir_pool(uri: str, name: str, path: str) -> PoolCapacity:
    """Defines a directory pool, makes its directory, starts it and starts it with the host from now on;
    a pool that could not be built or started is undefined again, so a failure leaves nothing behind."""
    xml = (f"<pool type='dir'><name>{escape(name)}</name><target><path>{escape(path)}</path></target></pool>")
    with connection(uri) as conn:
        pool = conn.storagePoolDefineXML(xml, 0)
        try:
            pool.build(0)
            pool.create(0)
            pool.setAutostart(1)
        except libvirt.libvirtError:
            if pool.isActive():
                pool.destroy()
            pool.undefine()
            raise
        return _pool_capacity(pool)


def _volume_info(pool_name: str, volume: libvirt.virStorageVol) -> VolumeInfo:
    _kind, capacity, allocation = volume.info()
    target_format = ET.fromstring(volume.XMLDesc(0)).find("./target/format")  # noqa: S314
    return VolumeInfo(pool_name, volume.name(), volume.path(), capacity, allocation,
                      target_format.get("type", "") if target_format is not None else "")


def pool_volumes(uri: str, name: str) -> tuple[VolumeInfo, ...]:
    """Every volume of a started pool (none for one that is stopped: libvirt lists nothing then)."""
    with connection(uri) as conn:
        pool = conn.storagePoolLookupByName(name)
        if not pool.isActive():
            return ()
        return tuple(sorted((_volume_info(name, volume) for volume in pool.listAllVolumes(0)),
                            key=lambda volume: volume.name))


def _lookup_volume(conn: libvirt.virConnect, pool: str, name: str) -> libvirt.virStorageVol:
    return conn.storagePoolLookupByName(pool).storageVolLookupByName(name)


def get_volume(uri: str, pool: str, name: str) -> VolumeInfo:
    with connection(uri) as conn:
        return _volume_info(pool, _lookup_volume(conn, pool, name))


def create_volume(uri: str, pool: str, name: str, capacity_bytes: int, volume_format: str = "raw") -> VolumeInfo:
    # Allocated as it is written (sparse), so a large volume is made at once.
    xml = (f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{capacity_bytes}</capacity>"
           f"<allocation>0</allocation><target><format type='{escape(volume_format)}'/></target></volume>")
    with connection(uri) as conn:
        return _volume_info(pool, conn.storagePoolLookupByName(pool).createXML(xml, 0))


def resize_volume(uri: str, pool: str, name: str, capacity_bytes: int) -> None:
    """Grows the volume to `capacity_bytes` (libvirt refuses to shrink without a flag we never pass)."""
    with connection(uri) as conn:
        _lookup_volume(conn, pool, name).resize(capacity_bytes, 0)


def _in_use(conn: libvirt.virConnect, volume: libvirt.virStorageVol, pool: str) -> bool:
    """Whether a domain of the host, running or defined, has the volume as a disk (by path or by pool)."""
    names = (volume.path(), f"{pool}/{volume.name()}")
    return any(source in names for dom in conn.listAllDomains(0) for xml in _definitions(dom)
               for _disk, source in _sources(xml))


def delete_volume(uri: str, pool: str, name: str) -> None:
    """Deletes a volume no domain of the host uses."""
    with connection(uri) as conn:
        volume = _lookup_volume(conn, pool, name)
        if _in_use(conn, volume, pool):
            raise OperationInvalid(_("A machine on this host uses this volume; detach it or delete the machine first."))
        volume.delete(0)


def upload_to_volume(uri: str, pool: str, name: str, offset: int, data: bytes) -> None:
    """Writes `data` into the volume at `offset` through libvirt's storage stream (virStorageVolUpload)."""
    with connection(uri) as conn:
        volume = _lookup_volume(conn, pool, name)
        stream = conn.newStream(0)
        try:
            volume.upload(stream, offset, len(data), 0)
            sent = 0
            while sent < len(data):
                sent += stream.send(data[sent:])
            stream.finish()
        except libvirt.libvirtError:
            _abort_quietly(stream)
            raise


def download_volume(uri: str, pool: str, name: str, chunk_bytes: int = 1024 * 1024) -> Generator[bytes]:
    """The volume's bytes through libvirt's storage stream (virStorageVolDownload), a chunk at a time.

    A generator holding the connection while it is read. Its first item is b"" once libvirt has taken
    the download, so a caller asks for it to learn of a refusal before it answers anybody; libvirt's
    errors leave as VirtError, also those that come while the bytes are being sent.
    """
    with connection(uri) as conn:
        volume = _lookup_volume(conn, pool, name)
        stream = conn.newStream(0)
        volume.download(stream, 0, 0, 0)
        try:
            yield b""
            while data := stream.recv(chunk_bytes):
                yield data
            stream.finish()
        except (libvirt.libvirtError, GeneratorExit):  # failed, or the client went away
            _abort_quietly(stream)
            raise


def _abort_quietly(stream: libvirt.virStream) -> None:
    with contextlib.suppress(libvirt.libvirtError):  # already failing: the first error is the one to report
        stream.abort()

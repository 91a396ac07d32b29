"""A VM's hardware after it exists: read from the XML libvirt holds, changed live where libvirt allows.

A change goes to the running machine (when it runs and libvirt can do it live) and to the definition
it boots next (when it is persistent). Devices of a shut-off machine are changed by rewriting its
definition, as `definition.update_display` does, so every driver (the test driver too) takes them.
"""

from __future__ import annotations

import difflib
import random
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML and an admin's, parsed to edit it
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import libvirt
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .connections import connection
from .errors import NAME_TAKEN, VOLUME_NAME_TAKEN, InvalidDefinition, NameTaken, OperationInvalid
from .storage import VolumeInfo, delete_volumes

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

KIB_PER_MIB = 1024
GIB = 1024**3
DISK_BUSES = ("virtio", "sata", "scsi")
NIC_MODELS = ("virtio", "e1000", "rtl8139")
BOOT_DEVICES = ("hd", "cdrom", "network")
_TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}


@dataclass(frozen=True, slots=True)
class HardwareDisk:
    target: str  # vda, sda: how the page names a disk
    device: str  # disk, cdrom
    bus: str
    volume: VolumeInfo | None  # None: a file no pool knows, or an empty CD-ROM drive
    path: str  # the host path (for admins); "" for an empty drive
    readonly: bool


@dataclass(frozen=True, slots=True)
class HardwareNic:
    mac: str
    kind: str  # network, bridge, user, ...
    source: str  # the network's or the bridge's name
    model: str


@dataclass(frozen=True, slots=True)
class Hardware:
    running: bool  # running or paused: live changes apply
    persistent: bool
    vcpus: int  # what the next boot gets (the live count of a transient machine)
    max_vcpus: int
    live_vcpus: int | None  # None when shut off
    live_max_vcpus: int | None
    memory_mib: int
    max_memory_mib: int
    live_memory_mib: int | None
    live_max_memory_mib: int | None
    disks: tuple[HardwareDisk, ...]
    nics: tuple[HardwareNic, ...]
    boot_order: tuple[str, ...]  # hd, cdrom, network: the machine-wide order of <os><boot>
    firmware: str  # bios or uefi

    @property
    def cdroms(self) -> tuple[HardwareDisk, ...]:
        return tuple(disk for disk in self.disks if disk.device == "cdrom")

    def disk(self, target: str) -> HardwareDisk | None:
        return next((disk for disk in self.disks if disk.target == target), None)


@dataclass(frozen=True, slots=True)
class Applied:
    """Where a change took effect: `live` on the running machine, or only from its next boot."""

    live: bool

    def when(self) -> StrPromise:
        return _("now") if self.live else _("from the next boot")


def _xml(dom: libvirt.virDomain, *, inactive: bool) -> ET.Element:
    # SECURE: a definition written back keeps its display passwords.
    flags = libvirt.VIR_DOMAIN_XML_SECURE | (libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)
    return ET.fromstring(dom.XMLDesc(flags))  # noqa: S314


def _config(dom: libvirt.virDomain) -> ET.Element:
    """The definition the machine boots next (the running one of a transient machine)."""
    return _xml(dom, inactive=dom.isPersistent())


def _attr(element: ET.Element | None, *names: str) -> str:
    if element is None:
        return ""
    return next((value for name in names if (value := element.get(name))), "")


def _disk_path(conn: libvirt.virConnect, disk: ET.Element) -> tuple[str, VolumeInfo | None]:
    source = disk.find("source")
    if source is not None and source.get("pool"):
        volume = conn.storagePoolLookupByName(source.get("pool")).storageVolLookupByName(source.get("volume"))
    else:
        path = _attr(source, "file", "dev")
        if not path:
            return "", None
        try:
            volume = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            return path, None
    return volume.path(), VolumeInfo(volume.storagePoolLookupByVolume().name(), volume.name(), volume.path(),
                                     volume.info()[1])


def _read(conn: libvirt.virConnect, dom: libvirt.virDomain) -> Hardware:
    config = _config(dom)
    running = bool(dom.isActive())
    flags_config = libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else libvirt.VIR_DOMAIN_AFFECT_LIVE
    disks = []
    for disk in config.iterfind("./devices/disk"):
        path, volume = _disk_path(conn, disk)
        target = disk.find("target")
        disks.append(HardwareDisk(target=_attr(target, "dev"), device=disk.get("device", "disk"),
                                  bus=_attr(target, "bus"), volume=volume, path=path,
                                  readonly=disk.find("readonly") is not None))
    nics = tuple(HardwareNic(mac=_attr(nic.find("mac"), "address"), kind=nic.get("type", ""),
                             source=_attr(nic.find("source"), "network", "bridge", "dev"),
                             model=_attr(nic.find("model"), "type"))
                 for nic in config.iterfind("./devices/interface"))
    os = config.find("os")
    uefi = os is not None and (os.get("firmware") == "efi" or _attr(os.find("loader"), "type") == "pflash")
    return Hardware(
        running=running,
        persistent=bool(dom.isPersistent()),
        vcpus=dom.vcpusFlags(flags_config),
        max_vcpus=dom.vcpusFlags(flags_config | libvirt.VIR_DOMAIN_VCPU_MAXIMUM),
        live_vcpus=dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) if running else None,
        live_max_vcpus=dom.maxVcpus() if running else None,
        memory_mib=int(config.findtext("currentMemory") or config.findtext("memory") or 0) // KIB_PER_MIB,
        max_memory_mib=int(config.findtext("memory") or 0) // KIB_PER_MIB,
        live_memory_mib=dom.info()[2] // KIB_PER_MIB if running else None,
        live_max_memory_mib=dom.maxMemory() // KIB_PER_MIB if running else None,
        disks=tuple(disks),
        nics=nics,
        boot_order=tuple(boot.get("dev", "") for boot in config.iterfind("./os/boot")),
        firmware="uefi" if uefi else "bios",
    )


@contextmanager
def _domain(uri: str, uuid: str) -> Iterator[tuple[libvirt.virConnect, libvirt.virDomain]]:
    with connection(uri) as conn:
        yield conn, conn.lookupByUUIDString(uuid)


def domain_hardware(uri: str, uuid: str) -> Hardware:
    with _domain(uri, uuid) as (conn, dom):
        return _read(conn, dom)


# --- vCPUs and memory: the definition, and the running machine up to its maximum. ---


def _set_counted(
    dom: libvirt.virDomain, *, value: int, maximum: int | None, set_flags: Callable[[int, int], object],
    config_max: int, live_max: Callable[[], int], flags: tuple[int, int, int],
) -> Applied:
    """Sets a count with a maximum (vCPUs, memory) on the running machine when it fits, then in the definition.

    Live first: when the guest refuses (a vCPU it cannot unplug), nothing has changed. `flags` are the API's
    (config, maximum, live) flags. The maximum moves first when it grows and last when it shrinks, so the
    count never exceeds it in between.
    """
    config, maximum_flag, live = flags
    applies_live = bool(dom.isActive()) and value <= live_max()
    if applies_live:
        set_flags(value, live)
    if dom.isPersistent():
        new_max = maximum if maximum is not None else max(config_max, value)
        if new_max > config_max:
            set_flags(new_max, config | maximum_flag)
        set_flags(value, config)
        if new_max < config_max:
            set_flags(new_max, config | maximum_flag)
    return Applied(live=applies_live)


def set_vcpus(uri: str, uuid: str, *, count: int, maximum: int | None = None) -> Applied:
    """vCPUs of the next boot (and their maximum), and of the running machine when within its maximum."""
    with _domain(uri, uuid) as (_conn, dom):
        return _set_counted(
            dom, value=count, maximum=maximum, set_flags=dom.setVcpusFlags,
            config_max=dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
            if dom.isPersistent() else 0,
            live_max=dom.maxVcpus,
            flags=(libvirt.VIR_DOMAIN_VCPU_CONFIG, libvirt.VIR_DOMAIN_VCPU_MAXIMUM, libvirt.VIR_DOMAIN_VCPU_LIVE),
        )


def set_memory(uri: str, uuid: str, *, mib: int, maximum_mib: int | None = None) -> Applied:
    """Memory of the next boot (and its maximum), and the running machine's balloon within its maximum."""
    with _domain(uri, uuid) as (_conn, dom):
        config_max = int(_xml(dom, inactive=True).findtext("memory") or 0) if dom.isPersistent() else 0
        return _set_counted(
            dom, value=mib * KIB_PER_MIB, maximum=maximum_mib * KIB_PER_MIB if maximum_mib else None,
            set_flags=dom.setMemoryFlags, config_max=config_max, live_max=dom.maxMemory,
            flags=(libvirt.VIR_DOMAIN_MEM_CONFIG, libvirt.VIR_DOMAIN_MEM_MAXIMUM, libvirt.VIR_DOMAIN_MEM_LIVE),
        )


# --- Devices: live with the device API while running, in the definition always. ---


def _device_flags(dom: libvirt.virDomain) -> int:
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    return flags | (libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0)


def _redefine(conn: libvirt.virConnect, dom: libvirt.virDomain, change: Callable[[ET.Element], None]) -> None:
    root = _xml(dom, inactive=True)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    change(devices)
    conn.defineXML(ET.tostring(root, encoding="unicode"))


def _attach(conn: libvirt.virConnect, dom: libvirt.virDomain, device: ET.Element) -> Applied:
    if dom.isActive():
        dom.attachDeviceFlags(ET.tostring(device, encoding="unicode"), _device_flags(dom))
        return Applied(live=True)
    _redefine(conn, dom, lambda devices: devices.append(device))
    return Applied(live=False)


def _find(devices: ET.Element, tag: str, match: Callable[[ET.Element], bool]) -> ET.Element | None:
    return next((element for element in devices.iterfind(tag) if match(element)), None)


def _detach(conn: libvirt.virConnect, dom: libvirt.virDomain, tag: str, match: Callable[[ET.Element], bool],
            what: StrPromise) -> Applied:
    devices = _config(dom).find("devices")
    device = _find(devices, tag, match) if devices is not None else None
    if device is None:
        raise InvalidDefinition(format_lazy(_("The machine has no {device}."), device=what))
    if dom.isActive():
        dom.detachDeviceFlags(ET.tostring(device, encoding="unicode"), _device_flags(dom))
        return Applied(live=True)

    def remove(devices: ET.Element) -> None:
        found = _find(devices, tag, match)
        if found is not None:
            devices.remove(found)

    _redefine(conn, dom, remove)
    return Applied(live=False)


def _by_target(target: str) -> Callable[[ET.Element], bool]:
    return lambda disk: _attr(disk.find("target"), "dev") == target


def _free_target(dom: libvirt.virDomain, bus: str) -> str:
    prefix = _TARGET_PREFIX.get(bus, "sd")
    taken = {_attr(target, "dev") for xml in (_xml(dom, inactive=False), _config(dom))
             for target in xml.iterfind("./devices/disk/target")}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in taken:
            return prefix + letter
    raise InvalidDefinition(format_lazy(_("Every {bus} disk name is taken."), bus=bus))


def _volume(conn: libvirt.virConnect, key: str) -> libvirt.virStorageVol:
    pool_name, _slash, volume_name = key.partition("/")
    return conn.storagePoolLookupByName(pool_name).storageVolLookupByName(volume_name)


def _format(volume: libvirt.virStorageVol) -> str:
    fmt = ET.fromstring(volume.XMLDesc(0)).find("./target/format")  # noqa: S314
    return _attr(fmt, "type") or "raw"


def _disk_element(*, path: str, fmt: str, target: str, bus: str, device: str = "disk") -> ET.Element:
    disk = ET.Element("disk", type="file", device=device)
    ET.SubElement(disk, "driver", name="qemu", type=fmt)
    if path:
        ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=target, bus=bus)
    if device == "cdrom":
        ET.SubElement(disk, "readonly")
    return disk


def attach_volume(uri: str, uuid: str, *, volume_key: str, bus: str) -> tuple[str, Applied]:
    """Attaches an existing volume as the next free disk of `bus`; returns its target."""
    with _domain(uri, uuid) as (conn, dom):
        volume = _volume(conn, volume_key)
        target = _free_target(dom, bus)
        disk = _disk_element(path=volume.path(), fmt=_format(volume), target=target, bus=bus)
        return target, _attach(conn, dom, disk)


def attach_new_volume(uri: str, uuid: str, *, pool: str, size_gib: int, bus: str) -> tuple[str, VolumeInfo, Applied]:
    """Creates an empty qcow2 volume named after the machine and the disk (web1-vdb.qcow2) and attaches it;
    the volume is deleted again when attaching fails."""
    with _domain(uri, uuid) as (conn, dom):
        storage_pool = conn.storagePoolLookupByName(pool)
        target = _free_target(dom, bus)
        name = f"{dom.name()}-{target}.qcow2"
        if name in storage_pool.listVolumes():
            raise NameTaken(format_lazy(VOLUME_NAME_TAKEN, pool=pool, name=name), field="pool")
        created = storage_pool.createXML(_volume_xml(name, size_gib * GIB), 0)
        info = VolumeInfo(pool, created.name(), created.path(), created.info()[1])
        try:
            applied = _attach(conn, dom, _disk_element(path=created.path(), fmt="qcow2", target=target, bus=bus))
        except (libvirt.libvirtError, InvalidDefinition):
            created.delete(0)
            raise
        return target, info, applied


def _volume_xml(name: str, capacity_bytes: int) -> str:
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(capacity_bytes)
    ET.SubElement(ET.SubElement(root, "target"), "format", type="qcow2")
    return ET.tostring(root, encoding="unicode")


def detach_disk(uri: str, uuid: str, *, target: str) -> Applied:
    """Detaches the disk (never deletes its volume)."""
    with _domain(uri, uuid) as (conn, dom):
        return _detach(conn, dom, "disk", _by_target(target), format_lazy(_("disk {target}"), target=target))


def grow_disk(uri: str, uuid: str, *, target: str, size_gib: int) -> Applied:
    """Grows a disk's volume to `size_gib`: through the running machine (so it sees the new size) or the pool."""
    with _domain(uri, uuid) as (conn, dom):
        devices = _config(dom).find("devices")
        disk = _find(devices, "disk", _by_target(target)) if devices is not None else None
        path, volume = _disk_path(conn, disk) if disk is not None else ("", None)
        if disk is None or volume is None:
            raise InvalidDefinition(format_lazy(_("{target} is not a storage volume of this machine."), target=target))
        size = size_gib * GIB
        if size <= volume.capacity_bytes:
            raise InvalidDefinition(format_lazy(_("{target} has {gib} GiB; disks only grow."), target=target,
                                                gib=f"{volume.capacity_bytes / GIB:g}"))
        if dom.isActive():
            dom.blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            return Applied(live=True)
        conn.storageVolLookupByPath(path).resize(size, 0)
        return Applied(live=False)


def change_cdrom(uri: str, uuid: str, *, target: str, volume_key: str) -> Applied:
    """Inserts the volume (an ISO) into the CD-ROM drive `target`, or ejects it when `volume_key` is ""."""
    with _domain(uri, uuid) as (conn, dom):
        devices = _config(dom).find("devices")
        drive = _find(devices, "disk", _by_target(target)) if devices is not None else None
        if drive is None or drive.get("device") != "cdrom":
            raise InvalidDefinition(format_lazy(_("The machine has no CD-ROM drive {target}."), target=target))
        for source in drive.findall("source"):
            drive.remove(source)
        drive.set("type", "file")
        if volume_key:
            ET.SubElement(drive, "source", file=_volume(conn, volume_key).path())
        if dom.isActive():
            dom.updateDeviceFlags(ET.tostring(drive, encoding="unicode"), _device_flags(dom))
            return Applied(live=True)

        def replace(devices: ET.Element) -> None:
            old = _find(devices, "disk", _by_target(target))
            if old is not None:
                devices.remove(old)
            devices.append(drive)

        _redefine(conn, dom, replace)
        return Applied(live=False)


def add_cdrom(uri: str, uuid: str, *, bus: str) -> str:
    """Adds an empty CD-ROM drive to a shut-off machine (drives are not hot-plugged); returns its target."""
    with _domain(uri, uuid) as (conn, dom):
        if dom.isActive():
            raise OperationInvalid(_("A CD-ROM drive can be added only while the machine is shut off."))
        target = _free_target(dom, bus)
        _attach(conn, dom, _disk_element(path="", fmt="raw", target=target, bus=bus, device="cdrom"))
        return target


# --- Network interfaces. ---


def macs_in_use(uri: str) -> frozenset[str]:
    """Every MAC address of every machine on the host, running or next boot, in lower case."""
    with connection(uri) as conn:
        macs: set[str] = set()
        for dom in conn.listAllDomains(0):
            for xml in (_xml(dom, inactive=False), _config(dom)):
                macs.update(_attr(mac, "address").lower() for mac in xml.iterfind("./devices/interface/mac"))
        return frozenset(macs)


def random_mac() -> str:
    """A MAC address in QEMU's locally administered range, as libvirt itself picks them."""
    tail = [random.randrange(256) for _ in range(3)]  # noqa: S311 - an address, not a secret
    return "52:54:00:" + ":".join(f"{octet:02x}" for octet in tail)


def attach_nic(uri: str, uuid: str, *, kind: str, source: str, model: str, mac: str) -> Applied:
    """Plugs a NIC into a libvirt network (`kind` "network") or a host bridge ("bridge")."""
    nic = ET.Element("interface", type=kind)
    ET.SubElement(nic, "mac", address=mac)
    ET.SubElement(nic, "source", {"network" if kind == "network" else "bridge": source})
    ET.SubElement(nic, "model", type=model)
    with _domain(uri, uuid) as (conn, dom):
        return _attach(conn, dom, nic)


def detach_nic(uri: str, uuid: str, *, mac: str) -> Applied:
    with _domain(uri, uuid) as (conn, dom):
        return _detach(conn, dom, "interface", lambda nic: _attr(nic.find("mac"), "address").lower() == mac.lower(),
                       format_lazy(_("network interface {mac}"), mac=mac))


# --- Boot order and firmware: the next boot's. ---


def _change_next_boot(uri: str, uuid: str, change: Callable[[ET.Element, ET.Element], None]) -> None:
    """The definition rewritten by `change(root, os)`: what the machine boots with next."""
    with _domain(uri, uuid) as (conn, dom):
        if not dom.isPersistent():
            raise OperationInvalid(_("A transient machine has no next boot to change."))
        root = _xml(dom, inactive=True)
        os = root.find("os")
        change(root, os if os is not None else ET.SubElement(root, "os"))
        conn.defineXML(ET.tostring(root, encoding="unicode"))


def set_boot_order(uri: str, uuid: str, *, devices: tuple[str, ...]) -> None:
    """The machine-wide boot order; per-device <boot order=...> would conflict with it, so those go."""

    def order(root: ET.Element, os: ET.Element) -> None:
        for boot in os.findall("boot"):
            os.remove(boot)
        for element in root.iterfind("./devices/*"):
            for boot in element.findall("boot"):
                element.remove(boot)
        position = next((i for i, child in enumerate(os) if child.tag not in ("type", "loader", "nvram", "kernel",
                                                                              "initrd", "cmdline")), len(os))
        for offset, device in enumerate(devices):
            os.insert(position + offset, ET.Element("boot", dev=device))

    _change_next_boot(uri, uuid, order)


FIRMWARES = ("bios", "uefi")


def set_firmware(uri: str, uuid: str, *, firmware: str) -> None:
    """BIOS or UEFI from the next boot. UEFI is libvirt's firmware autoselection (<os firmware='efi'>), which
    picks the host's OVMF build and the machine's variable store; a host without one refuses at the start."""
    if firmware not in FIRMWARES:
        raise InvalidDefinition(format_lazy(_("Firmware is one of {choices}."), choices=", ".join(FIRMWARES)))

    def choose(_root: ET.Element, os: ET.Element) -> None:
        # A loader, variable store or feature list chosen for the other firmware would contradict the choice.
        for element in [*os.findall("loader"), *os.findall("nvram"), *os.findall("firmware")]:
            os.remove(element)
        if firmware == "uefi":
            os.set("firmware", "efi")
        else:
            os.attrib.pop("firmware", None)

    _change_next_boot(uri, uuid, choose)


# --- Clone: a shut-off machine with copies of its disks, on the same host. ---


@dataclass(frozen=True, slots=True)
class ClonedDomain:
    uuid: str
    volumes: tuple[VolumeInfo, ...]  # the copies, each in its original's pool


def clone_plan(uri: str, uuid: str) -> tuple[VolumeInfo, ...]:
    """The volumes a clone copies: every writable disk's; refused when one is not a storage volume."""
    with _domain(uri, uuid) as (conn, dom):
        return tuple(_clone_sources(conn, dom).values())


def _clone_sources(conn: libvirt.virConnect, dom: libvirt.virDomain) -> dict[str, VolumeInfo]:
    if dom.isActive() or not dom.isPersistent():
        raise OperationInvalid(_("Only a shut-off, persistent machine can be cloned."))
    sources = {}
    for disk in _xml(dom, inactive=True).iterfind("./devices/disk"):
        if disk.get("device", "disk") != "disk" or disk.find("readonly") is not None or disk.find(
                "shareable") is not None:
            continue
        target = _attr(disk.find("target"), "dev")
        path, volume = _disk_path(conn, disk)
        if volume is None:
            raise InvalidDefinition(format_lazy(_("{target} is not a storage volume, so it cannot be copied."),
                                                target=target))
        sources[target] = volume
    return sources


def clone_domain(uri: str, uuid: str, *, name: str) -> ClonedDomain:
    """Copies the disks (createXMLFrom, in each one's pool) and defines the copy with a new name, UUID and
    MACs. Copies are deleted again when the definition fails."""
    with _domain(uri, uuid) as (conn, dom):
        if name in {other.name() for other in conn.listAllDomains(0)}:
            raise NameTaken(format_lazy(NAME_TAKEN, name=name), field="name")
        sources = _clone_sources(conn, dom)
        root = _xml(dom, inactive=True)
        for element in root.findall("name"):
            element.text = name
        for element in root.findall("uuid"):
            root.remove(element)
        for nic in root.iterfind("./devices/interface"):
            for mac in nic.findall("mac"):
                nic.remove(mac)  # libvirt picks a new one
        for os in root.iterfind("os"):
            for nvram in os.findall("nvram"):
                os.remove(nvram)  # a UEFI machine's variables: libvirt makes a fresh copy from the template
        for graphics in root.iterfind("./devices/graphics"):
            if graphics.get("autoport") == "no":  # the original's fixed port would be taken while both run
                graphics.set("autoport", "yes")
                for port in ("port", "tlsPort"):
                    graphics.attrib.pop(port, None)
        copies: list[VolumeInfo] = []
        try:
            for disk in root.iterfind("./devices/disk"):
                original = sources.get(_attr(disk.find("target"), "dev"))
                if original is None:
                    continue
                copy = _copy_volume(conn, original, f"{name}-{_attr(disk.find('target'), 'dev')}")
                copies.append(copy)
                for source in disk.findall("source"):
                    disk.remove(source)
                disk.set("type", "file")
                disk.insert(1, ET.Element("source", file=copy.path))
            clone = conn.defineXML(ET.tostring(root, encoding="unicode"))
        except (libvirt.libvirtError, InvalidDefinition):
            delete_volumes(conn, copies)
            raise
        return ClonedDomain(str(clone.UUIDString()), tuple(copies))


def _copy_volume(conn: libvirt.virConnect, original: VolumeInfo, stem: str) -> VolumeInfo:
    pool = conn.storagePoolLookupByName(original.pool)
    source = pool.storageVolLookupByName(original.name)
    fmt = _format(source)
    name = stem + PurePosixPath(original.name).suffix  # web2-vda.qcow2 from web1.qcow2
    if name in pool.listVolumes():
        raise NameTaken(format_lazy(VOLUME_NAME_TAKEN, pool=original.pool, name=name), field="name")
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(original.capacity_bytes)
    ET.SubElement(ET.SubElement(root, "target"), "format", type=fmt)
    copy = pool.createXMLFrom(ET.tostring(root, encoding="unicode"), source, 0)
    return VolumeInfo(original.pool, copy.name(), copy.path(), copy.info()[1])


# --- The XML editor (admins): libvirt validates, the page shows a diff first. ---


def domain_xml(uri: str, uuid: str) -> str:
    """The definition the machine boots next, as libvirt holds it (with display passwords: admins only)."""
    with _domain(uri, uuid) as (_conn, dom):
        inactive = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
        return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | inactive))


def xml_diff(current: str, edited: str) -> str:
    """A unified diff from the definition libvirt holds to the edited one; "" when they are the same."""
    return "".join(difflib.unified_diff(current.splitlines(keepends=True),
                                        _with_newline(edited).splitlines(keepends=True), "current", "edited"))


def _with_newline(text: str) -> str:
    return text.replace("\r\n", "\n") if text.endswith("\n") else text.replace("\r\n", "\n") + "\n"


def redefine_xml(uri: str, uuid: str, xml: str) -> None:
    """Defines the edited XML of this machine, validated against libvirt's schema.

    Its UUID must stay this machine's: a definition with another UUID would be another machine.
    """
    try:
        root = ET.fromstring(xml)  # noqa: S314 - an admin's text, parsed to check its UUID only
    except ET.ParseError as error:
        raise InvalidDefinition(format_lazy(_("The XML is not well-formed: {error}."), error=error)) from error
    uuid_text = (root.findtext("uuid") or uuid).strip().lower()
    if root.tag != "domain" or uuid_text != uuid.lower():
        raise InvalidDefinition(_("The XML must be a <domain> with this machine's UUID."))
    with _domain(uri, uuid) as (conn, _dom):
        if root.find("uuid") is None:
            ET.SubElement(root, "uuid").text = uuid
            xml = ET.tostring(root, encoding="unicode")
        conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)

"""Building domain XML from a form's choices, defining it, and editing a shut-off VM's display.

The XML is built with ElementTree and validated by libvirt itself on define.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - we build this XML; libvirt's own answers are trusted
from dataclasses import dataclass, field
from enum import StrEnum

import libvirt
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .connections import connection
from .details import parse_devices
from .errors import NAME_TAKEN, VOLUME_NAME_TAKEN, InvalidDefinition
from .storage import VolumeInfo

AGENT_CHANNEL = "org.qemu.guest_agent.0"
VIDEO_MODELS = ("cirrus", "vga", "vmvga", "qxl", "virtio", "bochs")


class BootKind(StrEnum):
    VOLUME = "volume"  # an existing volume of a storage pool
    NEW_VOLUME = "new-volume"  # a new empty qcow2 volume of a given size
    ISO = "iso"  # install from an ISO volume, with a new empty disk when a size is given
    KERNEL = "kernel"  # direct kernel boot (lab images), a new empty disk when a size is given; admins only


@dataclass(frozen=True)
class GraphicsSpec:
    kind: str  # vnc or spice
    listen: str = ""  # "": the host's own setting (qemu.conf vnc_listen / spice_listen)
    port: int | None = None  # None: libvirt picks a free one
    tls_port: int | None = None  # SPICE only
    password: str = ""
    keymap: str = ""


@dataclass(frozen=True)
class BootSpec:
    kind: BootKind
    volume: str = ""  # "pool/volume" for VOLUME and ISO
    pool: str = ""  # where NEW_VOLUME (or the ISO install's disk) is created
    size_gib: int = 0
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""

    @property
    def creates_volume(self) -> bool:
        """A new empty qcow2 volume: the disk itself, or beside an ISO or a kernel when a size is given."""
        return self.kind is BootKind.NEW_VOLUME or (self.kind in (BootKind.ISO, BootKind.KERNEL) and self.size_gib > 0)


@dataclass(frozen=True)
class DomainSpec:
    name: str
    vcpus: int
    memory_mib: int
    boot: BootSpec
    accelerator: str  # libvirt domain type: kvm, qemu (TCG), test
    title: str = ""
    description: str = ""
    network: str = "user"  # "user" or the name of a libvirt network
    video_model: str = "vga"
    graphics: GraphicsSpec | None = field(default_factory=lambda: GraphicsSpec("vnc"))
    guest_agent: bool = True


@dataclass(frozen=True, slots=True)
class DefineChoices:
    """What a host offers a new VM."""

    accelerators: tuple[str, ...]
    pools: tuple[str, ...]
    volumes: tuple[VolumeInfo, ...]
    networks: tuple[str, ...]


def define_choices(uri: str) -> DefineChoices:
    with connection(uri) as conn:
        caps = ET.fromstring(conn.getCapabilities())  # noqa: S314
        accelerators = [d.get("type", "") for d in caps.iterfind("./guest/arch/domain")]
        pools = [pool for pool in conn.listAllStoragePools(0) if pool.isActive()]
        volumes = [
            VolumeInfo(pool.name(), volume.name(), volume.path(), volume.info()[1])
            for pool in pools
            for volume in pool.listAllVolumes(0)
        ]
        networks = [network.name() for network in conn.listAllNetworks(0) if network.isActive()]
    # Hardware acceleration first: it is the one a user wants where the host has it.
    order = {"kvm": 0, "qemu": 1}
    return DefineChoices(
        accelerators=tuple(sorted(dict.fromkeys(accelerators), key=lambda a: order.get(a, 2))),
        pools=tuple(sorted(pool.name() for pool in pools)),
        volumes=tuple(sorted(volumes, key=lambda v: v.key)),
        networks=tuple(sorted(networks)),
    )


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _disk(devices: ET.Element, *, path: str, device: str, target: str, bus: str, fmt: str) -> None:
    disk = _sub(devices, "disk", type="file", device=device)
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", file=path)
    _sub(disk, "target", dev=target, bus=bus)
    if device == "cdrom":
        _sub(disk, "readonly")


def graphics_element(spec: GraphicsSpec) -> ET.Element:
    attrs = {"type": spec.kind, "autoport": "no" if spec.port else "yes", "port": str(spec.port or -1)}
    if spec.kind == "spice" and spec.tls_port:
        attrs["tlsPort"] = str(spec.tls_port)
    if spec.password:
        attrs["passwd"] = spec.password
    if spec.keymap:
        attrs["keymap"] = spec.keymap
    graphics = ET.Element("graphics", attrs)
    if spec.listen:
        _sub(graphics, "listen", type="address", address=spec.listen)
    return graphics


def build_domain_xml(spec: DomainSpec, *, disk_path: str = "", disk_format: str = "qcow2", iso_path: str = "") -> str:
    """The domain XML for `spec`; storage is passed in already resolved to paths."""
    root = ET.Element("domain", type=spec.accelerator)
    _sub(root, "name", spec.name)
    if spec.title:
        _sub(root, "title", spec.title)
    if spec.description:
        _sub(root, "description", spec.description)
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus))
    os = _sub(root, "os")
    _sub(os, "type", "hvm", arch="x86_64")
    if spec.boot.kind is BootKind.KERNEL:
        _sub(os, "kernel", spec.boot.kernel)
        if spec.boot.initrd:
            _sub(os, "initrd", spec.boot.initrd)
        if spec.boot.cmdline:
            _sub(os, "cmdline", spec.boot.cmdline)
    else:
        if iso_path:
            _sub(os, "boot", dev="cdrom")
        _sub(os, "boot", dev="hd")
    features = _sub(root, "features")
    # Without ACPI a guest's shutdown halts it but the domain keeps running.
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    _devices(_sub(root, "devices"), spec, disk_path=disk_path, disk_format=disk_format, iso_path=iso_path)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def _devices(devices: ET.Element, spec: DomainSpec, *, disk_path: str, disk_format: str, iso_path: str) -> None:
    """Disks, the NIC, the agent channel, consoles, display and balloon of a new domain."""
    if disk_path:
        _disk(devices, path=disk_path, device="disk", target="vda", bus="virtio", fmt=disk_format)
    if iso_path:
        _disk(devices, path=iso_path, device="cdrom", target="sda", bus="sata", fmt="raw")
    if spec.network == "user":
        nic = _sub(devices, "interface", type="user")
    else:
        nic = _sub(devices, "interface", type="network")
        _sub(nic, "source", network=spec.network)
    _sub(nic, "model", type="virtio")
    if spec.guest_agent:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    _sub(devices, "serial", type="pty")
    _sub(devices, "console", type="pty")
    if spec.graphics is not None:
        _sub(devices, "input", type="tablet", bus="usb")
        devices.append(graphics_element(spec.graphics))
    video = _sub(devices, "video")
    _sub(video, "model", type=spec.video_model)
    _sub(devices, "memballoon", model="virtio")


def _pool_target(conn: libvirt.virConnect, pool_name: str) -> str:
    pool = conn.storagePoolLookupByName(pool_name)
    return ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""  # noqa: S314


def _new_volume_name(spec: DomainSpec) -> str:
    return f"{spec.name}.qcow2"


def _resolve_storage(conn: libvirt.virConnect, spec: DomainSpec) -> tuple[str, str, str]:
    """(disk path, disk format, ISO path) for the spec, without creating anything."""
    boot = spec.boot
    if boot.kind is BootKind.VOLUME:
        volume = _lookup_volume(conn, boot.volume)
        fmt = ET.fromstring(volume.XMLDesc(0)).find("./target/format")  # noqa: S314
        return volume.path(), fmt.get("type", "raw") if fmt is not None else "raw", ""
    new_disk = f"{_pool_target(conn, boot.pool).rstrip('/')}/{_new_volume_name(spec)}" if boot.creates_volume else ""
    iso = _lookup_volume(conn, boot.volume).path() if boot.kind is BootKind.ISO else ""
    return new_disk, "qcow2", iso


def _lookup_volume(conn: libvirt.virConnect, key: str) -> libvirt.virStorageVol:
    pool_name, _slash, volume_name = key.partition("/")
    return conn.storagePoolLookupByName(pool_name).storageVolLookupByName(volume_name)


@dataclass(frozen=True, slots=True)
class HostInUse:
    """What a new VM on a host must not collide with or exceed: its machines' names, the display ports they
    hold (configured, or given to a running one), and the host's memory."""

    names: frozenset[str]
    display_ports: frozenset[int]
    memory_mib: int


def host_in_use(uri: str) -> HostInUse:
    """One definition read per machine: for the define form's checks only, never for a list."""
    with connection(uri) as conn:
        domains = conn.listAllDomains(0)
        names = frozenset(dom.name() for dom in domains)
        ports = frozenset(
            port
            for dom in domains
            for graphics in parse_devices(dom.XMLDesc(0)).graphics
            for port in (graphics.port, graphics.tls_port)
            if port is not None
        )
        memory_mib = conn.getInfo()[1]
    return HostInUse(names=names, display_ports=ports, memory_mib=memory_mib)


def preview_domain_xml(uri: str, spec: DomainSpec) -> str:
    with connection(uri) as conn:
        disk_path, disk_format, iso_path = _resolve_storage(conn, spec)
    return build_domain_xml(spec, disk_path=disk_path, disk_format=disk_format, iso_path=iso_path)


@dataclass(frozen=True, slots=True)
class DefinedDomain:
    uuid: str
    created_volume: VolumeInfo | None  # the new empty volume the spec asked for


def define_domain(uri: str, spec: DomainSpec, *, autostart: bool = False) -> DefinedDomain:
    """Creates the new volume the spec asks for, defines the domain, returns its UUID and the volume.

    A volume created here is deleted again when libvirt rejects the definition.
    """
    with connection(uri) as conn:
        _refuse_taken_names(conn, spec)
        disk_path, disk_format, iso_path = _resolve_storage(conn, spec)
        created = None
        if spec.boot.creates_volume:
            created = conn.storagePoolLookupByName(spec.boot.pool).createXML(_volume_xml(spec), 0)
        xml = build_domain_xml(spec, disk_path=disk_path, disk_format=disk_format, iso_path=iso_path)
        try:
            dom = conn.defineXML(xml)
        except libvirt.libvirtError:
            if created is not None:
                created.delete(0)
            raise
        if autostart:
            dom.setAutostart(1)
        volume = None
        if created is not None:
            volume = VolumeInfo(spec.boot.pool, created.name(), created.path(), created.info()[1])
        return DefinedDomain(str(dom.UUIDString()), volume)


def _refuse_taken_names(conn: libvirt.virConnect, spec: DomainSpec) -> None:
    if spec.name in {dom.name() for dom in conn.listAllDomains(0)}:
        raise InvalidDefinition(format_lazy(NAME_TAKEN, name=spec.name))
    if spec.boot.creates_volume:
        pool = conn.storagePoolLookupByName(spec.boot.pool)
        if _new_volume_name(spec) in pool.listVolumes():
            raise InvalidDefinition(format_lazy(VOLUME_NAME_TAKEN, pool=spec.boot.pool, name=_new_volume_name(spec)))


def _volume_xml(spec: DomainSpec) -> str:
    root = ET.Element("volume")
    _sub(root, "name", _new_volume_name(spec))
    _sub(root, "capacity", str(spec.boot.size_gib), unit="GiB")
    target = _sub(root, "target")
    _sub(target, "format", type="qcow2")
    return ET.tostring(root, encoding="unicode")


def define_xml(uri: str, xml: str) -> str:
    """Defines raw XML as given (admins only, checked by the caller); returns the UUID."""
    with connection(uri) as conn:
        return str(conn.defineXML(xml).UUIDString())


def update_display(uri: str, uuid: str, *, video_model: str, graphics: GraphicsSpec | None) -> None:
    """Replaces the video model and graphics of a shut-off persistent domain."""
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.isActive() or not dom.isPersistent():
            raise InvalidDefinition(_("Graphics and video can be changed only while the machine is shut off."))
        # SECURE keeps existing passwords in the XML we write back.
        root = ET.fromstring(  # noqa: S314
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
        devices = root.find("devices")
        if devices is None:
            devices = _sub(root, "devices")
        for old in devices.findall("graphics") + devices.findall("video"):
            devices.remove(old)
        if graphics is not None:
            devices.append(graphics_element(graphics))
        video = _sub(devices, "video")
        _sub(video, "model", type=video_model)
        conn.defineXML(ET.tostring(root, encoding="unicode"))

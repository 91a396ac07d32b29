"""One domain in full: its record, devices read from its XML, and its snapshots."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML, not untrusted input
from dataclasses import dataclass
from datetime import UTC, datetime

import libvirt

from .connections import connection
from .inventory import DomainRecord, records_for
from .serial import has_serial

AGENT_CHANNEL = "org.qemu.guest_agent.0"


@dataclass(frozen=True, slots=True)
class DiskDevice:
    target: str
    device: str  # disk, cdrom, floppy
    bus: str
    source: str  # file path, volume "pool/name", or "" when empty


@dataclass(frozen=True, slots=True)
class NicDevice:
    kind: str  # network, bridge, user, ...
    source: str
    model: str
    mac: str


@dataclass(frozen=True, slots=True)
class GraphicsDevice:
    kind: str  # vnc or spice
    listen: str
    port: int | None
    tls_port: int | None
    autoport: bool
    has_password: bool  # the password itself never leaves this package
    keymap: str


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    disks: tuple[DiskDevice, ...]
    nics: tuple[NicDevice, ...]
    graphics: tuple[GraphicsDevice, ...]
    video_models: tuple[str, ...]
    agent_channel: bool
    agent_connected: bool
    serial: bool = False  # a serial port or console device: the browser's serial console can open it


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    name: str
    description: str
    created: datetime | None
    state: str
    current: bool


@dataclass(frozen=True, slots=True)
class DomainDetails:
    record: DomainRecord
    devices: DeviceSummary
    snapshots: tuple[SnapshotRecord, ...]


def _port(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() and int(value) > 0 else None


def _attr(element: ET.Element | None, *names: str) -> str:
    """The first of `names` that `element` has, or ""; absent elements have no attributes."""
    if element is None:
        return ""
    return next((value for name in names if (value := element.get(name))), "")


def parse_agent_channel(xml: str) -> str | None:
    """'connected', 'disconnected', or None when the domain has no guest agent channel."""
    for target in ET.fromstring(xml).iterfind("./devices/channel/target"):  # noqa: S314
        if target.get("name") == AGENT_CHANNEL:
            return target.get("state") or "disconnected"
    return None


def parse_devices(xml: str) -> DeviceSummary:
    root = ET.fromstring(xml)  # noqa: S314
    disks = []
    for disk in root.iterfind("./devices/disk"):
        source = disk.find("source")
        pool = _attr(source, "pool")
        disks.append(DiskDevice(
            target=_attr(disk.find("target"), "dev"),
            device=disk.get("device", "disk"),
            bus=_attr(disk.find("target"), "bus"),
            source=f"{pool}/{_attr(source, 'volume')}" if pool else _attr(source, "file", "dev", "name"),
        ))
    nics = [
        NicDevice(
            kind=nic.get("type", ""),
            source=_attr(nic.find("source"), "network", "bridge", "dev"),
            model=_attr(nic.find("model"), "type"),
            mac=_attr(nic.find("mac"), "address"),
        )
        for nic in root.iterfind("./devices/interface")
    ]
    graphics = [
        GraphicsDevice(
            kind=device.get("type", ""),
            listen=_attr(device.find("listen"), "address", "socket") or device.get("listen", ""),
            port=_port(device.get("port")),
            tls_port=_port(device.get("tlsPort")),
            autoport=device.get("autoport") == "yes",
            has_password=device.get("passwd") is not None,
            keymap=device.get("keymap", ""),
        )
        for device in root.iterfind("./devices/graphics")
    ]
    videos = tuple(model.get("type", "") for model in root.iterfind("./devices/video/model"))
    agent_state = parse_agent_channel(xml)
    return DeviceSummary(
        disks=tuple(disks), nics=tuple(nics), graphics=tuple(graphics), video_models=videos,
        agent_channel=agent_state is not None, agent_connected=agent_state == "connected",
        serial=has_serial(root),
    )


def _snapshot(snapshot: libvirt.virDomainSnapshot) -> SnapshotRecord:
    root = ET.fromstring(snapshot.getXMLDesc(0))  # noqa: S314
    created = root.findtext("creationTime")
    return SnapshotRecord(
        name=snapshot.getName(),
        description=root.findtext("description") or "",
        created=datetime.fromtimestamp(int(created), tz=UTC) if created else None,
        state=root.findtext("state") or "",
        current=bool(snapshot.isCurrent(0)),
    )


def domain_details(uri: str, uuid: str) -> DomainDetails:
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        snapshots = sorted((_snapshot(s) for s in dom.listAllSnapshots(0)),
                           key=lambda s: (s.created or datetime.min.replace(tzinfo=UTC), s.name))
        return DomainDetails(
            record=records_for(uri, conn, [dom])[0],
            # SECURE shows whether a display password is set; only that fact leaves this package.
            devices=parse_devices(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)),
            snapshots=tuple(snapshots),
        )

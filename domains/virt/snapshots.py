"""Snapshots: create (frozen through the guest agent when it is connected), revert, delete."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET  # noqa: S405 - we build this XML ourselves

import libvirt

from .connections import connection
from .details import parse_agent_channel

logger = logging.getLogger(__name__)


def create_snapshot(uri: str, uuid: str, *, name: str, description: str = "") -> bool:
    """Creates the snapshot; returns whether the guest's file systems were frozen around it."""
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    if description:
        ET.SubElement(root, "description").text = description
    xml = ET.tostring(root, encoding="unicode")
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        frozen = bool(dom.isActive()) and agent_connected(dom) and _freeze(dom)
        try:
            dom.snapshotCreateXML(xml, 0)
        finally:
            if frozen:
                dom.fsThaw()
        return frozen


def agent_connected(dom: libvirt.virDomain) -> bool:
    """Whether the guest agent's virtio-serial channel is connected, read from the live XML."""
    return parse_agent_channel(dom.XMLDesc(0)) == "connected"


def _freeze(dom: libvirt.virDomain) -> bool:
    try:
        dom.fsFreeze()
    except libvirt.libvirtError:
        # A snapshot without the freeze is still consistent as a crash would be; say so, don't fail.
        logger.warning("fs-freeze failed before a snapshot of %s", dom.name(), exc_info=True)
        return False
    return True


def revert_snapshot(uri: str, uuid: str, name: str) -> None:
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dom.revertToSnapshot(dom.snapshotLookupByName(name, 0), 0)


def delete_snapshot(uri: str, uuid: str, name: str) -> None:
    with connection(uri) as conn:
        conn.lookupByUUIDString(uuid).snapshotLookupByName(name, 0).delete(0)

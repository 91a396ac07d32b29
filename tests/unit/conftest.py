"""Fixtures of the unit layer: storage on test:///default owned by the two tenants, and live sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import libvirt
import pytest
from channels.testing import WebsocketCommunicator

from accounts.models import User
from domains.models import DefineAllowance, Host, OwnedVolume, StoragePool

GIB = 1024**3


def _volume_xml(name: str, gib: int) -> str:
    return f"<volume><name>{name}</name><capacity unit='GiB'>{gib}</capacity></volume>"


@pytest.fixture
def hypervisor(embedded_host: Host) -> Iterator[libvirt.virConnect]:
    """test:///default with volumes in default-pool and a shared image pool; open for the whole test,
    so the dashboard's own connection sees the same state."""
    conn = libvirt.open("test:///default")
    default_pool = conn.storagePoolLookupByName("default-pool")
    for name in ("tina.qcow2", "otto.qcow2", "admins.qcow2"):
        default_pool.createXML(_volume_xml(name, 4), 0)
    images = conn.storagePoolDefineXML(
        "<pool type='dir'><name>images</name><target><path>/images</path></target></pool>", 0)
    images.create(0)
    images.createXML(_volume_xml("debian.iso", 1), 0)
    yield conn
    conn.close()


@pytest.fixture
def storage(hypervisor: libvirt.virConnect, embedded_host: Host, tenant_user: User,
            other_tenant_user: User) -> None:
    """Each tenant owns one 4 GiB volume and may define, with new volumes in default-pool, up to 10 GiB."""
    pool = StoragePool.objects.create(host=embedded_host, name="default-pool")
    StoragePool.objects.create(host=embedded_host, name="images", shared_images=True)
    for user, volume in ((tenant_user, "tina.qcow2"), (other_tenant_user, "otto.qcow2")):
        OwnedVolume.objects.create(host=embedded_host, pool="default-pool", name=volume,
                                   path=f"/default-pool/{volume}", owner=user, capacity_bytes=4 * GIB)
        DefineAllowance.objects.create(user=user, max_vms=5, max_storage_gib=10).pools.add(pool)


def volumes_in(conn: libvirt.virConnect, pool: str = "default-pool") -> set[str]:
    return set(conn.storagePoolLookupByName(pool).listVolumes())


@pytest.fixture
async def sockets() -> AsyncIterator[list[WebsocketCommunicator]]:
    """The live sockets a test opened (test_live_consumers.connect), disconnected after it."""
    opened: list[WebsocketCommunicator] = []
    yield opened
    for communicator in opened:
        await communicator.disconnect()

"""Storage belongs to someone: which volumes a define may boot or create, and which disks a delete removes.

The hypervisor is test:///default with a second pool of shared install images; volumes are recorded
as each tenant's (OwnedVolume) the way defining a VM through the dashboard records them.
"""

from __future__ import annotations

import libvirt
import pytest
from django.core.exceptions import ValidationError
from django.utils.html import escape

from accounts.models import User
from audit.models import AuditEntry
from domains import services
from domains.models import DefineAllowance, Grant, Host, OwnedVolume, StoragePool
from domains.virt import BootKind, BootSpec, DomainSpec
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.unit.conftest import GIB, volumes_in

FORM = {
    "host": "embedded", "name": "mine", "vcpus": "1", "memory_mib": "256", "accelerator": "test",
    "boot_kind": "new-volume", "pool": "default-pool", "size_gib": "2", "network": "user",
    "video_model": "vga", "graphics": "vnc", "listen": "127.0.0.1",
}


def domain_names(conn: libvirt.virConnect) -> set[str]:
    return {dom.name() for dom in conn.listAllDomains(0)}


def spec(kind: BootKind, *, volume: str = "", pool: str = "", size_gib: int = 0, name: str = "mine") -> DomainSpec:
    return DomainSpec(name=name, vcpus=1, memory_mib=256, accelerator="test",
                      boot=BootSpec(kind=kind, volume=volume, pool=pool, size_gib=size_gib), graphics=None)


# --- Define: what a tenant may boot and where its new volumes go. ---


def test_the_define_form_offers_a_tenant_only_its_own_volumes_and_the_shared_images(storage, tenant_user,
                                                                                    admin_user):
    form = client_for(tenant_user).get("/domains/new/", {"host": "embedded"}).content.decode()
    assert "default-pool/tina.qcow2" in form and "images/debian.iso" in form
    assert "otto.qcow2" not in form and "admins.qcow2" not in form
    assert '<option value="images"' not in form  # a shared image pool takes no new volumes
    assert "New volumes go to default-pool; your volumes take 4 of your 10 GiB." in form
    everything = client_for(admin_user).get("/domains/new/", {"host": "embedded"}).content.decode()
    assert "otto.qcow2" in everything and "admins.qcow2" in everything


@pytest.mark.parametrize("volume", ["default-pool/otto.qcow2", "default-pool/admins.qcow2"])
def test_a_tenant_cannot_define_a_vm_that_boots_a_volume_it_does_not_own(storage, hypervisor, tenant_user, volume):
    response = client_for(tenant_user).post("/domains/new/", {**FORM, "boot_kind": "volume", "volume": volume,
                                                              "define": ""})
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    # The service is the gate, whatever a form offered.
    with pytest.raises(ValidationError, match="You may boot only volumes you created here."):
        services.domain_define(actor=tenant_user, host_name="embedded", spec=spec(BootKind.VOLUME, volume=volume))
    assert "mine" not in domain_names(hypervisor)
    assert not Grant.objects.filter(user=tenant_user).exists()
    assert AuditEntry.objects.get(actor=tenant_user, action="domain.define").result == AuditEntry.Result.FAILED


def test_a_tenant_boots_its_own_volume_and_installs_from_a_shared_image(storage, hypervisor, tenant_user):
    client = client_for(tenant_user)
    booted = client.post("/domains/new/", {**FORM, "boot_kind": "volume", "volume": "default-pool/tina.qcow2",
                                           "define": ""})
    assert booted.status_code == 302
    assert "<source file='/default-pool/tina.qcow2'/>" in hypervisor.lookupByName("mine").XMLDesc(0)
    installed = client.post("/domains/new/", {**FORM, "name": "installer", "boot_kind": "iso",
                                              "volume": "images/debian.iso", "size_gib": "1", "define": ""})
    assert installed.status_code == 302
    xml = hypervisor.lookupByName("installer").XMLDesc(0)
    assert "<source file='/images/debian.iso'/>" in xml and "<readonly/>" in xml
    assert set(Grant.objects.filter(user=tenant_user, owner=True).values_list("domain_name", flat=True)) == {
        "mine", "installer"}


def test_a_shared_image_is_never_a_tenants_writable_boot_disk(storage, tenant_user):
    with pytest.raises(ValidationError, match="You may boot only volumes you created here."):
        services.domain_define(actor=tenant_user, host_name="embedded",
                               spec=spec(BootKind.VOLUME, volume="images/debian.iso"))


def test_an_install_image_must_be_shared_or_the_tenants_own(storage, tenant_user):
    with pytest.raises(ValidationError, match="Install images come from the shared image pools"):
        services.domain_define(actor=tenant_user, host_name="embedded",
                               spec=spec(BootKind.ISO, volume="default-pool/otto.qcow2"))


def test_new_volumes_go_only_to_the_allowances_pools_within_its_size(storage, hypervisor, tenant_user):
    with pytest.raises(ValidationError, match="New volumes go to default-pool."):
        services.domain_define(actor=tenant_user, host_name="embedded",
                               spec=spec(BootKind.NEW_VOLUME, pool="images", size_gib=1))
    too_big = client_for(tenant_user).post("/domains/new/", {**FORM, "size_gib": "7", "define": ""})
    assert "Your volumes take 4 of your 10 GiB; 7 GiB more is too much." in too_big.content.decode()
    assert "mine.qcow2" not in volumes_in(hypervisor) and "mine.qcow2" not in volumes_in(hypervisor, "images")


def test_an_allowance_without_pools_creates_no_volumes(embedded_host, tenant_user):
    DefineAllowance.objects.create(user=tenant_user)
    response = client_for(tenant_user).post("/domains/new/", {**FORM, "define": ""})
    assert response.status_code == 400
    with pytest.raises(ValidationError, match="Your allowance names no pool for new volumes; ask an admin."):
        services.domain_define(actor=tenant_user, host_name="embedded",
                               spec=spec(BootKind.NEW_VOLUME, pool="default-pool", size_gib=1))


def test_a_volume_a_tenant_creates_is_recorded_as_its_own_and_hidden_from_others(storage, tenant_user,
                                                                                 other_tenant_user):
    assert client_for(tenant_user).post("/domains/new/", {**FORM, "define": ""}).status_code == 302
    owned = OwnedVolume.objects.get(name="mine.qcow2")
    assert (owned.owner, owned.pool, owned.path, owned.capacity_bytes) == (
        tenant_user, "default-pool", "/default-pool/mine.qcow2", 2 * GIB)
    assert "default-pool/mine.qcow2" in client_for(tenant_user).get(
        "/domains/new/", {"host": "embedded"}).content.decode()
    assert "mine.qcow2" not in client_for(other_tenant_user).get(
        "/domains/new/", {"host": "embedded"}).content.decode()


# --- Delete: the VM's own disks, by target, resolved from its definition. ---


def _define_with_disks(conn: libvirt.virConnect, name: str, *disks: tuple[str, str, str]) -> str:
    """Defines a test VM with (target, device, path) disks, as an admin's raw XML would; returns its UUID."""
    devices = "".join(
        f"<disk type='file' device='{device}'><source file='{path}'/><target dev='{target}'/>"
        f"{'<readonly/>' if device == 'cdrom' else ''}</disk>"
        for target, device, path in disks)
    xml = (f"<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os>"
           f"<devices>{devices}</devices></domain>")
    return str(conn.defineXML(xml).UUIDString())


def _owned_vm(conn: libvirt.virConnect, host: Host, user: User, *disks: tuple[str, str, str]) -> str:
    uuid = _define_with_disks(conn, "tinas-vm", *disks)
    Grant.objects.create(host=host, domain_uuid=uuid, domain_name="tinas-vm", user=user, can_operate=True,
                         owner=True)
    return uuid


def test_the_owner_deletes_its_vm_with_its_own_disk(storage, hypervisor, embedded_host, tenant_user):
    uuid = _owned_vm(hypervisor, embedded_host, tenant_user, ("vda", "disk", "/default-pool/tina.qcow2"))
    response = client_for(tenant_user).post(f"/domains/embedded/{uuid}/delete/", {"disk": "vda"}, follow=True)
    assert "tinas-vm and 1 volume deleted." in response.content.decode()
    assert "tinas-vm" not in domain_names(hypervisor)
    assert "tina.qcow2" not in volumes_in(hypervisor)
    assert not OwnedVolume.objects.filter(name="tina.qcow2").exists()


@pytest.mark.parametrize(
    ("disks", "target", "reason"),
    [
        pytest.param([("vdb", "disk", "/default-pool/otto.qcow2")], "vdb", "vdb was created by someone else.",
                     id="another tenant's volume"),
        pytest.param([("sda", "cdrom", "/images/debian.iso")], "sda",
                     "sda is a shared or read-only cdrom, not this machine's own disk.", id="a shared image"),
        pytest.param([("vdc", "disk", "/default-pool/admins.qcow2")], "vdc", "vdc is also used by another machine.",
                     id="another VM's volume"),
        pytest.param([], "vdz", "tinas-vm has no disk vdz.", id="a disk the VM does not have"),
    ],
)
def test_delete_refuses_a_disk_that_is_not_the_vms_own_and_deletes_nothing(
        storage, hypervisor, embedded_host, tenant_user, disks, target, reason):
    _define_with_disks(hypervisor, "admins-vm", ("vda", "disk", "/default-pool/admins.qcow2"))
    uuid = _owned_vm(hypervisor, embedded_host, tenant_user, ("vda", "disk", "/default-pool/tina.qcow2"), *disks)
    before = volumes_in(hypervisor)
    response = client_for(tenant_user).post(f"/domains/embedded/{uuid}/delete/", {"disk": ["vda", target]},
                                            follow=True)
    page = response.content.decode()
    assert escape(reason) in page and "Nothing was deleted." in page
    assert "tinas-vm" in domain_names(hypervisor)
    assert volumes_in(hypervisor) == before
    assert AuditEntry.objects.get(actor=tenant_user, action="domain.delete").result == AuditEntry.Result.FAILED


def test_a_volume_another_vm_uses_is_kept_from_admins_too(hypervisor, embedded_host, admin_user):
    _define_with_disks(hypervisor, "first", ("vda", "disk", "/default-pool/admins.qcow2"))
    second = _define_with_disks(hypervisor, "second", ("vda", "disk", "/default-pool/admins.qcow2"))
    with pytest.raises(ValidationError, match="vda is also used by another machine."):
        services.domain_delete(actor=admin_user, host_name="embedded", uuid=second, disk_targets=["vda"])
    assert "admins.qcow2" in volumes_in(hypervisor)


def test_a_path_posted_by_the_client_is_never_deleted(storage, hypervisor, embedded_host, tenant_user):
    """The old form posted volume paths; a tenant could name any volume of the host."""
    uuid = _owned_vm(hypervisor, embedded_host, tenant_user, ("vda", "disk", "/default-pool/tina.qcow2"))
    client_for(tenant_user).post(f"/domains/embedded/{uuid}/delete/", {"volume": "/default-pool/otto.qcow2"})
    assert "tinas-vm" not in domain_names(hypervisor)
    assert {"otto.qcow2", "tina.qcow2"} <= volumes_in(hypervisor)


def test_operating_a_vm_does_not_include_deleting_it(hypervisor, tenant_user, tenant_grant):
    client = client_for(tenant_user)
    assert 'id="delete"' not in client.get(f"/domains/embedded/{TEST_DOMAIN_UUID}/").content.decode()
    assert client.post(f"/domains/embedded/{TEST_DOMAIN_UUID}/delete/").status_code == 403
    assert "test" in domain_names(hypervisor)
    Grant.objects.filter(pk=tenant_grant.pk).update(owner=True)
    assert 'id="delete"' in client.get(f"/domains/embedded/{TEST_DOMAIN_UUID}/").content.decode()


# --- Grants name VMs that exist. ---


def _grant_form(**fields: str) -> dict[str, str]:
    return {"domain_uuid": TEST_DOMAIN_UUID, "can_operate": "on", **fields}


def test_a_grant_for_a_vm_the_host_does_not_have_is_refused_in_words(admin_user, embedded_host, tenant_user):
    response = client_for(admin_user).post("/admin/domains/grant/add/", _grant_form(
        host=str(embedded_host.pk), user=str(tenant_user.pk), domain_uuid="00000000-0000-0000-0000-000000000001"))
    assert response.status_code == 200
    assert "Host embedded has no VM with this UUID." in response.content.decode()
    assert not Grant.objects.exists()


def test_a_grant_to_neither_user_nor_group_is_a_field_error(admin_user, embedded_host):
    response = client_for(admin_user).post("/admin/domains/grant/add/", _grant_form(host=str(embedded_host.pk)))
    assert "Choose a user or a group." in response.content.decode()
    assert not Grant.objects.exists()


def test_grant_lists_name_the_vm_and_each_right_is_explained(admin_user, embedded_host, tenant_user):
    client = client_for(admin_user)
    form = client.get("/admin/domains/grant/add/").content.decode()
    assert "not delete it" in form and "Open its screen" in form and "May delete it and its own disks" in form
    saved = client.post("/admin/domains/grant/add/", _grant_form(host=str(embedded_host.pk), user=str(tenant_user.pk)))
    assert saved.status_code == 302
    assert Grant.objects.get().domain_name == "test"
    listing = client.get("/admin/domains/grant/").content.decode()
    assert ">test</" in listing


def test_an_admin_registers_only_a_pool_the_host_has(admin_user, embedded_host):
    client = client_for(admin_user)
    missing = client.post("/admin/domains/storagepool/add/", {"host": str(embedded_host.pk), "name": "nosuch"})
    assert "Host embedded has no pool nosuch; it has default-pool." in missing.content.decode()
    shared = client.post("/admin/domains/storagepool/add/", {"host": str(embedded_host.pk), "name": "default-pool",
                                                             "shared_images": "on"})
    assert shared.status_code == 302
    assert StoragePool.objects.get().shared_images


def test_a_volume_deleted_outside_the_dashboard_leaves_no_claim_on_its_name(storage, hypervisor, embedded_host,
                                                                            tenant_user, other_tenant_user):
    """Otto's record of mine.qcow2 outlived the volume (deleted with virsh); Tina's new mine.qcow2 is hers."""
    OwnedVolume.objects.create(host=embedded_host, pool="default-pool", name="mine.qcow2",
                               path="/default-pool/mine.qcow2", owner=other_tenant_user, capacity_bytes=GIB)
    assert client_for(tenant_user).post("/domains/new/", {**FORM, "define": ""}).status_code == 302
    assert OwnedVolume.objects.get(name="mine.qcow2").owner == tenant_user
    assert Grant.objects.get(domain_name="mine").user == tenant_user

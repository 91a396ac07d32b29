"""A VM's hardware page on test:///default: vCPUs and memory (live and next boot), CD-ROMs, disks, NICs,
boot order, clone and the admins' XML editor, with tenants held to their allowance and their own storage.

The test driver changes vCPUs and memory live but has no device API (attach, detach, update), so device
changes are tested on shut-off machines, whose definition the dashboard rewrites; live device changes
are tested on the lab (tests/integration/test_hardware_lab.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML

import libvirt
import pytest
from django.core.exceptions import ValidationError
from django.utils.html import escape

from accounts.models import User
from audit.models import AuditEntry
from domains import services
from domains.models import DefineAllowance, Grant, Host, OwnedVolume
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.unit.conftest import GIB, volumes_in

TEST_VM = f"/domains/embedded/{TEST_DOMAIN_UUID}/hardware/"


def shut_off_vm(conn: libvirt.virConnect, host: Host, owner: User | None = None, *, name: str = "web1",
                disk: str = "/default-pool/tina.qcow2") -> str:
    """Defines a shut-off VM with one disk (granted to `owner` like a defined VM); returns its UUID."""
    xml = (f"<domain type='test'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
           "<os><type>hvm</type><boot dev='hd'/></os><devices>"
           f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
           "<target dev='vda' bus='virtio'/></disk>"
           "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>"
           "</devices></domain>")
    uuid = str(conn.defineXML(xml).UUIDString())
    if owner is not None:
        Grant.objects.create(host=host, domain_uuid=uuid, domain_name=name, user=owner, can_operate=True,
                             can_console=True, owner=True)
    return uuid


def definition(conn: libvirt.virConnect, name: str) -> ET.Element:
    return ET.fromstring(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314


def attribute(element: ET.Element, path: str, name: str) -> str:
    """The attribute `name` of the element at `path` below `element` ("" when either is missing)."""
    found = element.find(path)
    return found.get(name, "") if found is not None else ""


def change(user: User, uuid: str, name: str, **fields: str):
    """Posts one change form of the hardware page, following its redirect back to the page."""
    data = {"change": name, **{f"{name}-{key}": value for key, value in fields.items()}}
    return client_for(user).post(f"/domains/embedded/{uuid}/hardware/", data, follow=True)


def page_text(response) -> str:
    return response.content.decode()


# --- vCPUs and memory ---


def test_vcpus_of_a_running_vm_change_now_within_its_maximum_and_from_the_next_boot_beyond(hypervisor, admin_user):
    fewer = change(admin_user, TEST_DOMAIN_UUID, "vcpus", vcpus="1")
    assert "test has 1 vCPUs now." in page_text(fewer)
    assert "1 of at most 2 now" in page_text(fewer)

    more = change(admin_user, TEST_DOMAIN_UUID, "vcpus", vcpus="4")
    assert "test has 4 vCPUs from the next boot." in page_text(more)
    assert "4 of at most 4 from the next boot" in page_text(more)
    assert "1 of at most 2 now" in page_text(more)
    assert AuditEntry.objects.filter(action="domain.vcpus", result=AuditEntry.Result.SUCCEEDED).count() == 2


def test_memory_balloons_now_and_its_maximum_is_for_the_next_boot(hypervisor, admin_user):
    response = change(admin_user, TEST_DOMAIN_UUID, "memory", memory_mib="1024", max_memory_mib="4096")
    assert "test has 1024 MiB of memory now." in page_text(response)
    assert "1024 MiB of at most 4096 MiB from the next boot" in page_text(response)
    assert "1024 of at most 8192 MiB now" in page_text(response)


def test_a_maximum_below_the_amount_is_a_field_error_with_the_values_kept(hypervisor, admin_user):
    response = change(admin_user, TEST_DOMAIN_UUID, "vcpus", vcpus="3", max_vcpus="2")
    assert response.status_code == 400
    assert "The maximum cannot be below the amount itself." in page_text(response)
    assert 'name="vcpus-vcpus" value="3"' in page_text(response)


def test_a_tenant_stays_within_its_allowance(storage, hypervisor, embedded_host, tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    response = change(tenant_user, uuid, "vcpus", vcpus="3")  # the allowance's default: 2 per machine
    assert response.status_code == 400
    assert "At most 2 vCPUs per machine." in page_text(response)
    assert definition(hypervisor, "web1").findtext("vcpu") == "1"
    memory = change(tenant_user, uuid, "memory", memory_mib="512", max_memory_mib="4096")
    assert "At most 2048 MiB of memory per machine." in page_text(memory)
    assert AuditEntry.objects.get(action="domain.memory").result == AuditEntry.Result.FAILED


def test_a_tenant_without_an_allowance_on_the_host_changes_no_hardware(hypervisor, tenant_user, tenant_grant):
    response = change(tenant_user, TEST_DOMAIN_UUID, "vcpus", vcpus="1")
    assert "Your define allowance does not cover this host; ask an admin." in page_text(response)


# --- CD-ROM ---


def test_a_cdrom_drive_is_added_an_image_inserted_and_ejected(storage, hypervisor, embedded_host, tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    inserted = change(tenant_user, uuid, "cdrom", drive="", volume="images/debian.iso")
    assert "images/debian.iso inserted into sda of web1 from the next boot." in page_text(inserted)
    [drive] = [disk for disk in definition(hypervisor, "web1").iterfind("./devices/disk")
               if disk.get("device") == "cdrom"]
    assert attribute(drive, "source", "file") == "/images/debian.iso"
    assert drive.find("readonly") is not None

    ejected = change(tenant_user, uuid, "cdrom", drive="sda", volume="")
    assert "Ejected sda of web1 from the next boot." in page_text(ejected)
    [drive] = [disk for disk in definition(hypervisor, "web1").iterfind("./devices/disk")
               if disk.get("device") == "cdrom"]
    assert drive.find("source") is None


def test_another_tenants_volume_is_no_image_for_a_cdrom(storage, hypervisor, embedded_host, tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    offered = change(tenant_user, uuid, "cdrom", drive="", volume="default-pool/otto.qcow2")
    assert offered.status_code == 400 and "Select a valid choice." in page_text(offered)
    with pytest.raises(ValidationError, match="Images come from the shared image pools or your own volumes."):
        services.domain_change_cdrom(actor=tenant_user, host_name="embedded", uuid=uuid, drive="",
                                     volume="default-pool/otto.qcow2")
    assert len(list(definition(hypervisor, "web1").iterfind("./devices/disk"))) == 1


# --- Disks ---


def test_a_new_volume_is_created_recorded_as_the_tenants_and_attached(storage, hypervisor, embedded_host,
                                                                      tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    response = change(tenant_user, uuid, "disk-attach", pool="default-pool", size_gib="2", bus="virtio")
    assert "New volume default-pool/web1-vdb.qcow2 attached to web1 as vdb from the next boot." in page_text(response)
    targets = {attribute(disk, "target", "dev"): attribute(disk, "source", "file")
               for disk in definition(hypervisor, "web1").iterfind("./devices/disk")}
    assert targets["vdb"] == "/default-pool/web1-vdb.qcow2"
    owned = OwnedVolume.objects.get(name="web1-vdb.qcow2")
    assert (owned.owner, owned.capacity_bytes) == (tenant_user, 2 * GIB)


def test_a_new_volume_beyond_the_quota_is_refused_and_nothing_is_created(storage, hypervisor, embedded_host,
                                                                          tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    response = change(tenant_user, uuid, "disk-attach", pool="default-pool", size_gib="7", bus="virtio")
    assert response.status_code == 400
    assert "Your volumes take 4 of your 10 GiB; 7 GiB more is too much." in page_text(response)
    assert "web1-vdb.qcow2" not in volumes_in(hypervisor)


def test_a_tenant_attaches_its_own_volume_but_not_another_tenants(storage, hypervisor, embedded_host, tenant_user,
                                                                   other_tenant_user):
    hypervisor.storagePoolLookupByName("default-pool").createXML(
        "<volume><name>tina-data.qcow2</name><capacity unit='GiB'>1</capacity></volume>", 0)
    OwnedVolume.objects.create(host=embedded_host, pool="default-pool", name="tina-data.qcow2",
                               path="/default-pool/tina-data.qcow2", owner=tenant_user, capacity_bytes=GIB)
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    page = page_text(client_for(tenant_user).get(f"/domains/embedded/{uuid}/hardware/"))
    assert "default-pool/tina-data.qcow2" in page and "otto.qcow2" not in page

    with pytest.raises(ValidationError, match="You may attach only volumes you created here."):
        services.domain_attach_disk(actor=tenant_user, host_name="embedded", uuid=uuid, bus="virtio",
                                    volume="default-pool/otto.qcow2")
    response = change(tenant_user, uuid, "disk-attach", volume="default-pool/tina-data.qcow2", bus="scsi")
    assert "default-pool/tina-data.qcow2 attached to web1 as sda from the next boot." in page_text(response)


def test_a_disk_is_detached_and_its_volume_kept(storage, hypervisor, embedded_host, tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    response = change(tenant_user, uuid, "disk-detach", target="vda")
    assert "vda detached from web1 from the next boot; its volume is kept." in page_text(response)
    assert list(definition(hypervisor, "web1").iterfind("./devices/disk")) == []
    assert "tina.qcow2" in volumes_in(hypervisor)


def test_a_disk_only_grows_and_libvirts_refusal_is_said(storage, hypervisor, embedded_host, tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    smaller = change(tenant_user, uuid, "disk-grow", target="vda", size_gib="4")
    assert smaller.status_code == 400
    assert "vda has 4 GiB already; a disk only grows." in page_text(smaller)
    # The test driver cannot resize volumes: the user reads why.
    larger = change(tenant_user, uuid, "disk-grow", target="vda", size_gib="5")
    assert "This host&#x27;s hypervisor does not support that action." in page_text(larger)


# --- Network interfaces ---


def test_a_nic_is_plugged_with_a_fresh_mac_and_unplugged(hypervisor, embedded_host, admin_user):
    uuid = shut_off_vm(hypervisor, embedded_host)
    plugged = change(admin_user, uuid, "nic-attach", kind="network", network="default", model="e1000")
    nics = list(definition(hypervisor, "web1").iterfind("./devices/interface"))
    assert len(nics) == 2
    mac = attribute(nics[1], "mac", "address")
    assert mac.startswith("52:54:00:") and mac != "52:54:00:00:00:01"
    assert attribute(nics[1], "model", "type") == "e1000"
    assert f"Network interface {mac} on network default plugged into web1 from the next boot." in page_text(plugged)

    unplugged = change(admin_user, uuid, "nic-detach", mac=mac)
    assert f"Network interface {mac} unplugged from web1 from the next boot." in page_text(unplugged)
    assert len(list(definition(hypervisor, "web1").iterfind("./devices/interface"))) == 1


def test_a_mac_already_used_on_the_host_is_a_field_error(hypervisor, embedded_host, admin_user):
    uuid = shut_off_vm(hypervisor, embedded_host)
    response = change(admin_user, uuid, "nic-attach", kind="network", network="default", model="virtio",
                      mac="AA:BB:CC:DD:EE:FF")  # the running "test" VM's
    assert response.status_code == 400
    assert "AA:BB:CC:DD:EE:FF is already used by a machine on this host." in page_text(response)
    assert len(list(definition(hypervisor, "web1").iterfind("./devices/interface"))) == 1


def test_host_bridges_are_not_offered_to_tenants(storage, hypervisor, embedded_host, tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    assert "nic-attach-bridge" not in page_text(client_for(tenant_user).get(f"/domains/embedded/{uuid}/hardware/"))
    with pytest.raises(ValidationError, match="Host bridges are for admins and operators"):
        services.domain_attach_nic(actor=tenant_user, host_name="embedded", uuid=uuid, kind="bridge",
                                   source="br0", model="virtio")


# --- Boot order and firmware ---


def test_the_boot_order_is_set_for_the_next_boot(hypervisor, embedded_host, admin_user):
    uuid = shut_off_vm(hypervisor, embedded_host)
    response = change(admin_user, uuid, "boot-order", first="cdrom", second="hd", third="")
    assert "web1 boots from cdrom, hd from the next boot." in page_text(response)
    assert [boot.get("dev") for boot in definition(hypervisor, "web1").iterfind("./os/boot")] == ["cdrom", "hd"]
    assert "BIOS" in page_text(response)
    twice = change(admin_user, uuid, "boot-order", first="hd", second="hd", third="")
    assert "Each device once." in page_text(twice)


def test_the_firmware_switches_between_uefi_and_bios_for_the_next_boot_dropping_the_other_s_loader(
        hypervisor, embedded_host, tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    response = change(tenant_user, uuid, "firmware", firmware="uefi")
    assert "web1 boots with UEFI from the next boot." in page_text(response)
    assert attribute(definition(hypervisor, "web1"), "os", "firmware") == "efi"
    assert '<tr class="firmware"><th>firmware</th><td colspan="2">UEFI</td></tr>' in page_text(response)
    # A BIOS machine defined with an explicit UEFI loader elsewhere: back to BIOS, the loader goes too.
    xml = ET.tostring(definition(hypervisor, "web1"), encoding="unicode").replace(
        "<os firmware=\"efi\">", "<os><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>")
    hypervisor.defineXML(xml)
    response = change(tenant_user, uuid, "firmware", firmware="bios")
    assert "web1 boots with BIOS from the next boot." in page_text(response)
    os = definition(hypervisor, "web1").find("os")
    assert os is not None and os.get("firmware") is None and os.find("loader") is None
    assert AuditEntry.objects.filter(action="domain.firmware", actor=tenant_user).count() == 2
    refused = change(tenant_user, uuid, "firmware", firmware="coreboot")
    assert "Select a valid choice" in page_text(refused)


# --- Clone ---


def test_a_shut_off_vm_is_cloned_with_its_disk_and_granted_to_the_tenant(storage, hypervisor, embedded_host,
                                                                          tenant_user):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    response = client_for(tenant_user).post(f"/domains/embedded/{uuid}/clone/", {"name": "web2"}, follow=True)
    assert "web1 cloned as web2." in page_text(response)
    clone = definition(hypervisor, "web2")
    assert clone.findtext("uuid") != uuid
    assert attribute(clone, "./devices/disk/source", "file") == "/default-pool/web2-vda.qcow2"
    assert attribute(clone, "./devices/interface/mac", "address") not in ("", "52:54:00:00:00:01")
    assert OwnedVolume.objects.get(name="web2-vda.qcow2").owner == tenant_user
    assert Grant.objects.get(domain_uuid=clone.findtext("uuid", "")).owner


def test_a_clone_s_display_gets_a_port_of_its_own(hypervisor, embedded_host, admin_user):
    uuid = shut_off_vm(hypervisor, embedded_host, disk="/default-pool/admins.qcow2")
    xml = hypervisor.lookupByName("web1").XMLDesc(0).replace(
        "</devices>", "<graphics type='vnc' port='5950' autoport='no'/></devices>")
    hypervisor.defineXML(xml)
    client_for(admin_user).post(f"/domains/embedded/{uuid}/clone/", {"name": "web2"})
    assert attribute(definition(hypervisor, "web2"), "./devices/graphics", "autoport") == "yes"
    assert attribute(definition(hypervisor, "web1"), "./devices/graphics", "port") == "5950"


def test_a_clone_name_in_use_is_a_field_error_and_a_running_vm_is_not_cloned(hypervisor, embedded_host,
                                                                              admin_user):
    uuid = shut_off_vm(hypervisor, embedded_host, disk="/default-pool/admins.qcow2")
    taken = client_for(admin_user).post(f"/domains/embedded/{uuid}/clone/", {"name": "test"})
    assert taken.status_code == 400
    assert "A machine named test already exists on this host." in page_text(taken)
    running = client_for(admin_user).post(f"/domains/embedded/{TEST_DOMAIN_UUID}/clone/", {"name": "copy"})
    assert "Only a shut-off, persistent machine can be cloned." in page_text(running)
    assert volumes_in(hypervisor) == {"admins.qcow2", "otto.qcow2", "tina.qcow2"}


def test_a_tenant_clones_only_within_its_quota(storage, hypervisor, embedded_host, tenant_user):
    DefineAllowance.objects.filter(user=tenant_user).update(max_storage_gib=6)
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    response = client_for(tenant_user).post(f"/domains/embedded/{uuid}/clone/", {"name": "web2"})
    assert "Your volumes take 4 of your 6 GiB; 4 GiB more is too much." in page_text(response)
    assert "web2" not in hypervisor.listDefinedDomains()


# --- The XML editor (admins) ---


def test_the_xml_editor_shows_a_diff_then_saves_what_libvirt_validates(hypervisor, embedded_host, admin_user):
    uuid = shut_off_vm(hypervisor, embedded_host)
    url = f"/domains/embedded/{uuid}/hardware/xml/"
    current = hypervisor.lookupByName("web1").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    edited = current.replace("</name>", "</name>\n  <title>Web front</title>")
    preview = client_for(admin_user).post(url, {"xml": edited, "preview": ""})
    assert escape("+  <title>Web front</title>") in page_text(preview)
    assert definition(hypervisor, "web1").findtext("title") is None

    invalid = client_for(admin_user).post(url, {"xml": edited.replace("<vcpu", "<vcpux").replace(
        "</vcpu>", "</vcpux>"), "save": ""})
    assert invalid.status_code == 400 and "vcpux" in page_text(invalid)

    saved = client_for(admin_user).post(url, {"xml": edited, "save": ""}, follow=True)
    assert "Definition of web1 saved; it applies from the next boot." in page_text(saved)
    assert definition(hypervisor, "web1").findtext("title") == "Web front"


def test_the_xml_editor_keeps_to_this_vm(hypervisor, embedded_host, admin_user):
    uuid = shut_off_vm(hypervisor, embedded_host)
    other = hypervisor.lookupByName("test").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    response = client_for(admin_user).post(f"/domains/embedded/{uuid}/hardware/xml/", {"xml": other, "save": ""})
    assert "The XML must be a &lt;domain&gt; with this machine&#x27;s UUID." in page_text(response)

"""A VM's hardware through the API: the hardware page's document, its changes refused in the page's words, the
admins' XML and clone answering the clone's URL (test:///default; device changes on shut-off VMs, as
tests/unit/test_hardware.py explains)."""

from __future__ import annotations

import libvirt

from accounts.models import User
from audit.models import AuditEntry
from domains.models import Grant, Host
from tests.support.api import (
    api_test_defaults,  # noqa: F401 - a fixture
    bearer,
)
from tests.unit.conftest import volumes_in
from tests.unit.test_hardware import definition, shut_off_vm


def _hardware(uuid: str) -> str:
    return f"/api/v1/domains/embedded/{uuid}/hardware/"


def test_the_hardware_document_shows_a_tenant_its_disks_without_host_paths(storage, hypervisor, embedded_host,
                                                                            tenant_user: User, admin_user: User):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    shown = bearer(tenant_user).get(_hardware(uuid)).json()
    assert (shown["vcpus"], shown["memory_mib"], shown["boot_order"]) == (1, 256, ["hd"])
    assert shown["disks"][0] | {"capacity_bytes": 0} == {
        "target": "vda", "device": "disk", "bus": "virtio", "volume": "default-pool/tina.qcow2",
        "capacity_bytes": 0, "path": "", "readonly": False}
    assert shown["nics"][0]["mac"] == "52:54:00:00:00:01"
    assert "default-pool" in shown["choices"]["pools"] and not shown["choices"]["may_use_bridges"]
    assert bearer(admin_user).get(_hardware(uuid)).json()["disks"][0]["path"] == "/default-pool/tina.qcow2"


def test_a_tenant_over_its_quota_is_refused_a_new_disk_in_the_pages_words(storage, hypervisor, embedded_host,
                                                                            tenant_user: User):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    refused = bearer(tenant_user).post(_hardware(uuid) + "disk-attach/",
                                       {"pool": "default-pool", "size_gib": 7, "bus": "virtio"},
                                       content_type="application/json")
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"size_gib": ["Your volumes take 4 of your 10 GiB; 7 GiB more is too much."]}
    assert "web1-vdb.qcow2" not in volumes_in(hypervisor)
    entry = AuditEntry.objects.get(action="domain.disk-attach")
    assert (entry.result, entry.token_name) == ("failed", "tests")


def test_a_disk_only_grows_and_an_unknown_field_value_is_the_forms_error(storage, hypervisor, embedded_host,
                                                                          tenant_user: User):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    api = bearer(tenant_user)
    shrink = api.post(_hardware(uuid) + "disk-grow/", {"target": "vda", "size_gib": 4},
                      content_type="application/json")
    assert shrink.status_code == 400
    assert shrink.json()["errors"] == {"size_gib": ["vda has 4 GiB already; a disk only grows."]}
    unknown = api.post(_hardware(uuid) + "disk-detach/", {"target": "vdz"}, content_type="application/json")
    assert unknown.json()["errors"]["target"] == ["Select a valid choice. vdz is not one of the available choices."]
    assert api.post(_hardware(uuid) + "wings/", {}, content_type="application/json").json()["detail"] == (
        "Unknown hardware change.")


def test_a_nic_is_plugged_and_unplugged(hypervisor, embedded_host: Host, admin_user: User):
    uuid = shut_off_vm(hypervisor, embedded_host)
    api = bearer(admin_user)
    plugged = api.post(_hardware(uuid) + "nic-attach/", {"kind": "network", "network": "default", "model": "virtio",
                                                        "mac": "52:54:00:aa:bb:cc"}, content_type="application/json")
    assert plugged.json()["detail"] == (
        "Network interface 52:54:00:aa:bb:cc on network default plugged into web1 from the next boot.")
    unplugged = api.post(_hardware(uuid) + "nic-detach/", {"mac": "52:54:00:aa:bb:cc"},
                         content_type="application/json")
    assert unplugged.status_code == 200
    assert [nic["mac"] for nic in api.get(_hardware(uuid)).json()["nics"]] == ["52:54:00:00:00:01"]


def test_a_tenant_clones_its_vm_answered_the_clones_url_then_not_beyond_its_quota(storage, hypervisor, embedded_host,
                                                                         tenant_user: User):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    api = bearer(tenant_user)
    made = api.post(f"/api/v1/domains/embedded/{uuid}/clone/", {"name": "web2"}, content_type="application/json")
    assert made.status_code == 201, made.content
    clone_uuid = definition(hypervisor, "web2").findtext("uuid", "")
    assert made["Location"] == f"/api/v1/domains/embedded/{clone_uuid}/"
    assert api.get(made["Location"]).json()["name"] == "web2"
    assert Grant.objects.get(domain_uuid=clone_uuid).owner
    beyond = api.post(f"/api/v1/domains/embedded/{uuid}/clone/", {"name": "web3"}, content_type="application/json")
    assert (beyond.status_code, beyond.json()["detail"]) == (
        400, "Your volumes take 8 of your 10 GiB; 4 GiB more is too much.")


def test_admins_read_and_save_the_definition_as_libvirt_validates_it(hypervisor, embedded_host: Host,
                                                                     admin_user: User, tenant_user: User):
    uuid = shut_off_vm(hypervisor, embedded_host, tenant_user)
    url = f"/api/v1/domains/embedded/{uuid}/definition/"
    api = bearer(admin_user)
    current = api.get(url).json()["xml"]
    assert "<name>web1</name>" in current
    invalid = api.put(url, {"xml": current.replace("<vcpu", "<vcpux").replace("</vcpu>", "</vcpux>")},
                      content_type="application/json")
    assert invalid.status_code == 400 and "vcpux" in invalid.json()["errors"]["xml"][0]
    edited = current.replace("</name>", "</name><title>Web front</title>")
    saved = api.put(url, {"xml": edited}, content_type="application/json")
    assert saved.json()["detail"] == "Definition of web1 saved; it applies from the next boot."
    assert definition(hypervisor, "web1").findtext("title") == "Web front"
    assert bearer(tenant_user).get(url).status_code == 404  # its owner, not an admin, is not told it exists
    assert hypervisor.lookupByName("web1").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).count("<title>") == 1

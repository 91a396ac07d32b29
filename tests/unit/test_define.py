"""Defining VMs from the form and from raw XML, tenants' allowances, and display edits."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML

import libvirt
import pytest

from accounts.models import User
from audit.models import AuditEntry
from domains.models import DefineAllowance, Grant, Host, StoragePool
from tests.conftest import TEST_DOMAIN_UUID, client_for

FORM = {
    "host": "embedded", "name": "web1", "title": "Web server", "vcpus": "1", "memory_mib": "256",
    "accelerator": "test", "boot_kind": "new-volume", "pool": "default-pool", "size_gib": "2",
    "network": "user", "video_model": "cirrus", "graphics": "vnc", "listen": "127.0.0.1",
    "keymap": "de", "guest_agent": "on",
}


def domain_xml(name: str) -> str:
    conn = libvirt.open("test:///default")
    try:
        return conn.lookupByName(name).XMLDesc(0)
    finally:
        conn.close()


def names(user: User) -> set[str]:
    return {d["name"] for d in client_for(user).get("/domains/", {"all": "", "format": "json"}).json()["domains"]}


@pytest.mark.parametrize("video", ["cirrus", "vga", "vmvga", "qxl", "virtio", "bochs"])
@pytest.mark.parametrize("graphics", ["vnc", "spice"])
def test_the_form_defines_a_vm_with_the_chosen_video_and_graphics(admin_user, embedded_host, video, graphics):
    response = client_for(admin_user).post("/domains/new/", {**FORM, "video_model": video, "graphics": graphics,
                                                              "port": "5950", "define": ""})
    assert response.status_code == 302
    xml = domain_xml("web1")
    assert f"<model type='{video}'" in xml
    assert f"<graphics type='{graphics}' port='5950' autoport='no'" in xml
    assert "address='127.0.0.1'" in xml and "org.qemu.guest_agent.0" in xml
    assert "/default-pool/web1.qcow2" in xml and "<title>Web server</title>" in xml
    assert AuditEntry.objects.get(action="domain.define").result == AuditEntry.Result.SUCCEEDED


def test_preview_shows_the_xml_and_defines_nothing(admin_user, embedded_host):
    page = client_for(admin_user).post("/domains/new/", {**FORM, "preview": ""}).content.decode()
    assert "&lt;name&gt;web1&lt;/name&gt;" in page and "keymap=&quot;de&quot;" in page
    assert "web1" not in names(admin_user)


def test_bad_input_is_refused_with_its_values_kept(admin_user, embedded_host):
    response = client_for(admin_user).post("/domains/new/", {**FORM, "memory_mib": "12", "define": ""})
    page = response.content.decode()
    assert response.status_code == 400
    assert "Ensure this value is greater than or equal to 64." in page
    assert 'value="Web server"' in page and 'value="web1"' in page


def test_a_name_already_taken_is_said_plainly(admin_user, embedded_host):
    response = client_for(admin_user).post("/domains/new/", {**FORM, "name": "test", "define": ""})
    assert "A machine named test already exists on this host." in response.content.decode()


def test_kernel_boot_for_lab_images(admin_user, embedded_host):
    client_for(admin_user).post("/domains/new/", {
        **FORM, "boot_kind": "kernel", "kernel": "/srv/vmlinuz", "initrd": "/srv/initrd.img",
        "cmdline": "console=tty0", "define": ""})
    xml = domain_xml("web1")
    assert "<kernel>/srv/vmlinuz</kernel>" in xml and "<cmdline>console=tty0</cmdline>" in xml


def test_autostart_is_applied(admin_user, embedded_host):
    client_for(admin_user).post("/domains/new/", {**FORM, "autostart": "on", "define": ""})
    autostart = client_for(admin_user).get("/domains/", {"all": "", "autostart": "", "format": "json"}).json()
    assert [d["name"] for d in autostart["domains"]] == ["web1"]


def test_a_tenant_without_an_allowance_may_not_define(tenant_user, embedded_host):
    assert client_for(tenant_user).get("/domains/new/").status_code == 404
    assert client_for(tenant_user).post("/domains/new/", {**FORM, "define": ""}).status_code == 404
    assert "web1" not in names(User.objects.create_user("root-admin", role=User.Role.ADMIN))


def allowance(user: User, host: Host, **limits: int) -> DefineAllowance:
    """An allowance whose new volumes go to test:///default's default-pool."""
    granted = DefineAllowance.objects.create(user=user, **limits)
    granted.pools.add(StoragePool.objects.get_or_create(host=host, name="default-pool")[0])
    return granted


def test_a_tenant_with_an_allowance_defines_within_limits_and_owns_the_vm(tenant_user, embedded_host):
    allowance(tenant_user, embedded_host, max_vms=1, max_vcpus=2, max_memory_mib=512)
    client = client_for(tenant_user)
    form = client.get("/domains/new/", {"host": "embedded"}).content.decode()
    assert 'name="kernel"' not in form and "You have 0 of your 1 machines" in form
    too_big = client.post("/domains/new/", {**FORM, "vcpus": "4", "define": ""}).content.decode()
    assert "At most 2 vCPUs per machine." in too_big
    preview = client.post("/domains/new/", {**FORM, "vcpus": "4", "preview": ""})  # refused the same way
    assert preview.status_code == 400 and "At most 2 vCPUs per machine." in preview.content.decode()
    assert "&lt;vcpu" not in preview.content.decode()
    assert client.post("/domains/new/", {**FORM, "define": ""}).status_code == 302
    grant = Grant.objects.get(user=tenant_user)
    assert grant.owner and grant.can_operate and grant.can_console
    assert names(tenant_user) == {"web1"}
    second = client.post("/domains/new/", {**FORM, "name": "web2", "define": ""}).content.decode()
    assert "You already have 1 of your 1 machines." in second


def test_a_tenant_cannot_move_the_console_off_where_the_host_puts_it(tenant_user, embedded_host):
    allowance(tenant_user, embedded_host)
    client_for(tenant_user).post("/domains/new/", {**FORM, "listen": "0.0.0.0", "define": ""})  # noqa: S104
    [graphics] = ET.fromstring(domain_xml("web1")).iterfind("./devices/graphics")  # noqa: S314
    assert [listen.get("address") for listen in graphics.iterfind("listen")] in ([], [None])  # the host's setting
    assert graphics.get("listen") is None


def test_raw_xml_is_for_admins_only(admin_user, operator_user, embedded_host):
    xml = "<domain type='test'><name>raw1</name><memory>131072</memory><os><type>hvm</type></os></domain>"
    assert client_for(operator_user).post("/domains/new/xml/", {"host": "embedded", "xml": xml}).status_code == 404
    assert client_for(admin_user).post("/domains/new/xml/", {"host": "embedded", "xml": xml}).status_code == 302
    assert "raw1" in names(admin_user)
    bad = client_for(admin_user).post("/domains/new/xml/", {"host": "embedded", "xml": "<domain>"})
    assert bad.status_code == 400 and "test:///" not in bad.content.decode()


def test_display_of_a_shut_off_vm_can_be_changed(admin_user, embedded_host):
    client = client_for(admin_user)
    url = f"/domains/embedded/{TEST_DOMAIN_UUID}/"
    client.post(url + "action/", {"action": "force-off"})
    response = client.post(url + "display/", {"video_model": "qxl", "graphics": "spice", "listen": "127.0.0.1",
                                              "password": "s3cret"})
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert "SPICE listening on 127.0.0.1" in page and "qxl" in page and "password set" in page
    assert "s3cret" not in page


def test_display_of_a_running_vm_is_refused_in_words(admin_user, embedded_host):
    url = f"/domains/embedded/{TEST_DOMAIN_UUID}/display/"
    response = client_for(admin_user).post(url, {"video_model": "vga", "graphics": "vnc", "listen": "127.0.0.1"})
    assert "only while the machine is shut off" in response.content.decode()


def test_new_vm_is_offered_only_to_those_who_may_define(admin_user, tenant_user, embedded_host):
    assert "New VM" in client_for(admin_user).get("/domains/").content.decode()
    assert "New VM" not in client_for(tenant_user).get("/domains/").content.decode()
    DefineAllowance.objects.create(user=tenant_user)
    assert "New VM" in client_for(tenant_user).get("/domains/").content.decode()

"""The lifecycle on real lab guests, through the dashboard's own services and pages."""

from __future__ import annotations

import base64
import html
import json
import subprocess
import sys
from typing import Any

import pytest

import lab
from accounts.models import User
from domains import selectors, services, virt
from domains.filters import ListQuery
from domains.models import Host
from tests.conftest import client_for
from tests.integration.helpers import agent, agent_answers, virsh, wait_until

pytestmark = pytest.mark.integration

LAB_POOL = "lab"


@pytest.fixture
def lab1(lab_hosts: list[lab.LabHost], db: None) -> tuple[lab.LabHost, Host]:
    remove_leftovers(lab_hosts[0])
    for lab_host in lab_hosts:
        Host.objects.create(name=lab_host.name, uri=lab_host.uri)
    return lab_hosts[0], Host.objects.get(name=lab_hosts[0].name)


def remove_leftovers(lab_host: lab.LabHost) -> None:
    """VMs and volumes an interrupted earlier run of these tests left behind (all named it-*)."""
    for name in virsh(lab_host, "list", "--all", "--name").split():
        if name.startswith("it-"):
            virsh(lab_host, "destroy", name) if name in virsh(lab_host, "list", "--name").split() else None
            virsh(lab_host, "undefine", name, "--snapshots-metadata", "--managed-save")
    for line in virsh(lab_host, "vol-list", LAB_POOL).splitlines():
        volume = line.split()[0] if line.split() else ""
        if volume.startswith("it-"):
            virsh(lab_host, "vol-delete", volume, "--pool", LAB_POOL)


def define_form(name: str, **changes: str) -> dict[str, str]:
    images = lab.ensure_guest_images()
    return {
        "host": "lab1", "name": name, "vcpus": "1", "memory_mib": "128", "accelerator": "qemu",
        "boot_kind": "kernel", "kernel": str(images.kernel), "initrd": str(images.initrd),
        "cmdline": "console=tty0 quiet", "network": "user", "video_model": "vga", "graphics": "vnc",
        "listen": "127.0.0.1", "guest_agent": "on", "define": "", **changes,
    }


def record(admin: User, name: str, host: str = "lab1") -> virt.DomainRecord:
    rows = selectors.domain_list(user=admin, query=ListQuery(options=frozenset({"all"}), host=host)).rows
    return next(row.record for row in rows if row.record.name == name)


# Run in lab1's own network: its loopback is not this machine's.
_FIRST_BYTES = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as connection:
    connection.settimeout(5)
    try:
        sys.stdout.buffer.write(connection.recv(12))
    except TimeoutError:
        pass  # SPICE waits for the client to speak first
"""


def first_bytes(port: int) -> bytes:
    completed = subprocess.run(lab.in_host_network("lab1", [sys.executable, "-c", _FIRST_BYTES, str(port)]),
                               capture_output=True, timeout=30, check=True)
    return completed.stdout


@pytest.mark.parametrize("graphics", ["vnc", "spice"])
@pytest.mark.parametrize("video", ["cirrus", "vga", "vmvga", "qxl", "virtio", "bochs"])
def test_a_vm_defined_from_the_form_starts_and_listens_where_asked(lab1, admin_user, video, graphics):
    lab_host, host = lab1
    name = f"it-{video}-{graphics}"
    response = client_for(admin_user).post("/domains/new/", define_form(name, video_model=video, graphics=graphics))
    assert response.status_code == 302, response.content.decode()[:2000]
    uuid = record(admin_user, name).uuid
    try:
        services.domain_act(actor=admin_user, host_name="lab1", uuid=uuid, action=virt.Action.START)
        page = selectors.domain_page(user=admin_user, host_name="lab1", uuid=uuid)
        assert page.devices.video_models == (video,)
        [display] = page.devices.graphics
        assert (display.kind, display.listen) == (graphics, "127.0.0.1")
        assert display.port is not None
        greeting = first_bytes(display.port)  # something listens there, on the host's loopback
        if graphics == "vnc":
            assert greeting.startswith(b"RFB 003.008")
    finally:
        services.domain_delete(actor=admin_user, host_name="lab1", uuid=uuid)
    assert name not in virsh(lab_host, "list", "--all", "--name")


BOOT_MARK = "/tmp/it-booted-before"  # in the guest's RAM: a reboot forgets it


def mark_this_boot(lab_host: lab.LabHost, name: str) -> None:
    handle = agent_command(lab_host, name, "guest-file-open", {"path": BOOT_MARK, "mode": "w"})
    agent_command(lab_host, name, "guest-file-write", {"handle": handle, "buf-b64": base64.b64encode(b"1").decode()})
    agent_command(lab_host, name, "guest-file-close", {"handle": handle})


def booted_since_marked(lab_host: lab.LabHost, name: str) -> bool:
    if not agent_answers(lab_host, name):
        return False
    reply = subprocess.run(
        ["virsh", "--connect", lab_host.uri, "qemu-agent-command", name,
         json.dumps({"execute": "guest-file-open", "arguments": {"path": BOOT_MARK}}), "--timeout", "5"],
        capture_output=True, text=True, timeout=30)
    return reply.returncode != 0 and "No such file" in reply.stderr


def agent_command(lab_host: lab.LabHost, name: str, command: str, arguments: dict[str, object]) -> Any:
    reply = virsh(lab_host, "qemu-agent-command", name, json.dumps({"execute": command, "arguments": arguments}),
                  "--timeout", "10")
    return json.loads(reply)["return"]


def test_a_guest_through_its_agent_panel_snapshot_reboot_and_shutdown(lab1, admin_user):
    lab_host, host = lab1
    client = client_for(admin_user)
    form = define_form("it-agent")
    assert client.post("/domains/new/", form).status_code == 302
    uuid = record(admin_user, "it-agent").uuid
    url = f"/domains/lab1/{uuid}/"
    try:
        client.post(url + "action/", {"action": "start"})
        wait_until(lambda: agent_answers(lab_host, "it-agent"), timeout=120, what="the agent answers")

        panel = client.get(url + "agent/").content.decode()
        assert agent(lab_host, "it-agent", "guest-get-host-name")["host-name"] in panel
        wait_until(lambda: "10.0.2." in client.get(url + "agent/").content.decode(), timeout=60,
                   what="the agent reports the DHCP address")
        assert "10.0.2." in client.get("/domains/", {"host": "lab1"}).content.decode(), "address column"

        mark_this_boot(lab_host, "it-agent")
        assert not booted_since_marked(lab_host, "it-agent")
        message = services.domain_act(actor=admin_user, host_name="lab1", uuid=uuid, action=virt.Action.REBOOT,
                                      mode=virt.PowerMode.AGENT)
        assert "reboot" in message
        wait_until(lambda: booted_since_marked(lab_host, "it-agent"), timeout=180,
                   what="the guest rebooted and its agent is back")

        services.domain_act(actor=admin_user, host_name="lab1", uuid=uuid, action=virt.Action.SHUTDOWN,
                            mode=virt.PowerMode.AGENT)
        wait_until(lambda: record(admin_user, "it-agent").state_label == "shut off", timeout=120,
                   what="the agent shut the guest down")
        assert record(admin_user, "it-agent").reason == "shutdown"
    finally:
        services.domain_delete(actor=admin_user, host_name="lab1", uuid=uuid)


def test_a_snapshot_of_a_running_guest_freezes_its_file_systems(lab1, admin_user):
    lab_host, host = lab1
    client = client_for(admin_user)
    form = define_form("it-snap", pool=LAB_POOL, size_gib="1")
    assert client.post("/domains/new/", form).status_code == 302
    uuid = record(admin_user, "it-snap").uuid
    url = f"/domains/lab1/{uuid}/"
    try:
        client.post(url + "action/", {"action": "start"})
        wait_until(lambda: agent_answers(lab_host, "it-snap"), timeout=120, what="the agent answers")
        page = client.post(url + "snapshots/", {"name": "it-1", "description": "from the test"}, follow=True)
        assert "Snapshot it-1 of it-snap created with the guest's file systems frozen." in html.unescape(
            page.content.decode())
        assert agent(lab_host, "it-snap", "guest-fsfreeze-status") == "thawed"
        assert "it-1" in virsh(lab_host, "snapshot-list", "it-snap", "--name")
        page = client.post(url + "snapshots/it-1/", {"action": "revert"}, follow=True)
        assert "it-snap reverted to snapshot it-1." in page.content.decode()
        # Deleting the VM but keeping the snapshot's metadata: libvirt refuses, and the guest runs on.
        page = client.post(url + "delete/", {}, follow=True)
        assert 'class="message error"' in page.content.decode() and "snapshot" in page.content.decode()
        assert virsh(lab_host, "domstate", "it-snap").strip() == "running"
        assert agent_answers(lab_host, "it-snap")
        client.post(url + "snapshots/it-1/", {"action": "delete"})
        assert "it-1" not in virsh(lab_host, "snapshot-list", "it-snap", "--name")
    finally:
        services.domain_delete(actor=admin_user, host_name="lab1", uuid=uuid, disk_targets=["vda"])
    assert "it-snap.qcow2" not in virsh(lab_host, "vol-list", LAB_POOL)


def test_over_tls_a_guest_starts_answers_through_its_agent_pauses_and_shuts_down(lab1, admin_user):
    """lab1 is reached over SSH in the tests above; lab2 over TLS, the other transport users register."""
    lab2 = next(lab_host for lab_host in lab.up(demo_inventory=False) if lab_host.name == "lab2")
    assert lab2.uri.startswith("qemu+tls://")
    remove_leftovers(lab2)
    client = client_for(admin_user)
    assert client.post("/domains/new/", define_form("it-tls", host="lab2")).status_code == 302
    uuid = record(admin_user, "it-tls", host="lab2").uuid
    url = f"/domains/lab2/{uuid}/"
    try:
        client.post(url + "action/", {"action": "start"})
        wait_until(lambda: agent_answers(lab2, "it-tls"), timeout=120, what="the agent answers over TLS")
        assert agent(lab2, "it-tls", "guest-get-host-name")["host-name"] in client.get(url + "agent/").content.decode()
        for action, state in ((virt.Action.PAUSE, "paused"), (virt.Action.RESUME, "running")):
            services.domain_act(actor=admin_user, host_name="lab2", uuid=uuid, action=action)
            assert record(admin_user, "it-tls", host="lab2").state_label == state
        services.domain_act(actor=admin_user, host_name="lab2", uuid=uuid, action=virt.Action.SHUTDOWN,
                            mode=virt.PowerMode.AGENT)
        wait_until(lambda: record(admin_user, "it-tls", host="lab2").state_label == "shut off", timeout=120,
                   what="the agent shut the guest down")
    finally:
        services.domain_delete(actor=admin_user, host_name="lab2", uuid=uuid)
    assert "it-tls" not in virsh(lab2, "list", "--all", "--name").split()

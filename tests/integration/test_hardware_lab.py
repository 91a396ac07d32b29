"""A VM's hardware changed from its page on a remote lab host (lab1, over SSH), seen by the running guest
through its agent: a CD inserted and ejected, a disk attached as /dev/vdb, grown and detached, a vCPU and balloon
memory changed live, a NIC plugged in and out; then the machine shut off, cloned, and the clone booted.

One guest boots for the whole module; the tests run in file order and the clone comes last.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import xml.etree.ElementTree as ET  # noqa: S405 - our own XML
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import lab
from accounts.models import User
from domains.models import Host
from lab.inventory import DemoState, DemoVM, domain_xml
from tests.conftest import KEEP_LAB, LAB_HOSTS, client_for
from tests.integration.helpers import agent_answers, virsh, wait_until

pytestmark = pytest.mark.integration

GUEST = "it-hw"
CLONE = "it-hw-clone"
POOL = "lab"
ISO = f"{GUEST}.iso"
CD_MARK = b"VMPORTAL-HARDWARE-CD"
NETWORK = "it-hw"
BOOT_TIMEOUT = 180
CHANGE_TIMEOUT = 30  # seconds for the guest to see a change


@dataclass(frozen=True)
class Guest:
    host: lab.LabHost
    uuid: str


def remove_leftovers(host: lab.LabHost) -> None:
    """The module's machines, volumes and network, from this run or an interrupted earlier one."""
    running = virsh(host, "list", "--name").split()
    for name in (CLONE, GUEST):
        if name in running:
            virsh(host, "destroy", name)
        if name in virsh(host, "list", "--all", "--name").split():
            virsh(host, "undefine", name)
    for line in virsh(host, "vol-list", POOL).splitlines():
        volume = line.split()[0] if line.split() else ""
        if volume.startswith(f"{GUEST}"):
            virsh(host, "vol-delete", volume, "--pool", POOL)
    if NETWORK in virsh(host, "net-list", "--all", "--name").split():
        virsh(host, "net-destroy", NETWORK)


def with_xml(host: lab.LabHost, command: str, xml: str, *args: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as file:
        file.write(xml)
        file.flush()
        return virsh(host, command, file.name, *args)


def guest_xml(disk_path: str) -> str:
    """The lab's demo guest with room to grow live (2 vCPUs, 256 MiB at most), a disk, and an empty CD-ROM
    drive on a virtio-scsi controller."""
    root = ET.fromstring(domain_xml(DemoVM(GUEST, "hardware", "vnc", "vga", DemoState.RUNNING, 0),  # noqa: S314
                                    lab.ensure_guest_images()))
    vcpu = root.find("vcpu")
    assert vcpu is not None
    vcpu.text, vcpu.attrib["current"] = "2", "1"
    memory = root.find("memory")
    assert memory is not None
    memory.text = "256"
    root.insert(list(root).index(memory) + 1, ET.Element("currentMemory", unit="MiB"))
    root.find("currentMemory").text = "192"  # type: ignore[union-attr]
    devices = root.find("devices")
    assert devices is not None
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=disk_path)
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    ET.SubElement(devices, "controller", type="scsi", model="virtio-scsi")
    cdrom = ET.SubElement(devices, "disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "driver", name="qemu", type="raw")
    ET.SubElement(cdrom, "target", dev="sda", bus="scsi")
    ET.SubElement(cdrom, "readonly")
    return ET.tostring(root, encoding="unicode")


@pytest.fixture(scope="module")
def guest(lab_session: None) -> Iterator[Guest]:
    host = lab.up(hosts=LAB_HOSTS)[0]
    remove_leftovers(host)
    virsh(host, "vol-create-as", POOL, f"{GUEST}-vda.qcow2", "64M", "--format", "qcow2")
    virsh(host, "vol-create-as", POOL, ISO, "2M", "--format", "raw")
    with tempfile.NamedTemporaryFile("wb") as image:
        image.write(CD_MARK.ljust(2 * 1024 * 1024, b"\0"))
        image.flush()
        virsh(host, "vol-upload", ISO, image.name, "--pool", POOL)
    with_xml(host, "net-create", f"<network><name>{NETWORK}</name><bridge name='ithw0'/></network>")
    disk_path = virsh(host, "vol-path", f"{GUEST}-vda.qcow2", "--pool", POOL)
    with_xml(host, "define", guest_xml(disk_path))
    virsh(host, "start", GUEST)
    wait_until(lambda: agent_answers(host, GUEST), timeout=BOOT_TIMEOUT, what=f"{GUEST}'s agent")
    yield Guest(host, virsh(host, "domuuid", GUEST))
    if not KEEP_LAB:
        remove_leftovers(host)


@pytest.fixture
def admin(guest: Guest, admin_user: User, db: None) -> User:
    Host.objects.create(name=guest.host.name, uri=guest.host.uri)
    return admin_user


def guest_run(host: lab.LabHost, domain: str, script: str) -> tuple[int, str]:
    """Runs `sh -c script` in the guest through its agent; its exit code and output."""
    command = {"execute": "guest-exec",
               "arguments": {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True}}
    pid = json.loads(virsh(host, "qemu-agent-command", domain, json.dumps(command), "--timeout", "10"))["return"]["pid"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = json.loads(virsh(host, "qemu-agent-command", domain, json.dumps(
            {"execute": "guest-exec-status", "arguments": {"pid": pid}}), "--timeout", "10"))["return"]
        if status["exited"]:
            output = base64.b64decode(status.get("out-data", "")) + base64.b64decode(status.get("err-data", ""))
            return status.get("exitcode", -1), output.decode(errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"{script!r} did not end in the guest within 20 s")


def guest_sees(guest: Guest, script: str, expected: str) -> None:
    """Polls until `script`'s output in the guest, stripped, is `expected`."""
    seen: list[str] = []

    def matches() -> bool:
        seen.append(guest_run(guest.host, GUEST, script)[1].strip())
        return seen[-1] == expected

    wait_until(matches, timeout=CHANGE_TIMEOUT, what=f"{script!r} to give {expected!r} (last: {seen[-1:]})")


def change(user: User, guest: Guest, name: str, **fields: str) -> str:
    """Submits one form of the hardware page; the page it comes back to."""
    data = {"change": name, **{f"{name}-{key}": value for key, value in fields.items()}}
    response = client_for(user).post(f"/domains/{guest.host.name}/{guest.uuid}/hardware/", data, follow=True)
    assert response.status_code == 200, response.content.decode()[-2000:]
    return response.content.decode()


def test_a_cd_inserted_and_ejected_while_the_guest_runs(guest: Guest, admin: User):
    page = change(admin, guest, "cdrom", drive="sda", volume=f"{POOL}/{ISO}")
    assert f"{POOL}/{ISO} inserted into sda of {GUEST} now." in page
    guest_sees(guest, f"head -c {len(CD_MARK)} /dev/sr0", CD_MARK.decode())

    page = change(admin, guest, "cdrom", drive="sda", volume="")
    assert f"Ejected sda of {GUEST} now." in page
    guest_sees(guest, "head -c 1 /dev/sr0 >/dev/null 2>&1 && echo medium || echo none", "none")


def test_a_new_disk_appears_as_vdb_grows_and_goes_again(guest: Guest, admin: User):
    page = change(admin, guest, "disk-attach", pool=POOL, size_gib="1", bus="virtio")
    assert f"New volume {POOL}/{GUEST}-vdb.qcow2 attached to {GUEST} as vdb now." in page
    guest_sees(guest, "cat /sys/block/vdb/size", str(1024**3 // 512))

    page = change(admin, guest, "disk-grow", target="vdb", size_gib="2")
    assert f"vdb of {GUEST} grown to 2 GiB now." in page
    guest_sees(guest, "cat /sys/block/vdb/size", str(2 * 1024**3 // 512))

    page = change(admin, guest, "disk-detach", target="vdb")
    assert f"vdb detached from {GUEST} now; its volume is kept." in page
    guest_sees(guest, "test -e /sys/block/vdb && echo present || echo gone", "gone")


def test_a_vcpu_and_memory_changed_live(guest: Guest, admin: User):
    page = change(admin, guest, "vcpus", vcpus="2")
    assert f"{GUEST} has 2 vCPUs now." in page
    guest_sees(guest, "cat /sys/devices/system/cpu/present", "0-1")
    # The lab guest has no udev to bring a new CPU online: the test does, as udev's rule would.
    guest_run(guest.host, GUEST, "echo 1 > /sys/devices/system/cpu/cpu1/online")
    guest_sees(guest, "grep -c ^processor /proc/cpuinfo", "2")

    before = int(guest_run(guest.host, GUEST, "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo")[1])
    page = change(admin, guest, "memory", memory_mib="160")
    assert f"{GUEST} has 160 MiB of memory now." in page
    # The balloon takes the 32 MiB from the guest's total.
    guest_sees(guest, f"test $(sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo) -le {before - 30 * 1024} "
               "&& echo smaller || echo same", "smaller")


def test_a_nic_plugged_in_and_out(guest: Guest, admin: User):
    page = change(admin, guest, "nic-attach", kind="network", network=NETWORK, model="virtio", mac="52:54:00:4a:17:01")
    assert f"Network interface 52:54:00:4a:17:01 on network {NETWORK} plugged into {GUEST} now." in page
    guest_sees(guest, "cat /sys/class/net/*/address | grep -c 52:54:00:4a:17:01", "1")

    page = change(admin, guest, "nic-detach", mac="52:54:00:4a:17:01")
    assert f"Network interface 52:54:00:4a:17:01 unplugged from {GUEST} now." in page
    guest_sees(guest, "cat /sys/class/net/*/address | grep -c 52:54:00:4a:17:01", "0")


def test_the_shut_off_guest_is_cloned_and_the_clone_boots(guest: Guest, admin: User):
    virsh(guest.host, "destroy", GUEST)
    client = client_for(admin)
    response = client.post(f"/domains/{guest.host.name}/{guest.uuid}/clone/", {"name": CLONE}, follow=True)
    assert f"{GUEST} cloned as {CLONE}." in response.content.decode()
    clone_uuid = virsh(guest.host, "domuuid", CLONE)
    assert clone_uuid != guest.uuid
    assert f"{CLONE}-vda.qcow2" in virsh(guest.host, "vol-list", POOL)

    started = client.post(f"/domains/{guest.host.name}/{clone_uuid}/action/", {"action": "start"}, follow=True)
    assert f"{CLONE} started." in started.content.decode()
    wait_until(lambda: agent_answers(guest.host, CLONE), timeout=BOOT_TIMEOUT, what=f"{CLONE}'s agent")
    assert guest_run(guest.host, CLONE, "test -e /sys/block/vda && echo disk")[1].strip() == "disk"

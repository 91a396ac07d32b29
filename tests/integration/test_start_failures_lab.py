"""A start the host refuses says why on the page: libvirt's words to an admin, redacted to a tenant.

Three refusals QEMU really gives on the lab (TCG): memory the host cannot commit, a direct-boot
kernel that was deleted, a fixed VNC port something else already listens on. Each VM is a throwaway
named sf-*, defined and removed by these tests only.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import lab
from accounts.models import User
from audit.models import AuditEntry
from domains import services, virt
from domains.models import Grant, Host
from tests.conftest import client_for
from tests.integration.helpers import domain_state, virsh

pytestmark = pytest.mark.integration

PREFIX = "sf-"


@pytest.fixture
def lab1(lab_hosts: list[lab.LabHost], db: None) -> Iterator[lab.LabHost]:
    lab_host = lab_hosts[0]
    remove_ours(lab_host)
    Host.objects.create(name=lab_host.name, uri=lab_host.uri)
    yield lab_host
    remove_ours(lab_host)


def remove_ours(lab_host: lab.LabHost) -> None:
    """The sf-* VMs an earlier run left behind; nobody else's."""
    running = set(virsh(lab_host, "list", "--name").split())
    for name in virsh(lab_host, "list", "--all", "--name").split():
        if name.startswith(PREFIX):
            if name in running:
                virsh(lab_host, "destroy", name)
            virsh(lab_host, "undefine", name)


def spec(name: str) -> virt.DomainSpec:
    images = lab.ensure_guest_images()
    return virt.DomainSpec(
        name=name, vcpus=1, memory_mib=128, accelerator="qemu",
        boot=virt.BootSpec(virt.BootKind.KERNEL, kernel=str(images.kernel), initrd=str(images.initrd),
                           cmdline="console=ttyS0 quiet"),
        graphics=virt.GraphicsSpec("vnc", listen="127.0.0.1"),
    )


def error_on_page(body: str) -> str:
    [message] = re.findall(r'<p class="message error">(.*?)</p>', body, re.S)
    return html.unescape(message)


def start_from_the_page(user: User, uuid: str) -> str:
    """Presses Start as `user` would and returns the error the page then shows."""
    response = client_for(user).post(f"/domains/lab1/{uuid}/action/", {"action": "start"}, follow=True)
    assert response.status_code == 200
    return error_on_page(response.content.decode())


def audit_message_seen_by(user: User) -> str:
    body = client_for(user).get("/audit/").content.decode()
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body[body.index("<tbody>"):], re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
    # The message cell clamps its text in a span (whole in its title): the text is the message.
    [message] = [html.unescape(re.sub(r"<[^>]+>", "", row[6])) for row in cells
                 if row[2] == "domain.start" and row[1] == user.username]
    return message


def host_memory_mib() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(fields["MemTotal"].split()[0]) + int(fields["SwapTotal"].split()[0])) // 1024


@pytest.fixture
def too_much_memory() -> virt.DomainSpec:
    # Under TCG QEMU reserves the guest's RAM when it starts; the kernel's overcommit heuristic
    # (mode 0, or 2) refuses a single mapping larger than RAM and swap together. Mode 1 would not.
    assert Path("/proc/sys/vm/overcommit_memory").read_text().strip() != "1", "this machine overcommits anything"
    return replace(spec(f"{PREFIX}memory"), memory_mib=4 * host_memory_mib())


@pytest.fixture
def deleted_kernel(tmp_path: Path) -> virt.DomainSpec:
    """A direct-boot VM whose kernel file is deleted after it was defined (see the test)."""
    kernel = tmp_path / "vmlinuz-gone"
    shutil.copyfile(lab.ensure_guest_images().kernel, kernel)
    base = spec(f"{PREFIX}kernel")
    return replace(base, boot=replace(base.boot, kernel=str(kernel)))


# Run in lab1's network: binds the first free port of 5990-5999 on its loopback, prints it, holds it.
_HOLD_A_PORT = """
import socket, sys
listener = socket.socket()
for port in range(5990, 6000):
    try:
        listener.bind(("127.0.0.1", port))
        break
    except OSError:
        continue
else:
    sys.exit("no free port in 5990-5999 to hold")
listener.listen(1)
print(port, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def taken_vnc_port(lab1: lab.LabHost) -> Iterator[virt.DomainSpec]:
    """A VM asking for a fixed VNC port on which something else on the host's loopback listens."""
    holder = subprocess.Popen(lab.in_host_network(lab1.name, [sys.executable, "-c", _HOLD_A_PORT]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline() if holder.stdout else "")  # lab1's VNC range, not a port libvirt picks
        yield replace(spec(f"{PREFIX}vnc"), graphics=virt.GraphicsSpec("vnc", listen="127.0.0.1", port=port))
    finally:
        holder.kill()
        holder.wait()


CASES = {
    # fixture: (words from QEMU both readers see, what only the admin sees)
    "too_much_memory": ("cannot set up guest memory 'pc.ram': Cannot allocate memory", None),
    "deleted_kernel": ("could not open kernel file [host path]: No such file or directory", "vmlinuz-gone"),
    "taken_vnc_port": ("Failed to find an available port: Address already in use", "-vnc 127.0.0.1:"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_start_says_why_to_the_admin_and_redacted_to_the_tenant(
        case: str, request: pytest.FixtureRequest, lab1: lab.LabHost, admin_user: User, tenant_user: User):
    refused: virt.DomainSpec = request.getfixturevalue(case)
    uuid = services.domain_define(actor=admin_user, host_name="lab1", spec=refused)
    Grant.objects.create(host=Host.objects.get(name="lab1"), domain_uuid=uuid, user=tenant_user, can_operate=True)
    if case == "deleted_kernel":
        Path(refused.boot.kernel).unlink()
    reason, admin_only = CASES[case]

    told_admin = start_from_the_page(admin_user, uuid)
    told_tenant = start_from_the_page(tenant_user, uuid)

    assert told_admin.startswith("The hypervisor could not complete the request. libvirt: internal error: ")
    assert reason.replace("[host path]", f"'{refused.boot.kernel}'") in told_admin
    assert reason in told_tenant
    if admin_only:
        assert admin_only in told_admin
        assert admin_only not in told_tenant
    for hidden in ("/var/", "/tmp/", "127.0.0.1", "qemu+unix", "libvirt-sock"):
        assert hidden not in told_tenant
    assert domain_state(lab1, refused.name) == "shut off"

    entries = AuditEntry.objects.filter(action="domain.start", domain_uuid=uuid).order_by("created_at")
    assert [(e.actor_name, e.result) for e in entries] == [(admin_user.username, "failed"),
                                                           (tenant_user.username, "failed")]
    assert entries[0].message == told_admin
    assert reason.replace("[host path]", f"'{refused.boot.kernel}'") in entries[1].message  # in full, for both
    assert admin_only is None or admin_only in entries[1].message
    assert audit_message_seen_by(admin_user) == told_admin
    assert audit_message_seen_by(tenant_user) == told_tenant

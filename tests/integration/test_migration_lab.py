"""Migration between the two lab hosts, through the dashboard's form, job runner and services.

lab1 is registered over SSH and lab2 over TLS, each with its migration address on the lab network:
memory and disks cross that network, and the destination's address comes from its registration.

Every guest here is a throwaway `it-mig-*` (the demo VMs stay where other tests expect them); leftovers of an
interrupted run are removed first, on both hosts. The tests that move a running guest share one, booted once
(TCG boots take seconds of CPU each): each leaves it running on lab1, and the one that leaves it on lab2 runs
after them; a test that finds it anywhere else boots it again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import uuid as uuidlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

import lab
from accounts.models import User
from audit.models import AuditEntry
from consoles import services as consoles
from domains import migration_jobs, services
from domains.models import Grant, Host, MigrationJob
from domains.virt import migration as vmig
from lab.paths import HostPaths
from tests.conftest import LAB_HOSTS, client_for
from tests.integration.helpers import agent_answers, domains, virsh, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NETWORK = "it-mig-net"  # exists on lab1 only
RUNNING = "it-mig-running"  # the shared running guest (running_guest)
LOCAL_POOL = "it-mig-local"  # /var/lib/libvirt/images: each host's own directory (the lab bind-mounts it)


def remove_leftovers(lab_host: lab.LabHost, *, keep: str = "") -> None:
    for name in domains(lab_host):
        if name.startswith("it-mig-") and name != keep:
            if name in domains(lab_host, active_only=True):
                virsh(lab_host, "destroy", name)
            virsh(lab_host, "undefine", name)
    if NETWORK in virsh(lab_host, "net-list", "--all", "--name").split():
        with contextlib.suppress(AssertionError):
            virsh(lab_host, "net-destroy", NETWORK)
        virsh(lab_host, "net-undefine", NETWORK)
    if LOCAL_POOL in virsh(lab_host, "pool-list", "--all", "--name").split():
        for line in virsh(lab_host, "vol-list", LOCAL_POOL).splitlines():  # name, path
            virsh(lab_host, "vol-delete", line.split()[0], "--pool", LOCAL_POOL)
        with contextlib.suppress(AssertionError):
            virsh(lab_host, "pool-destroy", LOCAL_POOL)
        virsh(lab_host, "pool-undefine", LOCAL_POOL)


@pytest.fixture(scope="module", autouse=True)
def no_guests_left(lab_session: None) -> Iterator[None]:
    yield
    for lab_host in lab.up(hosts=LAB_HOSTS, demo_inventory=False):
        remove_leftovers(lab_host)


@pytest.fixture
def lab_pair(lab_hosts: list[lab.LabHost]) -> Iterator[tuple[lab.LabHost, lab.LabHost]]:
    for lab_host in lab_hosts:
        remove_leftovers(lab_host, keep=RUNNING)
        Host.objects.create(name=lab_host.name, uri=lab_host.uri, migration_address=lab_host.migration_address)
    assert lab_hosts[0].uri.startswith("qemu+ssh://") and lab_hosts[1].uri.startswith("qemu+tls://")
    yield lab_hosts[0], lab_hosts[1]
    for lab_host in lab_hosts:
        remove_leftovers(lab_host, keep=RUNNING)


@pytest.fixture
def running_guest(lab_pair: tuple[lab.LabHost, lab.LabHost]) -> str:
    """RUNNING, running on lab1 only with its agent answering; its UUID. Booted again only when the test before
    left it elsewhere or broken."""
    lab1, lab2 = lab_pair
    if not (running_on(lab1, RUNNING) and RUNNING not in domains(lab2) and agent_answers(lab1, RUNNING)):
        for lab_host in lab_pair:
            remove_leftovers(lab_host)
        define(lab1, RUNNING, start=True)
        wait_until(lambda: agent_answers(lab1, RUNNING), timeout=120, what="the agent answers on lab1")
    return virsh(lab1, "domuuid", RUNNING)


def guest_xml(name: str, *, network: str = "", disk: str = "") -> str:
    images = lab.ensure_guest_images()
    nic = (f"<interface type='network'><source network='{network}'/><model type='virtio'/></interface>" if network
           else "<interface type='user'><model type='virtio'/></interface>")
    if disk:
        nic += (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
                "<target dev='vda' bus='virtio'/></disk>")
    return f"""<domain type='qemu'>
  <name>{name}</name><uuid>{uuidlib.uuid4()}</uuid>
  <memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{images.kernel}</kernel><initrd>{images.initrd}</initrd>
    <cmdline>console=tty0 vmportal.hostname={name}</cmdline></os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    {nic}
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='vnc' autoport='yes'/>
    <video><model type='vga'/></video>
  </devices>
</domain>"""


def define(lab_host: lab.LabHost, name: str, *, start: bool, network: str = "", disk: str = "") -> str:
    path = Path(f"/tmp/{name}.xml")
    path.write_text(guest_xml(name, network=network, disk=disk))
    try:
        virsh(lab_host, "define", str(path))
    finally:
        path.unlink()
    if start:
        virsh(lab_host, "start", name)
    return virsh(lab_host, "domuuid", name)


def start_migration(admin: User, source: str, uuid: str, destination: str, **options: str) -> MigrationJob:
    form = {"destination": destination, "persist_dest": "on", "undefine_source": "on", "peer_to_peer": "on",
            **options}
    response = client_for(admin).post(f"/domains/{source}/{uuid}/migrate/", form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    job = MigrationJob.objects.get(domain_uuid=uuid, state__in=MigrationJob.ACTIVE_STATES)
    assert response["Location"] == f"/migrations/{job.pk}/"
    return job


def finished(job: MigrationJob, timeout: float = 120) -> MigrationJob:
    assert migration_jobs.wait(job.pk, timeout), "the job's runner did not end"
    job.refresh_from_db()
    return job


def running_on(lab_host: lab.LabHost, name: str) -> bool:
    return name in domains(lab_host, active_only=True)


def test_a_running_guest_moves_live_and_its_agent_grants_and_console_follow(lab_pair, running_guest, admin_user,
                                                                          tenant_user):
    lab1, lab2 = lab_pair
    uuid = running_guest
    Grant.objects.create(host=Host.objects.get(name="lab1"), domain_uuid=uuid, user=tenant_user, can_operate=True,
                         can_console=True)
    old_ticket = consoles.console_tickets_issue(actor=tenant_user, host_name="lab1", uuid=uuid).tokens[0]

    job = finished(start_migration(admin_user, "lab1", uuid, "lab2"))

    assert job.state == MigrationJob.State.SUCCEEDED, job.error
    assert running_on(lab2, RUNNING) and RUNNING not in domains(lab1)
    assert virsh(lab2, "dominfo", RUNNING).count("Persistent:     yes") == 1
    wait_until(lambda: agent_answers(lab2, RUNNING), timeout=60, what="the agent answers on lab2")
    assert job.progress["completed"] and job.progress["downtime_ms"] is not None
    assert Grant.objects.get(domain_uuid=uuid, user=tenant_user).host.name == "lab2"
    tenant = client_for(tenant_user)
    assert tenant.get(f"/domains/lab2/{uuid}/").status_code == 200
    assert tenant.get(f"/domains/lab1/{uuid}/").status_code == 404
    with pytest.raises(consoles.TicketRefused):
        consoles.console_ticket_check(token=old_ticket)
    new_ticket = consoles.console_tickets_issue(actor=tenant_user, host_name="lab2", uuid=uuid).tokens[0]
    pending = consoles.console_ticket_check(token=new_ticket)
    assert pending.ticket.host.name == "lab2" and pending.endpoint.port is not None
    assert pending.endpoint.address == lab2.migration_address and pending.endpoint.tls is not None  # VeNCrypt there
    entries = dict(AuditEntry.objects.filter(domain_uuid=uuid).values_list("action", "result"))
    assert entries["domain.migrate"] == entries["domain.migrated"] == AuditEntry.Result.SUCCEEDED

    # And back, managed this time: the dashboard drives it, from the TLS host to the SSH host.
    back = finished(start_migration(admin_user, "lab2", uuid, "lab1", peer_to_peer=""))
    assert back.state == MigrationJob.State.SUCCEEDED, back.error
    assert running_on(lab1, RUNNING) and RUNNING not in domains(lab2)
    wait_until(lambda: agent_answers(lab1, RUNNING), timeout=60, what="the agent answers on lab1 again")
    pending = consoles.console_ticket_check(
        token=consoles.console_tickets_issue(actor=tenant_user, host_name="lab1", uuid=uuid).tokens[0])
    assert pending.endpoint.address == "127.0.0.1" and pending.endpoint.ssh is not None  # through lab1's SSH


def test_copy_storage_moves_a_disk_that_is_on_no_shared_storage(lab_pair, admin_user):
    lab1, lab2 = lab_pair
    for lab_host in lab_pair:  # the same path on both hosts, but each host's own directory
        virsh(lab_host, "pool-define-as", LOCAL_POOL, "dir", "--target", "/var/lib/libvirt/images")
        virsh(lab_host, "pool-build", LOCAL_POOL)
        virsh(lab_host, "pool-start", LOCAL_POOL)
    virsh(lab1, "vol-create-as", LOCAL_POOL, "it-mig-copy.qcow2", "64M", "--format", "qcow2")
    disk = virsh(lab1, "vol-path", "it-mig-copy.qcow2", "--pool", LOCAL_POOL)
    uuid = define(lab1, "it-mig-copy", start=True, disk=disk)
    wait_until(lambda: agent_answers(lab1, "it-mig-copy"), timeout=120, what="the agent answers on lab1")
    page = client_for(admin_user).get(f"/domains/lab1/{uuid}/migrate/", {"destination": "lab2"}).content.decode()
    assert f"{disk} is not in any storage pool of the destination: put it on shared storage, or tick " \
           "&#x27;copy storage&#x27;." in page  # lab2's pool of that name is its own, empty directory
    assert "it-mig-copy.qcow2" not in virsh(lab2, "vol-list", LOCAL_POOL)

    job = finished(start_migration(admin_user, "lab1", uuid, "lab2", copy_storage="all"))

    assert job.state == MigrationJob.State.SUCCEEDED, job.error
    assert running_on(lab2, "it-mig-copy") and "it-mig-copy" not in domains(lab1)
    assert "it-mig-copy.qcow2" in virsh(lab2, "vol-list", LOCAL_POOL)  # libvirt made it there, and QEMU filled it
    assert job.progress["disk_total"] > 0
    wait_until(lambda: agent_answers(lab2, "it-mig-copy"), timeout=60, what="the agent answers on lab2")


def test_the_pre_checks_say_when_the_source_cannot_reach_the_migration_port(lab_pair, running_guest, admin_user):
    lab1, lab2 = lab_pair
    uuid = running_guest
    url = f"/domains/lab1/{uuid}/migrate/"
    assert f"The source reaches {lab2.migration_address} (TCP 49152" in \
        client_for(admin_user).get(url, {"destination": "lab2"}).content.decode()
    drop = ["iptables", "-A", "INPUT", "-s", lab1.migration_address, "-p", "tcp", "--dport", "49152:65535",
            "-j", "DROP"]
    subprocess.run(lab.in_host_network(lab2.name, drop), check=True, timeout=30)
    try:
        page = client_for(admin_user).get(url, {"destination": "lab2"}).content.decode()
    finally:
        lab.set_link(lab2.name)
    assert f"The source gets no answer from {lab2.migration_address} (TCP 49152, where migrations go) within 6 s" \
        in page
    assert 'id="migrate-submit" disabled' in page
    # Tunnelled, everything goes through the daemons' connection: no port of the destination to reach.
    tunnelled = client_for(admin_user).get(f"/domains/lab1/{uuid}/migrate/", {"destination": "lab2", "checked": "1",
                                                                         "tunnelled": "on", "peer_to_peer": "on",
                                                                         "persist_dest": "on"}).content.decode()
    assert "Nothing moves outside the daemons&#x27; own connection." in tunnelled


def test_a_shut_off_vm_moves_offline(lab_pair, admin_user):
    lab1, lab2 = lab_pair
    uuid = define(lab1, "it-mig-off", start=False)
    page = client_for(admin_user).get(f"/domains/lab1/{uuid}/migrate/", {"destination": "lab2"}).content.decode()
    assert "Migrate offline to lab2" in page and 'id="migrate-submit" disabled' not in page

    job = finished(start_migration(admin_user, "lab1", uuid, "lab2"))

    assert job.state == MigrationJob.State.SUCCEEDED, job.error
    assert not job.live
    assert "it-mig-off" not in domains(lab1)
    assert virsh(lab2, "domstate", "it-mig-off") == "shut off"


def test_cancelling_a_slowed_migration_leaves_the_guest_running_on_the_source(lab_pair, running_guest, admin_user):
    lab1, lab2 = lab_pair
    uuid = running_guest
    job = start_migration(admin_user, "lab1", uuid, "lab2", bandwidth_mib="1")
    wait_until(lambda: MigrationJob.objects.get(pk=job.pk).progress.get("data_processed", 0) > 0, timeout=60,
               what="the migration moves data")

    response = client_for(admin_user).post(f"/migrations/{job.pk}/action/", {"action": "cancel"}, follow=True)
    assert "Cancelling: the machine stays on lab1." in response.content.decode()

    job = finished(job)
    assert job.state == MigrationJob.State.CANCELLED
    assert running_on(lab1, RUNNING) and RUNNING not in domains(lab2)
    assert agent_answers(lab1, RUNNING)
    assert "running on lab1, not on lab2" in job.error


def test_a_network_missing_on_the_destination_blocks_the_form(lab_pair, admin_user):
    lab1, _lab2 = lab_pair
    path = Path(f"/tmp/{NETWORK}.xml")
    path.write_text(f"<network><name>{NETWORK}</name><bridge name='itmigbr0' stp='off'/></network>")
    try:
        virsh(lab1, "net-define", str(path))
    finally:
        path.unlink()
    virsh(lab1, "net-start", NETWORK)
    uuid = define(lab1, "it-mig-net", start=False, network=NETWORK)
    client = client_for(admin_user)

    page = client.get(f"/domains/lab1/{uuid}/migrate/", {"destination": "lab2"}).content.decode()
    assert f"The destination has no network &#x27;{NETWORK}&#x27;: define and start it there, or pick another " \
           "host." in page
    assert 'id="migrate-submit" disabled' in page

    refused = client.post(f"/domains/lab1/{uuid}/migrate/", {"destination": "lab2", "persist_dest": "on",
                                                             "undefine_source": "on", "peer_to_peer": "on"})
    assert refused.status_code == 400
    assert not MigrationJob.objects.filter(domain_uuid=uuid).exists()
    assert "it-mig-net" in domains(lab1)


def test_a_destination_that_dies_mid_way_leaves_the_guest_running_on_the_source(lab_pair, running_guest,
                                                                               admin_user):
    lab1, lab2 = lab_pair
    uuid = running_guest
    job = start_migration(admin_user, "lab1", uuid, "lab2", bandwidth_mib="1")
    wait_until(lambda: MigrationJob.objects.get(pk=job.pk).progress.get("data_processed", 0) > 0, timeout=60,
               what="the migration moves data")
    pid_file = HostPaths(lab2.name).run_dir / f"libvirt/qemu/{RUNNING}.pid"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the destination's QEMU, started by this migration

    job = finished(job)
    assert job.state == MigrationJob.State.FAILED
    assert job.error.startswith("The migration failed: ")
    assert "running on lab1, not on lab2" in job.error
    assert "qemu+unix" not in job.error
    assert running_on(lab1, RUNNING) and RUNNING not in domains(lab2)
    assert "Persistent:     yes" in virsh(lab1, "dominfo", RUNNING)
    assert agent_answers(lab1, RUNNING)


def test_a_tunnelled_move_goes_through_the_daemons_own_connection(lab_pair, running_guest, admin_user):
    """lab1's libvirtd opens lab2's registered TLS URI itself and carries the memory through it. After the other
    tests of the shared guest: it stays on lab2."""
    lab1, lab2 = lab_pair
    uuid = running_guest

    job = finished(start_migration(admin_user, "lab1", uuid, "lab2", tunnelled="on"))

    assert job.state == MigrationJob.State.SUCCEEDED, job.error
    assert job.options["tunnelled"] and job.progress["completed"]
    assert running_on(lab2, RUNNING) and RUNNING not in domains(lab1)
    wait_until(lambda: agent_answers(lab2, RUNNING), timeout=60, what="the agent answers on lab2")



def test_after_a_restart_a_migration_libvirt_still_runs_is_followed_and_settled(lab_pair, admin_user):
    """The runner's thread is gone (as after a restart) while libvirt goes on migrating: the job is adopted."""
    lab1, lab2 = lab_pair
    uuid = define(lab1, "it-mig-adopt", start=True)
    source, destination = Host.objects.get(name="lab1"), Host.objects.get(name="lab2")
    job = MigrationJob.objects.create(
        actor=admin_user, actor_name=admin_user.username, domain_uuid=uuid, domain_name="it-mig-adopt",
        source=source, source_name="lab1", destination=destination, destination_name="lab2", live=True,
        state=MigrationJob.State.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5))
    # The migration a vanished runner had started: libvirt's own, driven by the source daemon.
    def migrate_without_a_job() -> None:
        with contextlib.suppress(vmig.MigrationFailed):
            vmig.migrate(lab1.uri, lab2.uri, uuid, vmig.MigrationOptions(bandwidth_mib=16), lambda _progress: None)

    orphan = threading.Thread(target=migrate_without_a_job, daemon=True)
    orphan.start()
    wait_until(lambda: vmig.presence(lab1.uri, uuid).migrating_out, timeout=60, what="libvirt migrates")

    client = client_for(admin_user)
    assert "stopped answering" in client.get(f"/migrations/{job.pk}/").content.decode()
    assert MigrationJob.objects.get(pk=job.pk).note == "", "opening the page settles nothing"

    assert services.migration_settle(job_id=job.pk) is not None  # what the supervisor runs every 15 s
    page = client.get(f"/migrations/{job.pk}/").content.decode()
    assert "Followed again after a dashboard restart." in page and "stopped answering" not in page
    job = finished(job)
    orphan.join(60)
    assert job.state == MigrationJob.State.SUCCEEDED, job.error
    assert running_on(lab2, "it-mig-adopt") and "it-mig-adopt" not in domains(lab1)
    assert job.progress["completed"]

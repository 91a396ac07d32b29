"""Migration without a second hypervisor: the form, its refusals, the job's ending and reconciliation.

test:///default cannot migrate; the real moves are in tests/integration/test_migration_lab.py. Here the
job's ending is decided from where libvirt says the VM is, which these tests state through
`virt.migration.presence`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEntry
from domains import live, migration_jobs, services
from domains.models import Grant, Host, MigrationJob
from domains.supervisor import Supervisor
from domains.templatetags.sizes import mebibytes
from domains.virt import migration as vmig
from domains.virt.states import DomainState
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.live_messages import read
from tests.unit.test_live_consumers import open_socket

MIGRATE = f"/domains/embedded/{TEST_DOMAIN_UUID}/migrate/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def hosts(embedded_host: Host, xml_host, closed_loopback_uri: str) -> dict[str, Host]:
    other = xml_host("other", [])
    dead = Host.objects.create(name="dead", uri=closed_loopback_uri)
    return {"embedded": embedded_host, "other": other, "dead": dead}


def test_options_refuse_removing_the_source_without_keeping_the_destination():
    problems = vmig.MigrationOptions(persist_dest=False, undefine_source=True).problems()
    assert problems and "keep it defined on the destination" in problems[0]
    assert vmig.MigrationOptions().problems() == []
    assert vmig.MigrationOptions(live=False, copy_storage=vmig.CopyStorage.ALL).problems()
    assert vmig.MigrationOptions(tunnelled=True, peer_to_peer=False).problems()


@pytest.mark.parametrize(("peer_to_peer", "reason"), [
    (True, "argument unsupported: p2p migration is not supported by the source host"),
    (False, "this function is not supported by the connection driver: virDomainMigrate3"),
])
def test_a_refused_migrate_call_fails_the_migration_with_libvirts_reason(peer_to_peer: bool, reason: str):
    """test:///default refuses both kinds of call; the reason is the call's own, made where it was raised."""
    reports: list[vmig.Progress] = []
    with pytest.raises(vmig.MigrationFailed) as failed:
        vmig.migrate("test:///default", "test:///default", TEST_DOMAIN_UUID,
                     vmig.MigrationOptions(peer_to_peer=peer_to_peer), reports.append)
    assert str(failed.value) == f"The migration failed: {reason}"
    assert reports == []


def test_a_managed_migration_to_a_destination_that_does_not_answer_says_so(closed_loopback_uri: str):
    with pytest.raises(vmig.MigrationFailed) as failed:
        vmig.migrate("test:///default", closed_loopback_uri, TEST_DOMAIN_UUID,
                     vmig.MigrationOptions(peer_to_peer=False), lambda _progress: None)
    assert str(failed.value) == "The migration failed: the destination does not answer."
    assert "Connection refused" in failed.value.detail


def test_the_picker_offers_other_hosts_only_and_disables_unreachable_ones(admin_user: User, hosts):
    page = client_for(admin_user).get(MIGRATE).content.decode()
    assert 'value="other"' in page
    assert 'value="embedded"' not in page, "the current host is not a destination"
    dead = page[page.index('value="dead"') - 80: page.index('value="dead"') + 80]
    assert "disabled" in dead
    assert "Pick a destination to see its pre-checks." in page
    assert "Migrate live" in page  # the "test" VM runs


def test_a_failing_pre_check_says_what_to_change_and_blocks_the_submit(admin_user: User, hosts):
    page = client_for(admin_user).get(MIGRATE, {"destination": "other"}).content.decode()
    # The "test" VM's disk is not in any storage pool of the other host.
    assert "/guest/diskimage1 is not in any storage pool of the destination: put it on shared storage, or tick " \
           "&#x27;copy storage&#x27;." in page
    assert 'id="migrate-submit" disabled' in page
    response = client_for(admin_user).post(MIGRATE, {"destination": "other", "persist_dest": "on",
                                                     "undefine_source": "on", "peer_to_peer": "on"})
    assert response.status_code == 400
    assert not MigrationJob.objects.exists()
    [entry] = AuditEntry.objects.filter(action="domain.migrate")
    assert entry.result == AuditEntry.Result.FAILED and "copy storage" in entry.message


def test_the_pre_checks_name_the_registered_migration_address(admin_user: User, hosts):
    Host.objects.filter(name="other").update(migration_address="10.9.8.7")
    page = client_for(admin_user).get(MIGRATE, {"destination": "other", "checked": "1", "copy_storage": "all",
                                                "persist_dest": "on", "peer_to_peer": "on"}).content.decode()
    assert "Memory and disks go to 10.9.8.7, the destination&#x27;s registered migration address." in page


def test_the_migration_uri_of_an_address():
    assert vmig.migration_uri("10.9.8.7") == "tcp://10.9.8.7"
    assert vmig.migration_uri("fd00::7") == "tcp://[fd00::7]"
    assert vmig.migration_uri("host2.example.org") == "tcp://host2.example.org"


@pytest.mark.parametrize("destination", ["embedded", "dead", "qemu+tcp://127.0.0.1/system", ""])
def test_the_destination_is_a_registered_reachable_other_host(admin_user: User, hosts, destination: str):
    response = client_for(admin_user).post(MIGRATE, {"destination": destination, "persist_dest": "on"})
    assert response.status_code == 400
    assert not MigrationJob.objects.exists()


def test_removing_from_the_source_without_keeping_it_on_the_destination_is_refused(admin_user: User, hosts):
    response = client_for(admin_user).post(MIGRATE, {"destination": "other", "undefine_source": "on",
                                                     "copy_storage": "all", "peer_to_peer": "on"})
    assert response.status_code == 400
    assert "Removing it from the source needs" in response.content.decode()
    assert not MigrationJob.objects.exists()


def test_a_tenant_never_sees_the_form_even_with_every_right(tenant_user: User, tenant_grant: Grant):
    client = client_for(tenant_user)
    assert client.get(MIGRATE).status_code == 404
    assert client.post(MIGRATE, {"destination": "embedded"}).status_code == 404
    page = client.get(f"/domains/embedded/{TEST_DOMAIN_UUID}/").content.decode()
    assert "Migrate" not in page
    [entry] = AuditEntry.objects.filter(actor=tenant_user)
    assert (entry.action, entry.result) == ("domain.migrate", AuditEntry.Result.DENIED)


def _job(source: Host, destination: Host, admin: User, **changes) -> MigrationJob:
    fields = dict(actor=admin, actor_name=admin.username, domain_uuid=TEST_DOMAIN_UUID, domain_name="test",
                  source=source, source_name=source.name, destination=destination,
                  destination_name=destination.name, live=True, state=MigrationJob.State.RUNNING,
                  heartbeat_at=timezone.now())
    fields.update(changes)
    return MigrationJob.objects.create(**fields)


def _where(monkeypatch, placement: dict[str, vmig.Presence]) -> None:
    by_uri = {Host.objects.get(name=name).uri: presence for name, presence in placement.items()}
    monkeypatch.setattr(vmig, "presence", lambda uri, uuid: by_uri[uri])


RUNNING = vmig.Presence(defined=True, state=DomainState.RUNNING, persistent=True)
ABSENT = vmig.Presence(defined=False)


def test_a_finished_move_takes_the_grants_to_the_new_host_and_is_audited(monkeypatch, admin_user, hosts,
                                                                         tenant_grant: Grant):
    job = _job(hosts["embedded"], hosts["other"], admin_user)
    _where(monkeypatch, {"embedded": ABSENT, "other": RUNNING})
    migration_jobs.conclude(job)
    job.refresh_from_db()
    assert job.state == MigrationJob.State.SUCCEEDED and job.finished_at is not None
    tenant_grant.refresh_from_db()
    assert tenant_grant.host == hosts["other"]
    [entry] = AuditEntry.objects.filter(action="domain.migrated")
    assert (entry.result, entry.host_name) == (AuditEntry.Result.SUCCEEDED, "other")


def test_a_failed_move_says_where_the_machine_is_and_leaves_the_grants(monkeypatch, admin_user, hosts,
                                                                       tenant_grant: Grant):
    job = _job(hosts["embedded"], hosts["other"], admin_user)
    _where(monkeypatch, {"embedded": RUNNING, "other": ABSENT})
    migration_jobs.conclude(job, error="The migration failed: the destination's QEMU went away.")
    job.refresh_from_db()
    assert job.state == MigrationJob.State.FAILED
    assert job.error == ("The migration failed: the destination's QEMU went away. The machine is running on "
                         "embedded, not on other.")
    tenant_grant.refresh_from_db()
    assert tenant_grant.host == hosts["embedded"]


def test_an_error_after_the_switch_over_is_still_a_move(monkeypatch, admin_user, hosts):
    """What decides is where the VM runs, not what the migrate call answered."""
    job = _job(hosts["embedded"], hosts["other"], admin_user)
    _where(monkeypatch, {"embedded": ABSENT, "other": RUNNING})
    migration_jobs.conclude(job, error="The migration failed: confirm phase lost the connection.")
    assert MigrationJob.objects.get(pk=job.pk).state == MigrationJob.State.SUCCEEDED


STALE = timedelta(seconds=migration_jobs.STALE_SECONDS + 5)


@pytest.mark.parametrize(("placement", "state"), [
    ({"embedded": ABSENT, "other": RUNNING}, MigrationJob.State.SUCCEEDED),
    ({"embedded": RUNNING, "other": ABSENT}, MigrationJob.State.FAILED),
])
def test_after_a_restart_a_job_without_a_runner_is_settled_from_where_the_machine_runs(
        monkeypatch, admin_user, hosts, placement, state):
    job = _job(hosts["embedded"], hosts["other"], admin_user, heartbeat_at=timezone.now() - STALE)
    fresh = _job(hosts["embedded"], hosts["other"], admin_user, domain_uuid="11111111-2222-4333-8444-555555555555")
    _where(monkeypatch, placement)
    services.migrations_settle_stale()
    job.refresh_from_db()
    assert job.state == state
    assert job.note == "Settled after a dashboard restart."
    if state == MigrationJob.State.FAILED:
        assert "The dashboard restarted during the migration" in job.error
    page = client_for(admin_user).get(f"/migrations/{job.pk}/").content.decode()
    assert f"<dd class=\"migration-state\">{job.get_state_display()}</dd>" in page
    assert "stopped answering" not in page
    fresh.refresh_from_db()
    assert fresh.state == MigrationJob.State.RUNNING, "a job with a live heartbeat is left to its runner"


def test_opening_the_pages_of_a_stale_job_settles_nothing_and_says_why_it_is_still_running(
        monkeypatch, admin_user, hosts, tenant_grant: Grant):
    """Reading never writes: the supervisor settles the job, not whoever looks at it."""
    job = _job(hosts["embedded"], hosts["other"], admin_user, heartbeat_at=timezone.now() - STALE)
    _where(monkeypatch, {"embedded": ABSENT, "other": RUNNING})
    jobs_before, audit_before = list(MigrationJob.objects.values()), AuditEntry.objects.count()
    client = client_for(admin_user)

    job_page = client.get(f"/migrations/{job.pk}/").content.decode()
    form_page = client.get(MIGRATE).content.decode()

    for page in (job_page, form_page):
        assert re.search(r"The runner of this migration stopped answering 2\d s ago; the dashboard settles it "
                         r"shortly, from where the machine runs\.", page), page
    assert '<dd class="migration-state">Running</dd>' in job_page
    assert list(MigrationJob.objects.values()) == jobs_before
    assert AuditEntry.objects.count() == audit_before
    tenant_grant.refresh_from_db()
    assert tenant_grant.host == hosts["embedded"]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_settles_of_one_stale_job_conclude_it_once(monkeypatch, admin_user, hosts,
                                                                   tenant_grant: Grant):
    """Two supervisors (two daphne processes, or one and `manage.py migrationjobs`) find the same stale job."""
    job = _job(hosts["embedded"], hosts["other"], admin_user, heartbeat_at=timezone.now() - STALE)
    Grant.objects.create(host=hosts["embedded"], domain_uuid=TEST_DOMAIN_UUID, user=admin_user)
    held_there = Grant.objects.create(host=hosts["other"], domain_uuid=TEST_DOMAIN_UUID, user=admin_user)
    placement = {hosts["embedded"].uri: ABSENT, hosts["other"].uri: RUNNING}
    both_looked = threading.Barrier(2, timeout=5)

    def presence(uri: str, uuid: str) -> vmig.Presence:
        if uri == hosts["embedded"].uri:  # each settle asks the source first: both have read the job by now
            with contextlib.suppress(threading.BrokenBarrierError):
                both_looked.wait()
        return placement[uri]

    monkeypatch.setattr(vmig, "presence", presence)
    monkeypatch.setattr(vmig, "completed_figures", lambda uri, uuid: None)

    def settle() -> None:
        try:
            services.migration_settle(job_id=job.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(settle) for _ in range(2)]:
            future.result(timeout=30)

    job.refresh_from_db()
    assert job.state == MigrationJob.State.SUCCEEDED
    [entry] = AuditEntry.objects.filter(action="domain.migrated")
    assert (entry.result, entry.host_name) == (AuditEntry.Result.SUCCEEDED, "other")
    assert entry.message == f"live migration embedded → other (job {job.pk}): Succeeded"
    grants = {grant.pk: (grant.user_id, grant.host.name) for grant in Grant.objects.all()}
    assert grants == {tenant_grant.pk: (tenant_grant.user_id, "other"), held_there.pk: (admin_user.pk, "other")}, \
        "the tenant's grant moved; the admin's on the source gave way to the one already on the destination"


def test_a_runner_that_ends_after_its_job_was_settled_changes_nothing(monkeypatch, admin_user, hosts):
    """The runner was only slow (its heartbeat aged), and reports a failure after the supervisor settled the job."""
    job = _job(hosts["embedded"], hosts["other"], admin_user, heartbeat_at=timezone.now() - STALE)
    runners_copy = MigrationJob.objects.get(pk=job.pk)
    _where(monkeypatch, {"embedded": ABSENT, "other": RUNNING})
    services.migrations_settle_stale()
    settled = MigrationJob.objects.get(pk=job.pk)

    _where(monkeypatch, {"embedded": RUNNING, "other": ABSENT})
    migration_jobs.conclude(runners_copy, error="The migration failed: the connection was lost.")

    job.refresh_from_db()
    assert (job.state, job.error, job.finished_at) == (MigrationJob.State.SUCCEEDED, "", settled.finished_at)
    assert AuditEntry.objects.filter(action="domain.migrated").count() == 1


def test_the_command_settles_stale_jobs_and_says_how(monkeypatch, admin_user, hosts):
    job = _job(hosts["embedded"], hosts["other"], admin_user, heartbeat_at=timezone.now() - STALE)
    _where(monkeypatch, {"embedded": RUNNING, "other": ABSENT})
    out = io.StringIO()
    call_command("migrationjobs", "reconcile", stdout=out)
    assert out.getvalue().startswith(f"{job.pk}\ttest: embedded → other (failed)\tThe dashboard restarted during "
                                     "the migration; libvirt no longer runs it.")
    [entry] = AuditEntry.objects.filter(action="domain.migrated")
    assert entry.result == AuditEntry.Result.FAILED


@pytest.mark.django_db(transaction=True)
def test_after_a_restart_a_migration_libvirt_still_runs_is_followed_to_its_end(monkeypatch, admin_user, hosts):
    job = _job(hosts["embedded"], hosts["other"], admin_user,
               heartbeat_at=timezone.now() - timedelta(seconds=migration_jobs.STALE_SECONDS + 5))
    reports = [vmig.Progress(reported_at=1.0, data_total=100, data_processed=50)]
    monkeypatch.setattr(vmig, "job_progress", lambda uri, uuid: reports.pop() if reports else None)
    monkeypatch.setattr(vmig, "completed_figures", lambda uri, uuid: None)
    monkeypatch.setattr(migration_jobs, "FOLLOW_POLL_SECONDS", 0.01)
    _where(monkeypatch, {"embedded": vmig.Presence(defined=True, state=DomainState.PAUSED, migrating_out=True),
                         "other": RUNNING})
    adopted = services.migration_settle(job_id=job.pk)
    assert adopted is not None and adopted.note == "Followed again after a dashboard restart."
    _where(monkeypatch, {"embedded": ABSENT, "other": RUNNING})
    assert migration_jobs.wait(job.pk, timeout=10)
    job.refresh_from_db()
    assert job.state == MigrationJob.State.SUCCEEDED


@pytest.mark.django_db(transaction=True)
async def test_progress_reaches_admins_with_the_vm_open_and_no_one_else(settings, admin_user, operator_user):
    await database_sync_to_async(Host.objects.create)(name="embedded", uri="test:///default")
    path = f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/"
    admin, ok_admin, _ = await open_socket(path, admin_user)
    operator, ok_operator, _ = await open_socket(path, operator_user)
    assert ok_admin and ok_operator
    group = f"domain.{TEST_DOMAIN_UUID}"
    await get_channel_layer().group_send(group, live.addressed(group, {
        "type": "live.migration", "job_id": 7, "uuid": TEST_DOMAIN_UUID, "state": "running",
        "html": "<section id='migration-7'></section>", "reported_at": 1.5}))
    message = read(await admin.receive_from(2))
    assert (message["type"], message["id"]) == ("migration", "migration-7")
    assert await operator.receive_nothing(0.3)
    await admin.disconnect()
    await operator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_watchers_settle_a_job_a_restart_left_before_anyone_opens_it(monkeypatch, admin_user, hosts):
    stale = timezone.now() - timedelta(seconds=migration_jobs.STALE_SECONDS + 5)
    job = await database_sync_to_async(_job)(hosts["embedded"], hosts["other"], admin_user, heartbeat_at=stale)
    await database_sync_to_async(_where)(monkeypatch, {"embedded": ABSENT, "other": RUNNING})
    supervisor = Supervisor(settle_seconds=0.05)
    await supervisor.start()
    try:
        async with asyncio.timeout(10):
            while job.active:
                await asyncio.sleep(0.05)
                await database_sync_to_async(job.refresh_from_db)()
    finally:
        await supervisor.stop()
    assert (job.state, job.note) == (MigrationJob.State.SUCCEEDED, "Settled after a dashboard restart.")


# --- The form's layout, and the units of sizes and speeds. ---

MiB = 1024**2


def test_the_options_are_grouped_with_their_units(admin_user: User, hosts):
    page = client_for(admin_user).get(MIGRATE).content.decode()
    legends = [page.index(f"<legend>{legend}</legend>") for legend in
               ("Destination", "Storage", "Transfer", "Live move", "Afterwards")]
    assert legends == sorted(legends)
    assert "bandwidth limit (MiB/s)" in page and "maximum downtime (ms)" in page
    assert "These apply to a live move only" not in page  # the "test" VM runs: it moves live


def test_a_bad_bandwidth_is_said_beside_its_field_with_the_choices_kept(admin_user: User, hosts):
    response = client_for(admin_user).post(MIGRATE, {"destination": "other", "bandwidth_mib": "0",
                                                     "max_downtime_ms": "300", "compressed": "on"})
    page = response.content.decode()
    assert response.status_code == 400
    field = page[page.index('id="id_bandwidth_mib"'):]
    assert field.index("Ensure this value is greater than or equal to 1.") < field.index("</fieldset>")
    assert 'value="300"' in page and 'name="compressed" id="id_compressed" checked' in page


def test_the_jobs_progress_is_in_mib_and_mib_per_second(admin_user: User, hosts):
    job = _job(hosts["embedded"], hosts["other"], admin_user, progress={
        "reported_at": time.time(), "data_total": 2048 * MiB, "data_processed": 512 * MiB,
        "data_remaining": 1536 * MiB, "memory_bps": 100 * MiB, "disk_total": 10 * 1024 * MiB,
        "disk_processed": int(2.5 * MiB)})
    page = client_for(admin_user).get(f"/migrations/{job.pk}/").content.decode()
    assert "512 MiB processed, 1,536 MiB remaining of 2,048 MiB" in page
    assert '<dd class="migration-speed">100 MiB/s</dd>' in page
    assert "2.5 MiB of 10,240 MiB" in page


def test_mebibytes_reads_small_and_large_amounts():
    assert [mebibytes(v) for v in (None, 0, MiB // 2, 99 * MiB, 150 * MiB, 4096 * MiB)] == \
        ["–", "0 MiB", "0.5 MiB", "99 MiB", "150 MiB", "4,096 MiB"]

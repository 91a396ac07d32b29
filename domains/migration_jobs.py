"""Migration jobs: run outside the request, report progress live, end truthfully even across a restart.

    services.migration_start ── MigrationJob row (queued) ── on commit: start(job) ── a thread here
        └─ virt.migration.migrate(...) ── Progress every iteration / 0.5 s
             ├─ job.progress + heartbeat_at in the database (a page opened late shows the latest)
             └─ channel layer group domain.<uuid>, type live.migration: the progress partial, rendered once
                  → consumers.DomainPageConsumer → admins with the VM page or the job page open
        └─ conclude(): where the VM now runs decides the result; grants follow it; audit row

Why a thread in the web process: libvirt's migrate call blocks for the whole migration, and with
peer-to-peer (the default) the source daemon drives it, so the thread only waits and reads figures.
The job row is the truth, not the thread: a dashboard that restarts loses the thread, and
`settle()` (through services.migrations_settle_stale, run by the live supervisor from its start and
every 15 s, by `manage.py migrationjobs reconcile`, and before a new migration of the same VM) takes
a job whose heartbeat stopped, then either follows a migration libvirt is still running (adopts it)
or concludes the job from where the VM is now. Pages only read: they show such a job as stale.

Every end goes through `conclude()`, a compare-and-set on the job's active state: when the runner,
a cancel and one or more settlers end the same job at once, exactly one of them moves the grants and
writes the `domain.migrated` row.

A job's error and note are a record, like the audit log: written in the site's language, whoever reads them.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Case, Q, QuerySet, Value, When
from django.template.loader import render_to_string
from django.utils import timezone, translation

from audit import services as audit
from audit.models import AuditEntry

from . import live, virt
from .models import Grant, MigrationJob
from .virt import migration as vmig

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 15.0  # a job whose heartbeat is older than this has no runner any more
FOLLOW_POLL_SECONDS = 0.5

_threads: dict[int, threading.Thread] = {}
_threads_lock = threading.Lock()

State = MigrationJob.State


def start(job_id: int) -> None:
    """Run the job on a thread of this process."""
    _spawn(job_id, _run)


def _spawn(job_id: int, target: Any) -> None:
    with _threads_lock:
        running = _threads.get(job_id)
        if running is not None and running.is_alive():
            return
        thread = threading.Thread(target=_guarded, args=(target, job_id), name=f"migration-{job_id}", daemon=True)
        _threads[job_id] = thread
    thread.start()


def runs_here(job_id: int) -> bool:
    with _threads_lock:
        thread = _threads.get(job_id)
        return thread is not None and thread.is_alive()


def wait(job_id: int, timeout: float) -> bool:
    """Wait for this process's runner of the job to end (`manage.py migrationjobs reconcile --wait`)."""
    with _threads_lock:
        thread = _threads.get(job_id)
    if thread is None:
        return True
    thread.join(timeout)
    return not thread.is_alive()


def _guarded(target: Any, job_id: int) -> None:
    try:
        target(job_id)
    except Exception:
        logger.exception("migration job %s failed unexpectedly", job_id)
        try:
            job = MigrationJob.objects.get(pk=job_id)
            if job.active:
                conclude(job, error="The dashboard failed while running the migration; the result is from where "
                                    "the machine runs now.")
        except Exception:
            logger.exception("settling migration job %s failed", job_id)
    finally:
        connection.close()


def _run(job_id: int) -> None:
    close_old_connections()
    job = MigrationJob.objects.select_related("source", "destination").get(pk=job_id)
    if job.state != State.QUEUED:
        return
    if job.source is None or job.destination is None:
        conclude(job, error="A host of this migration was removed from the dashboard.")
        return
    now = timezone.now()
    if not MigrationJob.objects.filter(pk=job.pk, state=State.QUEUED).update(state=State.RUNNING, started_at=now,
                                                                              heartbeat_at=now):
        return  # cancelled or settled between reading it and starting: a migration nobody follows never starts
    job.state, job.started_at, job.heartbeat_at = State.RUNNING, now, now
    publish(job)
    options = vmig.MigrationOptions.from_dict(job.options)
    beat = _Heartbeat(job)
    try:
        outcome = vmig.migrate(job.source.uri, job.destination.uri, str(job.domain_uuid), options,
                               beat.progress, dest_address=job.destination.migration_address, on_tick=beat.tick)
    except vmig.MigrationCancelled as cancelled:
        conclude(job, error=str(cancelled), cancelled=True)
    except virt.VirtError as error:
        conclude(job, error=str(error))  # a failure after a cancel ends as cancelled: conclude reads the row
    else:
        conclude(job, final=outcome.final, note=" ".join(outcome.warnings))


class _Heartbeat:
    """Saves progress and the heartbeat, publishes progress; on the runner's thread."""

    def __init__(self, job: MigrationJob) -> None:
        self.job = job
        self.last_beat = time.monotonic()

    def progress(self, progress: vmig.Progress) -> None:
        self.job.progress = progress.as_dict()
        self.job.heartbeat_at = timezone.now()
        self.last_beat = time.monotonic()
        # Only while active: a runner that was only slow never writes into a job a settler concluded.
        if MigrationJob.objects.filter(pk=self.job.pk, state__in=MigrationJob.ACTIVE_STATES).update(
                progress=self.job.progress, heartbeat_at=self.job.heartbeat_at):
            publish(self.job)

    def tick(self) -> None:
        if time.monotonic() - self.last_beat >= HEARTBEAT_SECONDS:
            self.last_beat = time.monotonic()
            MigrationJob.objects.filter(pk=self.job.pk, state__in=MigrationJob.ACTIVE_STATES).update(
                heartbeat_at=timezone.now())


# --- The end of a job: decided by where the VM is, not by what the call said. ---


def _ending(job: MigrationJob, *, error: str, cancelled: bool, final: vmig.Progress | None,
            note: str) -> dict[str, Any]:
    """The fields that end `job`, judged by where the VM is now rather than by what the call said."""
    source, destination, uuid = job.source, job.destination, str(job.domain_uuid)
    moved: bool | None = None
    where = ""
    if source is not None and destination is not None:
        try:
            at_source = vmig.presence(source.uri, uuid)
            at_destination = vmig.presence(destination.uri, uuid)
        except virt.VirtError as failure:
            where = f" Where the machine is now could not be read: {failure}"
        else:
            moved = _moved(job, at_source, at_destination)
            where = _where(job, at_source, at_destination)
    if moved is None:
        moved = not error
    ending: dict[str, Any] = {"finished_at": timezone.now(),
                              "note": " ".join(part for part in (job.note, note) if part)}
    if moved:
        ending.update(state=State.SUCCEEDED, error="")
    else:
        ending["error"] = (error or "The migration did not complete.") + where
        # A failure while the row says cancelling ends as cancelled, whoever concludes it.
        ending["state"] = Value(State.CANCELLED) if cancelled else Case(
            When(state=State.CANCELLING, then=Value(State.CANCELLED)), default=Value(State.FAILED))
    if final is not None:
        ending["progress"] = final.as_dict()
    elif moved and source is not None and destination is not None and job.live:
        figures = vmig.completed_figures(destination.uri, uuid)
        if figures is not None:
            ending["progress"] = figures.as_dict()
    return ending


def conclude(job: MigrationJob, *, error: str = "", cancelled: bool = False, final: vmig.Progress | None = None,
             note: str = "") -> MigrationJob:
    """End the job from where the VM runs (or is defined) now; move grants; audit; publish. Returns the job
    as it ended.

    Once only: the end is written by a compare-and-set on the job's active state, and only the caller
    whose update changed the row moves the grants and writes the audit row, in the same transaction (a
    concluded job always has its grants). Any other caller (a runner ending after a settler took its
    job, a second settler) gets the job as the first one ended it. A failure while the row says
    cancelling ends as cancelled, whoever concludes it.
    """
    source, destination, uuid = job.source, job.destination, str(job.domain_uuid)
    with translation.override(settings.LANGUAGE_CODE):  # a cancel concludes in its user's request
        ending = _ending(job, error=error, cancelled=cancelled, final=final, note=note)
    with transaction.atomic():
        won = MigrationJob.objects.filter(pk=job.pk, state__in=MigrationJob.ACTIVE_STATES).update(**ending) == 1
        job.refresh_from_db(fields=["state", "error", "note", "progress", "finished_at"])
        if won:
            if job.state == State.SUCCEEDED and source is not None and destination is not None:
                _move_grants(job)
                transaction.on_commit(live.grants_changed)
            _audit(job)
    if won:
        for host in (source, destination):
            if host is not None:
                live.nudge(host_id=host.pk, uuid=uuid)
        publish(job)
    return job


def _moved(job: MigrationJob, at_source: vmig.Presence, at_destination: vmig.Presence) -> bool:
    if job.live:
        return at_destination.active and not at_source.active
    return at_destination.defined and not at_source.active


def _where(job: MigrationJob, at_source: vmig.Presence, at_destination: vmig.Presence) -> str:
    def describe(name: str, presence: vmig.Presence) -> str:
        if not presence.defined:
            return f"not on {name}"
        return f"{presence.state.label} on {name}" + ("" if presence.persistent else " (transient)")

    return (f" The machine is {describe(job.source_name, at_source)}, "
            f"{describe(job.destination_name, at_destination)}.")


def _move_grants(job: MigrationJob) -> None:
    """Grant rows are keyed by host and UUID: the VM's grants go to its new host."""
    grants = Grant.objects.filter(host=job.source, domain_uuid=job.domain_uuid)
    for grant in grants:
        clash = Grant.objects.filter(host=job.destination, domain_uuid=job.domain_uuid).filter(
            Q(user=grant.user_id, user__isnull=False) | Q(group=grant.group_id, group__isnull=False))
        if clash.exists():
            grant.delete()  # a grant on the destination for the same user or group already speaks for it
        else:
            grant.host = job.destination  # type: ignore[assignment]
            grant.save(update_fields=["host"])


def _audit(job: MigrationJob) -> None:
    result = AuditEntry.Result.SUCCEEDED if job.state == State.SUCCEEDED else AuditEntry.Result.FAILED
    host = job.destination if job.state == State.SUCCEEDED else job.source
    message = (f"{job.mode} migration {job.source_name} → {job.destination_name} (job {job.pk}): "
               f"{job.get_state_display()}")
    if job.error:
        message += f". {job.error}"
    audit.record(actor=job.actor, actor_name=job.actor_name, action="domain.migrated", host=host,
                 host_name=host.name if host else job.source_name, domain_uuid=job.domain_uuid,
                 domain_name=job.domain_name, result=result, message=message[:4000])


# --- After a restart: services.migration_settle and migrations_settle_stale run these. ---


def stale_jobs() -> QuerySet[MigrationJob]:
    """Active jobs whose runner gave no sign of life for STALE_SECONDS (or that never started)."""
    stale_before = timezone.now() - timedelta(seconds=STALE_SECONDS)
    return MigrationJob.objects.select_related("source", "destination").filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True, created_at__lt=stale_before),
        state__in=MigrationJob.ACTIVE_STATES)


def silent_seconds(job: MigrationJob) -> int | None:
    """For pages: how long the runner of a stale job has been silent; None while the job is fine or over."""
    if not job.active:
        return None
    silent = (timezone.now() - (job.heartbeat_at or job.created_at)).total_seconds()
    return int(silent) if silent > STALE_SECONDS else None


def settle(job: MigrationJob) -> MigrationJob | None:
    """Follow a stale job's migration again, or conclude the job; None when left as it is (this process
    runs it, its source does not answer yet, or another settler adopted it first)."""
    if runs_here(job.pk):
        return None
    if job.source is None or job.destination is None:
        return conclude(job, error="A host of this migration was removed from the dashboard.")
    uuid = str(job.domain_uuid)
    try:
        at_source = vmig.presence(job.source.uri, uuid)
    except virt.VirtError:
        return None  # cannot tell yet: left active, tried again next time
    if at_source.migrating_out:
        # Adopted by whoever renews the heartbeat it read as stale: one follower, however many settle.
        note, now = "Followed again after a dashboard restart.", timezone.now()
        if not MigrationJob.objects.filter(pk=job.pk, state__in=MigrationJob.ACTIVE_STATES,
                                           heartbeat_at=job.heartbeat_at).update(note=note, heartbeat_at=now):
            return None
        job.note, job.heartbeat_at = note, now
        _spawn(job.pk, _follow)
        return job
    return conclude(job, error="The dashboard restarted during the migration; libvirt no longer runs it.",
                    note="Settled after a dashboard restart.")


def _follow(job_id: int) -> None:
    """Follow a migration libvirt runs without us (adopted after a restart) until it ends."""
    close_old_connections()
    job = MigrationJob.objects.select_related("source", "destination").get(pk=job_id)
    assert job.source is not None  # noqa: S101 - checked by settle
    beat = _Heartbeat(job)
    while True:
        progress = vmig.job_progress(job.source.uri, str(job.domain_uuid))
        if progress is None:
            break
        beat.progress(progress)
        time.sleep(FOLLOW_POLL_SECONDS)
    conclude(job, error="The migration ended while the dashboard was not following it, and the machine did not "
                        "move.")


# --- Live progress. ---


def progress_of(job: MigrationJob) -> vmig.Progress | None:
    return vmig.Progress.from_dict(job.progress) if job.progress else None


def progress_context(job: MigrationJob) -> dict[str, Any]:
    """What the job's page and its progress partial show, over HTTP and pushed alike."""
    return {"job": job, "progress": progress_of(job), "silent_seconds": silent_seconds(job)}


def publish(job: MigrationJob) -> None:
    """Push the job's progress partial to the VM's group; consumers pass it to admins only."""
    context = progress_context(job)
    progress = context["progress"]
    html = render_to_string("domains/migrate_job.html#progress", context)
    live.publish_from_thread(live.domain_group(str(job.domain_uuid)), {
        "type": "live.migration", "job_id": job.pk, "uuid": str(job.domain_uuid), "state": job.state,
        "html": html, "reported_at": progress.reported_at if progress else None,
    })

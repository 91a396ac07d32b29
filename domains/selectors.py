"""Reads, always scoped to the acting user through the permission gate."""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.db.models.fields.json import KeyTransform
from django.http import Http404

from . import catalog, history, listing, migration_jobs, usage, virt
from .access import (
    DefineLimits,
    Right,
    define_limits,
    domain_scope,
    require_admin,
    rights_from,
    sees_hosts,
    storage_scope,
    visible_hosts,
)
from .errors import error_message
from .filters import ListQuery
from .models import Host, HostUsage, MigrationJob, UsagePoint
from .rows import DomainRow

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


@dataclass(frozen=True)
class UnreachableHost:
    host: Host
    message: str


@dataclass(frozen=True)
class HostSource:
    """Where the list's rows of one host come from, and how fresh they are."""

    host: Host
    watched: bool  # kept current by libvirt's events; else read for this request
    listed_at: float | None  # wall-clock time of the watcher's last whole listing


@dataclass(frozen=True)
class DomainListing:
    page: listing.Page
    unreachable: list[UnreachableHost]
    hosts: list[Host]
    sources: list[HostSource]

    @property
    def rows(self) -> tuple[DomainRow, ...]:
        return self.page.rows

    def as_json(self, row_extra: Callable[[DomainRow], dict[str, object]] = lambda row: {}) -> dict[str, object]:
        """The page as the list's `?format=json` and the API answer it; `row_extra` adds to each row's JSON."""
        page = self.page
        return {
            "count": page.count, "page": page.number, "pages": page.pages, "per_page": page.per_page,
            "domains": [row.as_json() | row_extra(row) for row in page.rows],
            "hosts": [{"host": source.host.name, "watched": source.watched, "listed_at": _iso(source.listed_at)}
                      for source in self.sources],
            "unreachable_hosts": [{"host": item.host.name, "error": item.message} for item in self.unreachable],
        }


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp is not None else None


def enabled_hosts() -> QuerySet[Host]:
    return Host.objects.filter(enabled=True)


def domain_list(*, user: User | AnonymousUser, query: ListQuery) -> DomainListing:
    """One page of every VM of every enabled host the user may see, filtered as `virsh list` filters,
    from what the hosts' watchers keep (domains.catalog)."""
    found = listing.list_for(domain_scope(user), query)
    return DomainListing(
        page=found.page,
        # Admins read libvirt's own reason (issue 10); everybody else the redacted one.
        unreachable=[UnreachableHost(host, error_message(user=user, error=inventory.error))
                     for host, inventory in found.inventories.items() if inventory.error is not None],
        hosts=found.hosts,
        sources=[HostSource(host, inventory.watched, inventory.listed_at)
                 for host, inventory in found.inventories.items()],
    )


def _gate(user: User | AnonymousUser, host_name: str, uuid: str, right: Right) -> tuple[Host, frozenset[Right]]:
    """The one scoped lookup: a VM the user may not see, or may not use this way, is a 404."""
    host = enabled_hosts().filter(name=host_name).first()
    if host is None:
        raise Http404("No such virtual machine.")
    rights = rights_from(domain_scope(user), (host.pk, uuid))
    if right not in rights:
        raise Http404("No such virtual machine.")
    return host, rights


def domain_get(
    *, user: User | AnonymousUser, host_name: str, uuid: str, right: Right = Right.VIEW
) -> DomainRow:
    host, rights = _gate(user, host_name, uuid, right)
    try:
        record = virt.get_domain(host.uri, uuid)
    except virt.DomainNotFound as error:
        raise Http404("No such virtual machine.") from error
    return DomainRow(host, record, rights)


def domain_names(*, user: User | AnonymousUser,
                 keys: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], str]:
    """The names of the VMs the user may see by (host name, UUID), as the list knows them: of these keys,
    or of every VM."""
    wanted = None if keys is None else set(keys)
    scope = domain_scope(user)
    hosts = [host for host in visible_hosts(scope)
             if wanted is None or host.name in {host_name for host_name, _uuid in wanted}]
    return {(host.name, record.uuid): record.name
            for host, inventory in catalog.inventories(hosts).items() for record in inventory.records
            if (wanted is None or (host.name, record.uuid) in wanted) and rights_from(scope, (host.pk, record.uuid))}


@dataclass(frozen=True)
class DomainPage:
    row: DomainRow
    devices: virt.DeviceSummary
    snapshots: tuple[virt.SnapshotRecord, ...]


def domain_page(*, user: User | AnonymousUser, host_name: str, uuid: str) -> DomainPage:
    host, rights = _gate(user, host_name, uuid, Right.VIEW)
    try:
        details = virt.domain_details(host.uri, uuid)
    except virt.DomainNotFound as error:
        raise Http404("No such virtual machine.") from error
    return DomainPage(DomainRow(host, details.record, rights), details.devices, details.snapshots)


def domain_guest_info(*, user: User | AnonymousUser, host_name: str, uuid: str) -> virt.GuestInfo:
    host, _rights = _gate(user, host_name, uuid, Right.VIEW)
    try:
        return virt.guest_info(host.uri, uuid)
    except virt.DomainNotFound as error:
        raise Http404("No such virtual machine.") from error


# --- Usage history (issue 14): a VM's figures over a span, from the points domains.history keeps. ---

# span: (the resolution of its points, how far back it reaches), in seconds.
USAGE_SPANS: dict[str, tuple[int, int]] = {
    span: (history.resolution_for(seconds), seconds)
    for span, seconds in (("hour", 3600), ("day", 86400), ("week", 7 * 86400), ("month", 30 * 86400))}


class UnknownSpan(ValueError):
    pass


@dataclass(frozen=True)
class UsageSeries:
    """A VM's (or its host's own) usage over a span, as columns: `t` (each point's start, epoch seconds), each
    figure of domains.history's average and its maximum as `<figure>_max`, all ordered by time."""

    span: str
    resolution: int  # seconds
    # Of its latest sample: a VM's "guest" or "allocation", a host's "host" or "domains"; None before any.
    memory_source: str | None
    columns: dict[str, list[float]]


def usage_series(*, user: User | AnonymousUser, host_name: str, uuid: str, span: str,
                 now: float | None = None) -> UsageSeries:
    """The VM's kept points of the span's resolution that start within the span (ending `now`); the hour
    ends with the latest sample's rates when they are newer than its last point.

    Read from the database only: a VM the gate hides is a 404, whatever its host says."""
    host, _rights = _gate(user, host_name, uuid, Right.VIEW)
    return _usage_columns(host, uuid, span, now)


def host_usage_series(*, user: User | AnonymousUser, host_name: str, span: str,
                      now: float | None = None) -> UsageSeries:
    """The host's own figures (its CPUs, its memory, its VMs' disk and network summed), as usage_series
    reads a VM's; for admins and operators only, as the host page."""
    return _usage_columns(_host_gate(user, host_name), None, span, now)


def _usage_columns(host: Host, uuid: str | None, span: str, now: float | None) -> UsageSeries:
    """The series of one VM of `host`, or with `uuid` None the host's own."""
    if span not in USAGE_SPANS:
        raise UnknownSpan(f"Unknown span: choose one of {', '.join(USAGE_SPANS)}.")
    resolution, seconds = USAGE_SPANS[span]
    since = int(time.time() if now is None else now) - seconds
    names = [name for figure in history.FIGURES for name in (figure, f"{figure}_max")]
    rows = (UsagePoint.objects.filter(host=host, domain_uuid=uuid, resolution=resolution, start__gte=since)
            .order_by("start").values_list("start", *names))
    columns: dict[str, list[float]] = {name: [] for name in ("t", *names)}
    for start, *values in rows:
        columns["t"].append(start)
        for name, value in zip(names, values, strict=True):
            columns[name].append(round(value, 3))
    key = uuid.lower() if uuid is not None else history.HOST
    latest = HostUsage.objects.filter(host=host).values_list("taken_at", KeyTransform(key, "rates")).first()
    taken_at, rates = latest if latest is not None else (0.0, None)
    if (span == "hour" and rates and all(figure in rates for figure in history.FIGURES)
            and taken_at >= (columns["t"][-1] + resolution if columns["t"] else since)):
        # The latest sample is in a bucket still open: the chart reaches now, as its pushes will go on.
        columns["t"].append(taken_at)
        for figure in history.FIGURES:
            columns[figure].append(round(rates[figure], 3))
            columns[f"{figure}_max"].append(round(rates[figure], 3))
    return UsageSeries(span, resolution, rates.get("memory_source") if rates else None, columns)


@dataclass(frozen=True)
class Consumer:
    """A VM among the top consumers, by its latest sample's rates."""

    host: Host
    uuid: str
    name: str
    host_cpu_percent: float  # of its host's CPUs: what it takes from the host
    cpu_percent: float  # of its own vCPUs
    memory_used_kib: float
    memory_source: str


@dataclass(frozen=True)
class TopConsumers:
    cpu: list[Consumer]
    memory: list[Consumer]


def top_consumers(*, user: User | AnonymousUser, hosts: list[Host], count: int = 5) -> TopConsumers:
    """The VMs of these hosts taking the most of their host's CPUs and using the most memory now, among
    those the user may see ("which VM is eating this host?")."""
    scope = domain_scope(user)
    latest = usage.latest(host.pk for host in hosts)

    def candidates(ranked: Callable[[usage.LatestUsage], tuple[str, ...]]) -> list[Consumer]:
        # Who sees every VM: each host's own leaders (usage.TOP_KEPT of them) hold the top; others: their VMs.
        found = []
        for host in hosts:
            sample = latest.get(host.pk)
            if sample is None:
                continue
            uuids = ranked(sample) if scope is None else [uuid for host_id, uuid in scope if host_id == host.pk]
            found += [_consumer(host, uuid, sample.domains[uuid]) for uuid in uuids if uuid in sample.domains]
        return found

    return TopConsumers(
        heapq.nlargest(count, candidates(lambda sample: sample.top_cpu), key=lambda vm: vm.host_cpu_percent),
        heapq.nlargest(count, candidates(lambda sample: sample.top_memory), key=lambda vm: vm.memory_used_kib))


def _consumer(host: Host, uuid: str, figures: dict[str, Any]) -> Consumer:
    return Consumer(host, uuid, figures["name"], figures["host_cpu_percent"], figures["cpu_percent"],
                    figures["memory_used_kib"], figures["memory_source"])


def _host_gate(user: User | AnonymousUser, host_name: str) -> Host:
    """An enabled host, for those who see hosts (access.sees_hosts: admins and operators); everybody else,
    and a host that is unknown or disabled, gets the same 404."""
    host = enabled_hosts().filter(name=host_name).first() if sees_hosts(user) else None
    if host is None:
        raise Http404("No such host.")
    return host


def host_get(*, user: User | AnonymousUser, host_name: str) -> Host:
    """The gate of a host's own pages (its networks, its storage): _host_gate's 404 for everybody else."""
    return _host_gate(user, host_name)


@dataclass(frozen=True)
class HostPage:
    """One host as its page shows it: what it says now (or why it does not answer) and its latest usage
    sample, which outlives the host's answers (the charts read the kept history: host_usage_series)."""

    host: Host
    facts: virt.HostFacts | None  # None when the host does not answer
    error: str  # why it does not answer, as this user may read it; "" when it does
    pools: tuple[virt.PoolCapacity, ...] | None  # None when they could not be read
    pools_error: str
    taken_at: float | None  # the latest usage sample's time (epoch seconds); None before any
    rates: dict[str, Any] | None  # the host's own figures over that sample's interval; None before two samples
    memory_free_kib: int | None  # of that sample; None when the host does not tell (the test driver)
    consumers: TopConsumers  # its VMs using the most, by that sample

    @property
    def sampled_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.taken_at, UTC) if self.taken_at is not None else None


def _host_now(uri: str) -> tuple[virt.HostFacts, tuple[virt.PoolCapacity, ...] | virt.VirtError]:
    """The host's facts, and its pools (or why they could not be read: the facts are worth showing anyway)."""
    facts = virt.host_facts(uri)
    try:
        return facts, virt.pool_capacities(uri)
    except virt.VirtError as error:
        return facts, error


def host_page(*, user: User | AnonymousUser, host_name: str) -> HostPage:
    """A host that does not answer within the host deadline still has its page: the error in place of what
    it says now, and what the database keeps about it."""
    host = _host_gate(user, host_name)
    answer = virt.fan_out.run({host: host.uri}, _host_now, settings.HOST_DEADLINE_SECONDS)[host]
    facts, pools, error, pools_error = None, None, "", ""
    if isinstance(answer, virt.VirtError):
        error = error_message(user=user, error=answer)
    else:
        facts, found = answer
        if isinstance(found, virt.VirtError):
            pools_error = error_message(user=user, error=found)
        else:
            pools = found
    latest = usage.latest([host.pk]).get(host.pk)
    free = HostUsage.objects.filter(host=host).values_list("counters__memory_free_kib", flat=True).first()
    return HostPage(host, facts, error, pools, pools_error, latest.taken_at if latest else None,
                    latest.host if latest else None, free, top_consumers(user=user, hosts=[host]))


def host_list() -> QuerySet[Host]:
    return Host.objects.all()


def define_hosts(*, user: User) -> list[Host]:
    """The enabled hosts this user may define VMs on."""
    return [host for host in enabled_hosts() if define_limits(user, host) is not None]


def may_define(*, user: User) -> bool:
    """Whether the user may define a VM on some enabled host (the list's "New VM"): the first one found will do."""
    return any(define_limits(user, host) is not None for host in enabled_hosts().iterator())


@dataclass(frozen=True)
class DefineContext:
    host: Host
    choices: virt.DefineChoices
    limits: DefineLimits

    def in_use(self) -> virt.HostInUse:
        """What a new VM must not collide with on the host: read when a filled form is checked, not for a blank one."""
        return virt.host_in_use(self.host.uri)


def define_context(*, user: User, host_name: str) -> DefineContext:
    host = enabled_hosts().filter(name=host_name).first()
    limits = define_limits(user, host) if host is not None else None
    if host is None or limits is None:
        raise Http404("No such host.")
    # The form offers only what the user may use; the service checks the spec again.
    choices = virt.define_choices(host.uri)
    choices = dataclasses.replace(choices, volumes=limits.storage.usable_volumes(choices.volumes),
                                  pools=limits.storage.usable_pools(choices.pools))
    return DefineContext(host, choices, limits)


def define_preview(*, context: DefineContext, spec: virt.DomainSpec) -> str:
    """The XML that defining `spec` would give, refused (ValidationError) as defining it would be."""
    if problems := context.limits.problems(spec):
        raise ValidationError(problems)
    return virt.preview_domain_xml(context.host.uri, spec)


# --- Migration: admins only; every other user gets the same 404 as for a VM that does not exist. ---


@dataclass(frozen=True)
class Destination:
    host: Host
    reachable: bool
    message: str


@dataclass(frozen=True)
class MigrationPage:
    row: DomainRow
    destinations: list[Destination]
    chosen: Host | None
    checks: list[virt.migration.Check]
    jobs: list[MigrationJob]
    silent_seconds: int | None = None  # the active job's runner stopped answering this long ago

    @property
    def live(self) -> bool:
        return virt.migration.moves_live(self.row.record.state)

    @property
    def blocked(self) -> bool:
        return self.chosen is None or any(not check.ok for check in self.checks)

    @property
    def active_job(self) -> MigrationJob | None:
        return next((job for job in self.jobs if job.active), None)


def migration_page(*, user: User | AnonymousUser, host_name: str, uuid: str, destination_name: str = "",
                   options: virt.migration.MigrationOptions | None = None) -> MigrationPage:
    """The host picker for one VM: every other enabled host, whether it answers, and the pre-checks of one.

    A job a restart left behind shows as stale; the supervisor settles it (a read never writes)."""
    require_admin(user)
    row = domain_get(user=user, host_name=host_name, uuid=uuid)
    others = list(enabled_hosts().exclude(pk=row.host.pk))
    answers = virt.fan_out.run({host: host.uri for host in others}, virt.host_facts, settings.HOST_DEADLINE_SECONDS)
    destinations = [
        Destination(host, not isinstance(answer, virt.VirtError),
                    str(answer) if isinstance(answer, virt.VirtError) else "")
        for host, answer in answers.items()
    ]
    chosen = next((d.host for d in destinations if d.host.name == destination_name and d.reachable), None)
    checks: list[virt.migration.Check] = []
    if chosen is not None:
        options = (options or virt.migration.MigrationOptions()).for_state(row.record.state)
        checks = [virt.migration.Check("options", virt.migration.CheckStatus.FAILED, problem)
                  for problem in options.problems()]
        checks += virt.migration.precheck(row.host.uri, chosen.uri, row.uuid, options,
                                          dest_address=chosen.migration_address)
    jobs = list(MigrationJob.objects.filter(domain_uuid=row.uuid)[:10])
    active = next((job for job in jobs if job.active), None)
    return MigrationPage(row, destinations, chosen, checks, jobs,
                         migration_jobs.silent_seconds(active) if active is not None else None)


def migration_job_get(*, user: User | AnonymousUser, job_id: int) -> MigrationJob:
    """The job as it stands: a stale one stays as it is until the supervisor settles it (reads never write)."""
    require_admin(user)
    job = MigrationJob.objects.select_related("source", "destination").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such migration.")
    return job


# --- A VM's hardware page: what it has, and what the user may give it. ---


@dataclass(frozen=True)
class HardwarePage:
    row: DomainRow
    hardware: virt.hardware.Hardware
    images: tuple[virt.VolumeInfo, ...]  # for a CD-ROM: shared images and the user's own volumes
    volumes: tuple[virt.VolumeInfo, ...]  # to attach as a disk: the user's own, not attached here already
    pools: tuple[str, ...]  # for new volumes
    networks: tuple[str, ...]
    may_use_bridges: bool
    may_see_paths: bool


def hardware_page(*, user: User, host_name: str, uuid: str) -> HardwarePage:
    """For those who may operate the VM; everybody else gets the gate's 404."""
    host, rights = _gate(user, host_name, uuid, Right.OPERATE)
    try:
        record = virt.get_domain(host.uri, uuid)
        hardware = virt.hardware.domain_hardware(host.uri, uuid)
    except virt.DomainNotFound as error:
        raise Http404("No such virtual machine.") from error
    choices = virt.define_choices(host.uri)
    scope = storage_scope(user, host)
    attached = {disk.volume.key for disk in hardware.disks if disk.volume is not None}
    return HardwarePage(
        row=DomainRow(host, record, rights),
        hardware=hardware,
        images=scope.usable_volumes(choices.volumes),
        volumes=tuple(volume for volume in choices.volumes
                      if scope.may_boot(volume.key) and volume.key not in attached),
        pools=scope.usable_pools(choices.pools),
        networks=choices.networks,
        may_use_bridges=user.sees_every_domain,
        may_see_paths=user.is_admin,
    )


def domain_definition(*, user: User, host_name: str, uuid: str) -> tuple[DomainRow, str]:
    """Admins: the VM and the definition it boots next, for the XML editor."""
    require_admin(user)
    row = domain_get(user=user, host_name=host_name, uuid=uuid)
    return row, virt.hardware.domain_xml(row.host.uri, uuid)

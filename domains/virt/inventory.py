"""Reading what a host has: its facts and its domains, in bulk.

A listing costs a constant number of round trips per host (listAllDomains with virsh's own
filter flags, a few flag-only listings for the boolean columns, one domainListGetStats), plus
one metadata call per domain for its title (its definition instead when its statistics lack vCPUs
and memory, as a shut-off QEMU domain's do: one call for the three), unless the caller already knows
them (the watchers learn of a new title or definition from libvirt's metadata and define events),
and one snapshotNum per domain that has snapshots. Those per-domain calls go out together over the
one connection (libvirt's remote driver multiplexes concurrent calls), so over a slow link they cost
a few round trips, not one per domain.
"""

from __future__ import annotations

import functools
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import libvirt
from django.utils.translation import gettext_lazy as _

from .addresses import shown_addresses
from .connections import NO_ANSWER_IN_TIME, connection
from .errors import HostUnreachable, VirtError
from .states import SAVED_LABEL, DomainState, reason_label, state_from_number

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise, StrPromise

# virsh list's options and the listAllDomains flags they add, exactly as virsh builds them.
_FILTER_FLAGS: dict[str, int] = {
    "persistent": libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT,
    "transient": libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT,
    "with-managed-save": libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE,
    "without-managed-save": libvirt.VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE,
    "autostart": libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART,
    "no-autostart": libvirt.VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART,
    "with-snapshot": libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT,
    "without-snapshot": libvirt.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT,
    "state-running": libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING,
    "state-paused": libvirt.VIR_CONNECT_LIST_DOMAINS_PAUSED,
    "state-shutoff": libvirt.VIR_CONNECT_LIST_DOMAINS_SHUTOFF,
    "state-other": libvirt.VIR_CONNECT_LIST_DOMAINS_OTHER,
}
LIST_OPTIONS: tuple[str, ...] = ("all", "inactive", *_FILTER_FLAGS)

_ACTIVE = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
_INACTIVE = libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE
_EVERY = _ACTIVE | _INACTIVE


def list_flags(options: Collection[str]) -> int:
    """The flags `virsh list <options>` passes to listAllDomains (tools/virsh-domain-monitor.c)."""
    unknown = set(options) - set(LIST_OPTIONS)
    if unknown:
        raise ValueError(f"unknown list options: {sorted(unknown)}")
    flags = _ACTIVE
    if "inactive" in options or "state-shutoff" in options:
        flags = _INACTIVE
    if "all" in options:
        flags = _EVERY
    for option, flag in _FILTER_FLAGS.items():
        if option in options:
            flags |= flag
    return flags


_STATE_RUNNING = libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING
_STATE_PAUSED = libvirt.VIR_CONNECT_LIST_DOMAINS_PAUSED
_STATE_SHUTOFF = libvirt.VIR_CONNECT_LIST_DOMAINS_SHUTOFF
_STATE_OTHER = libvirt.VIR_CONNECT_LIST_DOMAINS_OTHER


# libvirt's paired filters: the flag that keeps a domain whose value is true, the one for false, the value.
_PAIRED_FILTERS: tuple[tuple[int, int, Callable[[DomainRecord], bool]], ...] = (
    # libvirt's "active" is "has an id", which a crashed domain of some drivers keeps.
    (_ACTIVE, _INACTIVE, lambda record: record.active),
    (libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT, libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT,
     lambda record: record.persistent),
    (libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE, libvirt.VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE,
     lambda record: record.managed_save),
    (libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART, libvirt.VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART,
     lambda record: record.autostart),
    (libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT, libvirt.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT,
     lambda record: record.snapshots > 0),
)


def record_matches(record: DomainRecord, options: Collection[str]) -> bool:
    """Whether `virsh list <options>` would list the domain: listAllDomains' filter, in Python.

    Mirrors virDomainObjMatchFilter (src/conf/virdomainobjlist.c) on the flags list_flags builds,
    so the list can decide from the watchers' records which VMs a filtered view holds.
    """
    return record_matcher(options)(record)


def record_matcher(options: Collection[str]) -> Callable[[DomainRecord], bool]:
    """record_matches for many records with the same options: only the checks the options ask for."""
    return _matcher(list_flags(options))


@functools.lru_cache(maxsize=256)
def _matcher(flags: int) -> Callable[[DomainRecord], bool]:
    checks: list[Callable[[DomainRecord], bool]] = []
    if flags & (_STATE_RUNNING | _STATE_PAUSED | _STATE_SHUTOFF | _STATE_OTHER):
        named = {DomainState.RUNNING: _STATE_RUNNING, DomainState.PAUSED: _STATE_PAUSED,
                 DomainState.SHUTOFF: _STATE_SHUTOFF}
        states = frozenset(state for state, flag in named.items() if flags & flag)
        others = bool(flags & _STATE_OTHER)
        checks.append(lambda record: record.state in states or (others and record.state not in named))
    for yes, no, value in _PAIRED_FILTERS:
        # Neither flag keeps everything, and so do both.
        if flags & yes and not flags & no:
            checks.append(value)
        elif flags & no and not flags & yes:
            checks.append(lambda record, value=value: not value(record))  # type: ignore[misc]
    if not checks:
        return lambda record: True
    if len(checks) == 1:
        return checks[0]
    return lambda record: all(check(record) for check in checks)


@dataclass(frozen=True, slots=True)
class DomainRecord:
    uuid: str
    name: str
    title: str
    state: DomainState
    reason: str
    persistent: bool
    autostart: bool
    managed_save: bool
    snapshots: int
    vcpus: int
    memory_kib: int
    id: int | None
    addresses: tuple[str, ...] = ()  # as the guest agent (or a DHCP lease) last reported them, when known
    address_source: str = ""  # where they came from: addresses.AddressSource, "" when none are known

    @property
    def active(self) -> bool:
        """Running or paused: only an active domain has an id, as in `virsh list`."""
        return self.id is not None

    @property
    def saved(self) -> bool:
        """Shut off with a managed save image: the list calls its state 'saved'."""
        return self.state is DomainState.SHUTOFF and self.managed_save

    @property
    def state_label(self) -> str:
        """virsh's state name, or 'saved': the machine value (data-state, JSON, sorting, CSS), in English."""
        return SAVED_LABEL if self.saved else self.state.label

    @property
    def state_display(self) -> StrPromise:
        """The same state in the reader's language: the words a person reads."""
        return _(self.state_label)  # a variable on purpose: states.py marked every state

    @property
    def reason_display(self) -> StrOrPromise:
        """Why it is in that state, in the reader's language; `reason` stays virsh's word."""
        # A variable on purpose: states.py marked every reason. (gettext("") would be the catalogue's header.)
        return _(self.reason) if self.reason else ""


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str
    libvirt_version: str
    hypervisor: str
    hypervisor_version: str
    cpu_model: str
    cpus: int
    memory_mib: int
    vms: int  # defined or running, as `virsh list --all` counts them
    running: int


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def host_facts(uri: str) -> HostFacts:
    """What a host is: versions, CPU, memory and how many VMs, in a handful of calls (no listing)."""
    with connection(uri) as conn:
        model, memory_mib, cpus, *_ = conn.getInfo()
        running = conn.numOfDomains()
        return HostFacts(
            hostname=conn.getHostname(),
            libvirt_version=_version(conn.getLibVersion()),
            hypervisor=conn.getType(),
            hypervisor_version=_version(conn.getVersion()),
            cpu_model=model,
            cpus=cpus,
            memory_mib=memory_mib,
            vms=running + conn.numOfDefinedDomains(),
            running=running,
        )


_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON
)
# A listing of at least this many domains sends its per-domain calls from a pool of threads shared by every
# host: enough for 25 hosts listed at once, as libvirtd serves 5 calls of one client at a time by default
# (max_client_requests).
_CONCURRENT_FROM, _CONCURRENT_CALLS = 8, 128
_per_domain_calls = ThreadPoolExecutor(max_workers=_CONCURRENT_CALLS, thread_name_prefix="virt-domain-read")


def list_domains(uri: str, options: Collection[str] = ("all",)) -> list[DomainRecord]:
    """The domains `virsh -c uri list <options>` would print, with every list column filled."""
    flags = list_flags(options)
    with connection(uri) as conn:
        return records_for(uri, conn, conn.listAllDomains(flags))


def get_domain(uri: str, uuid: str) -> DomainRecord:
    with connection(uri) as conn:
        return records_for(uri, conn, [conn.lookupByUUIDString(uuid)])[0]


def records_for(uri: str, conn: libvirt.virConnect, domains: list[libvirt.virDomain],
                known: Mapping[str, DomainRecord] | None = None) -> list[DomainRecord]:
    """Every list column of `domains`. Of a domain in `known` (by UUID, as last read), the title is not read
    again, nor the vCPUs and memory its statistics lack."""
    if not domains:
        return []

    def uuids_with(flag: int) -> set[str]:
        return {dom.UUIDString() for dom in conn.listAllDomains(_EVERY | flag)}

    # Four round trips at once rather than one after another (a slow link's latency, paid once).
    persistent, autostart, managed_save, with_snapshots = _per_domain_calls.map(uuids_with, (
        libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART,
        libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE, libvirt.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT))
    last_read = known or {}

    def read(listed: tuple[libvirt.virDomain, dict[str, int]]) -> DomainRecord | None:
        dom, stats = listed
        uuid = dom.UUIDString()
        before = last_read.get(uuid)
        try:
            snapshots = dom.snapshotNum() if uuid in with_snapshots else 0
            vcpus, memory_kib = stats.get("vcpu.current"), stats.get("balloon.current")
            if before is not None:
                title = before.title
                if vcpus is None or memory_kib is None:
                    vcpus, memory_kib = before.vcpus, before.memory_kib
            elif vcpus is None or memory_kib is None:
                # Statistics without the vcpu/balloon groups (an inactive domain, the test driver): its
                # definition tells them, and its title, in one call.
                title, vcpus, memory_kib = _defined(dom)
            else:
                title = _title(dom)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None  # undefined since the listing: it is simply gone, not the host
            raise
        state = state_from_number(stats.get("state.state", 0))
        domain_id = dom.ID()
        return DomainRecord(
            uuid=uuid,
            name=dom.name(),
            title=title,
            state=state,
            reason=reason_label(state, stats.get("state.reason", 0)),
            persistent=uuid in persistent,
            autostart=uuid in autostart,
            managed_save=uuid in managed_save,
            snapshots=snapshots,
            vcpus=vcpus,
            memory_kib=memory_kib,
            id=domain_id if domain_id >= 0 else None,
        )

    listed = conn.domainListGetStats(domains, _STATS)
    # name(), UUIDString() and ID() are answered from the domain object; only the title (or definition) and
    # the snapshot count go to the host, so a large listing sends them all at once.
    reads = map(read, listed) if len(listed) < _CONCURRENT_FROM else _per_domain_calls.map(read, listed)
    records = [record for record in reads if record is not None]
    # A running guest's addresses, as its agent (else a DHCP lease) last told them: one read of the store for
    # the whole listing.
    shown = shown_addresses(uri, [record.uuid for record in records if record.id is not None])
    return [replace(record, address_source=str(shown[record.uuid][0]), addresses=shown[record.uuid][1])
            if record.uuid in shown else record for record in records]


def _defined(dom: libvirt.virDomain) -> tuple[str, int, int]:
    """The title, vCPUs and memory (KiB: libvirt writes every size in KiB) of the domain's definition."""
    root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 (libvirt's own XML)
    vcpu = root.find("vcpu")
    vcpus = int(vcpu.get("current", vcpu.text or "1")) if vcpu is not None else 1
    memory = root.findtext("currentMemory") or root.findtext("memory") or "0"
    return root.findtext("title") or "", vcpus, int(memory)


def _title(dom: libvirt.virDomain, *, again_if_error_lost: bool = True) -> str:
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None) or ""
    except libvirt.libvirtError as error:
        code = error.get_error_code()
        if code == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return ""
        # libvirt keeps its last error per thread, and freeing any libvirt object clears it. When the
        # garbage collector frees a cycle holding one (on whichever thread it runs) between the failed
        # call and libvirt-python reading the error, "no title" arrives without a code. Asking again
        # tells that apart from a real failure, which would otherwise fail the host's whole listing.
        if code is None and again_if_error_lost:
            return _title(dom, again_if_error_lost=False)
        raise


Result = TypeVar("Result")
Key = TypeVar("Key")


class HostFanOut:
    """Runs one call per host in parallel, each bounded by a deadline.

    A host whose previous call has not returned yet (a hung TCP or SSH connect) is reported
    unreachable at once instead of tying up another thread.
    """

    def __init__(self, max_workers: int = 16) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="virt-host")
        self._busy: dict[str, Future[object]] = {}
        self._lock = threading.Lock()

    def run(
        self,
        uris: Mapping[Key, str],
        call: Callable[[str], Result],
        deadline: float,
    ) -> dict[Key, Result | VirtError]:
        futures: dict[Key, Future[Result] | None] = {}
        with self._lock:
            for key, uri in uris.items():
                pending = self._busy.get(uri)
                if pending is not None and not pending.done():
                    futures[key] = None
                    continue
                future = self._executor.submit(call, uri)
                self._busy[uri] = future  # type: ignore[assignment]
                futures[key] = future
        ends_at = time.monotonic() + deadline
        results: dict[Key, Result | VirtError] = {}
        for key, maybe_future in futures.items():
            if maybe_future is None:
                results[key] = HostUnreachable(NO_ANSWER_IN_TIME)
                continue
            try:
                results[key] = maybe_future.result(timeout=max(0.0, ends_at - time.monotonic()))
            except TimeoutError:
                results[key] = HostUnreachable(NO_ANSWER_IN_TIME)
            except VirtError as error:
                results[key] = error
        return results


fan_out = HostFanOut()

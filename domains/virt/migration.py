"""Moving a domain between hosts: pre-checks, the migration itself with its progress, abort, and where it is.

The dashboard's job runner (domains.migration_jobs) calls these from its own thread; nothing here touches the
database. A live migration is libvirt's virDomainMigrateToURI3 (peer-to-peer: the source daemon
drives it, to the destination URI as registered) or virDomainMigrate3 with a destination connection
(managed: this process drives the phases). Progress comes from the source's job statistics, read
when libvirt says an iteration ended (VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION) and at least every
`poll_seconds`; the final figures from the job-completed event, else the destination's completed job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML, not untrusted input
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import libvirt
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .connections import connection, pool, translate
from .errors import HostUnreachable, OperationInvalid, VirtError
from .states import DomainState, state_from_number
from .transports import ssh_route

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger(__name__)


class MigrationFailed(VirtError):
    default_message = _("The migration failed.")


class MigrationCancelled(MigrationFailed):
    default_message = _("The migration was cancelled; the machine stays where it was.")


class CopyStorage(StrEnum):
    NONE = ""
    ALL = "all"
    INCREMENTAL = "incremental"


def moves_live(state: DomainState) -> bool:
    """Whether a domain in this state moves live (it runs, paused or not, and keeps running) rather than
    offline (a shut-off domain's definition moves)."""
    return state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.BLOCKED)


@dataclass(frozen=True)
class MigrationOptions:
    live: bool = True  # live for running or paused domains, offline (definition only) for shut-off ones
    persist_dest: bool = True
    undefine_source: bool = True
    copy_storage: CopyStorage = CopyStorage.NONE
    peer_to_peer: bool = True
    tunnelled: bool = False
    bandwidth_mib: int | None = None  # MiB/s
    max_downtime_ms: int | None = None
    auto_converge: bool = False
    compressed: bool = False
    postcopy: bool = False

    def for_state(self, state: DomainState) -> MigrationOptions:
        """These options with the mode a domain in `state` moves in, whatever was asked."""
        return dataclasses.replace(self, live=moves_live(state))

    def problems(self) -> list[StrOrPromise]:
        """What is wrong with this combination, worded as what to change."""
        found: list[StrOrPromise] = []
        if self.undefine_source and not self.persist_dest:
            found.append(_("Removing it from the source needs 'keep it defined on the destination': tick both, "
                           "or untick 'remove from the source'."))
        if not self.live:
            if not self.persist_dest:
                found.append(_("An offline migration moves only the definition: tick 'keep it defined on the "
                               "destination'."))
            if self.copy_storage:
                found.append(_("libvirt copies storage only while the machine runs: untick 'copy storage', or "
                               "start the machine first."))
            if self.postcopy or self.auto_converge or self.compressed or self.tunnelled:
                found.append(_("Post-copy, auto-converge, compression and tunnelling apply to live migrations "
                               "only: untick them."))
        if self.tunnelled and not self.peer_to_peer:
            found.append(_("A tunnelled migration goes through the daemons: tick 'peer-to-peer' too."))
        if self.tunnelled and self.copy_storage:
            found.append(_("libvirt cannot copy storage through a tunnel: untick one of them."))
        if self.bandwidth_mib is not None and self.bandwidth_mib < 1:
            found.append(_("The bandwidth limit is in MiB/s and at least 1; leave it empty for no limit."))
        if self.max_downtime_ms is not None and self.max_downtime_ms < 1:
            found.append(_("The maximum downtime is in milliseconds and at least 1; leave it empty for the default."))
        return found

    def flags(self) -> int:
        flags = 0
        if self.live:
            flags |= libvirt.VIR_MIGRATE_LIVE
        else:
            flags |= libvirt.VIR_MIGRATE_OFFLINE
        if self.persist_dest:
            flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
        if self.undefine_source:
            flags |= libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if self.copy_storage is CopyStorage.ALL:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        elif self.copy_storage is CopyStorage.INCREMENTAL:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
        if self.peer_to_peer:
            flags |= libvirt.VIR_MIGRATE_PEER2PEER
        if self.tunnelled:
            flags |= libvirt.VIR_MIGRATE_TUNNELLED
        if self.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if self.compressed:
            flags |= libvirt.VIR_MIGRATE_COMPRESSED
        if self.postcopy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        return flags

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.bandwidth_mib:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(self.bandwidth_mib)
        return params

    def as_dict(self) -> dict[str, Any]:
        return {
            "live": self.live, "persist_dest": self.persist_dest, "undefine_source": self.undefine_source,
            "copy_storage": str(self.copy_storage), "peer_to_peer": self.peer_to_peer, "tunnelled": self.tunnelled,
            "bandwidth_mib": self.bandwidth_mib, "max_downtime_ms": self.max_downtime_ms,
            "auto_converge": self.auto_converge, "compressed": self.compressed, "postcopy": self.postcopy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MigrationOptions:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "copy_storage" in known:
            known["copy_storage"] = CopyStorage(known["copy_storage"] or "")
        return cls(**known)


# --- Pre-checks. ---


class CheckStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the destination's driver cannot tell; libvirt checks again when migrating


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    message: StrOrPromise

    @property
    def ok(self) -> bool:
        return self.status is not CheckStatus.FAILED


def _ok(name: str, message: StrOrPromise) -> Check:
    return Check(name, CheckStatus.OK, message)


def _failed(name: str, message: StrOrPromise) -> Check:
    return Check(name, CheckStatus.FAILED, message)


def _unknown(name: str, message: StrOrPromise) -> Check:
    return Check(name, CheckStatus.UNKNOWN, message)


@dataclass(frozen=True)
class _Guest:
    name: str
    uuid: str
    state: DomainState
    persistent: bool
    max_memory_kib: int
    xml: ET.Element


def _text(element: ET.Element | None, default: str = "") -> str:
    return (element.text or default).strip() if element is not None else default


def precheck(source_uri: str, dest_uri: str, uuid: str, options: MigrationOptions, *,
             dest_address: str = "") -> list[Check]:
    """What the destination has for this domain, check by check; a failed check says what to change.

    `dest_address` is the destination's registered migration address ("" for libvirt's default).
    """
    with connection(source_uri) as source:
        dom = source.lookupByUUIDString(uuid)
        state, _reason = dom.state()
        guest = _Guest(
            name=dom.name(), uuid=dom.UUIDString(), state=state_from_number(state), persistent=bool(dom.isPersistent()),
            max_memory_kib=dom.maxMemory(),
            xml=ET.fromstring(dom.XMLDesc(0 if dom.isActive() else libvirt.VIR_DOMAIN_XML_INACTIVE)),  # noqa: S314
        )
    checks = [_mode_check(guest, options)]
    try:
        with pool.use(dest_uri) as dest:
            dest.getLibVersion()
            checks += _destination_checks(dest, dest_uri, guest, options, dest_address)
    except (VirtError, libvirt.libvirtError):
        pool.discard(dest_uri)
        return [*checks, _failed("reachable", _("The destination does not answer: pick another host, or check it "
                                                "under Hosts."))]
    return [*checks, _path_check(source_uri, dest_address or urlsplit(dest_uri).hostname or "", options)]


def _destination_checks(dest: libvirt.virConnect, dest_uri: str, guest: _Guest, options: MigrationOptions,
                        dest_address: str) -> list[Check]:
    checks = [_ok("reachable", _("The destination answers.")), _address_check(dest_address, options)]
    for check in (_cpu_check, _emulator_check, _disk_checks, _network_checks, _identity_check, _memory_check):
        try:
            found = check(dest, guest, options)
        except libvirt.libvirtError as error:
            translated = translate(error)
            if isinstance(translated, HostUnreachable):
                pool.discard(dest_uri)
            name = check.__name__.strip("_").removesuffix("_checks").removesuffix("_check")
            found = [_failed(name, format_lazy(_("The destination could not be asked: {error}"), error=translated))]
        checks.extend(found if isinstance(found, list) else [found])
    return checks


def _mode_check(guest: _Guest, options: MigrationOptions) -> Check:
    if moves_live(guest.state):
        if not options.live:
            return _failed("mode", _("The machine runs: it can only move live."))
        return _ok("mode", format_lazy(_("Live: the machine is {state} and keeps running during the move."),
                                       state=guest.state.display))
    if guest.state is DomainState.SHUTOFF and guest.persistent:
        if options.live:
            return _failed("mode", _("The machine is shut off: it can only move offline."))
        return _ok("mode", _("Offline: the machine is shut off; its definition moves."))
    return _failed("mode", format_lazy(_("A machine that is {state} cannot move: start it, or shut it off."),
                                       state=guest.state.display))


def _address_check(dest_address: str, options: MigrationOptions) -> Check:
    if not options.live:
        return _ok("address", _("Offline: only the definition moves, through the daemons."))
    if options.tunnelled:
        return _ok("address", _("Tunnelled: memory and disks move through the daemons' own connection."))
    if dest_address:
        goes = (_("Memory and disks go to {address}, the destination's registered migration address.")
                if options.copy_storage else
                _("Memory goes to {address}, the destination's registered migration address."))
        return _ok("address", format_lazy(goes, address=dest_address))
    return _ok("address", _("The destination has no migration address registered: the source sends to the name "
                            "the destination's libvirt gives (its migration_host, else its host name)."))


# libvirt's first migration port (qemu.conf migration_port_min): where the source's QEMU connects.
MIGRATION_PORT = 49152
PROBE_SECONDS = 6.0
_CHANNEL_REFUSAL = re.compile(r"open failed: (?:connect failed: )?(.+)")


def _path_check(source_uri: str, target: str, options: MigrationOptions) -> Check:
    """Whether the source reaches where the migration goes, asked of the source itself over its SSH login.

    The source's sshd opens a TCP connection to the destination's migration address and first migration
    port (ssh -W), as the source's QEMU will. Refused means the address answers: the port opens when a
    migration starts. Silence or no route means the migration would fail, and why.
    """
    if not options.live or options.tunnelled:
        return _ok("path", _("Nothing moves outside the daemons' own connection."))
    route = ssh_route(source_uri)
    if route is None or not target:
        return _unknown("path", format_lazy(_("Whether the source reaches {target} is tested from hosts registered "
                                              "over SSH only; libvirt says so if it cannot."),
                                            target=target or _("the destination")))
    where = format_lazy(_("{target} (TCP {port}, where migrations go)"), target=target, port=MIGRATION_PORT)
    try:
        probe = subprocess.run(  # noqa: S603 - the registered route's own ssh command, no shell
            route.command_line("-o", f"ConnectTimeout={int(PROBE_SECONDS)}", "-W", _host_port(target, MIGRATION_PORT)),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=PROBE_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return _failed("path", format_lazy(_("The source gets no answer from {where} within {seconds} s: a firewall "
                                             "drops it, or the address is wrong. Let TCP 49152-49215 through between "
                                             "the hosts."), where=where, seconds=f"{PROBE_SECONDS:.0f}"))
    refusal = _CHANNEL_REFUSAL.search(probe.stderr)
    if probe.returncode == 0 or (refusal and "Connection refused" in refusal.group(1)):
        return _ok("path", format_lazy(_("The source reaches {where}."), where=where))
    if refusal:
        return _failed("path", format_lazy(_("The source cannot reach {where}: {reason}."), where=where,
                                           reason=refusal.group(1).strip()))
    reason = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"ssh exited {probe.returncode}"
    return _unknown("path", format_lazy(_("The dashboard could not log in to the source to test the way to {target}: "
                                          "{reason}"), target=target, reason=reason))


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def migration_uri(dest_address: str) -> str:
    """libvirt's native migration URI for a registered address (an IPv6 one in brackets)."""
    return f"tcp://[{dest_address}]" if ":" in dest_address else f"tcp://{dest_address}"


def _cpu_check(dest: libvirt.virConnect, guest: _Guest, options: MigrationOptions) -> Check:
    cpu = guest.xml.find("./cpu")
    mode = cpu.get("mode", "custom") if cpu is not None else ""
    if cpu is None or (mode == "custom" and cpu.find("model") is None):
        return _ok("cpu", _("The machine asks for the hypervisor's default CPU model."))
    if mode == "host-passthrough":
        return _unknown("cpu", _("The machine passes the source's CPU through: the destination needs the same CPU "
                                 "model; libvirt checks when it migrates."))
    os_type = guest.xml.find("./os/type")
    try:
        result = dest.compareHypervisorCPU(
            _text(guest.xml.find("./devices/emulator")) or None,
            os_type.get("arch") if os_type is not None else None,
            os_type.get("machine") if os_type is not None else None,
            guest.xml.get("type"),
            ET.tostring(cpu, encoding="unicode"), 0,
        )
    except libvirt.libvirtError as error:
        if error.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return _unknown("cpu", _("The destination's driver cannot compare CPUs; libvirt checks when it migrates."))
        if error.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
            return _failed("cpu", format_lazy(_("The destination cannot provide the machine's CPU: {error} Pick a "
                                                "more common CPU model for the machine, or another host."),
                                              error=translate(error)))
        raise
    model = _text(cpu.find("model"), mode)
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        return _failed("cpu", format_lazy(_("The destination cannot provide CPU model {model}: pick a more common "
                                            "CPU model for the machine, or another host."), model=model))
    return _ok("cpu", format_lazy(_("The destination provides CPU model {model}."), model=model))


def _emulator_check(dest: libvirt.virConnect, guest: _Guest, options: MigrationOptions) -> Check:
    emulator = _text(guest.xml.find("./devices/emulator")) or None
    os_type = guest.xml.find("./os/type")
    arch = os_type.get("arch") if os_type is not None else None
    machine = os_type.get("machine") if os_type is not None else None
    try:
        caps = dest.getDomainCapabilities(emulator, arch, machine, guest.xml.get("type"), 0)
    except libvirt.libvirtError as error:
        if error.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return _unknown("emulator", _("The destination's driver does not describe its emulators; libvirt checks "
                                          "when it migrates."))
        return _failed("emulator", format_lazy(
            _("The destination has no {emulator} for {arch} machine type {machine}: install it there, or pick "
              "another host."), emulator=emulator or _("emulator"), arch=arch or _("this"),
            machine=machine or _("(default)")))
    found = ET.fromstring(caps)  # noqa: S314
    return _ok("emulator", format_lazy(_("{emulator} runs machine type {machine} on the destination."),
                                       emulator=_text(found.find("path"), emulator or ""),
                                       machine=_text(found.find("machine"), machine or "")))


def _disk_sources(guest: _Guest) -> list[tuple[str, str]]:
    """(target, path) of every disk with a local source: files and block devices."""
    disks = []
    for disk in guest.xml.iterfind("./devices/disk"):
        source = disk.find("source")
        path = source.get("file") or source.get("dev") or "" if source is not None else ""
        target = disk.find("target")
        if path and disk.get("device", "disk") in ("disk", "cdrom", "floppy", "lun"):
            disks.append((target.get("dev", "?") if target is not None else "?", path))
    return disks


def _disk_checks(dest: libvirt.virConnect, guest: _Guest, options: MigrationOptions) -> list[Check]:
    checks = []
    for target, path in _disk_sources(guest):
        try:
            dest.storageVolLookupByPath(path)
            present = True
        except libvirt.libvirtError as error:
            if error.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_SUPPORT):
                raise
            present = False
        name = f"disk {target}"
        if present and options.copy_storage:
            checks.append(_failed(name, format_lazy(_("{path} is already on the destination (shared storage): "
                                                      "copying would overwrite the disk the machine uses; untick "
                                                      "'copy storage'."), path=path)))
        elif present:
            checks.append(_ok(name, format_lazy(_("{path} is on the destination's storage (shared)."), path=path)))
        elif options.copy_storage:
            checks.append(_ok(name, format_lazy(_("{path} is not on the destination: it will be copied."), path=path)))
        else:
            checks.append(_failed(name, format_lazy(_("{path} is not in any storage pool of the destination: put it "
                                                      "on shared storage, or tick 'copy storage'."), path=path)))
    return checks or [_ok("disks", _("The machine has no local disks."))]


def _network_checks(dest: libvirt.virConnect, guest: _Guest, options: MigrationOptions) -> list[Check]:
    checks = []
    for nic in guest.xml.iterfind("./devices/interface"):
        kind = nic.get("type", "")
        source = nic.find("source")
        if kind == "network":
            network = source.get("network", "") if source is not None else ""
            try:
                active = bool(dest.networkLookupByName(network).isActive())
            except libvirt.libvirtError as error:
                if error.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                    raise
                checks.append(_failed(f"network {network}", format_lazy(
                    _("The destination has no network '{network}': define and start it there, or pick another host."),
                    network=network)))
                continue
            if active:
                checks.append(_ok(f"network {network}", format_lazy(_("Network '{network}' is active on the "
                                                                      "destination."), network=network)))
            else:
                checks.append(_failed(f"network {network}", format_lazy(
                    _("Network '{network}' is defined on the destination but not active: start it there."),
                    network=network)))
        elif kind == "bridge":
            bridge = source.get("bridge", "") if source is not None else ""
            checks.append(_bridge_check(dest, bridge))
        elif kind == "user":
            checks.append(_ok("network user", _("User-mode networking needs nothing on the destination.")))
        else:
            checks.append(_unknown(f"network {kind}", format_lazy(
                _("An interface of type {kind} is not checked; libvirt checks when it migrates."), kind=kind)))
    return checks or [_ok("networks", _("The machine has no network interfaces."))]


def _bridge_check(dest: libvirt.virConnect, bridge: str) -> Check:
    name = f"bridge {bridge}"
    try:
        names = {iface.name() for iface in dest.listAllInterfaces(0)}
    except libvirt.libvirtError as error:
        if error.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            raise
        return _unknown(name, _("The destination does not list its interfaces; libvirt checks when it migrates."))
    if bridge in names:
        return _ok(name, format_lazy(_("Bridge {bridge} exists on the destination."), bridge=bridge))
    return _failed(name, format_lazy(_("The destination has no bridge {bridge}: create it there, or pick another "
                                       "host."), bridge=bridge))


def _identity_check(dest: libvirt.virConnect, guest: _Guest, options: MigrationOptions) -> Check:
    for lookup, what in ((dest.lookupByUUIDString, guest.uuid), (dest.lookupByName, guest.name)):
        try:
            lookup(what)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            continue
        taken = (_("The destination already has a machine with this UUID: remove or rename it there first.")
                 if what == guest.uuid else
                 _("The destination already has a machine with this name: remove or rename it there first."))
        return _failed("name", taken)
    return _ok("name", format_lazy(_("No machine named {name} or with its UUID on the destination."), name=guest.name))


def _memory_check(dest: libvirt.virConnect, guest: _Guest, options: MigrationOptions) -> Check:
    need = guest.max_memory_kib * 1024
    try:
        free = int(dest.getFreeMemory())
    except libvirt.libvirtError as error:
        if error.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            raise
        return _unknown("memory", _("The destination does not report its free memory."))
    figures = {"need": need // 2**20, "free": free // 2**20}
    if free >= need:
        return _ok("memory", format_lazy(_("Enough free memory on the destination ({need} MiB needed, {free} MiB "
                                           "free)."), **figures))
    if not options.live:
        return _unknown("memory", format_lazy(_("Not enough free memory on the destination to start it there now "
                                                "({need} MiB needed, {free} MiB free)."), **figures))
    return _failed("memory", format_lazy(_("Not enough free memory on the destination ({need} MiB needed, {free} MiB "
                                           "free): free some there, or pick another host."), **figures))


# --- The migration. ---


@dataclass(frozen=True)
class Progress:
    """One look at the migration job; byte counts and rates as libvirt reports them."""

    reported_at: float  # time.time() when libvirt answered
    elapsed_ms: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_bps: int = 0
    dirty_rate: int = 0  # pages per second
    page_size: int = 4096
    iteration: int = 0
    expected_downtime_ms: int | None = None
    downtime_ms: int | None = None  # final, once completed
    disk_total: int = 0
    disk_processed: int = 0
    postcopy: bool = False
    completed: bool = False

    @property
    def percent(self) -> int:
        if self.completed:
            return 100
        if not self.data_total:
            return 0
        return min(99, int(100 * self.data_processed / self.data_total))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any], *, completed: bool = False, postcopy: bool = False) -> Progress:
        downtime = stats.get("downtime")
        return cls(
            reported_at=time.time(),
            elapsed_ms=int(stats.get("time_elapsed", 0)),
            data_total=int(stats.get("data_total", 0)),
            data_processed=int(stats.get("data_processed", 0)),
            data_remaining=int(stats.get("data_remaining", 0)),
            memory_bps=int(stats.get("memory_bps", 0)),
            dirty_rate=int(stats.get("memory_dirty_rate", 0)),
            page_size=int(stats.get("memory_page_size", 4096) or 4096),
            iteration=int(stats.get("memory_iteration", 0)),
            expected_downtime_ms=None if completed or downtime is None else int(downtime),
            downtime_ms=int(downtime) if completed and downtime is not None else None,
            disk_total=int(stats.get("disk_total", 0)),
            disk_processed=int(stats.get("disk_processed", 0)),
            postcopy=postcopy,
            completed=completed,
        )


@dataclass(frozen=True)
class Outcome:
    """A migration libvirt finished: its figures for the whole move (live only), and what was not done as asked."""

    final: Progress | None
    warnings: tuple[str, ...] = ()


_URI = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _failure(error: libvirt.libvirtError) -> MigrationFailed:
    if error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
        return MigrationCancelled(detail=str(error))
    translated = translate(error)
    words = (error.get_error_message() or "").strip() or str(translated)
    words = _URI.sub("(the destination)", words)
    return MigrationFailed(f"The migration failed: {words}", detail=str(error))


def migrate(
    source_uri: str,
    dest_uri: str,
    uuid: str,
    options: MigrationOptions,
    on_progress: Callable[[Progress], None],
    *,
    dest_address: str = "",
    on_tick: Callable[[], None] | None = None,
    poll_seconds: float = 0.5,
) -> Outcome:
    """Migrate and report progress until libvirt is done; raises MigrationFailed (MigrationCancelled).

    Memory (and copied disks) go to `dest_address`, the destination's registered migration address,
    unless the migration is tunnelled or offline; "" leaves the choice to libvirt.
    """
    params = options.params()
    if dest_address and options.live and not options.tunnelled:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = migration_uri(dest_address)
    with connection(source_uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        return _MigrationCall(conn, dom, dest_uri, options, params, on_progress=on_progress, on_tick=on_tick,
                              poll_seconds=poll_seconds).run()


class _MigrationCall:
    """One migration: libvirt's migrate call, which blocks until the move is over, on a thread of its own,
    watched from this one (progress, the caller's tick, the downtime limit) until it returns.

    run() returns the Outcome, or raises MigrationFailed (MigrationCancelled) made from the libvirtError
    the migrate call raised, caught on the thread that called libvirt: libvirt keeps its last error per
    thread, so an error made anywhere else could carry another call's message.
    """

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain, dest_uri: str, options: MigrationOptions,
                 params: dict[str, Any], *, on_progress: Callable[[Progress], None],
                 on_tick: Callable[[], None] | None, poll_seconds: float) -> None:
        self._conn, self._dom, self._dest_uri, self._options = conn, dom, dest_uri, options
        self._params = params
        self._on_progress, self._on_tick, self._poll_seconds = on_progress, on_tick, poll_seconds
        self._wake = threading.Event()  # the call returned, an iteration ended, or the job completed
        self._returned = threading.Event()
        self._error: libvirt.libvirtError | None = None  # the call's own, set before _returned
        self._completed: dict[str, Any] | None = None  # the job-completed event's figures
        self._downtime_ms = options.max_downtime_ms if options.live else None  # still to set while not None
        self._postcopy = False
        self._warnings: list[str] = []

    def run(self) -> Outcome:
        with contextlib.ExitStack() as held:
            destination = None
            if not self._options.peer_to_peer:  # this process drives a managed migration's phases
                try:
                    destination = held.enter_context(pool.use(self._dest_uri))
                except HostUnreachable as error:
                    raise MigrationFailed("The migration failed: the destination does not answer.",
                                          detail=error.detail) from error
            return self._run(destination)

    def _run(self, destination: libvirt.virConnect | None) -> Outcome:
        callbacks = self._register()
        try:
            thread = threading.Thread(target=self._call, args=(destination,), name=f"migrate-{self._dom.name()}",
                                      daemon=True)
            thread.start()
            while not self._returned.is_set():
                self._wake.wait(self._poll_seconds)
                self._wake.clear()
                if self._on_tick is not None:
                    self._on_tick()
                if self._options.live and not self._returned.is_set():
                    self._look()
            thread.join()
        finally:
            for callback in callbacks:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.domainEventDeregisterAny(callback)
        if self._error is not None:
            raise _failure(self._error)
        return Outcome(self._final() if self._options.live else None, tuple(self._warnings))

    def _register(self) -> list[int]:
        if not self._options.live:
            return []
        callbacks = []
        with contextlib.suppress(libvirt.libvirtError):  # drivers without events still migrate
            callbacks.append(self._conn.domainEventRegisterAny(
                self._dom, libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, self._on_iteration, None))
            callbacks.append(self._conn.domainEventRegisterAny(
                self._dom, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_completed, None))
        return callbacks

    def _on_iteration(self, _conn: libvirt.virConnect, _dom: libvirt.virDomain, _iteration: int,
                      _opaque: object) -> None:
        self._wake.set()

    def _on_completed(self, _conn: libvirt.virConnect, _dom: libvirt.virDomain, stats: dict[str, Any],
                      _opaque: object) -> None:
        self._completed = stats
        self._wake.set()

    def _call(self, destination: libvirt.virConnect | None) -> None:
        """On the call's own thread, the one whose libvirt error says why the call failed."""
        try:
            if destination is None:
                self._dom.migrateToURI3(self._dest_uri, self._params, self._options.flags())
            else:
                self._dom.migrate3(destination, self._params, self._options.flags())
        except libvirt.libvirtError as error:
            self._error = error
        finally:
            self._returned.set()
            self._wake.set()

    def _look(self) -> None:
        """One look at the running job: set the downtime limit once it can be, report its figures."""
        try:
            stats = self._dom.jobStats(0)
        except libvirt.libvirtError:
            return  # the domain may be finishing on the destination; the call's answer says how it ended
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return
        if self._downtime_ms is not None:
            self._set_max_downtime(self._downtime_ms)
        state, reason = _state(self._dom)
        self._postcopy = self._postcopy or (state is DomainState.PAUSED
                                            and reason == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY)
        self._on_progress(Progress.from_stats(stats, postcopy=self._postcopy))

    def _set_max_downtime(self, downtime_ms: int) -> None:
        try:
            self._dom.migrateSetMaxDowntime(downtime_ms, 0)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                return  # the migration has not started yet: next time
            self._warnings.append(f"The maximum downtime was not set: {translate(error)}")
        self._downtime_ms = None

    def _final(self) -> Progress | None:
        """libvirt's figures of the whole move: from the job-completed event, else the destination's."""
        if self._completed is not None:
            return Progress.from_stats(self._completed, completed=True)
        return completed_figures(self._dest_uri, self._dom.UUIDString())


def _state(dom: libvirt.virDomain) -> tuple[DomainState, int]:
    try:
        state, reason = dom.state()
    except libvirt.libvirtError:
        return DomainState.NOSTATE, 0
    return state_from_number(state), reason


def abort(source_uri: str, uuid: str) -> None:
    """Abort the domain's migration job on the source; it keeps running there."""
    with connection(source_uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        try:
            dom.abortJob()
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                raise OperationInvalid(_("No migration of this machine is running any more.")) from error
            raise


POSTCOPY_NOT_RUNNING = _("Post-copy is possible only while a migration started with post-copy allowed is running.")


def switch_to_postcopy(source_uri: str, uuid: str) -> None:
    with connection(source_uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        try:
            dom.migrateStartPostCopy(0)
        except libvirt.libvirtError as error:
            if error.get_error_code() in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
                raise OperationInvalid(POSTCOPY_NOT_RUNNING) from error
            raise


# --- Where a domain is: for reconciling a job after a restart. ---


@dataclass(frozen=True)
class Presence:
    defined: bool  # the host knows the domain at all
    state: DomainState = DomainState.NOSTATE
    reason: int = 0
    persistent: bool = False
    migrating_out: bool = False

    @property
    def active(self) -> bool:
        return self.defined and self.state not in (DomainState.SHUTOFF, DomainState.NOSTATE)


def presence(uri: str, uuid: str) -> Presence:
    """Raises HostUnreachable when the host does not answer: 'absent' is only what a host says."""
    with connection(uri) as conn:
        try:
            dom = conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return Presence(defined=False)
            raise
        try:  # a source undefines the domain as a move ends: gone between two calls is gone
            state, reason = dom.state()
            persistent = bool(dom.isPersistent())
            stats = dom.jobStats(0) if dom.isActive() else {}
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return Presence(defined=False)
            if error.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
                stats = {}
            else:
                raise
        operation = stats.get("operation") if stats.get("type", 0) != libvirt.VIR_DOMAIN_JOB_NONE else None
        return Presence(
            defined=True, state=state_from_number(state), reason=reason, persistent=persistent,
            migrating_out=operation == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
        )


def job_progress(uri: str, uuid: str) -> Progress | None:
    """The running job of a domain as a Progress, None when it has none (for following an adopted job)."""
    with connection(uri) as conn:
        try:
            stats = conn.lookupByUUIDString(uuid).jobStats(0)
        except libvirt.libvirtError as error:
            if error.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                return None
            raise
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    return Progress.from_stats(stats)


def completed_figures(uri: str, uuid: str) -> Progress | None:
    """The last completed job of a domain on a host (libvirt keeps it until the next job)."""
    try:
        with connection(uri) as conn:
            stats = conn.lookupByUUIDString(uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except VirtError:
        return None
    return Progress.from_stats(stats, completed=True) if stats.get("type") else None


__all__ = [
    "Check",
    "CheckStatus",
    "CopyStorage",
    "MigrationCancelled",
    "MigrationFailed",
    "MigrationOptions",
    "Outcome",
    "Presence",
    "Progress",
    "abort",
    "completed_figures",
    "job_progress",
    "migrate",
    "moves_live",
    "precheck",
    "presence",
    "switch_to_postcopy",
]

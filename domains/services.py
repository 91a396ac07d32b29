"""Writes: check the actor's rights, audit, then act. Nothing else changes state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from audit.services import audited

from . import live, migration_jobs, selectors, virt
from .access import (
    ALL_MACHINES_USED,
    GIB,
    MEMORY_LIMIT,
    NOT_YOUR_VOLUME,
    PRIVATE_LISTENS,
    PRIVATE_LISTENS_ONLY,
    VCPUS_LIMIT,
    DefineLimits,
    Right,
    define_limits,
    require_admin,
    storage_scope,
)
from .errors import error_message
from .locks import domain_action_lock
from .models import Grant, Host, MigrationJob, OwnedVolume
from .rows import DomainRow
from .virt import Action, DomainSpec, GraphicsSpec, PowerMode
from .virt import migration as vmig
from .virt.migration import MigrationOptions

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from accounts.models import User

T = TypeVar("T")


def host_register(*, actor: User, name: str, uri: str, enabled: bool = True, migration_address: str = "",
                  client_addr: str | None = None) -> Host:
    with audited(actor=actor, action="host.register", client_addr=client_addr) as entry:
        require_admin(actor)
        host = Host(name=name, uri=uri, enabled=enabled, migration_address=migration_address)
        host.full_clean()
        host.save()
        entry.host, entry.host_name = host, host.name
        entry.save(update_fields=["host", "host_name"])
    return host


def host_update(*, actor: User, host: Host, uri: str, enabled: bool, migration_address: str | None = None,
                client_addr: str | None = None) -> Host:
    """Changes what the form or command gives; a migration address of None is left as it was."""
    with audited(actor=actor, action="host.update", host=host, client_addr=client_addr):
        require_admin(actor)
        if host.uri != uri:
            virt.pool.discard(host.uri)
        host.uri, host.enabled = uri, enabled
        if migration_address is not None:
            host.migration_address = migration_address
        host.full_clean()
        host.save()
    return host


def host_delete(*, actor: User, host: Host, client_addr: str | None = None) -> None:
    with audited(actor=actor, action="host.delete", host=host, client_addr=client_addr) as entry:
        require_admin(actor)
        virt.pool.discard(host.uri)
        host.delete()
        entry.host = None  # the row outlives the host; host_name keeps its name


def host_test_connection(*, actor: User, host: Host, client_addr: str | None = None) -> virt.HostFacts:
    """Connects afresh and reports what the host is; failures are shown, not raised to a 500."""
    with audited(actor=actor, action="host.test", host=host, client_addr=client_addr) as entry:
        require_admin(actor)
        virt.pool.discard(host.uri)
        facts = virt.host_facts(host.uri)
        entry.message = f"libvirt {facts.libvirt_version} on {facts.hostname}"
    return facts


def grant_check(grant: Grant) -> None:
    """Refuses (ValidationError, by field) a grant for a VM its host does not have; names the VM on it."""
    try:
        record = virt.get_domain(grant.host.uri, str(grant.domain_uuid))
    except virt.DomainNotFound as error:
        raise ValidationError({"domain_uuid": format_lazy(_("Host {host} has no VM with this UUID."),
                                                          host=grant.host)}) from error
    except virt.VirtError as error:
        raise ValidationError({"host": format_lazy(_("Host {host} could not be asked about this VM: {error}"),
                                                   host=grant.host, error=error)}) from error
    grant.domain_name = record.name


def storage_pool_check(*, host: Host, name: str) -> None:
    """Refuses (ValidationError, by field) registering a pool its host does not define."""
    try:
        names = virt.pool_names(host.uri)
    except virt.VirtError as error:
        raise ValidationError({"host": format_lazy(_("Host {host} could not be asked for its pools: {error}"),
                                                   host=host, error=error)}) from error
    if name not in names:
        raise ValidationError({"name": format_lazy(_("Host {host} has no pool {name}; it has {pools}."), host=host,
                                                   name=name, pools=", ".join(names) or _("none"))})


def grant_save(*, actor: User, grant: Grant, client_addr: str | None = None) -> Grant:
    with audited(actor=actor, action="grant.save", host=grant.host, domain_uuid=str(grant.domain_uuid),
                 client_addr=client_addr) as entry:
        require_admin(actor)
        grant.full_clean()
        grant_check(grant)
        entry.domain_name = grant.domain_name
        entry.save(update_fields=["domain_name"])
        grant.save()
        transaction.on_commit(live.grants_changed)  # open pages re-check what they may show
        entry.message = f"to {grant.user or grant.group}: view" + (
            ", operate" if grant.can_operate else "") + (", console" if grant.can_console else "") + (
            ", owner" if grant.owner else "")
    return grant


def grant_revoke(*, actor: User, grant: Grant, client_addr: str | None = None) -> None:
    with audited(actor=actor, action="grant.revoke", host=grant.host, domain_uuid=str(grant.domain_uuid),
                 client_addr=client_addr) as entry:
        require_admin(actor)
        entry.message = f"from {grant.user or grant.group}"
        grant.delete()
        transaction.on_commit(live.grants_changed)  # open pages drop the VM


_REFUSALS = {
    Right.OPERATE: _("You may view this machine but not act on it."),
    Right.DELETE: _("Only its owner, an operator or an admin may delete this machine."),
}


def _operate(
    *,
    actor: User,
    host_name: str,
    uuid: str,
    action: str,
    act: Callable[[DomainRow], StrOrPromise],
    client_addr: str | None,
    right: Right = Right.OPERATE,
) -> StrOrPromise:
    """Audits, resolves the VM through the permission gate, holds the VM's action lock, acts.

    Returns the message for the user, in their language (the audit row keeps it in the log's); the audit
    row is written before libvirt is called.
    """
    host = Host.objects.filter(name=host_name).first()
    with audited(actor=actor, action=action, host=host, domain_uuid=uuid, client_addr=client_addr) as entry:
        row = selectors.domain_get(user=actor, host_name=host_name, uuid=uuid)
        entry.domain_name = row.record.name
        entry.save(update_fields=["domain_name"])
        if right not in row.rights:
            raise PermissionDenied(_REFUSALS[right])
        with domain_action_lock(row.host.pk, row.uuid):
            try:
                said = act(row)
                entry.message = said  # type: ignore[assignment]  # lazy: the audit writer renders it
            finally:
                # Autostart, snapshots and discarded saves change the row without any libvirt event.
                host_id, domain_uuid = row.host.pk, row.uuid
                transaction.on_commit(lambda: live.nudge(host_id=host_id, uuid=domain_uuid))
    return said


def domain_act(
    *,
    actor: User,
    host_name: str,
    uuid: str,
    action: Action,
    mode: PowerMode = PowerMode.AUTO,
    client_addr: str | None = None,
) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        if action not in row.actions:
            raise virt.OperationInvalid(format_lazy(_("{action} is not possible while the machine is {state}."),
                                                    action=action.label, state=row.record.state_display))
        virt.run_action(row.host.uri, row.uuid, action, mode)
        return action.done_message(row.record.name)

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action=f"domain.{action}", act=act,
                    client_addr=client_addr)


class BulkOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"


@dataclass(frozen=True)
class BulkResult:
    host_name: str
    uuid: str
    outcome: BulkOutcome
    message: StrOrPromise


BULK_ACTIONS = (Action.START, Action.SHUTDOWN, Action.FORCE_OFF, Action.PAUSE, Action.RESUME)
BULK_SNAPSHOT = "snapshot"
BULK_LIMIT = 500  # the list's largest page


def domain_bulk(*, actor: User, action: str, targets: Sequence[tuple[str, str]],
                client_addr: str | None = None) -> list[BulkResult]:
    """One action on each of several VMs (host name, UUID), each through the gate and its own service, so
    each is audited (refused ones as denied); one VM's failure does not stop the others."""
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    results = []
    for host_name, uuid in dict.fromkeys(targets):
        try:
            if action == BULK_SNAPSHOT:
                message = snapshot_create(actor=actor, host_name=host_name, uuid=uuid, name=f"bulk-{stamp}",
                                          client_addr=client_addr)
            else:
                message = domain_act(actor=actor, host_name=host_name, uuid=uuid, action=Action(action),
                                     client_addr=client_addr)
            results.append(BulkResult(host_name, uuid, BulkOutcome.DONE, message))
        except Http404:
            # The same words for a VM that is not there and one the user may not see.
            results.append(BulkResult(host_name, uuid, BulkOutcome.REFUSED,
                                      _("No such virtual machine, or not yours to act on.")))
        except PermissionDenied as error:
            results.append(BulkResult(host_name, uuid, BulkOutcome.REFUSED, str(error)))
        except virt.VirtError as error:
            results.append(BulkResult(host_name, uuid, BulkOutcome.FAILED, error_message(user=actor, error=error)))
        except ValidationError as error:
            results.append(BulkResult(host_name, uuid, BulkOutcome.FAILED, " ".join(error.messages)))
    return results


def domain_delete(
    *,
    actor: User,
    host_name: str,
    uuid: str,
    remove_managed_save: bool = True,
    remove_snapshot_metadata: bool = True,
    remove_nvram: bool = False,
    disk_targets: Sequence[str] = (),
    client_addr: str | None = None,
) -> StrOrPromise:
    """Deletes the VM and those of its own disks named by target (vda), resolved from its definition.

    Every named disk is checked before anything is deleted: one the user may not delete refuses the
    whole request, so nothing is lost to a half-done delete.
    """
    def act(row: DomainRow) -> StrOrPromise:
        volumes = _disks_to_delete(actor, row, disk_targets)
        deleted = virt.delete_domain(
            row.host.uri, row.uuid, remove_managed_save=remove_managed_save,
            remove_snapshot_metadata=remove_snapshot_metadata, remove_nvram=remove_nvram, volumes=volumes,
        )
        Grant.objects.filter(host=row.host, domain_uuid=row.uuid).delete()
        for key in deleted:
            pool, _slash, name = key.partition("/")
            OwnedVolume.objects.filter(host=row.host, pool=pool, name=name).delete()
        if not deleted:
            return format_lazy(_("{name} deleted."), name=row.record.name)
        return format_lazy(ngettext_lazy("{name} and {count} volume deleted.", "{name} and {count} volumes deleted.",
                                         len(deleted)), name=row.record.name, count=len(deleted))

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.delete", act=act,
                    client_addr=client_addr, right=Right.DELETE)


def _disks_to_delete(actor: User, row: DomainRow, targets: Sequence[str]) -> list[virt.VolumeInfo]:
    if not targets:
        return []
    disks = {disk.target: disk for disk in virt.domain_disks(row.host.uri, row.uuid)}
    scope = storage_scope(actor, row.host)
    problems, volumes = [], []
    for target in dict.fromkeys(targets):
        disk = disks.get(target)
        problem = (format_lazy(_("{name} has no disk {target}."), name=row.record.name, target=target)
                   if disk is None else scope.deletion_problem(disk))
        if problem is not None:
            problems.append(problem)
        elif disk is not None and disk.volume is not None:
            volumes.append(disk.volume)
    if problems:
        raise ValidationError([*problems, _("Nothing was deleted.")])
    return volumes


def snapshot_create(*, actor: User, host_name: str, uuid: str, name: str, description: str = "",
                    client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        frozen = virt.create_snapshot(row.host.uri, row.uuid, name=name, description=description)
        created = (_("Snapshot {name} of {vm} created with the guest's file systems frozen.") if frozen
                   else _("Snapshot {name} of {vm} created."))
        return format_lazy(created, name=name, vm=row.record.name)

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="snapshot.create", act=act,
                    client_addr=client_addr)


def snapshot_revert(*, actor: User, host_name: str, uuid: str, name: str,
                    client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        virt.revert_snapshot(row.host.uri, row.uuid, name)
        return format_lazy(_("{vm} reverted to snapshot {name}."), vm=row.record.name, name=name)

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="snapshot.revert", act=act,
                    client_addr=client_addr)


def snapshot_delete(*, actor: User, host_name: str, uuid: str, name: str,
                    client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        virt.delete_snapshot(row.host.uri, row.uuid, name)
        return format_lazy(_("Snapshot {name} of {vm} deleted."), name=name, vm=row.record.name)

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="snapshot.delete", act=act,
                    client_addr=client_addr)


def domain_define(*, actor: User, host_name: str, spec: DomainSpec, autostart: bool = False,
                  client_addr: str | None = None) -> str:
    """Defines a VM from the form's spec; a tenant's own VM is granted to it. Returns the UUID."""
    host = selectors.enabled_hosts().filter(name=host_name).first()
    with audited(actor=actor, action="domain.define", host=host, domain_name=spec.name,
                 client_addr=client_addr) as entry:
        limits = define_limits(actor, host) if host is not None else None
        if host is None or limits is None:
            raise Http404(_("No such host."))
        if problems := limits.problems(spec):
            raise ValidationError(problems)
        defined = virt.define_domain(host.uri, spec, autostart=autostart)
        entry.domain_uuid = defined.uuid
        entry.save(update_fields=["domain_uuid"])
        if (volume := defined.created_volume) is not None:
            # Just created, so any record of the same name is of a volume deleted outside the dashboard.
            OwnedVolume.objects.update_or_create(host=host, pool=volume.pool, name=volume.name, defaults={
                "path": volume.path, "owner": actor, "capacity_bytes": volume.capacity_bytes})
        if not actor.sees_every_domain:
            Grant.objects.create(host=host, domain_uuid=defined.uuid, domain_name=spec.name, user=actor,
                                 can_operate=True, can_console=True, owner=True)
    return defined.uuid


def domain_define_xml(*, actor: User, host_name: str, xml: str, client_addr: str | None = None) -> str:
    host = selectors.enabled_hosts().filter(name=host_name).first()
    with audited(actor=actor, action="domain.define-xml", host=host, client_addr=client_addr) as entry:
        require_admin(actor)
        if host is None:
            raise Http404(_("No such host."))
        uuid = virt.define_xml(host.uri, xml)
        entry.domain_uuid = uuid
        entry.save(update_fields=["domain_uuid"])
    return uuid


def domain_update_display(*, actor: User, host_name: str, uuid: str, video_model: str,
                          graphics: GraphicsSpec | None, client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        if graphics is not None and graphics.listen not in PRIVATE_LISTENS and not actor.sees_every_domain:
            raise ValidationError(PRIVATE_LISTENS_ONLY)
        virt.update_display(row.host.uri, row.uuid, video_model=video_model, graphics=graphics)
        return format_lazy(_("Display of {vm} changed."), vm=row.record.name)

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.display", act=act,
                    client_addr=client_addr)


# --- Hardware: each change through the gate (OPERATE) and the audit writer, then libvirt. Tenants stay
# within their define allowance (vCPUs, memory, storage) and use only volumes and images they may. ---


def _limits(actor: User, row: DomainRow) -> DefineLimits:
    limits = define_limits(actor, row.host)
    if limits is None:
        raise ValidationError(_("Your define allowance does not cover this host; ask an admin."))
    return limits


def _within(bound: int | None, values: tuple[int | None, ...], field: str, limit: StrOrPromise) -> None:
    """`limit` words the bound with a {bound} placeholder (access.VCPUS_LIMIT, access.MEMORY_LIMIT)."""
    if bound is not None and max(value or 0 for value in values) > bound:
        raise ValidationError({field: format_lazy(limit, bound=bound)})


def _on_host(call: Callable[[], T]) -> T:
    """A name or MAC address already used on the host is the form field's error."""
    try:
        return call()
    except virt.NameTaken as error:
        raise ValidationError({error.field: str(error)}) from error


def domain_set_vcpus(*, actor: User, host_name: str, uuid: str, vcpus: int, max_vcpus: int | None = None,
                     client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        _within(_limits(actor, row).max_vcpus, (vcpus, max_vcpus), "vcpus", VCPUS_LIMIT)
        applied = virt.hardware.set_vcpus(row.host.uri, row.uuid, count=vcpus, maximum=max_vcpus)
        return format_lazy(_("{vm} has {vcpus} vCPUs {when}."), vm=row.record.name, vcpus=vcpus, when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.vcpus", act=act,
                    client_addr=client_addr)


def domain_set_memory(*, actor: User, host_name: str, uuid: str, memory_mib: int, max_memory_mib: int | None = None,
                      client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        _within(_limits(actor, row).max_memory_mib, (memory_mib, max_memory_mib), "memory_mib", MEMORY_LIMIT)
        applied = virt.hardware.set_memory(row.host.uri, row.uuid, mib=memory_mib, maximum_mib=max_memory_mib)
        return format_lazy(_("{vm} has {mib} MiB of memory {when}."), vm=row.record.name, mib=memory_mib,
                           when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.memory", act=act,
                    client_addr=client_addr)


def domain_change_cdrom(*, actor: User, host_name: str, uuid: str, drive: str, volume: str,
                        client_addr: str | None = None) -> StrOrPromise:
    """Inserts `volume` ("pool/name") into the CD-ROM `drive`, or ejects it when `volume` is "". An empty
    `drive` adds a new one first (shut-off machines only)."""
    def act(row: DomainRow) -> StrOrPromise:
        if volume and not storage_scope(actor, row.host).may_attach_image(volume):
            raise ValidationError({"volume": _("Images come from the shared image pools or your own volumes.")})
        target = drive or virt.hardware.add_cdrom(row.host.uri, row.uuid, bus="sata")
        applied = virt.hardware.change_cdrom(row.host.uri, row.uuid, target=target, volume_key=volume)
        done = _("{volume} inserted into {target} of {vm} {when}.") if volume else _("Ejected {target} of {vm} {when}.")
        return format_lazy(done, volume=volume, target=target, vm=row.record.name, when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.cdrom", act=act,
                    client_addr=client_addr)


def domain_attach_disk(*, actor: User, host_name: str, uuid: str, bus: str, volume: str = "", pool: str = "",
                       size_gib: int = 0, client_addr: str | None = None) -> StrOrPromise:
    """Attaches an existing volume ("pool/name"), or a new empty one of `size_gib` in `pool`."""
    def act(row: DomainRow) -> StrOrPromise:
        scope = storage_scope(actor, row.host)
        if volume:
            if not scope.may_boot(volume):
                raise ValidationError({"volume": _("You may attach only volumes you created here.")})
            target, applied = virt.hardware.attach_volume(row.host.uri, row.uuid, volume_key=volume, bus=bus)
            return format_lazy(_("{volume} attached to {vm} as {target} {when}."), volume=volume, vm=row.record.name,
                               target=target, when=applied.when())
        if problems := scope.new_volume_problems(pool, size_gib * GIB):
            raise ValidationError({"size_gib": problems})
        target, created, applied = _on_host(lambda: virt.hardware.attach_new_volume(
            row.host.uri, row.uuid, pool=pool, size_gib=size_gib, bus=bus))
        _record_owned(actor, row.host, created)
        return format_lazy(_("New volume {volume} attached to {vm} as {target} {when}."), volume=created.key,
                           vm=row.record.name, target=target, when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.disk-attach", act=act,
                    client_addr=client_addr)


def _record_owned(actor: User, host: Host, volume: virt.VolumeInfo) -> None:
    # Just created, so any record of the same name is of a volume deleted outside the dashboard.
    OwnedVolume.objects.update_or_create(host=host, pool=volume.pool, name=volume.name, defaults={
        "path": volume.path, "owner": actor, "capacity_bytes": volume.capacity_bytes})


def domain_detach_disk(*, actor: User, host_name: str, uuid: str, target: str,
                       client_addr: str | None = None) -> StrOrPromise:
    """Detaches the disk named by its target; its volume stays."""
    def act(row: DomainRow) -> StrOrPromise:
        applied = virt.hardware.detach_disk(row.host.uri, row.uuid, target=target)
        return format_lazy(_("{target} detached from {vm} {when}; its volume is kept."), target=target,
                           vm=row.record.name, when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.disk-detach", act=act,
                    client_addr=client_addr)


def domain_grow_disk(*, actor: User, host_name: str, uuid: str, target: str, size_gib: int,
                     client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        disk = virt.hardware.domain_hardware(row.host.uri, row.uuid).disk(target)
        if disk is None or disk.volume is None:
            raise ValidationError({"target": format_lazy(_("{target} is not a storage volume of {vm}."), target=target,
                                                         vm=row.record.name)})
        current_gib = disk.volume.capacity_bytes / GIB
        if size_gib <= current_gib:
            raise ValidationError({"size_gib": format_lazy(_("{target} has {gib} GiB already; a disk only grows."),
                                                           target=target, gib=f"{current_gib:g}")})
        scope = storage_scope(actor, row.host)
        if not scope.may_boot(disk.volume.key):
            raise ValidationError({"target": format_lazy(NOT_YOUR_VOLUME, volume=target)})
        if problems := scope.new_volume_problems(disk.volume.pool, size_gib * GIB - disk.volume.capacity_bytes):
            raise ValidationError({"size_gib": problems})
        applied = virt.hardware.grow_disk(row.host.uri, row.uuid, target=target, size_gib=size_gib)
        OwnedVolume.objects.filter(host=row.host, pool=disk.volume.pool, name=disk.volume.name).update(
            capacity_bytes=size_gib * GIB)
        return format_lazy(_("{target} of {vm} grown to {gib} GiB {when}."), target=target, vm=row.record.name,
                           gib=size_gib, when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.disk-grow", act=act,
                    client_addr=client_addr)


def domain_attach_nic(*, actor: User, host_name: str, uuid: str, kind: str, source: str, model: str, mac: str = "",
                      client_addr: str | None = None) -> StrOrPromise:
    """Plugs a NIC into a libvirt network, or a host bridge (admins and operators); an empty `mac` is picked
    at random among those unused on the host."""
    def act(row: DomainRow) -> StrOrPromise:
        if kind != "network" and not actor.sees_every_domain:
            raise ValidationError({"kind": _("Host bridges are for admins and operators; pick a network.")})
        used = virt.hardware.macs_in_use(row.host.uri)
        if mac and mac.lower() in used:
            raise ValidationError({"mac": format_lazy(_("{mac} is already used by a machine on this host."), mac=mac)})
        address = mac.lower() or next(candidate for candidate in iter(virt.hardware.random_mac, None)
                                      if candidate not in used)
        applied = virt.hardware.attach_nic(row.host.uri, row.uuid, kind=kind, source=source, model=model,
                                           mac=address)
        return format_lazy(_("Network interface {mac} on {kind} {source} plugged into {vm} {when}."), mac=address,
                           kind=kind, source=source, vm=row.record.name, when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.nic-attach", act=act,
                    client_addr=client_addr)


def domain_detach_nic(*, actor: User, host_name: str, uuid: str, mac: str,
                      client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        applied = virt.hardware.detach_nic(row.host.uri, row.uuid, mac=mac)
        return format_lazy(_("Network interface {mac} unplugged from {vm} {when}."), mac=mac, vm=row.record.name,
                           when=applied.when())

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.nic-detach", act=act,
                    client_addr=client_addr)


def domain_set_firmware(*, actor: User, host_name: str, uuid: str, firmware: str,
                        client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        virt.hardware.set_firmware(row.host.uri, row.uuid, firmware=firmware)
        return format_lazy(_("{vm} boots with {firmware} from the next boot."), vm=row.record.name,
                           firmware="UEFI" if firmware == "uefi" else "BIOS")

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.firmware", act=act,
                    client_addr=client_addr)


def domain_set_boot_order(*, actor: User, host_name: str, uuid: str, devices: Sequence[str],
                          client_addr: str | None = None) -> StrOrPromise:
    def act(row: DomainRow) -> StrOrPromise:
        virt.hardware.set_boot_order(row.host.uri, row.uuid, devices=tuple(devices))
        return format_lazy(_("{vm} boots from {devices} from the next boot."), vm=row.record.name,
                           devices=", ".join(devices))

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.boot-order", act=act,
                    client_addr=client_addr)


def domain_redefine_xml(*, actor: User, host_name: str, uuid: str, xml: str,
                        client_addr: str | None = None) -> StrOrPromise:
    """Admins: the edited definition, validated by libvirt against its schema."""
    def act(row: DomainRow) -> StrOrPromise:
        require_admin(actor)
        virt.hardware.redefine_xml(row.host.uri, row.uuid, xml)
        return format_lazy(_("Definition of {vm} saved; it applies from the next boot."), vm=row.record.name)

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.xml", act=act,
                    client_addr=client_addr)


def domain_clone(*, actor: User, host_name: str, uuid: str, name: str, client_addr: str | None = None) -> str:
    """Clones a shut-off VM with copies of its disks on the same host; granted to the cloning tenant like a
    defined VM. Returns the clone's UUID (the audit row, on the original, names it)."""
    cloned: list[virt.hardware.ClonedDomain] = []

    def act(row: DomainRow) -> StrOrPromise:
        limits = _limits(actor, row)
        if not limits.unlimited:
            _clone_problems(limits, row)
        clone = _on_host(lambda: virt.hardware.clone_domain(row.host.uri, row.uuid, name=name))
        cloned.append(clone)
        for volume in clone.volumes:
            _record_owned(actor, row.host, volume)
        if not actor.sees_every_domain:
            Grant.objects.create(host=row.host, domain_uuid=clone.uuid, domain_name=name, user=actor,
                                 can_operate=True, can_console=True, owner=True)
        return format_lazy(_("{vm} cloned as {name} ({uuid})."), vm=row.record.name, name=name, uuid=clone.uuid)

    _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.clone", act=act, client_addr=client_addr)
    return cloned[0].uuid


def _clone_problems(limits: DefineLimits, row: DomainRow) -> None:
    """A tenant clones only its own disks, into its pools within its quota, and within its machine limits."""
    hardware = virt.hardware.domain_hardware(row.host.uri, row.uuid)
    volumes = virt.hardware.clone_plan(row.host.uri, row.uuid)
    problems: list[StrOrPromise] = [format_lazy(NOT_YOUR_VOLUME, volume=volume.key) for volume in volumes
                                    if not limits.storage.may_boot(volume.key)]
    for pool in {volume.pool for volume in volumes}:
        size = sum(volume.capacity_bytes for volume in volumes if volume.pool == pool)
        problems += limits.storage.new_volume_problems(pool, size)
    if limits.max_vms is not None and limits.owned_vms >= limits.max_vms:
        problems.append(format_lazy(ALL_MACHINES_USED, owned=limits.owned_vms, allowed=limits.max_vms))
    if limits.max_vcpus is not None and hardware.max_vcpus > limits.max_vcpus:
        problems.append(format_lazy(_("It has up to {vcpus} vCPUs; you may have {allowed} per machine."),
                                    vcpus=hardware.max_vcpus, allowed=limits.max_vcpus))
    if limits.max_memory_mib is not None and hardware.max_memory_mib > limits.max_memory_mib:
        problems.append(format_lazy(_("It has up to {mib} MiB of memory; you may have {allowed} MiB per machine."),
                                    mib=hardware.max_memory_mib, allowed=limits.max_memory_mib))
    if problems:
        raise ValidationError(problems)


# --- Migration (domains.migration_jobs runs the jobs). ---


def migration_start(*, actor: User, host_name: str, uuid: str, destination_name: str,
                    options: MigrationOptions, client_addr: str | None = None) -> MigrationJob:
    """Checks again what the form showed, records the job and starts it once committed; returns at once.

    The mode follows the VM's state (live when it runs or is paused, offline when shut off), whatever
    the caller passed; the destination must be another enabled, registered host.
    """
    host = Host.objects.filter(name=host_name).first()
    with audited(actor=actor, action="domain.migrate", host=host, domain_uuid=uuid, client_addr=client_addr) as entry:
        require_admin(actor)
        row = selectors.domain_get(user=actor, host_name=host_name, uuid=uuid)
        entry.domain_name = row.record.name
        entry.save(update_fields=["domain_name"])
        destination = selectors.enabled_hosts().exclude(pk=row.host.pk).filter(name=destination_name).first()
        if destination is None:
            raise ValidationError(_("Pick the destination from the registered hosts other than the current one."))
        options = options.for_state(row.record.state)
        problems = options.problems()
        if problems:
            raise ValidationError(problems)
        with domain_action_lock(row.host.pk, row.uuid):
            migrations_settle_stale(uuid=row.uuid)  # a job a restart left behind does not block a new one
            if MigrationJob.objects.filter(domain_uuid=row.uuid, state__in=MigrationJob.ACTIVE_STATES).exists():
                raise virt.OperationInProgress(_("This machine is already being migrated."))
            failed = [check.message for check in vmig.precheck(row.host.uri, destination.uri, row.uuid, options,
                                                                dest_address=destination.migration_address)
                      if not check.ok]
            if failed:
                raise ValidationError(failed)
            job = MigrationJob.objects.create(
                actor=actor, actor_name=actor.get_username(), domain_uuid=row.uuid, domain_name=row.record.name,
                source=row.host, source_name=row.host.name, destination=destination,
                destination_name=destination.name, live=options.live, options=options.as_dict(),
            )
        entry.message = f"job {job.pk}: {job.mode} to {destination.name}"
        job_id = job.pk
        transaction.on_commit(lambda: migration_jobs.start(job_id))
    return job


def migration_cancel(*, actor: User, job_id: int, client_addr: str | None = None) -> StrOrPromise:
    """Abort the job's migration (libvirt's abortJob); the VM keeps running on the source."""
    job = MigrationJob.objects.filter(pk=job_id).select_related("source").first()
    with audited(actor=actor, action="domain.migrate-cancel", host=job.source if job else None,
                 domain_uuid=str(job.domain_uuid) if job else None, client_addr=client_addr) as entry:
        job = selectors.migration_job_get(user=actor, job_id=job_id)
        entry.domain_name = job.domain_name
        if MigrationJob.objects.filter(pk=job.pk, state=MigrationJob.State.QUEUED).update(
                state=MigrationJob.State.CANCELLING) == 1:
            job.state = MigrationJob.State.CANCELLING
            migration_jobs.conclude(job, error="Cancelled before it started.", cancelled=True)
            entry.message = f"job {job.pk} cancelled before it started"
            return format_lazy(_("Migration job {job} cancelled before it started."), job=job.pk)
        # Only a running job becomes cancelling: never one that ended meanwhile (it would be active again,
        # and concluded, audited and its grants moved a second time).
        if job.source is None or not MigrationJob.objects.filter(pk=job.pk, state=MigrationJob.State.RUNNING).update(
                state=MigrationJob.State.CANCELLING):
            job.refresh_from_db(fields=["state"])
            raise virt.OperationInvalid(format_lazy(_("The migration is {state}; there is nothing to cancel."),
                                                    state=job.get_state_display().lower()))
        vmig.abort(job.source.uri, str(job.domain_uuid))
        entry.message = f"job {job.pk}: asked libvirt to abort the migration"
    return format_lazy(_("Cancelling: the machine stays on {host}."), host=job.source_name)


def migration_postcopy(*, actor: User, job_id: int, client_addr: str | None = None) -> StrOrPromise:
    job = MigrationJob.objects.filter(pk=job_id).select_related("source").first()
    with audited(actor=actor, action="domain.migrate-postcopy", host=job.source if job else None,
                 domain_uuid=str(job.domain_uuid) if job else None, client_addr=client_addr) as entry:
        job = selectors.migration_job_get(user=actor, job_id=job_id)
        entry.domain_name = job.domain_name
        if job.state != MigrationJob.State.RUNNING or job.source is None or not job.options.get("postcopy"):
            raise virt.OperationInvalid(vmig.POSTCOPY_NOT_RUNNING)
        vmig.switch_to_postcopy(job.source.uri, str(job.domain_uuid))
        entry.message = f"job {job.pk}: switched to post-copy"
    return format_lazy(_("Switched to post-copy: the machine now runs on {host}."), host=job.destination_name)


def migration_settle(*, job_id: int) -> MigrationJob | None:
    """Settle one job whose runner stopped answering (a restart took it): follow the migration libvirt
    still runs, or conclude the job from where the VM is now. None when the job is over, a runner still
    follows it, or it cannot be told yet.

    Safe to run anywhere and at once (every process's supervisor, `manage.py migrationjobs`): the end is
    a compare-and-set, so one `domain.migrated` row is written and grants move once. Pages never call it.
    """
    job = migration_jobs.stale_jobs().filter(pk=job_id).first()
    return migration_jobs.settle(job) if job is not None else None


def migrations_settle_stale(*, uuid: str | None = None) -> list[MigrationJob]:
    """migration_settle for every stale job (of one VM when `uuid` is given); returns those it settled or
    adopted."""
    jobs = migration_jobs.stale_jobs()
    if uuid is not None:
        jobs = jobs.filter(domain_uuid=uuid)
    return [settled for job in jobs if (settled := migration_jobs.settle(job)) is not None]

"""The one access module: who is an admin, which hosts and VMs a user may see, and what it may do.

Selectors, services, consumers and console tickets all ask here (NetBox's `restrict`, Oscar's
`get_order_for_user_or_404`): a VM a user may not see is hidden (404) the same way everywhere, and a
role check written anywhere else is a second gate waiting to disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet, Sum
from django.http import Http404
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .models import DefineAllowance, Grant, Host, OwnedVolume, StoragePool
from .virt import BootKind

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser
    from django_stubs_ext import StrOrPromise

    from accounts.models import User

    from .virt import DiskVolume, DomainSpec, VolumeInfo

# Where a user who is not an admin may put a display: the host's own setting ("", its qemu.conf
# vnc_listen, which its admin chose for the console proxy: loopback behind SSH, its address with TLS)
# or its loopback. Never an address of the admin's network the user picks.
PRIVATE_LISTENS = ("", "127.0.0.1", "::1", "localhost")
PRIVATE_LISTENS_ONLY = _("Displays listen where the host's own setting puts them, or on its loopback.")
# Refusals that defining and changing a machine share (formatted with format_lazy, so the audit log reads them
# in its own language).
ALL_MACHINES_USED = _("You already have {owned} of your {allowed} machines.")
VCPUS_LIMIT = _("At most {bound} vCPUs per machine.")
MEMORY_LIMIT = _("At most {bound} MiB of memory per machine.")
NOT_YOUR_VOLUME = _("{volume} is not a volume you created here.")


class Right(StrEnum):
    VIEW = "view"
    OPERATE = "operate"
    CONSOLE = "console"
    DELETE = "delete"  # the owner's right (Grant.owner): operating a VM does not include deleting it


ALL_RIGHTS = frozenset(Right)
NO_RIGHTS: frozenset[Right] = frozenset()

DomainKey = tuple[int, str]  # (host id, lower-case domain UUID)


def _rights_of(grant: Grant) -> set[Right]:
    rights = {Right.VIEW}
    if grant.can_operate:
        rights.add(Right.OPERATE)
    if grant.can_console:
        rights.add(Right.CONSOLE)
    if grant.owner:
        rights.add(Right.DELETE)
    return rights


Scope = dict[DomainKey, frozenset[Right]] | None  # rights per VM; None: every VM, with every right


def is_admin(user: User | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.is_admin)


def sees_hosts(user: User | AnonymousUser) -> bool:
    """Hosts' own pages and figures are for those who see every VM: admins and operators."""
    return bool(user.is_authenticated and user.is_active and user.sees_every_domain)


def require_admin(user: User | AnonymousUser) -> None:
    """Admin pages and actions: everybody else is not told that they exist (404)."""
    if not is_admin(user):
        raise Http404("Not found.")


def domain_scope(user: User | AnonymousUser) -> Scope:
    """Rights per VM from the user's own grants and its groups'; None means every VM."""
    if not user.is_authenticated or not user.is_active:
        return {}
    if user.sees_every_domain:
        return None
    rights: dict[DomainKey, set[Right]] = {}
    grants = Grant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()), host__enabled=True)
    for grant in grants:
        rights.setdefault((grant.host_id, str(grant.domain_uuid)), set()).update(_rights_of(grant))
    return {key: frozenset(value) for key, value in rights.items()}


def rights_from(scope: Scope, key: DomainKey) -> frozenset[Right]:
    if scope is None:
        return ALL_RIGHTS
    return scope.get((key[0], key[1].lower()), NO_RIGHTS)


def rights_on(user: User | AnonymousUser, *, host_id: int, uuid: str) -> frozenset[Right]:
    return rights_from(domain_scope(user), (host_id, uuid))


def visible_hosts(scope: Scope, *, name: str = "") -> QuerySet[Host]:
    """The enabled hosts whose VMs a user with this scope may see (one of them when `name` is given)."""
    hosts = Host.objects.filter(enabled=True)
    if name:
        hosts = hosts.filter(name=name)
    if scope is not None:
        hosts = hosts.filter(pk__in={host_id for host_id, _uuid in scope})
    return hosts


GIB = 1024**3


@dataclass(frozen=True)
class StorageScope:
    """Which volumes of one host a user may create, boot and delete; `unlimited` for admins and operators.

    Tenants boot only volumes they created through the dashboard (recorded as OwnedVolume) and attach
    read-only images from the pools an admin marked as shared; their new volumes go only to the pools
    their define allowance names, within its total size.
    """

    unlimited: bool
    new_volume_pools: frozenset[str] = frozenset()
    shared_image_pools: frozenset[str] = frozenset()
    owned_volumes: frozenset[str] = frozenset()  # "pool/name" keys owned by the user on this host
    foreign_volumes: frozenset[str] = frozenset()  # keys recorded as somebody else's
    max_storage_gib: int | None = None
    used_storage_bytes: int = 0

    def may_boot(self, volume_key: str) -> bool:
        return self.unlimited or volume_key in self.owned_volumes

    def may_attach_image(self, volume_key: str) -> bool:
        """Read-only, as install media: the user's own volumes and the shared image pools'."""
        return self.may_boot(volume_key) or volume_key.partition("/")[0] in self.shared_image_pools

    def usable_volumes(self, volumes: Iterable[VolumeInfo]) -> tuple[VolumeInfo, ...]:
        """The volumes a define form may offer this user."""
        return tuple(volume for volume in volumes if self.may_attach_image(volume.key))

    def usable_pools(self, pools: Iterable[str]) -> tuple[str, ...]:
        return tuple(pool for pool in pools if self.unlimited or pool in self.new_volume_pools)

    def new_volume_problems(self, pool: str, size_bytes: int) -> list[StrOrPromise]:
        """Why the user may not create (or grow a volume by) `size_bytes` in `pool`; empty when it may."""
        if self.unlimited:
            return []
        if not self.new_volume_pools:
            return [_("Your allowance names no pool for new volumes; ask an admin.")]
        problems: list[StrOrPromise] = []
        if pool not in self.new_volume_pools:
            problems.append(format_lazy(_("New volumes go to {pools}."),
                                        pools=", ".join(sorted(self.new_volume_pools))))
        if self.max_storage_gib is not None and self.used_storage_bytes + size_bytes > self.max_storage_gib * GIB:
            problems.append(format_lazy(_("Your volumes take {used} of your {allowed} GiB; "
                                          "{more} GiB more is too much."),
                                        used=f"{self.used_storage_bytes / GIB:.0f}", allowed=self.max_storage_gib,
                                        more=f"{size_bytes / GIB:.3g}"))
        return problems

    def may_change(self, volume_key: str) -> bool:
        """Grow or delete a volume on the storage pages: admins and operators any, a tenant those it created."""
        return self.unlimited or volume_key in self.owned_volumes

    def sees_pool(self, pool: str) -> bool:
        """Storage pages: a tenant sees the pools its allowance creates volumes in and the shared image pools."""
        return self.unlimited or pool in self.new_volume_pools or pool in self.shared_image_pools

    def deletion_problem(self, disk: DiskVolume) -> StrOrPromise | None:
        """Why `disk` of a VM may not be deleted with it, or None. Checked for every user: a volume
        another machine uses, or that is not this machine's own, is never deleted from the VM's page."""
        if disk.device != "disk" or disk.readonly or disk.shareable:
            return format_lazy(_("{target} is a shared or read-only {device}, not this machine's own disk."),
                               target=disk.target, device=disk.device)
        if disk.volume is None:
            return format_lazy(_("{target} is not a storage volume; delete its file on the host if it must go."),
                               target=disk.target)
        if disk.used_elsewhere:
            return format_lazy(_("{target} is also used by another machine."), target=disk.target)
        if self.unlimited:
            return None
        key = disk.volume.key
        if disk.volume.pool in self.shared_image_pools:
            return format_lazy(_("{target} is a shared image."), target=disk.target)
        if key in self.foreign_volumes:
            return format_lazy(_("{target} was created by someone else."), target=disk.target)
        return None


@dataclass(frozen=True)
class DefineLimits:
    """How far a user may go defining VMs on one host; None means no limit."""

    max_vms: int | None
    max_vcpus: int | None
    max_memory_mib: int | None
    owned_vms: int
    storage: StorageScope

    @property
    def unlimited(self) -> bool:
        return self.max_vms is None

    def problems(self, spec: DomainSpec) -> list[StrOrPromise]:
        """Why these limits do not allow defining `spec`; empty when they do."""
        if self.unlimited:
            return []
        problems: list[StrOrPromise] = []
        boot = spec.boot
        if boot.kind is BootKind.KERNEL:
            problems.append(_("Direct kernel boot reads files on the host; ask an admin."))
        if boot.kind is BootKind.VOLUME and not self.storage.may_boot(boot.volume):
            problems.append(_("You may boot only volumes you created here."))
        if boot.kind is BootKind.ISO and not self.storage.may_attach_image(boot.volume):
            problems.append(_("Install images come from the shared image pools or your own volumes."))
        if boot.creates_volume:
            problems += self.storage.new_volume_problems(boot.pool, boot.size_gib * GIB)
        if spec.graphics is not None and spec.graphics.listen not in PRIVATE_LISTENS:
            problems.append(PRIVATE_LISTENS_ONLY)
        if self.max_vms is not None and self.owned_vms >= self.max_vms:
            problems.append(format_lazy(ALL_MACHINES_USED, owned=self.owned_vms, allowed=self.max_vms))
        if self.max_vcpus is not None and spec.vcpus > self.max_vcpus:
            problems.append(format_lazy(VCPUS_LIMIT, bound=self.max_vcpus))
        if self.max_memory_mib is not None and spec.memory_mib > self.max_memory_mib:
            problems.append(format_lazy(MEMORY_LIMIT, bound=self.max_memory_mib))
        return problems


def _allowances(user: User, host: Host) -> list[DefineAllowance]:
    """The user's own and its groups' define allowances that cover `host`."""
    return list(DefineAllowance.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
                .filter(Q(hosts=None) | Q(hosts=host)).distinct())


def storage_scope(user: User | AnonymousUser, host: Host) -> StorageScope:
    if user.is_authenticated and user.sees_every_domain:
        return StorageScope(unlimited=True)
    return _tenant_storage(user, host, _allowances(user, host) if user.is_authenticated else [])


def _tenant_storage(user: User | AnonymousUser, host: Host, allowances: list[DefineAllowance]) -> StorageScope:
    owners = {f"{pool}/{name}": owner for pool, name, owner in
              OwnedVolume.objects.filter(host=host).values_list("pool", "name", "owner_id")}
    return StorageScope(
        unlimited=False,
        new_volume_pools=frozenset(StoragePool.objects.filter(host=host, allowances__in=allowances)
                                   .values_list("name", flat=True)),
        shared_image_pools=frozenset(StoragePool.objects.filter(host=host, shared_images=True)
                                     .values_list("name", flat=True)),
        owned_volumes=frozenset(key for key, owner in owners.items() if owner == user.pk),
        foreign_volumes=frozenset(key for key, owner in owners.items() if owner != user.pk),
        max_storage_gib=max((a.max_storage_gib for a in allowances), default=0),
        used_storage_bytes=OwnedVolume.objects.filter(owner_id=user.pk).aggregate(
            total=Sum("capacity_bytes"))["total"] or 0,
    )


def define_limits(user: User | AnonymousUser, host: Host) -> DefineLimits | None:
    """None when the user may not define VMs on this host at all."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.sees_every_domain:
        return DefineLimits(None, None, None, 0, StorageScope(unlimited=True))
    allowances = _allowances(user, host)
    if not allowances:
        return None
    # Several allowances (own and groups') combine to the most generous of each limit.
    return DefineLimits(
        max_vms=max(a.max_vms for a in allowances),
        max_vcpus=max(a.max_vcpus for a in allowances),
        max_memory_mib=max(a.max_memory_mib for a in allowances),
        owned_vms=Grant.objects.filter(user=user, owner=True).count(),
        storage=_tenant_storage(user, host, allowances),
    )

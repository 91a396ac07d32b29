"""The one permission gate: which VMs a user may see, operate and open consoles on.

Views, consumers and console tickets all ask here, so a VM a user may not see is hidden
(404) the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from django.db.models import Q

from .models import DefineAllowance, Grant, Host
from .virt import BootKind

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User

    from .virt import DomainSpec

# Consoles of VMs users without the every-VM view define listen here; the console proxy reaches them.
LOOPBACK_LISTEN = ("127.0.0.1", "::1", "localhost")


class Right(StrEnum):
    VIEW = "view"
    OPERATE = "operate"
    CONSOLE = "console"


ALL_RIGHTS = frozenset(Right)
NO_RIGHTS: frozenset[Right] = frozenset()

DomainKey = tuple[int, str]  # (host id, lower-case domain UUID)


def _rights_of(grant: Grant) -> set[Right]:
    rights = {Right.VIEW}
    if grant.can_operate:
        rights.add(Right.OPERATE)
    if grant.can_console:
        rights.add(Right.CONSOLE)
    return rights


def granted_domains(user: User | AnonymousUser) -> dict[DomainKey, frozenset[Right]] | None:
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


def rights_from(granted: dict[DomainKey, frozenset[Right]] | None, key: DomainKey) -> frozenset[Right]:
    if granted is None:
        return ALL_RIGHTS
    return granted.get((key[0], key[1].lower()), NO_RIGHTS)


def domain_rights(user: User | AnonymousUser, *, host_id: int, uuid: str) -> frozenset[Right]:
    return rights_from(granted_domains(user), (host_id, uuid))


@dataclass(frozen=True)
class DefineLimits:
    """How far a user may go defining VMs on one host; None means no limit."""

    max_vms: int | None
    max_vcpus: int | None
    max_memory_mib: int | None
    owned_vms: int

    @property
    def unlimited(self) -> bool:
        return self.max_vms is None

    def problems(self, spec: DomainSpec) -> list[str]:
        """Why these limits do not allow defining `spec`; empty when they do."""
        if self.unlimited:
            return []
        problems = []
        if spec.boot.kind is BootKind.KERNEL:
            problems.append("Direct kernel boot reads files on the host; ask an admin.")
        if spec.graphics is not None and spec.graphics.listen not in LOOPBACK_LISTEN:
            problems.append("Consoles listen on the host's loopback only; the dashboard's console proxy reaches them.")
        if self.max_vms is not None and self.owned_vms >= self.max_vms:
            problems.append(f"You already have {self.owned_vms} of your {self.max_vms} machines.")
        if self.max_vcpus is not None and spec.vcpus > self.max_vcpus:
            problems.append(f"At most {self.max_vcpus} vCPUs per machine.")
        if self.max_memory_mib is not None and spec.memory_mib > self.max_memory_mib:
            problems.append(f"At most {self.max_memory_mib} MiB of memory per machine.")
        return problems


def define_limits(user: User | AnonymousUser, host: Host) -> DefineLimits | None:
    """None when the user may not define VMs on this host at all."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.sees_every_domain:
        return DefineLimits(None, None, None, 0)
    allowances = list(
        DefineAllowance.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
        .filter(Q(hosts=None) | Q(hosts=host))
        .distinct()
    )
    if not allowances:
        return None
    # Several allowances (own and groups') combine to the most generous of each limit.
    return DefineLimits(
        max_vms=max(a.max_vms for a in allowances),
        max_vcpus=max(a.max_vcpus for a in allowances),
        max_memory_mib=max(a.max_memory_mib for a in allowances),
        owned_vms=Grant.objects.filter(user=user, owner=True).count(),
    )

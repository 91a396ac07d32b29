"""Reads of the people pages, for admins (everybody else is told nothing exists: access.require_admin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth.models import Group
from django.db.models import Count, Q, QuerySet

from accounts.models import User
from domains import selectors as domain_selectors
from domains.access import require_admin
from domains.models import DefineAllowance, Grant

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser


def user_list(*, actor: User | AnonymousUser) -> QuerySet[User]:
    require_admin(actor)
    return User.objects.prefetch_related("groups").order_by("username")


def group_list(*, actor: User | AnonymousUser) -> QuerySet[Group]:
    require_admin(actor)
    return Group.objects.annotate(members=Count("user")).order_by("name")


def grant_list(*, actor: User | AnonymousUser, holder: User | Group | None = None, host_name: str = "",
               uuid: str = "") -> QuerySet[Grant]:
    """Every grant, or those of one user (its own, and its groups') or group, or of one VM."""
    require_admin(actor)
    grants = Grant.objects.select_related("host", "user", "group").order_by("host__name", "domain_name", "pk")
    if isinstance(holder, User):
        grants = grants.filter(Q(user=holder) | Q(group__in=holder.groups.all()))
    elif isinstance(holder, Group):
        grants = grants.filter(group=holder)
    if host_name and uuid:
        grants = grants.filter(host__name=host_name, domain_uuid=uuid)
    return grants


def allowance_list(*, actor: User | AnonymousUser, holder: User | Group | None = None) -> QuerySet[DefineAllowance]:
    require_admin(actor)
    allowances = (DefineAllowance.objects.select_related("user", "group").prefetch_related("hosts", "pools__host")
                  .order_by("pk"))
    if isinstance(holder, User):
        allowances = allowances.filter(Q(user=holder) | Q(group__in=holder.groups.all()))
    elif isinstance(holder, Group):
        allowances = allowances.filter(group=holder)
    return allowances


@dataclass(frozen=True)
class VmChoice:
    host_name: str
    uuid: str
    name: str

    @property
    def value(self) -> str:
        return f"{self.host_name}/{self.uuid}"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.host_name})"


def vm_choices(*, actor: User | AnonymousUser) -> list[VmChoice]:
    """The VMs the list knows (each host's watcher, or one listing now), by name: the grant form's picker."""
    require_admin(actor)
    return sorted((VmChoice(host_name, uuid, name)
                   for (host_name, uuid), name in domain_selectors.domain_names(user=actor).items()),
                  key=lambda choice: (choice.name.lower(), choice.host_name))

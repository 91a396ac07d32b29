"""Writes of the people pages: users, groups, grants (through domains.services) and define allowances.

Admins only: each service audits first, then asks the access module (`require_admin`), so a refused call
leaves a denied row as every other action does.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import User
from audit.services import audited
from domains import live
from domains import services as domain_services
from domains.access import require_admin
from domains.models import DefineAllowance, Grant, Host, StoragePool


def _scope_changed() -> None:
    """Roles, groups and allowances decide what a user sees: open pages re-check, as after a grant."""
    transaction.on_commit(live.grants_changed)


def _check_password(password: str, user: User) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({"password": error.messages}) from error


def user_create(*, actor: User, username: str, password: str, role: str, groups: Iterable[Group] = (),
                client_addr: str | None = None) -> User:
    with audited(actor=actor, action="user.create", client_addr=client_addr) as entry:
        require_admin(actor)
        user = User(username=username, role=role)
        user.full_clean(exclude=["password"])
        _check_password(password, user)
        user.set_password(password)
        user.save()
        user.groups.set(groups)
        entry.message = f"{user.username} ({user.get_role_display()})"
    return user


def user_update(*, actor: User, user: User, role: str, is_active: bool, groups: Iterable[Group],
                password: str = "", client_addr: str | None = None) -> User:
    """Changes role, groups and whether it may sign in; a new password when one is given."""
    with audited(actor=actor, action="user.update", client_addr=client_addr) as entry:
        require_admin(actor)
        if user.pk == actor.pk and (role != User.Role.ADMIN or not is_active):
            # Nobody locks themselves out: another admin has to do it.
            raise ValidationError({"role": _("You cannot take away your own admin rights; ask another admin.")})
        user.role, user.is_active = role, is_active
        user.full_clean(exclude=["password"])
        if password:
            _check_password(password, user)
            user.set_password(password)
        user.save()
        user.groups.set(groups)
        _scope_changed()
        entry.message = f"{user.username}: {user.get_role_display()}, " + (
            "active" if is_active else "inactive") + (", password set" if password else "")
    return user


def group_save(*, actor: User, group: Group, members: Iterable[User], client_addr: str | None = None) -> Group:
    """Creates or renames a group and sets who is in it."""
    action = "group.update" if group.pk else "group.create"
    with audited(actor=actor, action=action, client_addr=client_addr) as entry:
        require_admin(actor)
        group.full_clean()
        group.save()
        group.user_set.set(members)
        _scope_changed()
        entry.message = f"{group.name}: {group.user_set.count()} members"
    return group


def grant_share(*, actor: User, host: Host, uuid: str, user: User | None, group: Group | None,
                can_operate: bool, can_console: bool, owner: bool, client_addr: str | None = None) -> Grant:
    """Gives a user or a group these rights on a VM: a new grant, or new rights on the one it already has."""
    grant = (Grant.objects.filter(host=host, domain_uuid=uuid, user=user, group=group).first() if user or group
             else None) or Grant(host=host, domain_uuid=uuid, user=user, group=group)
    grant.can_operate, grant.can_console, grant.owner = can_operate, can_console, owner
    return domain_services.grant_save(actor=actor, grant=grant, client_addr=client_addr)


def allowance_save(*, actor: User, allowance: DefineAllowance, hosts: Iterable[Host], pools: Iterable[StoragePool],
                   client_addr: str | None = None) -> DefineAllowance:
    action = "allowance.update" if allowance.pk else "allowance.create"
    with audited(actor=actor, action=action, client_addr=client_addr) as entry:
        require_admin(actor)
        allowance.full_clean()
        allowance.save()
        allowance.hosts.set(hosts)
        allowance.pools.set(pools)
        _scope_changed()
        entry.message = (f"{allowance.user or allowance.group}: {allowance.max_vms} VMs, {allowance.max_vcpus} vCPUs, "
                         f"{allowance.max_memory_mib} MiB, {allowance.max_storage_gib} GiB")
    return allowance


def allowance_delete(*, actor: User, allowance: DefineAllowance, client_addr: str | None = None) -> None:
    with audited(actor=actor, action="allowance.delete", client_addr=client_addr) as entry:
        require_admin(actor)
        entry.message = f"of {allowance.user or allowance.group}"
        allowance.delete()
        _scope_changed()

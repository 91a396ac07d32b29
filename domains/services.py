"""Writes: check the actor's rights, audit, then act. Nothing else changes state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.http import Http404

from . import selectors, virt
from .audit import audited
from .locks import domain_action_lock
from .models import Grant, Host
from .permissions import Right
from .selectors import DomainRow
from .virt import Action, PowerMode

if TYPE_CHECKING:
    from accounts.models import User


def _require_admin(actor: User) -> None:
    # Non-admins are not told that host management exists.
    if not actor.is_admin:
        raise Http404("Not found.")


def host_register(*, actor: User, name: str, uri: str, enabled: bool = True,
                  client_addr: str | None = None) -> Host:
    with audited(actor=actor, action="host.register", client_addr=client_addr) as entry:
        _require_admin(actor)
        host = Host(name=name, uri=uri, enabled=enabled)
        host.full_clean()
        host.save()
        entry.host, entry.host_name = host, host.name
        entry.save(update_fields=["host", "host_name"])
    return host


def host_update(*, actor: User, host: Host, uri: str, enabled: bool,
                client_addr: str | None = None) -> Host:
    with audited(actor=actor, action="host.update", host=host, client_addr=client_addr):
        _require_admin(actor)
        if host.uri != uri:
            virt.pool.discard(host.uri)
        host.uri, host.enabled = uri, enabled
        host.full_clean()
        host.save()
    return host


def host_delete(*, actor: User, host: Host, client_addr: str | None = None) -> None:
    with audited(actor=actor, action="host.delete", host=host, client_addr=client_addr):
        _require_admin(actor)
        virt.pool.discard(host.uri)
        host.delete()


def host_test_connection(*, actor: User, host: Host, client_addr: str | None = None) -> virt.HostFacts:
    """Connects afresh and reports what the host is; failures are shown, not raised to a 500."""
    with audited(actor=actor, action="host.test", host=host, client_addr=client_addr) as entry:
        _require_admin(actor)
        virt.pool.discard(host.uri)
        facts = virt.host_facts(host.uri)
        entry.message = f"libvirt {facts.libvirt_version} on {facts.hostname}"
    return facts


def grant_save(*, actor: User, grant: Grant, client_addr: str | None = None) -> Grant:
    with audited(actor=actor, action="grant.save", host=grant.host, domain_uuid=str(grant.domain_uuid),
                 client_addr=client_addr) as entry:
        _require_admin(actor)
        grant.full_clean()
        grant.save()
        entry.message = f"to {grant.user or grant.group}: view" + (
            ", operate" if grant.can_operate else "") + (", console" if grant.can_console else "")
    return grant


def grant_revoke(*, actor: User, grant: Grant, client_addr: str | None = None) -> None:
    with audited(actor=actor, action="grant.revoke", host=grant.host, domain_uuid=str(grant.domain_uuid),
                 client_addr=client_addr) as entry:
        _require_admin(actor)
        entry.message = f"from {grant.user or grant.group}"
        grant.delete()


def _operate(
    *,
    actor: User,
    host_name: str,
    uuid: str,
    action: str,
    act: Callable[[DomainRow], str],
    client_addr: str | None,
) -> str:
    """Audits, resolves the VM through the permission gate, holds the VM's action lock, acts.

    Returns the message for the user; the audit row is written before libvirt is called.
    """
    host = Host.objects.filter(name=host_name).first()
    with audited(actor=actor, action=action, host=host, domain_uuid=uuid, client_addr=client_addr) as entry:
        row = selectors.domain_get(user=actor, host_name=host_name, uuid=uuid)
        entry.domain_name = row.record.name
        entry.save(update_fields=["domain_name"])
        if Right.OPERATE not in row.rights:
            raise PermissionDenied("You may view this machine but not act on it.")
        with domain_action_lock(row.host.pk, row.uuid):
            entry.message = act(row)
    return entry.message


def domain_act(
    *,
    actor: User,
    host_name: str,
    uuid: str,
    action: Action,
    mode: PowerMode = PowerMode.AUTO,
    client_addr: str | None = None,
) -> str:
    def act(row: DomainRow) -> str:
        if action not in row.actions:
            raise virt.OperationInvalid(
                f"{action.label} is not possible while the machine is {row.record.state_label}."
            )
        virt.run_action(row.host.uri, row.uuid, action, mode)
        return f"{row.record.name} {action.past_tense}."

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action=f"domain.{action}", act=act,
                    client_addr=client_addr)


def domain_delete(
    *,
    actor: User,
    host_name: str,
    uuid: str,
    remove_managed_save: bool = True,
    remove_snapshot_metadata: bool = True,
    remove_nvram: bool = False,
    volume_paths: Sequence[str] = (),
    client_addr: str | None = None,
) -> str:
    def act(row: DomainRow) -> str:
        deleted = virt.delete_domain(
            row.host.uri, row.uuid, remove_managed_save=remove_managed_save,
            remove_snapshot_metadata=remove_snapshot_metadata, remove_nvram=remove_nvram,
            volume_paths=volume_paths,
        )
        Grant.objects.filter(host=row.host, domain_uuid=row.uuid).delete()
        volumes = f" and {len(deleted)} volume{'s' if len(deleted) != 1 else ''}" if deleted else ""
        return f"{row.record.name}{volumes} deleted."

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="domain.delete", act=act,
                    client_addr=client_addr)


def snapshot_create(*, actor: User, host_name: str, uuid: str, name: str, description: str = "",
                    client_addr: str | None = None) -> str:
    def act(row: DomainRow) -> str:
        frozen = virt.create_snapshot(row.host.uri, row.uuid, name=name, description=description)
        return f"Snapshot {name} of {row.record.name} created" + (
            " with the guest's file systems frozen." if frozen else ".")

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="snapshot.create", act=act,
                    client_addr=client_addr)


def snapshot_revert(*, actor: User, host_name: str, uuid: str, name: str, client_addr: str | None = None) -> str:
    def act(row: DomainRow) -> str:
        virt.revert_snapshot(row.host.uri, row.uuid, name)
        return f"{row.record.name} reverted to snapshot {name}."

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="snapshot.revert", act=act,
                    client_addr=client_addr)


def snapshot_delete(*, actor: User, host_name: str, uuid: str, name: str, client_addr: str | None = None) -> str:
    def act(row: DomainRow) -> str:
        virt.delete_snapshot(row.host.uri, row.uuid, name)
        return f"Snapshot {name} of {row.record.name} deleted."

    return _operate(actor=actor, host_name=host_name, uuid=uuid, action="snapshot.delete", act=act,
                    client_addr=client_addr)

"""Writes: check the actor's rights, audit, then act. Nothing else changes state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import Http404

from . import virt
from .audit import audited
from .models import Grant, Host

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

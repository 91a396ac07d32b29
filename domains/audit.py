"""Audit rows are written before an action acts and completed after it (Nova's instance actions)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils import timezone

from .models import AuditEntry, Host
from .virt import VirtError

if TYPE_CHECKING:
    from accounts.models import User


@contextmanager
def audited(
    *,
    actor: User,
    action: str,
    host: Host | None = None,
    domain_uuid: str | None = None,
    domain_name: str = "",
    client_addr: str | None = None,
) -> Iterator[AuditEntry]:
    """Records `action`; a 404 from the permission gate ends it as denied, a VirtError as failed.

    A failure keeps libvirt's message in full; `domains.errors.error_message` redacts it for a reader
    who may not see host details.
    """
    entry = AuditEntry.objects.create(
        actor=actor,
        actor_name=actor.get_username(),
        action=action,
        host=host,
        host_name=host.name if host else "",
        domain_uuid=domain_uuid,
        domain_name=domain_name,
        client_addr=client_addr or None,
    )
    try:
        yield entry
    except Http404:
        _finish(entry, AuditEntry.Result.DENIED, "Not visible to this user.")
        raise
    except PermissionDenied:
        _finish(entry, AuditEntry.Result.DENIED, "Not permitted for this user.")
        raise
    except VirtError as error:
        _finish(entry, AuditEntry.Result.FAILED, error.full_message)
        raise
    except ValidationError as error:
        _finish(entry, AuditEntry.Result.FAILED, "; ".join(error.messages))
        raise
    except Exception as error:
        _finish(entry, AuditEntry.Result.FAILED, type(error).__name__)
        raise
    else:
        _finish(entry, AuditEntry.Result.SUCCEEDED, entry.message)


def _finish(entry: AuditEntry, result: AuditEntry.Result, message: str) -> None:
    entry.result = result
    entry.message = message
    entry.finished_at = timezone.now()
    entry.save(update_fields=["result", "message", "finished_at"])


def refuse(
    *,
    actor: User,
    action: str,
    host: Host | None = None,
    domain_uuid: str | None = None,
    client_addr: str | None = None,
) -> NoReturn:
    """Records a refused attempt as denied and answers as if the target did not exist."""
    with audited(actor=actor, action=action, host=host, domain_uuid=domain_uuid, client_addr=client_addr):
        raise Http404("Not found.")

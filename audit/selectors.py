"""Reads of the audit log, scoped to the acting user through the access module."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from django.db.models import Q, QuerySet

from domains.access import is_admin
from domains.errors import error_message

from .models import AuditEntry

if TYPE_CHECKING:
    from accounts.models import User


@dataclass(frozen=True)
class AuditFilters:
    """What the audit page and its CSV export narrow the log to; empty fields do not narrow."""

    actor: str = ""
    vm: str = ""  # a name (part of one) or a whole UUID
    host: str = ""
    action: str = ""
    result: str = ""
    since: datetime | None = None
    until: datetime | None = None
    text: str = ""  # anywhere in the row's words


def audit_list(*, user: User) -> QuerySet[AuditEntry]:
    """Admins see every entry; everybody else sees their own."""
    entries = AuditEntry.objects.select_related("actor")
    return entries if is_admin(user) else entries.filter(actor=user)


def audit_actions(*, user: User) -> list[str]:
    """The actions the user's entries hold: the filter's choices."""
    return sorted(set(audit_list(user=user).values_list("action", flat=True)))


def _vm_filter(vm: str) -> Q:
    try:
        return Q(domain_uuid=UUID(vm))
    except ValueError:
        return Q(domain_name__icontains=vm)


def audit_search(*, user: User, filters: AuditFilters) -> QuerySet[AuditEntry] | list[AuditEntry]:
    """The user's entries that match, newest first.

    Free text matches a message as its reader reads it (domains.errors): a tenant searching for a host's
    path must not learn which of its rows hold one, so its matches are checked again on the redacted text.
    """
    entries = audit_list(user=user)
    if filters.actor:
        entries = entries.filter(actor_name__icontains=filters.actor)
    if filters.vm:
        entries = entries.filter(_vm_filter(filters.vm))
    if filters.host:
        entries = entries.filter(host_name__icontains=filters.host)
    if filters.action:
        entries = entries.filter(action=filters.action)
    if filters.result:
        entries = entries.filter(result=filters.result)
    if filters.since:
        entries = entries.filter(created_at__gte=filters.since)
    if filters.until:
        entries = entries.filter(created_at__lte=filters.until)
    if not filters.text:
        return entries
    text = filters.text
    entries = entries.filter(Q(message__icontains=text) | Q(actor_name__icontains=text) | Q(action__icontains=text)
                             | Q(host_name__icontains=text) | Q(domain_name__icontains=text)
                             | Q(token_name__icontains=text))
    if is_admin(user):
        return entries
    return [entry for entry in entries if _matches(entry, text.lower(), user)]


def _matches(entry: AuditEntry, text: str, user: User) -> bool:
    words: Iterable[str] = (error_message(user=user, error=entry.message), entry.actor_name, entry.action,
                            entry.host_name, entry.domain_name, entry.token_name)
    return any(text in word.lower() for word in words)

"""Reads of the audit log, scoped to the acting user through the access module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from domains.access import is_admin

from .models import AuditEntry

if TYPE_CHECKING:
    from accounts.models import User


def audit_list(*, user: User) -> QuerySet[AuditEntry]:
    """Admins see every entry; everybody else sees their own."""
    entries = AuditEntry.objects.select_related("actor")
    return entries if is_admin(user) else entries.filter(actor=user)

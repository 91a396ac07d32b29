from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditEntry(models.Model):
    """Who did what to which VM on which host, and how it ended; written before the act (audit.services)."""

    class Result(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        DENIED = "denied", _("Denied")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    # Names are copied so the log stays readable after users, hosts or VMs are gone.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    host = models.ForeignKey("domains.Host", null=True, blank=True, on_delete=models.SET_NULL)
    host_name = models.CharField(max_length=63, blank=True)
    domain_uuid = models.UUIDField(null=True, blank=True)
    domain_name = models.CharField(max_length=255, blank=True)
    client_addr = models.GenericIPAddressField(null=True, blank=True)
    token_name = models.CharField(max_length=64, blank=True)  # the API token the actor acted through, if any
    result = models.CharField(max_length=16, choices=Result.choices, default=Result.PENDING)
    message = models.TextField(blank=True)

    class Meta:
        db_table = "domains_auditentry"  # the rows stayed where the domains app created them
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.result}"

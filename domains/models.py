from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .validators import validate_libvirt_uri


class Host(models.Model):
    """A libvirt hypervisor the dashboard lists and acts on."""

    name = models.SlugField(max_length=63, unique=True)
    uri = models.CharField("libvirt URI", max_length=512, validators=[validate_libvirt_uri])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Grant(models.Model):
    """Gives a tenant (a user, or everyone in a group) rights on one VM of one host."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="grants")
    domain_uuid = models.UUIDField("VM UUID")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="grants"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="grants")
    can_operate = models.BooleanField("may operate", default=False)
    can_console = models.BooleanField("may open the console", default=False)
    # The tenant defined this VM itself; it counts against its define allowance.
    owner = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="grant_to_user_or_group",
            ),
            models.UniqueConstraint(fields=["host", "domain_uuid", "user"], name="one_grant_per_user"),
            models.UniqueConstraint(fields=["host", "domain_uuid", "group"], name="one_grant_per_group"),
        ]
        indexes = [models.Index(fields=["host", "domain_uuid"])]

    def __str__(self) -> str:
        return f"{self.user or self.group} on {self.host}/{self.domain_uuid}"


class DefineAllowance(models.Model):
    """Lets a tenant (a user, or everyone in a group) define its own VMs, within limits."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="define_allowances"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="define_allowances")
    hosts = models.ManyToManyField(Host, blank=True, help_text="Leave empty for every host.")
    max_vms = models.PositiveIntegerField("most VMs", default=2)
    max_vcpus = models.PositiveIntegerField("most vCPUs per VM", default=2)
    max_memory_mib = models.PositiveIntegerField("most memory per VM (MiB)", default=2048)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="allowance_to_user_or_group",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group}: {self.max_vms} VMs"


class AuditEntry(models.Model):
    """Who did what to which VM on which host, and how it ended; written before the act."""

    class Result(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DENIED = "denied", "Denied"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    # Names are copied so the log stays readable after users, hosts or VMs are gone.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL)
    host_name = models.CharField(max_length=63, blank=True)
    domain_uuid = models.UUIDField(null=True, blank=True)
    domain_name = models.CharField(max_length=255, blank=True)
    client_addr = models.GenericIPAddressField(null=True, blank=True)
    result = models.CharField(max_length=16, choices=Result.choices, default=Result.PENDING)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.result}"


class MigrationJob(models.Model):
    """One move of a VM between hosts: who asked, from where to where, how, and how it ended.

    Runs outside the request (domains.moves); `heartbeat_at` tells a restarted dashboard whether a
    runner still follows the job, `progress` holds the latest libvirt figures for a page opened late.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        CANCELLING = "cancelling", "Cancelling"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING, State.CANCELLING)

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                              related_name="migration_jobs")
    actor_name = models.CharField(max_length=150)
    domain_uuid = models.UUIDField(db_index=True)
    domain_name = models.CharField(max_length=255)
    source = models.ForeignKey(Host, null=True, on_delete=models.SET_NULL, related_name="+")
    source_name = models.CharField(max_length=63)
    destination = models.ForeignKey(Host, null=True, on_delete=models.SET_NULL, related_name="+")
    destination_name = models.CharField(max_length=63)
    live = models.BooleanField()
    options = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    note = models.TextField(blank=True)  # how the end was learnt (e.g. reconciled after a restart)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.domain_name}: {self.source_name} → {self.destination_name} ({self.state})"

    @property
    def active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def mode(self) -> str:
        return "live" if self.live else "offline"

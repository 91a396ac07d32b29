from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .validators import validate_libvirt_uri, validate_migration_address


class Host(models.Model):
    """A libvirt hypervisor the dashboard lists and acts on."""

    name = models.SlugField(max_length=63, unique=True)
    uri = models.CharField("libvirt URI", max_length=512, validators=[validate_libvirt_uri])
    migration_address = models.CharField(
        max_length=253, blank=True, validators=[validate_migration_address],
        help_text=_("The address other hosts send migrations to (an IP address or DNS name of this host on the "
                    "migration network). Empty: libvirt's default, the host's own name."))
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
    # Copied when the grant is saved, so lists name the VM without asking its host.
    domain_name = models.CharField("VM name", max_length=255, blank=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="grants"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="grants")
    can_operate = models.BooleanField(
        "may operate", default=False,
        help_text="Start, shut down, reboot, pause, save, snapshot and change its display; not delete it.")
    can_console = models.BooleanField(
        "may open the console", default=False, help_text="Open its screen and keyboard in a browser tab.")
    owner = models.BooleanField(
        "owns it", default=False,
        help_text="May delete it and its own disks; counts against the tenant's define allowance. "
        "Set for VMs a tenant defined itself.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="grant_to_user_or_group",
                violation_error_message="Give the grant to a user or to a group, not both and not neither.",
            ),
            models.UniqueConstraint(fields=["host", "domain_uuid", "user"], name="one_grant_per_user"),
            models.UniqueConstraint(fields=["host", "domain_uuid", "group"], name="one_grant_per_group"),
        ]
        indexes = [models.Index(fields=["host", "domain_uuid"])]

    def __str__(self) -> str:
        return f"{self.user or self.group} on {self.host}/{self.domain_name or self.domain_uuid}"

    def clean(self) -> None:
        _user_or_group(self)


def _user_or_group(holder: Grant | DefineAllowance) -> None:
    """The "user or group" rule as field errors in words (the database constraint only says it was broken)."""
    if holder.user_id is None and holder.group_id is None:
        message = "Choose a user or a group."
        raise ValidationError({"user": message, "group": message})
    if holder.user_id is not None and holder.group_id is not None:
        raise ValidationError({"group": "Choose a user or a group, not both."})


class StoragePool(models.Model):
    """A libvirt storage pool an admin has given a role for tenants: where their new volumes may go
    (through a define allowance), or shared install images they may attach read-only."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="storage_pools")
    name = models.CharField("pool name", max_length=255, help_text="The libvirt pool's name on this host.")
    shared_images = models.BooleanField(
        "shared images", default=False,
        help_text="Tenants who may define VMs may boot any of its volumes as a read-only install image (ISO).")

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "name"], name="one_pool_per_host_and_name")]

    def __str__(self) -> str:
        return f"{self.host}/{self.name}"


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
    pools = models.ManyToManyField(
        StoragePool, blank=True, related_name="allowances",
        help_text="Where the tenant's new volumes go. None: it may not create volumes.")
    max_storage_gib = models.PositiveIntegerField(
        "most storage (GiB)", default=20, help_text="The total size of the volumes it creates, on every host.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="allowance_to_user_or_group",
                violation_error_message="Give the allowance to a user or to a group, not both and not neither.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group}: {self.max_vms} VMs"

    def clean(self) -> None:
        _user_or_group(self)


class OwnedVolume(models.Model):
    """A storage volume created through the dashboard, and who created it: the only volumes a tenant
    may boot (besides shared images), and what counts against its storage allowance."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="owned_volumes")
    pool = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    path = models.CharField(max_length=4096)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="volumes")
    capacity_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "pool", "name"], name="one_owner_per_volume")]

    def __str__(self) -> str:
        return f"{self.pool}/{self.name} on {self.host} ({self.owner})"

    @property
    def key(self) -> str:
        return f"{self.pool}/{self.name}"


class MigrationJob(models.Model):
    """One move of a VM between hosts: who asked, from where to where, how, and how it ended.

    Runs outside the request (domains.migration_jobs); `heartbeat_at` tells a restarted dashboard whether a
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


class UsagePoint(models.Model):
    """What one VM (or, without a UUID, its host) used over one bucket of one resolution (domains.history):
    each figure's average, and its maximum as `<figure>_max`. Pruned by age per resolution by the process
    that collects (domains.history.RESOLUTIONS states what is kept: at most 3,240 points per VM)."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    domain_uuid = models.UUIDField(null=True, blank=True)  # None: the host's own figures
    resolution = models.PositiveIntegerField()  # seconds
    start = models.BigIntegerField()  # epoch seconds, a multiple of the resolution
    samples = models.PositiveSmallIntegerField()
    cpu_percent = models.FloatField()  # of the VM's vCPUs (of the host's CPUs, for the host itself)
    cpu_percent_max = models.FloatField()
    host_cpu_percent = models.FloatField()
    host_cpu_percent_max = models.FloatField()
    memory_used_kib = models.FloatField()
    memory_used_kib_max = models.FloatField()
    disk_read_bytes_per_second = models.FloatField()
    disk_read_bytes_per_second_max = models.FloatField()
    disk_write_bytes_per_second = models.FloatField()
    disk_write_bytes_per_second_max = models.FloatField()
    disk_read_iops = models.FloatField()
    disk_read_iops_max = models.FloatField()
    disk_write_iops = models.FloatField()
    disk_write_iops_max = models.FloatField()
    net_receive_bytes_per_second = models.FloatField()
    net_receive_bytes_per_second_max = models.FloatField()
    net_transmit_bytes_per_second = models.FloatField()
    net_transmit_bytes_per_second_max = models.FloatField()
    net_receive_packets_per_second = models.FloatField()
    net_receive_packets_per_second_max = models.FloatField()
    net_transmit_packets_per_second = models.FloatField()
    net_transmit_packets_per_second_max = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "domain_uuid", "resolution", "start"],
                                               name="usage_point_once_per_bucket")]
        indexes = [models.Index(fields=["resolution", "start"], name="usage_point_age")]  # pruning

    def __str__(self) -> str:
        return f"{self.domain_uuid or 'host'} at {self.start} ({self.resolution} s)"


class HostUsage(models.Model):
    """A host's latest sample (domains.collector): the counters /metrics exports and the rates the list
    shows, readable by every process (the collecting one may be `watchhosts`, or `collectstats --once`)."""

    host = models.OneToOneField(Host, on_delete=models.CASCADE, primary_key=True, related_name="usage")
    taken_at = models.FloatField()  # epoch seconds
    counters = models.JSONField()  # domains.virt.usage.HostCounters as plain data
    rates = models.JSONField(default=dict)  # uuid: the VM's DomainUsage over the last interval, as plain data

    def __str__(self) -> str:
        return f"{self.host} at {self.taken_at}"

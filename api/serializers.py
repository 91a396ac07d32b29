"""The API's documents: what each resource answers (for the schema and the answer alike) and what each write
takes. Writes are validated by the pages' own forms (domains.forms), so a refusal reads the same words; the
serializers of request bodies only document them."""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from rest_framework import serializers

from domains import virt
from domains.models import DefineAllowance, MigrationJob


class MessageSerializer(serializers.Serializer):
    """What an action did, in the words the page's message uses."""

    detail = serializers.CharField()


class HostSerializer(serializers.Serializer):
    name = serializers.CharField()
    enabled = serializers.BooleanField()
    url = serializers.CharField()


class HostFactsSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    libvirt_version = serializers.CharField()
    hypervisor = serializers.CharField()
    hypervisor_version = serializers.CharField()
    cpu_model = serializers.CharField()
    cpus = serializers.IntegerField()
    memory_mib = serializers.IntegerField()
    vms = serializers.IntegerField()
    running = serializers.IntegerField()


class PoolCapacitySerializer(serializers.Serializer):
    name = serializers.CharField()
    active = serializers.BooleanField()
    capacity_bytes = serializers.IntegerField()
    allocation_bytes = serializers.IntegerField()
    available_bytes = serializers.IntegerField()


class HostDetailSerializer(serializers.Serializer):
    name = serializers.CharField()
    facts = HostFactsSerializer(allow_null=True)
    error = serializers.CharField(help_text="Why the host does not answer; empty when it does.")
    pools = PoolCapacitySerializer(many=True, allow_null=True)
    pools_error = serializers.CharField()
    sampled_at = serializers.DateTimeField(allow_null=True)


class DomainSerializer(serializers.Serializer):
    """One VM as the list's JSON has always shown it (domains.rows.DomainRow.as_json), with its URL."""

    host = serializers.CharField()
    name = serializers.CharField()
    uuid = serializers.CharField()
    state = serializers.CharField()
    reason = serializers.CharField()
    persistent = serializers.BooleanField()
    autostart = serializers.BooleanField()
    managed_save = serializers.BooleanField()
    snapshots = serializers.IntegerField()
    vcpus = serializers.IntegerField()
    memory_kib = serializers.IntegerField()
    title = serializers.CharField(allow_blank=True)
    addresses = serializers.ListField(child=serializers.CharField())
    cpu_percent = serializers.FloatField(allow_null=True, required=False,
                                         help_text="Of its vCPUs, by the latest usage sample (the list only).")
    memory_used_kib = serializers.FloatField(allow_null=True, required=False)
    url = serializers.CharField()


class ListedHostSerializer(serializers.Serializer):
    host = serializers.CharField()
    watched = serializers.BooleanField()
    listed_at = serializers.DateTimeField(allow_null=True)


class UnreachableHostSerializer(serializers.Serializer):
    host = serializers.CharField()
    error = serializers.CharField()


class DomainListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    per_page = serializers.IntegerField()
    domains = DomainSerializer(many=True)
    hosts = ListedHostSerializer(many=True)
    unreachable_hosts = UnreachableHostSerializer(many=True)


class SnapshotSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    created = serializers.DateTimeField(allow_null=True)
    state = serializers.CharField()
    current = serializers.BooleanField()


class DomainDetailSerializer(DomainSerializer):
    rights = serializers.ListField(child=serializers.CharField(), help_text="view, operate, console, delete")
    actions = serializers.ListField(child=serializers.ChoiceField(choices=[a.value for a in virt.Action]),
                                    help_text="What the caller may do to it in its current state.")
    video_models = serializers.ListField(child=serializers.CharField())
    graphics = serializers.ListField(child=serializers.DictField())
    disks = serializers.ListField(child=serializers.DictField())
    nics = serializers.ListField(child=serializers.DictField())
    snapshot_list = SnapshotSerializer(many=True)


class GuestInfoSerializer(serializers.Serializer):
    hostname = serializers.CharField(allow_blank=True)
    os_name = serializers.CharField(allow_blank=True)
    os_version = serializers.CharField(allow_blank=True)
    kernel = serializers.CharField(allow_blank=True)
    timezone = serializers.CharField(allow_blank=True)
    users = serializers.ListField(child=serializers.CharField())
    filesystems = serializers.ListField(child=serializers.DictField())
    addresses = serializers.ListField(child=serializers.DictField())


class UsageSerializer(serializers.Serializer):
    span = serializers.CharField()
    resolution = serializers.IntegerField(help_text="Seconds per point.")
    memory_source = serializers.CharField(allow_null=True)
    interval = serializers.FloatField(help_text="Seconds between samples.")
    series = serializers.DictField(child=serializers.ListField(child=serializers.FloatField()),
                                   help_text="Columns: t (epoch seconds) and each figure, with its maximum.")


class ActionRequestSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=[m.value for m in virt.PowerMode], required=False,
                                   help_text="For shutdown and reboot.")


class DeleteRequestSerializer(serializers.Serializer):
    remove_managed_save = serializers.BooleanField(default=True)
    remove_snapshot_metadata = serializers.BooleanField(default=True)
    remove_nvram = serializers.BooleanField(default=False)
    disks = serializers.ListField(child=serializers.CharField(), required=False,
                                  help_text="Targets (vda) of the VM's own disks to delete with it.")


class SnapshotRequestSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    description = serializers.CharField(max_length=1000, required=False)


class DisplayRequestSerializer(serializers.Serializer):
    video_model = serializers.ChoiceField(choices=list(virt.VIDEO_MODELS))
    graphics = serializers.ChoiceField(choices=["vnc", "spice", "none"])
    listen = serializers.IPAddressField(required=False)
    port = serializers.IntegerField(required=False)
    tls_port = serializers.IntegerField(required=False)
    password = serializers.CharField(required=False)
    keymap = serializers.CharField(required=False)


class DefineRequestSerializer(DisplayRequestSerializer):
    """The define form's fields (the page's New VM), with the host to define on."""

    host = serializers.CharField()
    name = serializers.CharField()
    title = serializers.CharField(required=False)
    description = serializers.CharField(required=False)
    vcpus = serializers.IntegerField()
    memory_mib = serializers.IntegerField()
    accelerator = serializers.CharField()
    boot_kind = serializers.ChoiceField(choices=[kind.value for kind in virt.BootKind])
    volume = serializers.CharField(required=False)
    pool = serializers.CharField(required=False)
    size_gib = serializers.IntegerField(required=False)
    kernel = serializers.CharField(required=False)
    initrd = serializers.CharField(required=False)
    cmdline = serializers.CharField(required=False)
    network = serializers.CharField()
    guest_agent = serializers.BooleanField(required=False)
    autostart = serializers.BooleanField(required=False)


class DefineXmlRequestSerializer(serializers.Serializer):
    host = serializers.CharField()
    xml = serializers.CharField()


class DefinedSerializer(serializers.Serializer):
    host = serializers.CharField()
    uuid = serializers.CharField()
    url = serializers.CharField()


class ConsoleRequestSerializer(serializers.Serializer):
    serial = serializers.BooleanField(default=False, help_text="The serial console instead of the display.")


class ConsoleTicketsSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="vnc, spice or serial")
    url = serializers.CharField(help_text="The websocket to open, with one ticket as its token parameter.")
    tickets = serializers.ListField(child=serializers.CharField(), help_text="Single use, one per connection.")
    expires_in = serializers.IntegerField(help_text="Seconds left to open them.")
    origin = serializers.CharField(help_text=(
        "The Origin header each websocket must send. Tickets asked for with a token open only with that same "
        "token sent as `Authorization: Bearer <token>`; tickets asked for in a browser session, in that session."))


class MigrationRequestSerializer(serializers.Serializer):
    destination = serializers.CharField(help_text="A registered host other than the VM's own.")
    persist_dest = serializers.BooleanField(required=False)
    undefine_source = serializers.BooleanField(required=False)
    copy_storage = serializers.ChoiceField(choices=["", "all", "incremental"], required=False)
    peer_to_peer = serializers.BooleanField(required=False)
    tunnelled = serializers.BooleanField(required=False)
    bandwidth_mib = serializers.IntegerField(required=False, help_text="Bandwidth limit in MiB/s; absent: no limit.")
    max_downtime_ms = serializers.IntegerField(required=False, help_text="Longest pause at the switch-over, in ms.")
    auto_converge = serializers.BooleanField(required=False)
    compressed = serializers.BooleanField(required=False)
    postcopy = serializers.BooleanField(required=False)


class MigrationJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    domain_uuid = serializers.CharField()
    domain_name = serializers.CharField()
    source = serializers.CharField(source="source_name")  # type: ignore[assignment]  # a field, as DRF declares them
    destination = serializers.CharField(source="destination_name")
    mode = serializers.CharField()
    state = serializers.ChoiceField(choices=MigrationJob.State.values)
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    progress = serializers.DictField(help_text="libvirt's latest figures of the running job: sizes in bytes "
                                               "(data_*, disk_*), memory_bps in bytes per second, *_ms in ms.")
    error = serializers.CharField(allow_blank=True)

    def get_url(self, job: MigrationJob) -> str:
        return reverse("api:migration", args=[job.pk])


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    actor = serializers.CharField(source="actor_name")
    token = serializers.CharField(source="token_name", help_text="The API token it was done through, if any.")
    action = serializers.CharField()
    host = serializers.CharField(source="host_name")
    domain_uuid = serializers.UUIDField(allow_null=True)
    domain_name = serializers.CharField()
    client_addr = serializers.CharField(allow_null=True)
    result = serializers.CharField()
    message = serializers.CharField()


class AuditPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    entries = AuditEntrySerializer(many=True)


class GrantSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    host = serializers.CharField(source="host.name")
    domain_uuid = serializers.UUIDField()
    domain_name = serializers.CharField(read_only=True)
    user = serializers.CharField(source="user.username", allow_null=True, required=False)
    group = serializers.CharField(source="group.name", allow_null=True, required=False)
    can_operate = serializers.BooleanField(default=False)
    can_console = serializers.BooleanField(default=False)
    owner = serializers.BooleanField(default=False)


def _allowance_limit(name: str) -> serializers.IntegerField:
    field = DefineAllowance._meta.get_field(name)
    assert isinstance(field, models.Field)  # noqa: S101 - a column, not a relation
    return serializers.IntegerField(min_value=0, default=field.default, help_text=str(field.verbose_name))


class AllowanceSerializer(serializers.Serializer):
    """What a user or a group may define: the same fields as the allowance pages, hosts and pools by name."""

    id = serializers.IntegerField(read_only=True)
    user = serializers.CharField(source="user.username", allow_null=True, required=False)
    group = serializers.CharField(source="group.name", allow_null=True, required=False)
    hosts = serializers.ListField(child=serializers.CharField(), default=list, help_text="Empty: every host.")
    max_vms = _allowance_limit("max_vms")
    max_vcpus = _allowance_limit("max_vcpus")
    max_memory_mib = _allowance_limit("max_memory_mib")
    pools = serializers.ListField(child=serializers.CharField(), default=list,
                                  help_text="HOST/POOL, each a pool registered for tenants' volumes.")
    max_storage_gib = _allowance_limit("max_storage_gib")


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(  # type: ignore[assignment]  # a field, as DRF declares them
        child=serializers.ListField(child=serializers.CharField()), required=False)

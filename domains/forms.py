from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from django import forms
from django.forms import BoundField
from django.forms.utils import ErrorList
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from . import services
from .models import Host
from .virt import VIDEO_MODELS, BootKind, BootSpec, DefineChoices, DomainSpec, GraphicsSpec, HostInUse
from .virt.hardware import BOOT_DEVICES, DISK_BUSES, NIC_MODELS
from .virt.migration import CopyStorage, MigrationOptions


class HostForm(forms.ModelForm[Host]):
    class Meta:
        model = Host
        fields = ["name", "uri", "migration_address", "enabled"]
        labels = {"name": _("Name"), "uri": _("libvirt URI"), "migration_address": _("Migration address"),
                  "enabled": _("Enabled")}
        help_texts = {
            "uri": "test:///default, test:///path/inventory.xml, qemu:///system, "
            "qemu+unix:///system?socket=/path, qemu+ssh://root@host/system, qemu+tcp://host/system, "
            "qemu+tls://host/system",
        }


class SnapshotForm(forms.Form):
    name = forms.SlugField(label=_("Name"), max_length=64, help_text=_("Letters, digits, - and _."))
    description = forms.CharField(label=_("Description"), max_length=1000, required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}))


GRAPHICS_CHOICES = [("vnc", "VNC"), ("spice", "SPICE"), ("none", _("none"))]
BOOT_CHOICES = [
    (BootKind.NEW_VOLUME.value, _("a new empty volume")),
    (BootKind.VOLUME.value, _("an existing volume")),
    (BootKind.ISO.value, _("an ISO image (with a new empty volume when a size is given)")),
    (BootKind.KERNEL.value, _("a kernel and initrd on the host (with a new empty volume when a size is given)")),
]


class DisplayForm(forms.Form):
    """Video card and graphics server; the define form adds the rest of a VM to these."""

    video_model = forms.ChoiceField(label=_("Video model"), choices=[(m, m) for m in VIDEO_MODELS], initial="vga")
    graphics = forms.ChoiceField(label=_("graphics server"), choices=GRAPHICS_CHOICES, initial="vnc")
    listen = forms.GenericIPAddressField(
        label=_("listen address"), required=False,
        help_text=_("Empty: where the host's own setting puts displays (its qemu.conf vnc_listen), which is where "
                    "the console proxy reaches them: loopback through SSH, or the host's address over TLS."))
    port = forms.IntegerField(label=_("Port"), min_value=5900, max_value=65535, required=False,
                              help_text=_("Empty: the host picks a free port."))
    tls_port = forms.IntegerField(label=_("TLS port (SPICE)"), min_value=5900, max_value=65535, required=False)
    password = forms.CharField(label=_("Password"), max_length=64, required=False,
                               widget=forms.PasswordInput(render_value=True),
                               help_text=_("Never sent to browsers; the console proxy handles it."))
    keymap = forms.CharField(label=_("Keymap"), max_length=16, required=False,
                             help_text=_("For example en-us or de; empty: default."))

    def __init__(self, *args: Any, may_choose_listen: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not may_choose_listen:
            self.fields["listen"].disabled = True

    def graphics_spec(self) -> GraphicsSpec | None:
        data = self.cleaned_data
        if data["graphics"] == "none":
            return None
        return GraphicsSpec(
            kind=data["graphics"], listen=data["listen"], port=data["port"],
            tls_port=data["tls_port"] if data["graphics"] == "spice" else None,
            password=data["password"], keymap=data["keymap"],
        )


def domain_name_field() -> forms.RegexField:
    return forms.RegexField(
        regex=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64, label=_("Name"),
        error_messages={"invalid": _("Letters, digits, '.', '_' and '-', starting with a letter or digit.")},
    )


# Which fields each boot source uses (define.js shows only those; clean() drops the others' values) and which of
# them it needs.
BOOT_SOURCE_FIELDS = {
    BootKind.NEW_VOLUME.value: ("pool", "size_gib"),
    BootKind.VOLUME.value: ("volume",),
    BootKind.ISO.value: ("volume", "pool", "size_gib"),
    BootKind.KERNEL.value: ("kernel", "initrd", "cmdline", "pool", "size_gib"),
}
BOOT_SOURCE_NEEDS = {
    BootKind.NEW_VOLUME.value: ("pool", "size_gib"),
    BootKind.VOLUME.value: ("volume",),
    BootKind.ISO.value: ("volume",),
    BootKind.KERNEL.value: ("kernel",),
}
GRAPHICS_FIELDS = {
    "vnc": ("listen", "port", "password", "keymap"),
    "spice": ("listen", "port", "tls_port", "password", "keymap"),
}
DEFINE_SECTIONS = (
    (_("Machine"), ("name", "title", "description", "vcpus", "memory_mib", "accelerator")),
    (_("Boot source"), ("boot_kind", "volume", "pool", "size_gib", "kernel", "initrd", "cmdline")),
    (_("Network and display"), ("network", "video_model", "graphics", "listen", "port", "tls_port", "password",
                                "keymap")),
    (_("Options"), ("guest_agent", "autostart")),
)
# Checked against the host as they are typed (the define page's check request), and again on submit.
CHECKED_ON_INPUT = ("name", "memory_mib", "port", "tls_port")


@dataclass(frozen=True)
class FieldRow:
    """A field as the define page lays it out: shown only while `chooser` has one of `shown_for`'s values."""

    field: BoundField
    chooser: str = ""
    shown_for: str = ""  # the chooser's values, space-separated
    checked_on_input: bool = False


@dataclass(frozen=True)
class FormSection:
    legend: str
    rows: list[FieldRow]
    key: str = ""  # for the template: which group this is


class DomainDefineForm(DisplayForm):
    name = domain_name_field()
    title = forms.CharField(label=_("Title"), max_length=200, required=False)
    description = forms.CharField(label=_("Description"), max_length=2000, required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}))
    vcpus = forms.IntegerField(label=_("vCPUs"), min_value=1, max_value=64, initial=1)
    memory_mib = forms.IntegerField(label=_("memory (MiB)"), min_value=64, max_value=1024 * 1024, initial=512)
    accelerator = forms.ChoiceField(label=_("Accelerator"),
                                    help_text=_("Only what this host offers: kvm (hardware virtualization) where "
                                                "it has it, else qemu (emulation, much slower)."))
    boot_kind = forms.ChoiceField(label=_("boot from"), choices=BOOT_CHOICES, initial=BootKind.NEW_VOLUME.value)
    volume = forms.ChoiceField(label=_("volume or ISO"), required=False)
    pool = forms.ChoiceField(label=_("pool for the new volume"), required=False)
    size_gib = forms.IntegerField(label=_("new volume size (GiB)"), min_value=1, max_value=16384, required=False)
    kernel = forms.CharField(label=_("Kernel"), max_length=1024, required=False)
    initrd = forms.CharField(label=_("Initrd"), max_length=1024, required=False)
    cmdline = forms.CharField(label=_("kernel command line"), max_length=1024, required=False)
    network = forms.ChoiceField(label=_("Network"))
    guest_agent = forms.BooleanField(label=_("guest agent channel"), required=False, initial=True)
    autostart = forms.BooleanField(label=_("start with the host"), required=False)

    field_order = [name for _legend, names in DEFINE_SECTIONS for name in names]

    def __init__(self, *args: Any, choices: DefineChoices, in_use: Callable[[], HostInUse], may_boot_kernel: bool,
                 **kwargs: Any) -> None:
        """`in_use` reads what the host has in use; only validation asks for it."""
        super().__init__(*args, **kwargs)
        self.read_in_use = in_use
        self._choose("accelerator", [(a, _("qemu (TCG emulation)") if a == "qemu" else a)
                                     for a in choices.accelerators])
        if choices.accelerators:  # the host's best first (virt.define_choices): kvm only where it has it
            self.fields["accelerator"].initial = choices.accelerators[0]
        self._choose("volume", [("", "—")] + [(v.key, v.key) for v in choices.volumes])
        self._choose("pool", [(p, p) for p in choices.pools])
        self._choose("network", [("user", _("user-mode networking"))] + [
            (n, _("network %(name)s") % {"name": n}) for n in choices.networks])
        if not may_boot_kernel:
            for name in ("kernel", "initrd", "cmdline"):
                del self.fields[name]
            self._choose("boot_kind", [c for c in BOOT_CHOICES if c[0] != BootKind.KERNEL.value])

    def _choose(self, name: str, choices: Sequence[tuple[str, StrOrPromise]]) -> None:
        cast(forms.ChoiceField, self.fields[name]).choices = choices

    def sections(self) -> list[FormSection]:
        return [FormSection(str(legend), [self._row(name) for name in names if name in self.fields])
                for legend, names in DEFINE_SECTIONS]

    def _row(self, name: str) -> FieldRow:
        for chooser, uses in (("boot_kind", BOOT_SOURCE_FIELDS), ("graphics", GRAPHICS_FIELDS)):
            if values := [value for value, names in uses.items() if name in names]:
                return FieldRow(self[name], chooser, " ".join(values), name in CHECKED_ON_INPUT)
        return FieldRow(self[name], checked_on_input=name in CHECKED_ON_INPUT)

    def checked_errors(self) -> list[tuple[BoundField, ErrorList]]:
        """The fields checked as they are typed, with their errors; one left empty has nothing to say yet."""
        return [(self[name], self[name].errors if self.data.get(name) else ErrorList()) for name in CHECKED_ON_INPUT]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("boot_kind") or ""
        for name in {name for names in BOOT_SOURCE_FIELDS.values() for name in names} - set(
                BOOT_SOURCE_FIELDS.get(kind, ())):
            if name in data:  # hidden by the page, maybe filled before the source changed: not this machine's
                data[name] = None if name == "size_gib" else ""
        for name in BOOT_SOURCE_NEEDS.get(kind, ()):
            if not data.get(name):
                self.add_error(name, _("Needed for this boot source."))
        if kind in (BootKind.ISO.value, BootKind.KERNEL.value) and data.get("size_gib") and not data.get("pool"):
            self.add_error("pool", _("Needed for the new volume."))
        self._check_against_the_host(data, self.read_in_use())
        return data

    def _check_against_the_host(self, data: dict[str, Any], in_use: HostInUse) -> None:
        if data.get("name") in in_use.names:
            self.add_error("name", _("A machine named %(name)s already exists on this host.") % {"name": data["name"]})
        if (data.get("memory_mib") or 0) > in_use.memory_mib:
            self.add_error("memory_mib", _("The host has %(host)s MiB of memory in all: give the machine less.")
                           % {"host": in_use.memory_mib})
        shown = GRAPHICS_FIELDS.get(data.get("graphics") or "", ())
        for name in ("port", "tls_port"):
            if name in shown and (port := data.get(name)) in in_use.display_ports:
                self.add_error(name, _("Port %(port)s is taken by another machine's display on this host: pick "
                                       "another, or leave it empty for a free one.") % {"port": port})
        if "tls_port" in shown and data.get("port") and data.get("port") == data.get("tls_port"):
            self.add_error("tls_port", _("The TLS port must differ from the port."))

    def domain_spec(self) -> DomainSpec:
        data = self.cleaned_data
        return DomainSpec(
            name=data["name"], title=data["title"], description=data["description"],
            vcpus=data["vcpus"], memory_mib=data["memory_mib"], accelerator=data["accelerator"],
            boot=BootSpec(
                kind=BootKind(data["boot_kind"]), volume=data.get("volume") or "", pool=data.get("pool") or "",
                size_gib=data.get("size_gib") or 0, kernel=data.get("kernel", ""), initrd=data.get("initrd", ""),
                cmdline=data.get("cmdline", ""),
            ),
            network=data["network"], video_model=data["video_model"], graphics=self.graphics_spec(),
            guest_agent=data["guest_agent"],
        )


class DomainXmlForm(forms.Form):
    xml = forms.CharField(label=_("domain XML"), widget=forms.Textarea(attrs={"rows": 24, "cols": 100}))


MIGRATION_GROUPS = (
    ("storage", _("Storage"), ("copy_storage",)),
    ("transfer", _("Transfer"), ("bandwidth_mib", "compressed", "peer_to_peer", "tunnelled")),
    ("live", _("Live move"), ("max_downtime_ms", "auto_converge", "postcopy")),
    ("afterwards", _("Afterwards"), ("persist_dest", "undefine_source")),
)


class MigrationForm(forms.Form):
    """Options only: the destination is checked against the registered hosts by the view and again by the
    service; it is never free text."""

    # One of the page's host names; the service looks it up.
    destination = forms.CharField(label=_("Destination"), max_length=63)
    persist_dest = forms.BooleanField(label=_("keep it defined on the destination"), required=False, initial=True)
    undefine_source = forms.BooleanField(label=_("remove it from the source"), required=False, initial=True)
    copy_storage = forms.ChoiceField(
        label=_("copy storage"), required=False, initial="",
        choices=[("", _("no (shared storage)")), (CopyStorage.ALL.value, _("all disks")),
                 (CopyStorage.INCREMENTAL.value, _("incremental (backing images are on the destination)"))],
    )
    peer_to_peer = forms.BooleanField(label=_("peer-to-peer (the source host drives it)"), required=False,
                                      initial=True)
    tunnelled = forms.BooleanField(label=_("tunnelled through the libvirt connection"), required=False)
    bandwidth_mib = forms.IntegerField(label=_("bandwidth limit (MiB/s)"), required=False, min_value=1,
                                       max_value=1_000_000, help_text=_("Empty: as fast as the network allows."))
    max_downtime_ms = forms.IntegerField(label=_("maximum downtime (ms)"), required=False, min_value=1,
                                         max_value=600_000,
                                         help_text=_("How long the machine may pause at the switch-over; empty: "
                                                     "libvirt's default."))
    auto_converge = forms.BooleanField(label=_("auto-converge (throttle the guest's CPUs if it dirties memory "
                                               "faster than it moves)"), required=False)
    compressed = forms.BooleanField(label=_("compress"), required=False)
    postcopy = forms.BooleanField(label=_("allow post-copy (switch while it runs)"), required=False)

    def groups(self) -> list[FormSection]:
        return [FormSection(str(legend), [FieldRow(self[name]) for name in names], key)
                for key, legend, names in MIGRATION_GROUPS]

    def options(self) -> MigrationOptions:
        data = self.cleaned_data
        return MigrationOptions(
            persist_dest=data["persist_dest"], undefine_source=data["undefine_source"],
            copy_storage=CopyStorage(data["copy_storage"] or ""), peer_to_peer=data["peer_to_peer"],
            tunnelled=data["tunnelled"], bandwidth_mib=data["bandwidth_mib"], max_downtime_ms=data["max_downtime_ms"],
            auto_converge=data["auto_converge"], compressed=data["compressed"], postcopy=data["postcopy"],
        )


# --- A VM's hardware: one small form per change; the page fills the choices from what the user may use. ---


def _set_choices(form: forms.Form, name: str, choices: Sequence[tuple[str, StrOrPromise]]) -> None:
    cast(forms.ChoiceField, form.fields[name]).choices = choices


def _pairs(values: Any) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


class _CountWithMaximum(forms.Form):
    """A count and its optional maximum (what the running machine may grow to without a reboot)."""

    count_field = ""
    maximum_field = ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        count, maximum = data.get(self.count_field), data.get(self.maximum_field)
        if count is not None and maximum is not None and maximum < count:
            self.add_error(self.maximum_field, _("The maximum cannot be below the amount itself."))
        return data


class VcpusForm(_CountWithMaximum):
    vcpus = forms.IntegerField(label=_("vCPUs"), min_value=1, max_value=256)
    max_vcpus = forms.IntegerField(label=_("maximum vCPUs"), min_value=1, max_value=256, required=False,
                                   help_text=_("Empty: as it is (raised if needed). vCPUs are added to a running "
                                               "machine up to its maximum."))
    count_field, maximum_field = "vcpus", "max_vcpus"


class MemoryForm(_CountWithMaximum):
    memory_mib = forms.IntegerField(label=_("memory (MiB)"), min_value=64, max_value=16 * 1024 * 1024)
    max_memory_mib = forms.IntegerField(label=_("maximum memory (MiB)"), min_value=64, max_value=16 * 1024 * 1024,
                                        required=False, help_text=_("Empty: as it is (raised if needed). A "
                                                                    "running machine's balloon grows up to its "
                                                                    "maximum."))
    count_field, maximum_field = "memory_mib", "max_memory_mib"


class CdromForm(forms.Form):
    drive = forms.ChoiceField(label=_("CD-ROM drive"), required=False)
    volume = forms.ChoiceField(label=_("image"), required=False)

    def __init__(self, *args: Any, drives: list[str], images: list[str], may_add_drive: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _set_choices(self, "drive", [*_pairs(drives), *([("", _("a new drive"))] if may_add_drive else [])])
        _set_choices(self, "volume", [("", _("none (eject)")), *_pairs(images)])


class DiskAttachForm(forms.Form):
    volume = forms.ChoiceField(label=_("existing volume"), required=False)
    pool = forms.ChoiceField(label=_("or a new volume in pool"), required=False)
    size_gib = forms.IntegerField(label=_("new volume size (GiB)"), min_value=1, max_value=16384, required=False)
    bus = forms.ChoiceField(label=_("Bus"), choices=_pairs(DISK_BUSES), initial="virtio",
                            help_text=_("virtio and scsi disks are added to a running machine; sata only while off."))

    def __init__(self, *args: Any, volumes: list[str], pools: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _set_choices(self, "volume", [("", "—")] + _pairs(volumes))
        _set_choices(self, "pool", [("", "—")] + _pairs(pools))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("volume") and (data.get("pool") or data.get("size_gib")):
            self.add_error("volume", _("Either an existing volume or a new one, not both."))
        elif not data.get("volume"):
            for name in ("pool", "size_gib"):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, _("Needed for a new volume (or pick an existing one)."))
        return data


class DiskDetachForm(forms.Form):
    target = forms.ChoiceField(label=_("disk"))

    def __init__(self, *args: Any, targets: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _set_choices(self, "target", _pairs(targets))


class DiskGrowForm(DiskDetachForm):
    size_gib = forms.IntegerField(label=_("new size (GiB)"), min_value=1, max_value=16384)


NIC_KINDS = [("network", _("libvirt network")), ("bridge", _("host bridge"))]


class NicAttachForm(forms.Form):
    kind = forms.ChoiceField(label=_("connect to"), choices=NIC_KINDS, initial="network")
    network = forms.ChoiceField(label=_("Network"), required=False)
    bridge = forms.RegexField(label=_("Bridge"), regex=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$", required=False,
                              error_messages={"invalid": _("A bridge name: up to 15 letters, digits, '.', '_', '-'.")})
    model = forms.ChoiceField(label=_("Model"), choices=_pairs(NIC_MODELS), initial="virtio")
    mac = forms.RegexField(label=_("MAC address"), regex=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$", required=False,
                           help_text=_("Empty: a new one unused on this host."),
                           error_messages={"invalid": _("Six pairs of hex digits with ':', like 52:54:00:12:34:56.")})

    def __init__(self, *args: Any, networks: list[str], may_use_bridges: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _set_choices(self, "network", [("", "—")] + _pairs(networks))
        if not may_use_bridges:
            del self.fields["bridge"]
            _set_choices(self, "kind", NIC_KINDS[:1])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        name = "network" if data.get("kind") == "network" else "bridge"
        if data.get("kind") and not data.get(name) and name not in self.errors:
            self.add_error(name, _("Needed to connect to."))
        return data

    @property
    def source(self) -> str:
        data = self.cleaned_data
        return str(data["network"] if data["kind"] == "network" else data["bridge"])


class NicDetachForm(forms.Form):
    mac = forms.ChoiceField(label=_("network interface"))

    def __init__(self, *args: Any, macs: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _set_choices(self, "mac", _pairs(macs))


BOOT_CHOICES_OR_NONE = [("", "—"), *_pairs(BOOT_DEVICES)]


class BootOrderForm(forms.Form):
    first = forms.ChoiceField(label=_("First"), choices=_pairs(BOOT_DEVICES))
    second = forms.ChoiceField(label=_("Second"), choices=BOOT_CHOICES_OR_NONE, required=False)
    third = forms.ChoiceField(label=_("Third"), choices=BOOT_CHOICES_OR_NONE, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if len(self.devices()) != len(set(self.devices())):
            self.add_error(None, _("Each device once."))
        return data

    def devices(self) -> tuple[str, ...]:
        return tuple(d for name in ("first", "second", "third") if (d := self.cleaned_data.get(name)))


class FirmwareForm(forms.Form):
    firmware = forms.ChoiceField(label=_("Firmware"),
                                 choices=(("bios", "BIOS"), ("uefi", _("UEFI (the host's OVMF, chosen by libvirt)"))))


class CloneForm(forms.Form):
    name = domain_name_field()


BULK_CHOICES = [(action.value, action.label) for action in services.BULK_ACTIONS] + [
    (services.BULK_SNAPSHOT, _("Snapshot"))]


class BulkActionForm(forms.Form):
    """The list's bulk action: one action on the ticked VMs, each sent as `host/uuid`."""

    action = forms.ChoiceField(label=_("Action"), choices=BULK_CHOICES)
    vm = forms.Field(label=_("Virtual machines"), widget=forms.MultipleHiddenInput,
                     error_messages={"required": _("Tick the machines to act on first.")})

    def clean_vm(self) -> list[tuple[str, str]]:
        targets = []
        for value in self.cleaned_data["vm"]:
            host_name, _slash, uuid = value.partition("/")
            try:
                targets.append((host_name, str(UUID(uuid))))
            except ValueError:
                raise forms.ValidationError(_("%(value)s is not a machine of the list.") % {"value": value}) from None
        if len(targets) > services.BULK_LIMIT:
            raise forms.ValidationError(_("At most %(limit)d machines at once.") % {"limit": services.BULK_LIMIT})
        return targets

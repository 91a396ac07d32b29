"""A VM's hardware through the API: the hardware page's document, its changes, the admins' XML and clone.

Each change is bound to the hardware page's own form (domains.views.hardware_forms, whose choices come from
the same selector and so the same gate) and made by the same service, so a refusal reads the page's words.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from domains import selectors, services, virt
from domains.access import Right, require_admin
from domains.errors import error_message
from domains.forms import CloneForm, DomainXmlForm
from domains.views import HARDWARE_CHANGES, hardware_change, hardware_forms
from domains.virt.hardware import FIRMWARES

from . import serializers as docs
from .problems import problem, validation_problem
from .views import ApiView, _answers, _body, _defined, _form_problem, _message, _url

if TYPE_CHECKING:
    from rest_framework.request import Request


class HardwareDiskSerializer(serializers.Serializer):
    target = serializers.CharField()
    device = serializers.CharField(help_text="disk or cdrom")
    bus = serializers.CharField()
    volume = serializers.CharField(allow_null=True, help_text="pool/name; null for a file no pool knows, or empty")
    capacity_bytes = serializers.IntegerField(allow_null=True)
    path = serializers.CharField(allow_blank=True, help_text="The host path: for admins only, empty otherwise.")
    readonly = serializers.BooleanField()


class HardwareNicSerializer(serializers.Serializer):
    mac = serializers.CharField()
    kind = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]  # a field, as DRF declares them
    model = serializers.CharField()


class HardwareChoicesSerializer(serializers.Serializer):
    images = serializers.ListField(child=serializers.CharField(), help_text="For a CD-ROM (pool/name).")
    volumes = serializers.ListField(child=serializers.CharField(), help_text="To attach as a disk (pool/name).")
    pools = serializers.ListField(child=serializers.CharField(), help_text="For a new volume.")
    networks = serializers.ListField(child=serializers.CharField())
    may_use_bridges = serializers.BooleanField()


class HardwareSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="The VM's.")
    name = serializers.CharField()
    running = serializers.BooleanField()
    persistent = serializers.BooleanField()
    vcpus = serializers.IntegerField(help_text="What the next boot gets.")
    max_vcpus = serializers.IntegerField()
    live_vcpus = serializers.IntegerField(allow_null=True)
    live_max_vcpus = serializers.IntegerField(allow_null=True)
    memory_mib = serializers.IntegerField()
    max_memory_mib = serializers.IntegerField()
    live_memory_mib = serializers.IntegerField(allow_null=True)
    live_max_memory_mib = serializers.IntegerField(allow_null=True)
    disks = HardwareDiskSerializer(many=True)
    nics = HardwareNicSerializer(many=True)
    boot_order = serializers.ListField(child=serializers.CharField())
    firmware = serializers.ChoiceField(choices=FIRMWARES)
    choices = HardwareChoicesSerializer()
    changes = serializers.ListField(child=serializers.CharField(), help_text="What POST .../hardware/<change>/ takes.")


class HardwareChangeRequestSerializer(serializers.Serializer):
    """The fields of the hardware page's form of each change; a change reads only its own."""

    vcpus = serializers.IntegerField(required=False, help_text="vcpus")
    max_vcpus = serializers.IntegerField(required=False, help_text="vcpus: empty keeps it (raised if needed)")
    memory_mib = serializers.IntegerField(required=False, help_text="memory")
    max_memory_mib = serializers.IntegerField(required=False, help_text="memory")
    drive = serializers.CharField(required=False, help_text="cdrom: its target; empty adds a drive (shut off)")
    volume = serializers.CharField(required=False, help_text="cdrom: the image, empty ejects; disk-attach: existing")
    pool = serializers.CharField(required=False, help_text="disk-attach: a new volume's pool")
    size_gib = serializers.IntegerField(required=False, help_text="disk-attach: a new volume's; disk-grow: new size")
    bus = serializers.CharField(required=False, help_text="disk-attach: virtio, scsi or sata")
    target = serializers.CharField(required=False, help_text="disk-detach, disk-grow: vda...")
    kind = serializers.ChoiceField(choices=["network", "bridge"], required=False, help_text="nic-attach")
    network = serializers.CharField(required=False, help_text="nic-attach")
    bridge = serializers.CharField(required=False, help_text="nic-attach (admins and operators)")
    model = serializers.CharField(required=False, help_text="nic-attach")
    mac = serializers.CharField(required=False, help_text="nic-attach: empty picks one; nic-detach: which")
    first = serializers.CharField(required=False, help_text="boot-order: hd, cdrom or network")
    second = serializers.CharField(required=False, help_text="boot-order")
    third = serializers.CharField(required=False, help_text="boot-order")
    firmware = serializers.ChoiceField(choices=FIRMWARES, required=False)


class DefinitionSerializer(serializers.Serializer):
    xml = serializers.CharField()


class CloneRequestSerializer(serializers.Serializer):
    name = serializers.CharField()


def _disk(disk: virt.hardware.HardwareDisk, may_see_paths: bool) -> dict[str, Any]:
    return {"target": disk.target, "device": disk.device, "bus": disk.bus,
            "volume": disk.volume.key if disk.volume else None,
            "capacity_bytes": disk.volume.capacity_bytes if disk.volume else None,
            "path": disk.path if may_see_paths else "", "readonly": disk.readonly}


class DomainHardware(ApiView):
    @extend_schema(responses=_answers(HardwareSerializer), summary="A VM's hardware, as its hardware page shows it")
    def get(self, request: Request, host_name: str, uuid: str) -> Response:
        page = selectors.hardware_page(user=self.actor, host_name=host_name, uuid=str(uuid))
        hardware = page.hardware
        return Response({
            **_url(page.row), "name": page.row.record.name,
            **{field.name: getattr(hardware, field.name) for field in dataclasses.fields(hardware)
               if field.name not in ("disks", "nics")},
            "disks": [_disk(disk, page.may_see_paths) for disk in hardware.disks],
            "nics": [dataclasses.asdict(nic) for nic in hardware.nics],
            "choices": {"images": [volume.key for volume in page.images],
                        "volumes": [volume.key for volume in page.volumes], "pools": list(page.pools),
                        "networks": list(page.networks), "may_use_bridges": page.may_use_bridges},
            "changes": list(HARDWARE_CHANGES),
        })


class DomainHardwareChange(ApiView):
    @extend_schema(request=HardwareChangeRequestSerializer, responses=_answers(docs.MessageSerializer, 400, 403, 409),
                   parameters=[OpenApiParameter("change", str, OpenApiParameter.PATH, enum=list(HARDWARE_CHANGES))],
                   summary="Change vCPUs, memory, a CD-ROM, disks, NICs, the boot order or the firmware")
    def post(self, request: Request, host_name: str, uuid: str, change: str) -> Response:
        with self.refusal_audited(f"domain.{change}", str(uuid)):
            page = selectors.hardware_page(user=self.actor, host_name=host_name, uuid=str(uuid))
        if change not in HARDWARE_CHANGES:
            return problem(400, gettext("Unknown hardware change."))
        # The page's forms name their fields after the change (their prefix): the API's fields are unprefixed.
        form = hardware_forms(page, change, {f"{change}-{name}": value for name, value in _body(request).items()})[
            change]
        if not form.is_valid():
            return _form_problem(form)
        return _message(hardware_change(change, form)(actor=self.actor, host_name=host_name, uuid=str(uuid),
                                                      client_addr=self.client_addr))


class DomainDefinition(ApiView):
    @extend_schema(responses=_answers(DefinitionSerializer), summary="The definition it boots next (admins)")
    def get(self, request: Request, host_name: str, uuid: str) -> Response:
        _row, xml = selectors.domain_definition(user=self.actor, host_name=host_name, uuid=str(uuid))
        return Response({"xml": xml})

    @extend_schema(request=DefinitionSerializer, responses=_answers(docs.MessageSerializer, 400),
                   summary="Save an edited definition, as libvirt validates it (admins)")
    def put(self, request: Request, host_name: str, uuid: str) -> Response:
        with self.refusal_audited("domain.xml", str(uuid)):
            require_admin(self.actor)  # whoever may not edit the XML is not told what the form wants
        form = DomainXmlForm(_body(request))
        if not form.is_valid():
            return _form_problem(form)
        try:
            return _message(services.domain_redefine_xml(actor=self.actor, host_name=host_name, uuid=str(uuid),
                                                         xml=form.cleaned_data["xml"], client_addr=self.client_addr))
        except virt.VirtError as error:  # libvirt's words about the XML, on its field as the page puts them
            return validation_problem({"xml": [error_message(user=self.actor, error=error)]})


class DomainClone(ApiView):
    @extend_schema(request=CloneRequestSerializer,
                   responses=_answers(docs.DefinedSerializer, 400, 403, 409, success=201),
                   summary="Clone a shut-off VM with copies of its disks; answers the clone's URL")
    def post(self, request: Request, host_name: str, uuid: str) -> Response:
        form = CloneForm(_body(request))
        if refused := self.refused_input(form, "domain.clone", lambda: selectors.domain_get(
                user=self.actor, host_name=host_name, uuid=str(uuid), right=Right.OPERATE), str(uuid)):
            return refused
        clone_uuid = services.domain_clone(actor=self.actor, host_name=host_name, uuid=str(uuid),
                                           name=form.cleaned_data["name"], client_addr=self.client_addr)
        return _defined(host_name, clone_uuid)


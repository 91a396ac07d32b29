"""A host's networks through the API: for admins and operators, as the network pages; admins define NAT ones.

The same selectors (networks.selectors, the host gate), services and define form as the pages, so a
refusal reads the page's words.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from domains import virt
from domains.access import require_admin
from networks import selectors, services
from networks.forms import NatNetworkForm

from . import serializers as docs
from .problems import one_of
from .views import ApiView, _answers, _body, _created, _form_problem, _message

if TYPE_CHECKING:
    from rest_framework.request import Request


class DhcpRangeSerializer(serializers.Serializer):
    start = serializers.CharField()
    end = serializers.CharField()


class NetworkSerializer(serializers.Serializer):
    name = serializers.CharField()
    uuid = serializers.CharField()
    active = serializers.BooleanField()
    persistent = serializers.BooleanField()
    autostart = serializers.BooleanField()
    forward_mode = serializers.CharField(allow_blank=True, help_text="nat, route, bridge...; empty: isolated")
    bridge = serializers.CharField(allow_blank=True)
    ipv4 = serializers.CharField(allow_blank=True, help_text="The host's side, as 192.168.122.1/24.")
    dhcp_ranges = DhcpRangeSerializer(many=True)
    url = serializers.CharField()


class NetworkListSerializer(serializers.Serializer):
    networks = NetworkSerializer(many=True)
    error = serializers.CharField(allow_blank=True, help_text="Why the host did not tell; empty when it did.")


class LeaseSerializer(serializers.Serializer):
    network = serializers.CharField()
    mac = serializers.CharField()
    address = serializers.CharField()
    prefix = serializers.IntegerField()
    hostname = serializers.CharField(allow_blank=True)
    expiry = serializers.IntegerField(help_text="Seconds since the epoch; 0 for a lease that does not expire.")


class NetworkDetailSerializer(NetworkSerializer):
    leases = LeaseSerializer(many=True)
    leases_error = serializers.CharField(allow_blank=True, help_text="Why the leases could not be read.")


class NatNetworkRequestSerializer(serializers.Serializer):
    name = serializers.CharField()
    subnet = serializers.CharField(help_text="IPv4, as 192.168.150.0/24; the host takes its first address.")
    dhcp_start = serializers.IPAddressField(protocol="IPv4", required=False, help_text="Empty: after the host's.")
    dhcp_end = serializers.IPAddressField(protocol="IPv4", required=False, help_text="Empty: the last guest address.")
    start = serializers.BooleanField(default=True, help_text="Start it now.")
    autostart = serializers.BooleanField(default=True, help_text="Start it with the host.")


def _network(host_name: str, network: virt.NetworkInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(network), "url": reverse("api:network", args=[host_name, network.name])}


class NetworkList(ApiView):
    @extend_schema(operation_id="networks_list", responses=_answers(NetworkListSerializer),
                   summary="The host's networks (admins and operators)")
    def get(self, request: Request, host_name: str) -> Response:
        listing = selectors.network_list(user=self.actor, host_name=host_name)
        return Response({"networks": [_network(host_name, network) for network in listing.networks],
                         "error": listing.error})

    @extend_schema(request=NatNetworkRequestSerializer, responses=_answers(NetworkSerializer, 400, success=201),
                   summary="Define a NAT network (admins)")
    def post(self, request: Request, host_name: str) -> Response:
        with self.refusal_audited("network.define"):
            require_admin(self.actor)  # whoever may not define is not told what the form wants
        # The page's form starts with both boxes ticked: a client that leaves them out gets the same.
        form = NatNetworkForm({"start": True, "autostart": True, **_body(request)})
        if not form.is_valid():
            return _form_problem(form)
        network = services.network_define(actor=self.actor, host_name=host_name, spec=form.spec(),
                                          start=form.cleaned_data["start"], autostart=form.cleaned_data["autostart"],
                                          client_addr=self.client_addr)
        return _created(_network(host_name, network))


class NetworkDetail(ApiView):
    @extend_schema(responses=_answers(NetworkDetailSerializer), summary="A network with its DHCP leases")
    def get(self, request: Request, host_name: str, network: str) -> Response:
        page = selectors.network_get(user=self.actor, host_name=host_name, name=network)
        return Response({**_network(host_name, page.network),
                         "leases": [dataclasses.asdict(lease) for lease in page.leases],
                         "leases_error": page.leases_error})


class NetworkActionView(ApiView):
    @extend_schema(request=None, responses=_answers(docs.MessageSerializer, 400, 409),
                   parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH,
                                                enum=[action.value for action in services.NetworkAction])],
                   summary="Start, stop or (un)mark a network to start with the host (admins and operators)")
    def post(self, request: Request, host_name: str, network: str, action: str) -> Response:
        return _message(services.network_act(
            actor=self.actor, host_name=host_name, name=network,
            action=one_of(services.NetworkAction, action, _("Unknown network action.")), client_addr=self.client_addr))

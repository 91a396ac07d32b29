"""Writes to a host's networks: resolved through the host gate, audited before libvirt is called."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from audit.services import audited
from domains import virt
from domains.access import require_admin
from domains.models import Host
from domains.selectors import host_get

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from accounts.models import User


class NetworkAction(StrEnum):
    START = "start"
    STOP = "stop"
    AUTOSTART = "autostart"
    NO_AUTOSTART = "no-autostart"


def _apply(uri: str, name: str, action: NetworkAction) -> StrOrPromise:
    if action is NetworkAction.START:
        virt.start_network(uri, name)
        return format_lazy(_("Network {name} started."), name=name)
    if action is NetworkAction.STOP:
        virt.stop_network(uri, name)
        return format_lazy(_("Network {name} stopped."), name=name)
    autostart = action is NetworkAction.AUTOSTART
    virt.set_network_autostart(uri, name, autostart)
    done = (_("Network {name} starts with its host.") if autostart
            else _("Network {name} no longer starts with its host."))
    return format_lazy(done, name=name)


def network_act(*, actor: User, host_name: str, name: str, action: NetworkAction,
                client_addr: str | None = None) -> StrOrPromise:
    """Start, stop, or (un)mark to start with the host: admins and operators; returns the message for the user."""
    with audited(actor=actor, action=f"network.{action}", host=Host.objects.filter(name=host_name).first(),
                 client_addr=client_addr, message=f"network {name}") as entry:
        host = host_get(user=actor, host_name=host_name)
        done = _apply(host.uri, name, action)
        entry.message = done  # type: ignore[assignment]  # lazy: the audit writer renders it
    return done


def network_define(*, actor: User, host_name: str, spec: virt.NatNetworkSpec, start: bool = True,
                   autostart: bool = True, client_addr: str | None = None) -> virt.NetworkInfo:
    """Defines a NAT network (admins only); a name or subnet the host already has is a field error in words."""
    with audited(actor=actor, action="network.define", host=Host.objects.filter(name=host_name).first(),
                 client_addr=client_addr, message=f"network {spec.name} {spec.subnet}") as entry:
        require_admin(actor)
        host = host_get(user=actor, host_name=host_name)
        try:
            network = virt.define_nat_network(host.uri, spec, start=start, autostart=autostart)
        except virt.NetworkRefused as refused:
            raise ValidationError(refused.problems) from refused
        entry.message = f"network {network.name} {spec.subnet}, DHCP {spec.dhcp_range[0]}-{spec.dhcp_range[1]}"
    return network

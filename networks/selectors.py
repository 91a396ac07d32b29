"""Reads of a host's networks, for those who see hosts (admins and operators); everybody else gets a 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import Http404

from domains import virt
from domains.errors import error_message
from domains.models import Host
from domains.selectors import host_get

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


@dataclass(frozen=True)
class NetworkList:
    host: Host
    networks: tuple[virt.NetworkInfo, ...]
    error: str  # why the host did not tell, as this user may read it; "" when it did


def network_list(*, user: User | AnonymousUser, host_name: str) -> NetworkList:
    """Every network of the host; one that does not answer within the host deadline gets its page with why."""
    host = host_get(user=user, host_name=host_name)
    answer = virt.fan_out.run({host: host.uri}, virt.list_networks, settings.HOST_DEADLINE_SECONDS)[host]
    if isinstance(answer, virt.VirtError):
        return NetworkList(host, (), error_message(user=user, error=answer))
    return NetworkList(host, answer, "")


@dataclass(frozen=True)
class NetworkPage:
    host: Host
    network: virt.NetworkInfo
    leases: tuple[virt.DhcpLease, ...]
    leases_error: str  # why the leases could not be read (a driver without them); "" when they could


def network_get(*, user: User | AnonymousUser, host_name: str, name: str) -> NetworkPage:
    host = host_get(user=user, host_name=host_name)
    try:
        network = virt.get_network(host.uri, name)
    except virt.NetworkNotFound as error:
        raise Http404("No such network.") from error
    leases: tuple[virt.DhcpLease, ...] = ()
    leases_error = ""
    try:
        leases = virt.network_leases(host.uri, name)
    except virt.VirtError as error:
        leases_error = error_message(user=user, error=error)
    return NetworkPage(host, network, leases, leases_error)

"""Reads for the console page, through the permission gate: no console right is a 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from domains import selectors, virt
from domains.access import Right
from domains.rows import DomainRow

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


@dataclass(frozen=True)
class ConsolePage:
    row: DomainRow
    kind: str  # "vnc", "spice", "serial", or "" when no console can open
    unavailable: str  # why not, safe to show


def console_page(*, user: User | AnonymousUser, host_name: str, uuid: str, serial: bool = False) -> ConsolePage:
    """The VM's graphics console, or with `serial` its serial console."""
    row = selectors.domain_get(user=user, host_name=host_name, uuid=uuid, right=Right.CONSOLE)
    read = virt.serial_endpoint if serial else virt.graphics_endpoint
    try:
        endpoint = read(row.host.uri, row.uuid)
    except virt.VirtError as error:
        return ConsolePage(row, "", str(error))
    return ConsolePage(row, endpoint.kind, "")

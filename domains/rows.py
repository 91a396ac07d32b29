"""One VM as a user sees it: the row that the list, the VM page and the live push all render.

Its own module so that the live push (live.py), the consumers and the consoles can build rows without
importing the selectors, which reach the migration job and through it the live push again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import virt
from .access import Right
from .models import Host


def row_element_id(host_name: str, uuid: str) -> str:
    """The list row's element id. Per host: a migrating VM, or a hypervisor registered under two names,
    is listed by two hosts at once, and each row is updated and removed on its own."""
    return f"domain-{host_name}-{uuid}"


class RowUsage(NamedTuple):
    """What a list row shows of a VM's latest usage sample (domains.usage): hashable, so rows render once."""

    cpu_percent: float  # of its vCPUs
    memory_used_kib: float
    memory_source: str  # "guest", or "allocation" where the guest reports nothing
    trend: tuple[float, ...]  # CPU % over its latest samples, oldest first

    @classmethod
    def of(cls, figures: Mapping[str, Any] | None) -> RowUsage | None:
        if figures is None:
            return None
        return cls(round(figures["cpu_percent"], 1), figures["memory_used_kib"], figures["memory_source"],
                   tuple(figures.get("trend", ())))

    @property
    def sparkline(self) -> str:
        """The trend as an SVG polyline's points in a 0 0 100 20 box (CPU % upwards)."""
        step = 100 / max(1, len(self.trend) - 1)
        return " ".join(f"{index * step:.1f},{20 - min(100.0, value) / 5:.1f}"
                        for index, value in enumerate(self.trend))


@dataclass(frozen=True)
class DomainRow:
    """One VM as a user sees it: where it runs, what libvirt says, what the user may do."""

    host: Host
    record: virt.DomainRecord
    rights: frozenset[Right]

    @property
    def uuid(self) -> str:
        return self.record.uuid

    @property
    def dom_id(self) -> str:
        return row_element_id(self.host.name, self.record.uuid)

    @property
    def actions(self) -> tuple[virt.Action, ...]:
        """What this user may do to the VM in its current state."""
        return virt.available_actions(self.record) if Right.OPERATE in self.rights else ()

    def as_json(self) -> dict[str, object]:
        record = self.record
        return {
            "host": self.host.name,
            "name": record.name,
            "uuid": record.uuid,
            "state": record.state.label,
            "reason": record.reason,
            "persistent": record.persistent,
            "autostart": record.autostart,
            "managed_save": record.managed_save,
            "snapshots": record.snapshots,
            "vcpus": record.vcpus,
            "memory_kib": record.memory_kib,
            "title": record.title,
            "addresses": list(record.addresses),
            "address_source": record.address_source,
        }

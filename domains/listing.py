"""The list's rows: what the catalog holds, filtered for one user and one query, sorted, and cut into pages.

The order of a whole list is kept per (what each host's watcher holds, the user's scope, the query
without its page): paging through it, the same list open in many tabs, and the live sockets that
follow a page (domains.consumers) cost one filter and one sort per change, not one per request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import catalog, usage, virt
from .access import ALL_RIGHTS, DomainKey, rights_from, visible_hosts
from .filters import ListQuery
from .live import LiveRow
from .rows import RowUsage

if TYPE_CHECKING:
    from .models import Host

Granted = dict[DomainKey, frozenset[Any]] | None

ORDERS_KEPT = 64  # whole-list orders kept (each up to one entry per VM)


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, and where it stands in the whole."""

    rows: tuple[LiveRow, ...]
    count: int  # rows in the whole list
    number: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def first_index(self) -> int:
        """The 1-based position of the page's first row in the whole list (0 when it is empty)."""
        return (self.number - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last_index(self) -> int:
        return (self.number - 1) * self.per_page + len(self.rows)

    @property
    def keys(self) -> tuple[DomainKey, ...]:
        return tuple((row.host.pk, row.uuid) for row in self.rows)


# One row of a whole list, as cheap to keep as can be; only a page's rows become LiveRows.
_Entry = tuple["Host", virt.DomainRecord, frozenset[Any], bool]  # host, record, rights, unreachable


class _Orders:
    """Whole-list orders, least recently used dropped first."""

    def __init__(self) -> None:
        self._kept: OrderedDict[Hashable, list[_Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> list[_Entry] | None:
        with self._lock:
            entries = self._kept.get(key)
            if entries is not None:
                self._kept.move_to_end(key)
            return entries

    def put(self, key: Hashable, entries: list[_Entry]) -> None:
        with self._lock:
            self._kept[key] = entries
            while len(self._kept) > ORDERS_KEPT:
                self._kept.popitem(last=False)


_orders = _Orders()


def _scope_key(granted: Granted) -> Hashable:
    return None if granted is None else tuple(sorted((key, tuple(sorted(rights))) for key, rights in granted.items()))


def ordered(inventories: dict[Host, catalog.HostInventory], granted: Granted, query: ListQuery,
            latest: dict[int, usage.LatestUsage]) -> list[_Entry]:
    """Every row of the list, in its order: the VMs the user may see that the query keeps (`latest`: the
    hosts' usage samples, for the orders by usage)."""
    view = query.view
    versions: tuple[Hashable, ...] = tuple((host.pk, host.name, inventory.version)
                                           for host, inventory in inventories.items())
    if view.sorted_by_usage:  # such an order holds until a host's next sample
        versions += tuple((host_id, sample.taken_at) for host_id, sample in sorted(latest.items()))
    cacheable = all(inventory.version is not None for inventory in inventories.values())
    key = (versions, _scope_key(granted), view)
    if cacheable and (entries := _orders.get(key)) is not None:
        return entries
    keeps = virt.record_matcher(view.options)
    found: list[tuple[Any, _Entry]] = []
    for host, inventory in inventories.items():
        host_id, host_name, unreachable = host.pk, host.name, not inventory.reachable
        figures = latest[host_id].domains if view.sorted_by_usage and host_id in latest else {}
        for record in inventory.records:
            rights = ALL_RIGHTS if granted is None else rights_from(granted, (host_id, record.uuid))
            if rights and keeps(record) and (not view.text or view.matches_text(record)):
                found.append((view.sort_key(host_name, record, RowUsage.of(figures.get(record.uuid))),
                              (host, record, rights, unreachable)))
    found.sort(key=lambda item: item[0], reverse=view.descending)
    entries = [entry for _key, entry in found]
    if cacheable:
        _orders.put(key, entries)
    return entries


def page_of(entries: list[_Entry], query: ListQuery, latest: dict[int, usage.LatestUsage]) -> Page:
    """The query's page of the whole list; past the last page, the last page (as Django's Paginator.get_page)."""
    pages = max(1, -(-len(entries) // query.per_page))
    number = min(query.page, pages)
    start = (number - 1) * query.per_page
    rows = tuple(LiveRow(host, record, rights, unreachable=unreachable,
                         usage=RowUsage.of(latest[host.pk].domains.get(record.uuid)) if host.pk in latest else None)
                 for host, record, rights, unreachable in entries[start:start + query.per_page])
    return Page(rows, len(entries), number, query.per_page)


@dataclass(frozen=True)
class Listing:
    page: Page
    inventories: dict[Host, catalog.HostInventory]  # the hosts listed (the query's host, or every one)
    hosts: list[Host]  # every enabled host the user may see VMs of


def list_for(granted: Granted, query: ListQuery, *, hosts: list[Host] | None = None) -> Listing:
    """The query's page of the list for a user with this scope (access.domain_scope); `hosts`, when the
    caller already has them, are the enabled hosts it may see VMs of (access.visible_hosts)."""
    hosts = list(visible_hosts(granted)) if hosts is None else hosts
    inventories = catalog.inventories([host for host in hosts if not query.host or host.name == query.host])
    latest = usage.latest(host.pk for host in inventories)
    return Listing(page_of(ordered(inventories, granted, query, latest), query, latest), inventories, hosts)

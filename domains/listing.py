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

from . import catalog, virt
from .access import DomainKey, rights_from, visible_hosts
from .filters import ListQuery
from .live import LiveRow

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


class _Orders:
    """Whole-list orders, least recently used dropped first."""

    def __init__(self) -> None:
        self._kept: OrderedDict[Hashable, tuple[LiveRow, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[LiveRow, ...] | None:
        with self._lock:
            rows = self._kept.get(key)
            if rows is not None:
                self._kept.move_to_end(key)
            return rows

    def put(self, key: Hashable, rows: tuple[LiveRow, ...]) -> None:
        with self._lock:
            self._kept[key] = rows
            while len(self._kept) > ORDERS_KEPT:
                self._kept.popitem(last=False)


_orders = _Orders()


def _scope_key(granted: Granted) -> Hashable:
    return None if granted is None else tuple(sorted((key, tuple(sorted(rights))) for key, rights in granted.items()))


def ordered(inventories: dict[Host, catalog.HostInventory], granted: Granted, query: ListQuery) -> tuple[LiveRow, ...]:
    """Every row of the list, in its order: the VMs the user may see that the query keeps."""
    view = query.view
    versions = tuple((host.pk, host.name, inventory.version) for host, inventory in inventories.items())
    cacheable = all(inventory.version is not None for inventory in inventories.values())
    key = (versions, _scope_key(granted), view)
    if cacheable and (rows := _orders.get(key)) is not None:
        return rows
    keeps = virt.record_matcher(view.options)
    found: list[tuple[Any, LiveRow]] = []
    for host, inventory in inventories.items():
        for record in inventory.records:
            rights = rights_from(granted, (host.pk, record.uuid))
            if rights and keeps(record) and view.matches_text(record):
                found.append((view.sort_key(host.name, record),
                              LiveRow(host, record, rights, unreachable=not inventory.reachable)))
    found.sort(key=lambda item: item[0], reverse=view.descending)
    rows = tuple(row for _key, row in found)
    if cacheable:
        _orders.put(key, rows)
    return rows


def page_of(rows: tuple[LiveRow, ...], query: ListQuery) -> Page:
    """The query's page of the whole list; past the last page, the last page (as Django's Paginator.get_page)."""
    pages = max(1, -(-len(rows) // query.per_page))
    number = min(query.page, pages)
    start = (number - 1) * query.per_page
    return Page(rows[start:start + query.per_page], len(rows), number, query.per_page)


@dataclass(frozen=True)
class Listing:
    page: Page
    inventories: dict[Host, catalog.HostInventory]  # the hosts listed (the query's host, or every one)
    hosts: list[Host]  # every enabled host the user may see VMs of


def list_for(granted: Granted, query: ListQuery) -> Listing:
    """The query's page of the list for a user with this scope (access.domain_scope)."""
    hosts = list(visible_hosts(granted))
    inventories = catalog.inventories([host for host in hosts if not query.host or host.name == query.host])
    return Listing(page_of(ordered(inventories, granted, query), query), inventories, hosts)

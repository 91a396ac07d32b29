"""The domain list's query string: virsh list's own option names, plus host, q, output modes, sorting and paging.

`/domains/?inactive&with-managed-save&host=lab1` means `virsh list --inactive --with-managed-save`
on lab1. A flag counts when its name is present, whatever its value, so checkbox forms and
hand-written URLs mean the same. `sort=memory` (or `sort=-memory`, descending) orders by a column,
host then name breaking ties; `page` and `per_page` choose which rows are sent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from django.http import QueryDict
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .rows import RowUsage
from .virt import LIST_OPTIONS, DomainRecord, record_matcher

OUTPUT_FLAGS = ("table", "name", "uuid", "title")

# Each sortable column's value for a row (the host's name, its record, its latest usage figures or None),
# compared before host and name. A VM with no usage figures yet sorts as using less than any other.
SORT_COLUMNS: dict[str, Callable[[str, DomainRecord, RowUsage | None], Any]] = {
    "host": lambda host, record, usage: host,
    "name": lambda host, record, usage: record.name,
    "title": lambda host, record, usage: record.title,
    "state": lambda host, record, usage: record.state_label,
    "cpu": lambda host, record, usage: usage.cpu_percent if usage else -1.0,
    "vcpus": lambda host, record, usage: record.vcpus,
    "memory_used": lambda host, record, usage: usage.memory_used_kib if usage else -1.0,
    "memory": lambda host, record, usage: record.memory_kib,
    "autostart": lambda host, record, usage: record.autostart,
    "persistent": lambda host, record, usage: record.persistent,
    "managed_save": lambda host, record, usage: record.managed_save,
    "snapshots": lambda host, record, usage: record.snapshots,
    "uuid": lambda host, record, usage: record.uuid,
}
USAGE_SORTS = frozenset({"cpu", "memory_used"})  # orders that move with every usage sample
PAGE_SIZES = (25, 50, 100, 200, 500)
DEFAULT_PAGE_SIZE = 50


class ListQueryError(ValueError):
    """The query string asks for something virsh would refuse too."""


@dataclass(frozen=True)
class ListQuery:
    options: frozenset[str] = field(default_factory=frozenset)
    host: str = ""
    text: str = ""
    outputs: frozenset[str] = field(default_factory=frozenset)
    json: bool = False
    sort: str = "host"
    descending: bool = False
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE
    page_sizes: ClassVar[tuple[int, ...]] = PAGE_SIZES  # the choices the page offers
    default_per_page: ClassVar[int] = DEFAULT_PAGE_SIZE

    @functools.cached_property  # asked for every event by every list page's socket
    def table(self) -> bool:
        return not (self.outputs & {"name", "uuid"})

    @functools.cached_property
    def matches_options(self) -> Callable[[DomainRecord], bool]:
        """virsh's filter for these options (virt.record_matcher), compiled once per query."""
        return record_matcher(self.options)

    @property
    def narrowed(self) -> bool:
        """Whether the list shows less than every VM of every host, or only names or UUIDs: a phone then opens
        its filters, so that what hides the rest is in view."""
        return bool(self.options != {"all"} or self.host or self.text or self.outputs)

    @property
    def show_titles(self) -> bool:
        return "title" in self.outputs

    def matches_text(self, record: DomainRecord) -> bool:
        """The text filter (q, which virsh has not): part of the VM's name or title, in any case."""
        text = self.text.casefold()
        return not text or text in record.name.casefold() or text in record.title.casefold()

    def sort_key(self, host_name: str, record: DomainRecord, usage: RowUsage | None = None) -> tuple[Any, str, str]:
        """Where a row goes in this list's order (descending reverses the whole key, ties included)."""
        return SORT_COLUMNS[self.sort](host_name, record, usage), host_name, record.name

    @property
    def sorted_by_usage(self) -> bool:
        return self.sort in USAGE_SORTS

    @property
    def order(self) -> str:
        """The `sort` parameter as given: the column, `-` first when descending."""
        return ("-" if self.descending else "") + self.sort

    def querystring(self, **changes: Any) -> str:
        """This list's query string (without the format), with `changes` (sort, descending, page...):
        the links of the column headings and of the pager."""
        query = replace(self, **changes)
        parts = sorted(query.options) + [flag for flag in OUTPUT_FLAGS if flag in query.outputs]
        params = QueryDict(mutable=True)
        for name, value, default in (("host", query.host, ""), ("q", query.text, ""), ("sort", query.order, "host"),
                                     ("page", query.page, 1), ("per_page", query.per_page, DEFAULT_PAGE_SIZE)):
            if value != default:
                params[name] = str(value)
        return "&".join(filter(None, ["&".join(parts), params.urlencode()]))

    def sorted_by(self, column: str) -> str:
        """The query string of the list sorted by `column`: ascending, or descending when it already is ascending."""
        descending = self.sort == column and not self.descending
        return self.querystring(sort=column, descending=descending, page=1)

    @property
    def view(self) -> ListQuery:
        """The same list, every page of it: what rows it holds and in which order."""
        return replace(self, page=1, json=False)


OTHER_PARAMETERS = ("host", "q", "format", "sort", "page", "per_page")


def _positive(params: QueryDict, name: str, default: int) -> int:
    value = params.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ListQueryError(format_lazy(_("{name} must be a whole number from 1."), name=name))
    return int(value)


def parse_list_query(params: QueryDict) -> ListQuery:
    unknown = sorted(set(params) - {*LIST_OPTIONS, *OUTPUT_FLAGS, *OTHER_PARAMETERS})
    if unknown:
        # virsh refuses an option it does not know rather than list something else than asked.
        raise ListQueryError(format_lazy(_("Unknown option: {options}."), options=", ".join(unknown)))
    outputs = frozenset(flag for flag in OUTPUT_FLAGS if flag in params)
    if "table" in outputs and outputs & {"name", "uuid"}:
        raise ListQueryError(_("Only one of table, name and uuid may be given (name and uuid may go together)."))
    output_format = params.get("format", "html")
    if output_format not in ("html", "json"):
        raise ListQueryError(_("format must be html or json."))
    order = params.get("sort", "").strip() or "host"
    column = order.removeprefix("-")
    if column not in SORT_COLUMNS:
        raise ListQueryError(format_lazy(_("sort must be one of {columns}, with - first for descending."),
                                         columns=", ".join(SORT_COLUMNS)))
    per_page = _positive(params, "per_page", DEFAULT_PAGE_SIZE)
    if per_page > PAGE_SIZES[-1]:
        raise ListQueryError(format_lazy(_("per_page may be at most {most}."), most=PAGE_SIZES[-1]))
    return ListQuery(
        options=frozenset(option for option in LIST_OPTIONS if option in params),
        host=params.get("host", "").strip(),
        text=params.get("q", "").strip(),
        outputs=outputs,
        json=output_format == "json",
        sort=column,
        descending=order.startswith("-"),
        page=_positive(params, "page", 1),
        per_page=per_page,
    )

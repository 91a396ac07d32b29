"""The domain list's template helpers: a row as the live push renders it, and the links of the headings."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from domains import live
from domains.filters import ListQuery

register = template.Library()


@register.simple_tag
def list_row(row: live.LiveRow) -> SafeString:
    """The row partial, rendered once per record and rights and shared with the live push (live.row_html)."""
    html = live.row_html(row.host.pk, row.host.name, row.record, row.rights, unreachable=row.unreachable)
    return mark_safe(html)  # noqa: S308 (rendered from domains/list.html#row, escaped there)


@register.inclusion_tag("domains/_sort_heading.html")
def sort_heading(query: ListQuery, column: str, label: str) -> dict[str, object]:
    return {"label": label, "querystring": query.sorted_by(column),
            "direction": ("descending" if query.descending else "ascending") if query.sort == column else ""}


@register.inclusion_tag("domains/_pager_link.html")
def pager_link(query: ListQuery, page: int, label: str, rel: str) -> dict[str, object]:
    return {"querystring": query.querystring(page=page), "label": label, "rel": rel}

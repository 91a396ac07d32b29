"""The domain list's template helpers: a row as the live push renders it, and the links of the headings."""

from __future__ import annotations

from django import template
from django.middleware.csrf import get_token
from django.template import Context
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from domains import live
from domains.filters import ListQuery

register = template.Library()


@register.simple_tag(takes_context=True)
def list_row(context: Context, row: live.LiveRow) -> SafeString:
    """The row partial, rendered once per record and rights (live.row_html), with this request's CSRF token."""
    html = live.row_html(row.host.pk, row.host.name, row.record, row.rights, unreachable=row.unreachable,
                         for_page=True, usage=row.usage)
    # The token's characters need no escaping: Django's are letters and digits.
    html = html.replace(live.FORM_TOKEN_MARKER, get_token(context["request"]))
    return mark_safe(html)  # noqa: S308 (rendered from domains/list.html#row, escaped there)


@register.inclusion_tag("domains/_sort_heading.html")
def sort_heading(query: ListQuery, column: str, label: str, shown_from: str = "") -> dict[str, object]:
    """`shown_from`: the column's class (col-md, col-lg...): narrower screens hide it (vmportal.css)."""
    return {"label": label, "querystring": query.sorted_by(column), "shown_from": shown_from,
            "direction": ("descending" if query.descending else "ascending") if query.sort == column else ""}


@register.simple_tag
def list_link(query: ListQuery, label: object, rel: str = "", **changes: int) -> SafeString:
    """A link to another view of the same list (a page, a page size), swapped in place by htmx."""
    url = "?" + query.querystring(**changes)
    return format_html('<a href="{}"{} hx-get="{}" hx-target="#results" hx-swap="outerHTML" hx-push-url="true">{}</a>',
                       url, format_html(' rel="{}"', rel) if rel else "", url, label)

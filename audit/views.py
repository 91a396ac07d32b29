"""The audit log page and its CSV export, both filtered by the page's query string."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from domains.errors import error_message

from . import selectors
from .forms import AuditFilterForm

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from accounts.models import User
    from domains.views import AuthedRequest

    from .models import AuditEntry

EXPORT_BATCH = 500  # rows read from the database, and sent, at a time
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def _filtered(request: AuthedRequest) -> tuple[AuditFilterForm, selectors.AuditFilters]:
    form = AuditFilterForm(request.GET, actions=selectors.audit_actions(user=request.user))
    form.is_valid()
    return form, form.filters()


@login_required
@require_GET
def audit_list(request: AuthedRequest) -> HttpResponse:
    form, filters = _filtered(request)
    entries = selectors.audit_search(user=request.user, filters=filters)
    page = Paginator(entries, 100).get_page(request.GET.get("page"))
    return render(request, "audit/list.html", {"page": page, "form": form},
                  status=400 if form.errors else 200)


class _Echo:
    """csv.writer writes each row here and gets it back, to stream it."""

    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # Guests name their VMs: a name starting like a formula must stay text when the file is opened.
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _rows(entries: QuerySet[AuditEntry] | list[AuditEntry], user: User) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow([_("When"), _("Who"), _("API token"), _("Action"), _("Host"), _("VM"), _("VM UUID"),
                           _("Result"), _("Message"), _("From")])
    for entry in entries.iterator(chunk_size=EXPORT_BATCH) if not isinstance(entries, list) else entries:
        yield writer.writerow([_cell(value) for value in (
            entry.created_at.isoformat(), entry.actor_name, entry.token_name, entry.action, entry.host_name,
            entry.domain_name, entry.domain_uuid, entry.result, error_message(user=user, error=entry.message),
            entry.client_addr)])


async def _in_the_database_thread(lines: Iterator[str]) -> AsyncIterator[str]:
    """The lines in batches, each read in Django's one thread for database work, where the query's cursor
    lives: under ASGI Django reads a plain iterator whole into memory before it sends a byte."""
    read = sync_to_async(lambda: "".join(islice(lines, EXPORT_BATCH)), thread_sensitive=True)
    while batch := await read():
        yield batch


@login_required
@require_GET
def audit_export(request: AuthedRequest) -> StreamingHttpResponse:
    """The filtered entries the user may see, all of them (not one page), as CSV."""
    _form, filters = _filtered(request)
    entries = selectors.audit_search(user=request.user, filters=filters)
    response = StreamingHttpResponse(_in_the_database_thread(_rows(entries, request.user)),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response

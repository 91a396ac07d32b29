"""The audit log page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import selectors

if TYPE_CHECKING:
    from domains.views import AuthedRequest


@login_required
@require_GET
def audit_list(request: AuthedRequest) -> HttpResponse:
    page = Paginator(selectors.audit_list(user=request.user), 100).get_page(request.GET.get("page"))
    return render(request, "audit/list.html", {"page": page})

"""Thin function views: parse the request, call a selector or a service, render."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import selectors, services, virt
from .filters import LIST_OPTIONS, ListQueryError, parse_list_query
from .forms import HostForm
from .models import Host

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django_htmx.middleware import HtmxDetails

    from accounts.models import User

    class AuthedRequest(HttpRequest):
        user: User
        htmx: HtmxDetails


def client_addr(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _admin_only(request: AuthedRequest) -> None:
    if not request.user.is_admin:
        raise Http404("Not found.")


@login_required
@require_GET
def domain_list(request: AuthedRequest) -> HttpResponse:
    try:
        query = parse_list_query(request.GET)
    except ListQueryError as error:
        if request.GET.get("format") == "json":
            return JsonResponse({"error": str(error)}, status=400)
        return render(request, "domains/list.html", {"error": str(error), "list_options": LIST_OPTIONS},
                      status=400)
    listing = selectors.domain_list(user=request.user, query=query)
    if query.json:
        return JsonResponse({
            "domains": [row.as_json() for row in listing.rows],
            "unreachable_hosts": [{"host": item.host.name, "error": item.message} for item in listing.unreachable],
        })
    template = "domains/list.html#results" if request.htmx else "domains/list.html"
    return render(request, template, {
        "listing": listing,
        "query": query,
        "params": request.GET,
        "list_options": LIST_OPTIONS,
    })


@login_required
@require_GET
def domain_detail(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    try:
        row = selectors.domain_get(user=request.user, host_name=host_name, uuid=str(uuid))
    except virt.HostUnreachable as error:
        return render(request, "domains/detail.html", {"error": str(error), "host_name": host_name}, status=503)
    return render(request, "domains/detail.html", {"row": row})


@login_required
@require_GET
def audit_list(request: AuthedRequest) -> HttpResponse:
    page = Paginator(selectors.audit_list(user=request.user), 100).get_page(request.GET.get("page"))
    return render(request, "audit/list.html", {"page": page})


@login_required
@require_http_methods(["GET", "POST"])
def host_list(request: AuthedRequest) -> HttpResponse:
    _admin_only(request)
    form = HostForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        host = services.host_register(
            actor=request.user, client_addr=client_addr(request), **form.cleaned_data
        )
        messages.success(request, f"Host {host.name} registered.")
        return redirect("domains:hosts")
    return render(request, "hosts/list.html", {"hosts": selectors.host_list(), "form": form},
                  status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def host_edit(request: AuthedRequest, host_name: str) -> HttpResponse:
    _admin_only(request)
    host = get_object_or_404(Host, name=host_name)
    form = HostForm(request.POST or None, instance=host)
    form.fields["name"].disabled = True
    if request.method == "POST" and form.is_valid():
        services.host_update(actor=request.user, host=host, uri=form.cleaned_data["uri"],
                             enabled=form.cleaned_data["enabled"], client_addr=client_addr(request))
        messages.success(request, f"Host {host.name} saved.")
        return redirect("domains:hosts")
    return render(request, "hosts/edit.html", {"host": host, "form": form}, status=400 if form.errors else 200)


@login_required
@require_POST
def host_delete(request: AuthedRequest, host_name: str) -> HttpResponse:
    _admin_only(request)
    host = get_object_or_404(Host, name=host_name)
    services.host_delete(actor=request.user, host=host, client_addr=client_addr(request))
    messages.success(request, f"Host {host_name} removed from the dashboard.")
    if request.htmx:
        return HttpResponseClientRedirect("/hosts/")
    return redirect("domains:hosts")


@login_required
@require_POST
def host_test(request: AuthedRequest, host_name: str) -> HttpResponse:
    _admin_only(request)
    host = get_object_or_404(Host, name=host_name)
    try:
        facts, error = services.host_test_connection(
            actor=request.user, host=host, client_addr=client_addr(request)), ""
    except virt.VirtError as failure:
        facts, error = None, str(failure)
    template = "hosts/list.html#test-result" if request.htmx else "hosts/test.html"
    return render(request, template, {"host": host, "facts": facts, "error": error})

"""A host's networks: the list (and, for admins, the define form), a network's page, its actions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from domains.views import _admin_only, _on_form, _posted, _run, client_addr

from . import selectors, services
from .forms import NatNetworkForm

if TYPE_CHECKING:
    from domains.views import AuthedRequest


@login_required
@require_http_methods(["GET", "POST"])
def network_list(request: AuthedRequest, host_name: str) -> HttpResponse:
    """Admins and operators see the networks; an admin's POST defines a NAT network (bad input comes back
    with its values and the reason beside its field)."""
    if request.method == "POST":
        _admin_only(request, "network.define")
    page = selectors.network_list(user=request.user, host_name=host_name)
    form = NatNetworkForm(_posted(request)) if request.user.is_admin else None
    if form is not None and request.method == "POST" and form.is_valid():
        network = _on_form(form, lambda: services.network_define(
            actor=request.user, host_name=host_name, spec=form.spec(), start=form.cleaned_data["start"],
            autostart=form.cleaned_data["autostart"], client_addr=client_addr(request)), user=request.user)
        if network is not None:
            messages.success(request, _("Network %(name)s defined on %(host)s.") % {"name": network.name,
                                                                                "host": host_name})
            return redirect("networks:detail", host_name, network.name)
    return render(request, "networks/list.html", {"page": page, "form": form},
                  status=400 if form is not None and form.errors else 200)


@login_required
@require_GET
def network_detail(request: AuthedRequest, host_name: str, name: str) -> HttpResponse:
    page = selectors.network_get(user=request.user, host_name=host_name, name=name)
    return render(request, "networks/detail.html", {"page": page, "network": page.network})


@login_required
@require_POST
def network_action(request: AuthedRequest, host_name: str, name: str) -> HttpResponse:
    try:
        action = services.NetworkAction(request.POST.get("action", ""))
    except ValueError:
        return HttpResponseBadRequest(_("Unknown network action."))
    _run(request, lambda: services.network_act(actor=request.user, host_name=host_name, name=name, action=action,
                                               client_addr=client_addr(request)))
    if request.POST.get("back") == "list":
        return redirect("networks:list", host_name)
    return redirect("networks:detail", host_name, name)

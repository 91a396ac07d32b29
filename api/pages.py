"""The user's own API tokens page (under accounts/): make one (its text shown once), revoke one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from domains.views import client_addr

from . import selectors, services
from .forms import TokenForm

if TYPE_CHECKING:
    from domains.views import AuthedRequest


@login_required
@require_http_methods(["GET", "POST"])
@never_cache  # the answer to a POST holds a token's text
def token_list(request: AuthedRequest) -> HttpResponse:
    form = TokenForm(request.POST if request.method == "POST" else None)
    created = ""
    if request.method == "POST" and form.is_valid():
        try:
            _token, created = services.token_create(
                actor=request.user, name=form.cleaned_data["name"], expires_days=form.cleaned_data["expires_days"],
                read_only=form.cleaned_data["read_only"], client_addr=client_addr(request))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            form = TokenForm()
    return render(request, "accounts/tokens.html", {
        "form": form, "created": created, "tokens": selectors.token_list(user=request.user)},
        status=400 if form.errors else 200)


@login_required
@require_POST
def token_revoke(request: AuthedRequest, token_id: int) -> HttpResponse:
    token = services.token_revoke(actor=request.user, token_id=token_id, client_addr=client_addr(request))
    messages.success(request, _("Token %(name)s revoked.") % {"name": token.name})
    return redirect("accounts:tokens")

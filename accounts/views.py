"""Signing in (password, then a TOTP code when the user has a device) and the user's own two-factor page."""

from __future__ import annotations

from base64 import b32encode
from typing import TYPE_CHECKING, Any

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from domains.views import client_addr

from . import recovery_codes, second_factor, services
from .forms import SecondFactorCodeForm, ThrottledAuthenticationForm, TotpCodeForm

if TYPE_CHECKING:
    from django.forms import Form

    from domains.views import AuthedRequest


class SignInView(auth_views.LoginView):
    """Django's login view; a user with a TOTP device is asked for its code before being logged in."""

    template_name = "accounts/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_valid(self, form: Form) -> HttpResponse:
        assert isinstance(form, ThrottledAuthenticationForm)  # noqa: S101 (narrows the type for mypy)
        return second_factor.complete_sign_in(self.request, form.get_user(), next_url=self.get_success_url())

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs),
                "single_sign_on": settings.OIDC_PROVIDER_NAME if settings.OIDC_ISSUER else ""}


@require_http_methods(["GET", "POST"])
@never_cache
def login_code(request: HttpRequest) -> HttpResponse:
    pending = second_factor.pending_sign_in(request)
    if pending is None:  # never asked, or asked too long ago: the page says so and links to the login
        return render(request, "accounts/login_code.html", {"form": None})
    form = SecondFactorCodeForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            return second_factor.finish_with_code(request, pending, form.cleaned_data["code"])
        except ValidationError as error:
            form.add_error("code", error)
    return render(request, "accounts/login_code.html", {"form": form, "username": pending.user.get_username()},
                  status=400 if form.errors else 200)


def _qr_svg(uri: str) -> str:
    # segno writes plain SVG markup (no style attribute, no script), which the Content-Security-Policy allows.
    return mark_safe(segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff"))  # noqa: S308


@login_required
@require_http_methods(["GET", "POST"])
@never_cache  # the page shows a secret, or recovery codes
def two_factor(request: AuthedRequest) -> HttpResponse:
    """One page for enrolling (start, then confirm with a code), new recovery codes, and turning two-factor sign-in
    off. Recovery codes are shown in the answer to the POST that made them, never again: no redirect to a page
    that would have to keep them."""
    actor, addr = request.user, client_addr(request)
    # Enrolling takes the new authenticator's code; once on, a recovery code does too.
    confirmed = TOTPDevice.objects.filter(user=actor, confirmed=True).exists()
    form_class = SecondFactorCodeForm if confirmed else TotpCodeForm
    posted = {"confirm", "recovery", "remove"} & request.POST.keys()
    form: TotpCodeForm | SecondFactorCodeForm = form_class(request.POST if posted else None)
    if "start" in request.POST:
        services.totp_enrol_start(actor=actor, client_addr=addr)
        return redirect("accounts:two-factor")
    new_codes: list[str] = []
    if form.is_valid():
        code = form.cleaned_data["code"]
        try:
            if "confirm" in request.POST:
                enrolment = services.totp_enrol_confirm(actor=actor, code=code, client_addr=addr)
                otp_login(request, enrolment.device)
                messages.success(request, _("Two-factor sign-in is on: your next sign-in will ask for a code."))
                confirmed, new_codes, form = True, enrolment.recovery_codes, SecondFactorCodeForm()
            elif "recovery" in request.POST:
                new_codes = services.recovery_codes_replace(actor=actor, code=code, client_addr=addr)
                messages.success(request, _("New recovery codes made: the old ones no longer work."))
                form = SecondFactorCodeForm()
            else:
                services.totp_remove(actor=actor, code=code, client_addr=addr)
                messages.success(request, _("Two-factor sign-in is off."))
                return redirect("accounts:two-factor")
        except ValidationError as error:
            form.add_error("code", error)
    waiting = None if confirmed else TOTPDevice.objects.filter(user=actor, confirmed=False).first()
    context: dict[str, Any] = {"form": form, "confirmed": confirmed, "waiting": waiting, "new_codes": new_codes,
                               "codes_left": recovery_codes.remaining(actor),
                               "required": settings.REQUIRE_ADMIN_2FA and actor.is_admin}
    if waiting is not None:
        context |= {"secret": b32encode(waiting.bin_key).decode(), "uri": waiting.config_url,
                    "qr": _qr_svg(waiting.config_url)}
    return render(request, "accounts/two_factor.html", context, status=400 if form.errors else 200)

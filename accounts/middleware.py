"""VMPORTAL_REQUIRE_ADMIN_2FA: an admin without a confirmed TOTP device may only enrol one (or log out).

Websockets and the console proxy check sessions through accounts.sessions.session_user, which refuses the same
admins, so a live page or console of theirs closes too.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django_htmx.http import HttpResponseClientRedirect

from .models import User
from .second_factor import must_enrol


class AdminSecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (isinstance(user, User) and must_enrol(user)
                and request.path not in (reverse("accounts:two-factor"), reverse("accounts:logout"))):
            messages.warning(request, _("Admins must use two-factor sign-in here: set up your authenticator "
                                        "app before anything else."))
            if request.headers.get("HX-Request") == "true":  # a whole page, not a fragment swapped into this one
                return HttpResponseClientRedirect(reverse("accounts:two-factor"))
            return redirect("accounts:two-factor")
        return self.get_response(request)

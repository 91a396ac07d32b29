"""VMPORTAL_REQUIRE_ADMIN_2FA: an admin without a confirmed TOTP device may only enrol one (or log out)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django_otp import user_has_device


class AdminSecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (settings.REQUIRE_ADMIN_2FA and user.is_authenticated and getattr(user, "is_admin", False)
                and request.path not in (reverse("accounts:two-factor"), reverse("accounts:logout"))
                and not user_has_device(user, confirmed=True)):
            messages.warning(request, _("Admins must use two-factor sign-in here: set up your authenticator "
                                        "app before anything else."))
            return redirect("accounts:two-factor")
        return self.get_response(request)

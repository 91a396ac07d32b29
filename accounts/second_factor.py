"""Every sign-in path (password, LDAP, OpenID Connect) ends here: a user with a confirmed TOTP device is not logged
in until they give its code.

Until then the session holds only who is waiting and since when, not a login, so nothing (pages, the API through
the session, websockets, console tickets) treats it as signed in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib import auth, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_otp import user_has_device
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEntry
from audit.services import record

from . import recovery_codes, throttle
from .forms import ThrottledAuthenticationForm, client_address
from .models import User

PENDING_KEY = "signin_pending"
METHODS = {
    "django.contrib.auth.backends.ModelBackend": "local password",
    "accounts.ldap.DirectoryBackend": "LDAP",
    "accounts.oidc.OpenIDConnectBackend": "OpenID Connect",
}


@dataclass(frozen=True)
class PendingSignIn:
    user: User
    backend: str
    next_url: str


def must_enrol(user: User) -> bool:
    """VMPORTAL_REQUIRE_ADMIN_2FA: an admin without a confirmed device may do nothing but set one up."""
    return settings.REQUIRE_ADMIN_2FA and user.is_admin and not user_has_device(user, confirmed=True)


def complete_sign_in(request: HttpRequest, user: User, *, next_url: str) -> HttpResponse:
    """Logs in a user whose first factor was accepted, or first asks for their code when they have a device."""
    if user_has_device(user, confirmed=True):
        request.session[PENDING_KEY] = {"user": user.pk, "backend": user.backend, "next": next_url,
                                        "since": time.time()}
        return redirect("accounts:login-code")
    auth.login(request, user)
    _audit_sign_in(request, user, method=METHODS.get(user.backend, user.backend))
    return HttpResponseRedirect(next_url)


def pending_sign_in(request: HttpRequest) -> PendingSignIn | None:
    """Who is waiting to give a code in this session; None when nobody is, or they waited too long."""
    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending["since"] > settings.SECOND_FACTOR_PENDING_SECONDS:
        request.session.pop(PENDING_KEY, None)
        return None
    user = User.objects.filter(pk=pending["user"], is_active=True).first()
    return PendingSignIn(user, pending["backend"], pending["next"]) if user else None


def verified_device(user: User, code: str) -> Device | None:
    """The device of `user` that `code` comes from: their authenticator's current code, or one of their recovery
    codes (used up by this); None when it is neither."""
    if recovery_codes.is_recovery_code(code):
        return recovery_codes.use(user, code)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device if device is not None and device.verify_token(code) else None


def wrong_code_message(code: str) -> str:
    if recovery_codes.is_recovery_code(code):
        return _("That is not one of your unused recovery codes.")
    return _("That code is not the one your authenticator shows now.")


def finish_with_code(request: HttpRequest, pending: PendingSignIn, code: str) -> HttpResponse:
    """Logs the waiting user in if `code` is their authenticator's or an unused recovery code; raises
    ValidationError (audited) otherwise.

    The code counts against the same throttle as a password: six digits are quick to guess without it.
    """
    username, addr = pending.user.get_username(), client_address(request)
    wait = throttle.login_blocked_for(username=username, client_addr=addr)
    device = None if wait else verified_device(pending.user, code)
    kind = "recovery" if recovery_codes.is_recovery_code(code) else "TOTP"
    if device is None:
        if wait:
            message = ThrottledAuthenticationForm.error_messages["throttled"] % {"wait": throttle.wait_message(wait)}
        else:
            throttle.login_failed(username=username, client_addr=addr)
            message = wrong_code_message(code)
        record(actor=pending.user, action="login", result=AuditEntry.Result.DENIED, client_addr=addr or None,
               message=f"refused: {'throttled' if wait else f'wrong {kind} code'}")
        raise ValidationError(message, code="throttled" if wait else "wrong_code")
    throttle.login_succeeded(username=username, client_addr=addr)
    request.session.pop(PENDING_KEY, None)
    # django-otp's documented hand-over: logging in a user holding `otp_device` marks the session verified.
    pending.user.otp_device = device  # type: ignore[attr-defined]
    auth.login(request, pending.user, backend=pending.backend)
    method = METHODS.get(pending.backend, pending.backend)
    if kind == "TOTP":
        _audit_sign_in(request, pending.user, method=f"{method} and a TOTP code")
    else:
        left = recovery_codes.remaining(pending.user)
        _audit_sign_in(request, pending.user, method=f"{method} and a recovery code ({left} left)")
        messages.warning(request, ngettext(
            "You signed in with a recovery code; %(count)d is left. Each works once: make new ones on the "
            "two-factor page.",
            "You signed in with a recovery code; %(count)d are left. Each works once: make new ones on the "
            "two-factor page.", left) % {"count": left})
    return HttpResponseRedirect(pending.next_url)


def _audit_sign_in(request: HttpRequest, user: User, *, method: str) -> None:
    record(actor=user, action="login", result=AuditEntry.Result.SUCCEEDED, client_addr=client_address(request) or None,
           message=f"signed in with {method}")

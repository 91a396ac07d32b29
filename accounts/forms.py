from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_otp import user_has_device

from audit.models import AuditEntry
from audit.services import record
from vmportal.clients import request_client_address

from . import throttle


def client_address(request: HttpRequest | None) -> str:
    """The address the throttle counts: behind a trusted proxy, the client it names, not the proxy."""
    return request_client_address(request) or ""


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses to even try a password once this username from this address, or this address, failed too often."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": _("Too many failed sign-ins from your address. %(wait)s"),
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        addr = client_address(self.request)
        wait = throttle.login_blocked_for(username=username, client_addr=addr)
        if wait:
            record(actor=None, actor_name=username or "(none)", action="login", result=AuditEntry.Result.DENIED,
                   client_addr=addr or None, message="refused: throttled")
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled",
                                        params={"wait": throttle.wait_message(wait)})
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            throttle.login_failed(username=username, client_addr=addr)
            raise
        # With a second factor to come, the count stays until its code is right: otherwise signing in again with the
        # password would reset it between guesses at the code.
        if not user_has_device(self.get_user(), confirmed=True):
            throttle.login_succeeded(username=username, client_addr=addr)
        return cleaned


class TotpCodeForm(forms.Form):
    code = forms.CharField(label=_("Code from your authenticator app"), max_length=8, strip=True,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                                         "autofocus": True}))


class SecondFactorCodeForm(forms.Form):
    """After the password, or to change two-factor settings: the authenticator's code, or a recovery code."""

    code = forms.CharField(label=_("Code from your authenticator app, or a recovery code"), max_length=24, strip=True,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True,
                                                         "autocapitalize": "none", "spellcheck": "false"}))

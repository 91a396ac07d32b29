"""A refused sign-in, by any method, leaves an audit row (connected in AccountsConfig.ready).

Successful ones are recorded where they complete (accounts.second_factor), not on user_logged_in, which tests'
force_login() sends too.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.models import AuditEntry
from audit.services import record

from .forms import client_address


@receiver(user_login_failed)
def audit_refused_sign_in(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None,
                          **kwargs: Any) -> None:
    username = str(credentials.get("username") or "")
    reason = "wrong username or password" if username else "single sign-on refused"
    record(actor=None, actor_name=username or "(single sign-on)", action="login", result=AuditEntry.Result.DENIED,
           client_addr=client_address(request) or None, message=f"refused: {reason}")

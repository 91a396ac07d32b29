"""LDAP / Active Directory sign-in (django-auth-ldap), with the role taken from the user's directory groups.

django-auth-ldap creates the user at their first sign-in, refreshes their name, e-mail and groups (mirrored into
Django groups) at each one, and leaves them no local password. A directory that cannot be reached, or whose
certificate is not trusted under StartTLS, refuses the sign-in with a message that says so (not "wrong password"),
a log line for the admin, and an audit row.
"""

from __future__ import annotations

import logging
from typing import Any

import ldap
from django.conf import settings
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django_auth_ldap.backend import LDAPBackend, ldap_error, populate_user

from audit.models import AuditEntry
from audit.services import record

from .forms import client_address
from .models import User
from .roles import role_for_groups

logger = logging.getLogger(__name__)


class _DirectoryFailed(Exception):
    """django-auth-ldap's LDAPError while signing in, carried out of it (it would otherwise read as a wrong
    password) to DirectoryBackend.authenticate, which knows the username."""

    def __init__(self, error: ldap.LDAPError) -> None:
        super().__init__(error)
        self.error = error


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend; its own class so the role mapping below listens to it alone."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> User | None:
        try:
            user: User | None = super().authenticate(request, username=username, password=password, **kwargs)
        except _DirectoryFailed as failure:
            raise _refusal(request, username or "", failure.error) from failure
        return user


def _refusal(request: HttpRequest | None, username: str, error: ldap.LDAPError) -> ValidationError:
    """Logged and audited; a ValidationError, so the login form shows its message (and counts it as a failure)."""
    reason = error.args[0].get("desc", str(error)) if error.args and isinstance(error.args[0], dict) else str(error)
    tls = settings.AUTH_LDAP_START_TLS or settings.AUTH_LDAP_SERVER_URI.startswith("ldaps://")
    untrusted = tls and isinstance(error, ldap.CONNECT_ERROR)  # libldap's answer to a failed TLS handshake
    if untrusted:
        logger.error("LDAP sign-in of %r refused: the TLS handshake with %s failed (%s); is its certificate from "
                     "the CA in VMPORTAL_LDAP_CA_FILE (or the system's), and for that host name?",
                     username, settings.AUTH_LDAP_SERVER_URI, reason)
        message = _("The directory's certificate could not be verified, so your password was not sent to it. "
                    "Tell an admin.")
    else:
        logger.error("LDAP sign-in of %r refused: the directory at %s did not answer (%s)",
                     username, settings.AUTH_LDAP_SERVER_URI, reason)
        message = _("The directory could not be reached to check your password. Try again later; if it keeps "
                    "failing, tell an admin.")
    record(actor=None, actor_name=username or "(none)", action="login", result=AuditEntry.Result.DENIED,
           client_addr=client_address(request) or None,
           message=f"refused: {'untrusted directory certificate' if untrusted else 'directory unreachable'}")
    return ValidationError(message, code="directory_unavailable")


@receiver(ldap_error, sender=DirectoryBackend)
def _carry_out_sign_in_errors(sender: type[DirectoryBackend], context: str, exception: ldap.LDAPError,
                              **kwargs: Any) -> None:
    # Finding the user's entry (with the bind account) or binding as them: both steps of a sign-in.
    if context in ("search_for_user_dn", "authenticate"):
        raise _DirectoryFailed(exception)


@receiver(populate_user, sender=DirectoryBackend)
def _role_from_groups(sender: type[DirectoryBackend], user: User, ldap_user: Any, **kwargs: Any) -> None:
    # Runs before the user is saved, so User.save() derives the admin flags from this role. Without a mapping the
    # role stays as set here (a tenant when new).
    if settings.LDAP_ROLE_GROUPS:
        user.role = role_for_groups(ldap_user.group_dns, settings.LDAP_ROLE_GROUPS)

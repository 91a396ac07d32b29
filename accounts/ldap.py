"""LDAP / Active Directory sign-in (django-auth-ldap), with the role taken from the user's directory groups.

django-auth-ldap creates the user at their first sign-in, refreshes their name, e-mail and groups (mirrored into
Django groups) at each one, and leaves them no local password.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.dispatch import receiver
from django_auth_ldap.backend import LDAPBackend, populate_user

from .models import User
from .roles import role_for_groups


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend; its own class so the role mapping below listens to it alone."""


@receiver(populate_user, sender=DirectoryBackend)
def _role_from_groups(sender: type[DirectoryBackend], user: User, ldap_user: Any, **kwargs: Any) -> None:
    # Runs before the user is saved, so User.save() derives the admin flags from this role. Without a mapping the
    # role stays as set here (a tenant when new).
    if settings.LDAP_ROLE_GROUPS:
        user.role = role_for_groups(ldap_user.group_dns, settings.LDAP_ROLE_GROUPS)

"""A directory's groups decide a user's role (VMPORTAL_LDAP_ROLE_GROUPS, VMPORTAL_OIDC_ROLE_GROUPS).

Signing in again re-reads them, so a user moved out of the admins' group is demoted at their next sign-in.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Group

from .models import User

# Highest first: a user in several mapped groups gets the most their groups give.
_RANK = (User.Role.ADMIN, User.Role.OPERATOR, User.Role.TENANT)


def role_for_groups(groups: Iterable[str], mapping: dict[str, str]) -> User.Role:
    """The highest role any of `groups` maps to (case-insensitive); a tenant when none does."""
    roles = {mapping[group.lower()] for group in groups if group.lower() in mapping}
    return next((role for role in _RANK if role in roles), User.Role.TENANT)


def mirror_groups(user: User, names: Iterable[str]) -> None:
    """Makes the user's Django groups exactly these (created when new), so grants to a group apply."""
    user.groups.set([Group.objects.get_or_create(name=name[:150])[0] for name in set(names)])

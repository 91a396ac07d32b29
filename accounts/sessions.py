"""A login session checked outside a request (websockets, the console proxy) exactly as Django checks it."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest

from .second_factor import must_enrol

if TYPE_CHECKING:
    from accounts.models import User


def session_user(session_key: str | None) -> User | None:
    """The active user logged in with this session key, verified as Django verifies it on a request.

    None once the session is gone for any reason: logged out, deleted, expired, its password changed
    (the session's auth hash no longer matches; Django then flushes it), or its user deactivated; and while its
    user is an admin who must still set up two-factor sign-in (VMPORTAL_REQUIRE_ADMIN_2FA).
    """
    if not session_key:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(request)
    if not user.is_authenticated or not user.is_active or must_enrol(user):
        return None
    return user
